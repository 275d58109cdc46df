#!/usr/bin/python3
"""Damaged metadata (SPEC section 8): a pool never serves wrong data.

Builds a pool through the real nbdkit (several volumes and snapshots, one of
them read-only, one whose origin was deleted; writes, trims, zeroes and
provisions spread over many commits), stops it, and appends an interrupted
commit to the log: the records of a transaction without its closing commit,
then a record cut short, all after the superblock's log length, as a crash in
the middle of a commit leaves it. The contents of every export of that
pristine pool are read once.

Then, many times, on a fresh copy of the pristine pool: flips random bytes in
one metadata file (DIR/metadata, DIR/metadata.ckpt.N, DIR/metadata.log.N;
metadata/journal.h), or truncates it, or removes it (the first 12 cases
remove, empty, halve and flip the magic of each file, whatever the seed), and:

  - `thinsim check DIR` (offline) must exit 1 when a changed byte lies in the
    committed part, and 0 when only the ignored tail of the log changed.
    Skipped, and said so, while the subcommand does not exist.
  - nbdkit must either refuse to start (non-zero exit, with a message that
    says to run `thinsim check` or `thinsim repair`), or serve exactly the
    pristine exports: the same names, sizes and every byte. When only the
    ignored tail changed it must serve, in write mode.

The zero padding (the pad u32 of the checkpoint and log headers, bytes
44..63 of the superblock) is part of the format: docs/format.md says it
must be zero and check verifies it, so a change there is damage like any
other committed byte.

Environment: CORRUPTION_SEED (printed; random when unset), CORRUPTION_CASES
(default 200), CORRUPTION_KEEP=1 keeps the temporary directory.
"""

import glob
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crashlib  # noqa: E402
from crashlib import KiB, SECTOR, nbd  # noqa: E402

BS = 4 * KiB


class Failure(Exception):
    pass


def build_pristine(tmp, pool):
    """Creates the pool through nbdkit and leaves it stopped cleanly."""
    srv = crashlib.Nbdkit(tmp, ["pool=" + pool, "size=4M", "block-size=4K",
                                "volume=vol0:1M", "volume=vol1:512K", "commit-interval=3600"])
    srv.start_or_fail()
    rng = random.Random(1234)
    try:
        h = srv.connect("vol0")
        h1 = srv.connect("vol1")
        op = 1

        def write(handle, off, n, flags=0):
            nonlocal op
            handle.pwrite(crashlib.payload(op, off // SECTOR, n // SECTOR), off, flags)
            op += 1

        for i in range(12):  # many small transactions
            write(h, rng.randrange(0, 256) * BS, rng.choice([SECTOR, BS, 3 * BS]), nbd.CMD_FLAG_FUA)
        write(h1, 0, 64 * KiB)
        h.flush()
        run(srv, "snapshot", "vol0", "s1")
        write(h, 0, 8 * BS, nbd.CMD_FLAG_FUA)          # breaks sharing with s1
        h.trim(4 * BS, 16 * BS, nbd.CMD_FLAG_FUA)
        h.zero(2 * BS + SECTOR, 40 * BS, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
        h.zero(3 * BS, 60 * BS + 100, nbd.CMD_FLAG_FUA)
        run(srv, "provision", "vol0", str(200 * BS), str(6 * BS))
        run(srv, "snapshot", "vol0", "s2", "--read-only")
        run(srv, "snapshot", "s1", "s3")
        write(h, 100 * BS, 5 * BS)
        h.flush()
        run(srv, "snapshot", "vol1:v1snap")
        write(h1, 32 * KiB, 16 * KiB, nbd.CMD_FLAG_FUA)
        run(srv, "delete", "s1")                       # s3's origin goes away
        for i in range(6):
            write(h, rng.randrange(0, 256) * BS, BS, nbd.CMD_FLAG_FUA)
        crashlib.close_handle(h)
        crashlib.close_handle(h1)
    finally:
        srv.stop()


def run(srv, *args):
    proc = srv.cli_run(*args, json_output=False)
    if proc.returncode != 0:
        raise Failure("thinsim %s failed (exit %d): %s" % (" ".join(args), proc.returncode,
                                                          proc.stderr.strip()))


def add_interrupted_commit(pool):
    """Appends, past the committed length, the last transaction's records
    without their commit record, then a record cut short."""
    sb = crashlib.read_superblock(pool)
    files = crashlib.metadata_files(pool)
    with open(files["log"], "rb") as f:
        log = f.read()
    if len(log) != sb["log_length"]:
        raise Failure("log is %d bytes, superblock says %d" % (len(log), sb["log_length"]))
    recs = crashlib.records(log)
    commits = [i for i, r in enumerate(recs) if r[2] == crashlib.KCOMMIT]
    if len(commits) < 2:
        raise Failure("the pristine log has %d transactions, want several" % len(commits))
    first = recs[commits[-2] + 1][0]
    last_commit = recs[commits[-1]][0]
    tail = log[first:last_commit]
    if not tail:
        raise Failure("the last transaction of the log has no records")
    cut = log[first:first + min(40, last_commit - first)]  # a record cut short
    with open(files["log"], "ab") as f:
        f.write(tail + cut[:-1] if len(cut) > 8 else tail)
    return sb["log_length"], len(log) + len(tail) + (len(cut) - 1 if len(cut) > 8 else 0)


def read_all(srv):
    vols = srv.cli("ls")
    st = srv.cli("status")
    out = {}
    for v in vols:
        out[v["name"]] = srv.read_export(v["name"])
    return out, st, vols


class CorruptionTest:
    def __init__(self, seed, cases):
        self.seed = seed
        self.cases = cases
        self.rng = random.Random(seed)
        self.tmp = crashlib.mkdtemp("thinsim-corrupt-")
        self.pristine = os.path.join(self.tmp, "pristine")
        self.work = os.path.join(self.tmp, "pool")
        self.stats = {}
        self.check_skipped = False
        self.failures = []
        self.note = []
        self.keep = "/tmp/thinsim-corrupt-fail-%d" % seed

    def count(self, key):
        self.stats[key] = self.stats.get(key, 0) + 1

    # ---- mutations ----------------------------------------------------------------

    def regions(self, path, kind, committed_len):
        """Classifies byte offsets of a metadata file: 'committed' or 'tail'
        (after the committed log; the header, padding included, is committed)."""
        def cls(off):
            if kind == "log" and off >= committed_len and off >= crashlib.FILE_HEADER:
                return "tail"
            return "committed"
        return cls

    # Every run starts with these, whatever the seed: each file removed,
    # emptied, cut in half, and its first byte (magic) flipped.
    FIXED = [(kind, mode) for kind in ("superblock", "checkpoint", "log")
             for mode in ("remove", "truncate0", "truncate-half", "flip-first")]

    def mutate(self, files, log_committed, log_size, case):
        """Applies one mutation to the work pool: case i < len(FIXED) is
        FIXED[i], later ones are random. Returns (description, class) where
        class is the most severe of the changed bytes: committed > tail
        ('removed' and 'truncated' are committed unless only tail
        bytes went)."""
        rng = self.rng
        if case < len(self.FIXED):
            kind, mode = self.FIXED[case]
        else:
            kind = rng.choice(["superblock", "checkpoint", "log", "log", "log-tail"])
            r = rng.random()
            if kind == "log-tail":
                kind = "log"
                mode = "flip-tail" if r < 0.7 else "truncate-tail"
            else:
                mode = "flip" if r < 0.75 else ("truncate" if r < 0.97 else "remove")
        path = files[kind]
        with open(path, "rb") as f:
            data = bytearray(f.read())
        committed_len = log_committed if kind == "log" else len(data)
        cls_of = self.regions(path, kind, committed_len)
        base = os.path.basename(path)

        if mode == "remove":
            os.unlink(path)
            # Without its superblock DIR may not look like a pool at all:
            # check may say "cannot read" (exit 2) rather than "damaged".
            return "removed %s" % base, "removed-superblock" if kind == "superblock" else "committed"
        if mode in ("truncate", "truncate-tail", "truncate0", "truncate-half"):
            if mode == "truncate0":
                n, cls = 0, "committed"
            elif mode == "truncate-half":
                n, cls = len(data) // 2, "committed"
            elif mode == "truncate-tail":
                n = rng.randrange(log_committed, len(data))
                cls = "tail"
            else:
                n = rng.choice([0, rng.randrange(0, 32), rng.randrange(0, len(data))])
                if kind == "log" and n >= log_committed:
                    cls = "tail"
                else:
                    cls = "committed"
            with open(path, "r+b") as f:
                f.truncate(n)
            return "truncated %s from %d to %d bytes" % (base, len(data), n), cls

        nflips = 1 if mode == "flip-first" else rng.choice([1, 1, 1, 2, 3, 8])
        offsets = {0} if mode == "flip-first" else set()
        while len(offsets) < nflips:
            if mode == "flip-tail":
                offsets.add(rng.randrange(log_committed, len(data)))
            elif rng.random() < 0.1:  # aim at headers and padding now and then
                offsets.add(rng.randrange(0, min(len(data), 64)))
            else:
                offsets.add(rng.randrange(0, len(data)))
        for off in offsets:
            data[off] ^= rng.randrange(1, 256)
        with open(path, "wb") as f:
            f.write(data)
        classes = {cls_of(o) for o in offsets}
        cls = "committed" if "committed" in classes else "tail"
        return "flipped byte(s) %s of %s (%s)" % (sorted(offsets), base, ",".join(
            "%d:%s" % (o, cls_of(o)) for o in sorted(offsets))), cls

    # ---- one case -------------------------------------------------------------------

    def one_case(self, i, files_of_pristine, log_committed, log_size):
        crashlib.copy_pool(self.pristine, self.work)
        files = {k: os.path.join(self.work, os.path.basename(p)) for k, p in files_of_pristine.items()}
        what, cls = self.mutate(files, log_committed, log_size, i)
        self.count("class " + cls)
        label = "case %d: %s [%s]" % (i, what, cls)

        proc = crashlib.run_check(self.work)
        if proc is None:
            self.check_skipped = True
        else:
            rc = proc.returncode
            if cls == "removed-superblock" and rc not in (1, 2):
                raise Failure("%s: `thinsim check` exited %d, want 1 or 2 (no superblock)\n"
                              "stdout: %s\nstderr: %s" % (label, rc, proc.stdout, proc.stderr))
            if cls == "committed" and rc != 1:
                raise Failure("%s: `thinsim check` exited %d, want 1 (damage in the committed part)\n"
                              "stdout: %s\nstderr: %s" % (label, rc, proc.stdout, proc.stderr))
            if cls == "tail" and rc != 0:
                raise Failure("%s: `thinsim check` exited %d, want 0 (only the ignored tail of the "
                              "log changed)\nstdout: %s\nstderr: %s" % (label, rc, proc.stdout, proc.stderr))

        srv = crashlib.Nbdkit(self.tmp, ["pool=" + self.work])
        try:
            r = srv.start()
            if r is not None:
                rc, log = r
                if cls == "tail":
                    raise Failure("%s: nbdkit refused a pool whose only change is in the ignored "
                                  "tail of the log (exit %d):\n%s" % (label, rc, log))
                if "thinsim check" not in log and "thinsim repair" not in log:
                    raise Failure("%s: nbdkit refused to start (exit %d), but its message does not "
                                  "say to run `thinsim check` or `thinsim repair`:\n%s" % (label, rc, log))
                self.count("refused")
                return
            got, st, vols = read_all(srv)
            if set(got) != set(self.expected):
                raise Failure("%s: nbdkit serves exports %s, the pristine pool has %s" % (
                    label, sorted(got), sorted(self.expected)))
            for name, data in got.items():
                want = self.expected[name]
                if data != want:
                    raise Failure("%s: export %s differs from the pristine pool: %s\nnbdkit log:\n%s" % (
                        label, name, describe_mismatch(data, want), srv.log()))
            if cls == "tail" and st.get("mode") != "write":
                raise Failure("%s: only the ignored tail changed, but the pool is served in mode %r:\n%s"
                              % (label, st.get("mode"), srv.log()))
            self.count("served (%s)" % st.get("mode"))
        finally:
            srv.kill()

    def serve_copy(self, pool):
        """What `pool` serves (read from a copy, since opening a pool changes
        it): ({export: bytes}, status)."""
        crashlib.copy_pool(pool, self.work)
        srv = crashlib.Nbdkit(self.tmp, ["pool=" + self.work])
        try:
            srv.start_or_fail()
            got, st, _ = read_all(srv)
            return got, st
        finally:
            srv.kill()

    def rewrite_as_checkpoint(self):
        """Moves the pristine pool to a new generation whose checkpoint holds
        everything (volumes, shared chunks, refcounts) by `thinsim dump` +
        `thinsim restore`, then adds more transactions to its log. Without
        those subcommands the checkpoint only holds the empty pool."""
        dump = crashlib.run([crashlib.CLI, "--json", "dump", self.pristine])
        if crashlib.is_unknown_command(dump) or not crashlib.check_available():
            self.note.append("`thinsim dump`/`restore` do not exist yet: the checkpoint holds only "
                             "the empty pool")
            return
        if dump.returncode != 0:
            raise Failure("thinsim --json dump %s exited %d: %s" % (self.pristine, dump.returncode,
                                                                  dump.stderr))
        before, _ = self.serve_copy(self.pristine)
        path = os.path.join(self.tmp, "dump.json")
        with open(path, "w") as f:
            f.write(dump.stdout)
        proc = crashlib.run([crashlib.CLI, "restore", self.pristine, path])
        if crashlib.is_unknown_command(proc):
            self.note.append("`thinsim restore` does not exist yet: the checkpoint holds only the "
                             "empty pool")
            return
        if proc.returncode != 0:
            raise Failure("thinsim restore %s exited %d: %s%s" % (self.pristine, proc.returncode,
                                                                 proc.stdout, proc.stderr))
        after, st = self.serve_copy(self.pristine)
        if set(after) != set(before):
            raise Failure("dump + restore changed the exports: %s became %s" % (
                sorted(before), sorted(after)))
        for name in before:
            if before[name] != after[name]:
                raise Failure("dump + restore changed the data of %s: %s" % (
                    name, describe_mismatch(after[name], before[name])))
        # More transactions on top of the new checkpoint.
        srv = crashlib.Nbdkit(self.tmp, ["pool=" + self.pristine, "commit-interval=3600"])
        srv.start_or_fail()
        try:
            h = srv.connect("vol0")
            h.pwrite(crashlib.payload(1000, 0, 8), 3 * BS + SECTOR, nbd.CMD_FLAG_FUA)  # breaks sharing
            run(srv, "snapshot", "vol0", "s4")
            h.trim(2 * BS, 100 * BS, nbd.CMD_FLAG_FUA)
            h.pwrite(crashlib.payload(1001, 8 * 210, 16), 210 * BS, nbd.CMD_FLAG_FUA)
            run(srv, "delete", "s2")
            h.zero(BS, 50 * BS, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
            crashlib.close_handle(h)
        finally:
            srv.stop()
        self.note.append("the checkpoint was written by `thinsim restore` (generation %d) and "
                         "holds every volume" % crashlib.read_superblock(self.pristine)["generation"])

    # ---- driver -----------------------------------------------------------------------

    def run(self):
        crashlib.require_binaries()
        print("corruption test: seed %d (CORRUPTION_SEED=%d reproduces it), %d cases, in %s" % (
            self.seed, self.seed, self.cases, self.tmp), flush=True)
        t0 = time.monotonic()
        try:
            build_pristine(self.tmp, self.pristine)
            self.rewrite_as_checkpoint()
            log_committed, log_size = add_interrupted_commit(self.pristine)
            files = crashlib.metadata_files(self.pristine)
            all_files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(self.pristine, "metadata*")))
            print("  pristine pool: %s; log %d bytes committed + %d bytes of an interrupted commit" % (
                ", ".join("%s (%d bytes)" % (f, os.path.getsize(os.path.join(self.pristine, f)))
                          for f in all_files), log_committed, log_size - log_committed), flush=True)
            proc = crashlib.run_check(self.pristine)
            if proc is None:
                self.check_skipped = True
            elif proc.returncode != 0:
                raise Failure("`thinsim check` of the pristine pool (with an interrupted commit at the "
                              "end of its log) exited %d, want 0:\n%s%s" % (
                                  proc.returncode, proc.stdout, proc.stderr))
            # What the pristine pool serves (read from a copy: opening a pool
            # drops the interrupted commit's bytes).
            crashlib.copy_pool(self.pristine, self.work)
            srv = crashlib.Nbdkit(self.tmp, ["pool=" + self.work])
            try:
                srv.start_or_fail()
                self.expected, st, vols = read_all(srv)
                if st.get("mode") != "write":
                    raise Failure("the pristine pool is served in mode %r:\n%s" % (st.get("mode"), srv.log()))
            finally:
                srv.kill()
            for n in self.note:
                print("  " + n)
            print("  exports: %s" % ", ".join("%s (%d KiB)" % (n, len(d) // KiB)
                                               for n, d in sorted(self.expected.items())), flush=True)
            for i in range(self.cases):
                try:
                    self.one_case(i, files, log_committed, log_size)
                except Failure as e:
                    # Keep going: one report lists every kind of failure.
                    self.failures.append(str(e))
                    if len(self.failures) == 1:
                        shutil.rmtree(self.keep, ignore_errors=True)
                        shutil.copytree(self.work, self.keep)
            if self.failures:
                raise Failure("%d of %d cases failed; the first %d:\n\n%s" % (
                    len(self.failures), self.cases, min(12, len(self.failures)),
                    "\n\n".join(self.failures[:12])))
        except Failure as e:
            keep = self.keep
            if not self.failures:
                shutil.rmtree(keep, ignore_errors=True)
                if os.path.isdir(self.work):
                    shutil.copytree(self.work, keep)
            self.summary()
            print("FAIL (seed %d): %s\n\nthe first failing case's pool is kept in %s, the pristine "
                  "one in %s" % (self.seed, e, keep, self.pristine), flush=True)
            return 1
        finally:
            if os.environ.get("CORRUPTION_KEEP") != "1" and not os.path.exists(self.keep):
                shutil.rmtree(self.tmp, ignore_errors=True)
        print("corruption test: %d cases in %.1fs" % (self.cases, time.monotonic() - t0))
        self.summary()
        print("PASS (seed %d)" % self.seed)
        return 0

    def summary(self):
        print("  outcomes: %s" % ", ".join("%s %d" % kv for kv in sorted(self.stats.items())))
        if self.check_skipped:
            print("  NOTE: `thinsim check` does not exist yet: its assertions were skipped")


def describe_mismatch(got, want):
    if len(got) != len(want):
        return "size %d, want %d" % (len(got), len(want))
    for i in range(0, len(got), SECTOR):
        if got[i:i + SECTOR] != want[i:i + SECTOR]:
            return "first difference in the sector at byte %d: got %r..., want %r..." % (
                i, got[i:i + 16], want[i:i + 16])
    return "equal"


def main():
    seed = int(os.environ["CORRUPTION_SEED"]) if os.environ.get("CORRUPTION_SEED") else \
        random.SystemRandom().getrandbits(32)
    cases = int(os.environ.get("CORRUPTION_CASES", "200"))
    return CorruptionTest(seed, cases).run()


if __name__ == "__main__":
    sys.exit(main())
