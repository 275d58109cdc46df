#!/usr/bin/python3
"""Dirty bitmaps (SPEC section 12) through the real nbdkit and the CLI:
`thinsim bitmap add` on a volume makes every write, zero and trim a client
sends mark the 4K granules it touches (a 4K-granular bitmap on a 64K pool);
`bitmap ls` and `bitmap extents` report them as tables and as JSON;
`bitmap cut` freezes them for a backup.

The incremental-backup cycle: a full copy of a snapshot, then rounds of
random writes, a snapshot, `bitmap cut` of the live bitmap into a frozen one,
a copy of only the frozen bitmap's dirty granules from the new snapshot onto
the backup, and `cmp` of the backup against an `nbdcopy` of the snapshot.
A second cycle runs while another connection keeps writing, and takes the
snapshot and the cut with one `transaction`: only if both happen at one
point in time does the copy equal the snapshot.

Persistent bitmaps (pool=DIR, volatile-cache=on): after every kill and
power cut each granule whose bytes changed since the last clear is dirty;
the backup cycle runs with crashes between its rounds; a bitmap follows
grows and shrinks of its volume across crashes, and `thinsim check` finds
the pool clean."""

import os
import random
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

VOL = 4 * MiB
G = 4 * KiB


class Bitmaps(lib.TestCase):

    def test_requests_mark_granules_and_the_cli_reports_them(self):
        srv = self.start_server("size=16M", "volume=v:4M")
        added = srv.cli("bitmap", "add", "v", "b", "--granularity", "4K")
        self.assertEqual(added["granularity"], G)
        h = srv.connect("v")
        h.pwrite(b"x" * 10, G + 100)         # granule 1 of a 64K block
        h.zero(2 * G, 64 * KiB)              # granules 16, 17
        h.trim(64 * KiB, 128 * KiB)          # a whole block: granules 32..47
        h.pread(G, 3 * G)                    # reads mark nothing
        self.assertEqual(srv.cli("bitmap", "ls", "v")[0]["count"], (1 + 2 + 16) * G)
        ext = srv.cli("bitmap", "extents", "v", "b")
        dirty = [(e["offset"], e["length"]) for e in ext if e["dirty"]]
        self.assertEqual(dirty, [(G, G), (64 * KiB, 2 * G), (128 * KiB, 64 * KiB)])
        self.assertEqual(sum(e["length"] for e in ext), VOL)
        table = srv.cli_text("bitmap", "ls")
        self.assertEqual(table.splitlines()[0].split(),
                         ["VOLUME", "NAME", "GRANULARITY", "DIRTY", "RECORDING", "BUSY", "PERSISTENT"])
        self.assertEqual(table.splitlines()[1].split(), ["v", "b", "4K", "76K", "yes", "no", "no"])
        r = srv.cli_run("bitmap", "add", "v", "c", "--granularity", "1000", json_output=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("power of two", r.stderr)

    def test_incremental_backup_cycle(self):
        srv = self.start_server("size=64M", "volume=v:4M")
        h = srv.connect("v")
        rng = random.Random(int(os.environ.get("BITMAP_SEED", "1")))
        srv.cli("bitmap", "add", "v", "live", "--granularity", "4K")
        srv.cli("snapshot", "v", "s0")
        backup = bytearray(self.read_export(srv, "s0"))
        for rnd in range(1, 6):
            written = set()
            for _ in range(rng.randint(1, 40)):
                off = rng.randrange(0, VOL - 1)
                length = rng.randint(1, min(200 * KiB, VOL - off))
                h.pwrite(bytes([rng.randrange(256)]) * length, off)
                written.update(range(off // G, (off + length - 1) // G + 1))
            snap, frozen = "s%d" % rnd, "f%d" % rnd
            srv.cli("snapshot", "v", snap)
            srv.cli("bitmap", "cut", "v", "live", frozen)
            ext = srv.cli("bitmap", "extents", "v", frozen)
            dirty = set()
            s = srv.connect(snap)
            copied = 0
            for e in ext:
                if e["dirty"]:
                    backup[e["offset"]:e["offset"] + e["length"]] = s.pread(e["length"], e["offset"])
                    copied += e["length"]
                    dirty.update(range(e["offset"] // G, (e["offset"] + e["length"]) // G))
            self.assertEqual(dirty, written, "round %d: the frozen bitmap is not what was written" % rnd)
            self.assertLess(copied, VOL)
            path = os.path.join(srv.tmp, "backup.img")
            with open(path, "wb") as f:
                f.write(backup)
            image = os.path.join(srv.tmp, "snap.img")
            lib.run(["nbdcopy", srv.uri(snap), image], check=True)
            lib.run(["cmp", path, image], check=True)
            srv.disconnect(s)
            srv.cli("bitmap", "remove", "v", frozen)
            srv.cli("delete", "s%d" % (rnd - 1))

    def test_incremental_backup_under_writes_with_transaction(self):
        srv = self.start_server("size=64M", "volume=v:4M")
        srv.cli("bitmap", "add", "v", "live", "--granularity", "4K")
        srv.cli("snapshot", "v", "s0")
        backup = bytearray(self.read_export(srv, "s0"))
        stop = threading.Event()
        errors = []

        def writer():
            h = srv.connect("v")
            rng = random.Random(2)
            try:
                while not stop.is_set():
                    off = rng.randrange(0, VOL - 1)
                    length = rng.randint(1, min(64 * KiB, VOL - off))
                    h.pwrite(bytes([rng.randrange(256)]) * length, off)
            except Exception as e:  # reported by the main thread
                errors.append(e)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            for rnd in range(1, 6):
                snap, frozen = "s%d" % rnd, "f%d" % rnd
                self.snapshot_and_cut(srv, snap, frozen)
                self.backup_round(srv, backup, rnd)
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(errors, [])

    # ---- persistent bitmaps --------------------------------------------------

    def start_pool(self):
        srv = lib.Server()
        self.addCleanup(srv.stop)
        srv.params = ["pool=" + os.path.join(srv.tmp, "pool"), "size=64M", "volume=v:4M",
                      "commit-interval=0", "volatile-cache=on"]
        srv.start()
        return srv

    def crash(self, srv, power_cut):
        """A power cut (unflushed writes lost) or a kill, then a restart."""
        if power_cut:
            srv.cli_text("power-cut")
        srv.proc.kill()
        srv.proc.wait(30)
        srv.handles = []
        srv.start()

    def dirty_granules(self, srv, name):
        out = set()
        for e in srv.cli("bitmap", "extents", "v", name):
            if e["dirty"]:
                out.update(range(e["offset"] // G, (e["offset"] + e["length"]) // G))
        return out

    def changed_granules(self, before, after):
        return {g for g in range(VOL // G) if before[g * G:(g + 1) * G] != after[g * G:(g + 1) * G]}

    def test_persistent_bitmap_is_never_falsely_clean_after_kills_and_power_cuts(self):
        srv = self.start_pool()
        added = srv.cli("bitmap", "add", "v", "live", "--granularity", "4K", "--persistent")
        self.assertTrue(added["persistent"])
        rng = random.Random(7)
        for rnd in range(8):
            power_cut = rnd % 2 == 1
            before = self.read_export(srv, "v")
            h = srv.connect("v")
            for _ in range(rng.randint(1, 30)):
                off = rng.randrange(0, VOL - 1)
                h.pwrite(bytes([rng.randrange(1, 256)]) * rng.randint(1, min(64 * KiB, VOL - off)), off)
            if rng.random() < 0.5:
                h.flush()
            self.crash(srv, power_cut)
            after = self.read_export(srv, "v")
            changed = self.changed_granules(before, after)
            dirty = self.dirty_granules(srv, "live")
            self.assertLessEqual(changed, dirty, "round %d (%s): changed granules not dirty: %s" % (
                rnd, "power cut" if power_cut else "kill", sorted(changed - dirty)[:10]))
            info = srv.cli("bitmap", "ls", "v")[0]
            self.assertEqual((info["name"], info["persistent"], info["recording"]), ("live", True, True))
            srv.cli("bitmap", "clear", "v", "live")

    def test_persistent_bitmap_follows_resizes_across_crashes(self):
        srv = self.start_pool()
        srv.cli("bitmap", "add", "v", "live", "--granularity", "4K", "--persistent")

        def write_and_flush(off):
            h = srv.connect("v")
            h.pwrite(b"r" * G, off)
            h.flush()
            srv.disconnect(h)

        def granules(lo, hi):
            return set(range(lo // G, hi // G))

        # A grow: the new bytes are dirty (a backup must copy them), also
        # after a power cut; a write there logs its intent within them.
        srv.cli("resize", "v", "6M")
        write_and_flush(5 * MiB)
        self.crash(srv, power_cut=True)
        self.assertEqual(srv.query_volumes()[0]["size"], 6 * MiB)
        self.assertEqual(self.dirty_granules(srv, "live"), granules(VOL, 6 * MiB))
        # A shrink drops the tail; the intent of a write before it stays (one
        # 1 MiB intent chunk).
        srv.cli("bitmap", "clear", "v", "live")
        write_and_flush(1 * MiB + 5 * G)
        srv.cli("resize", "v", "3M")
        self.crash(srv, power_cut=False)
        self.assertEqual(self.dirty_granules(srv, "live"), granules(1 * MiB, 2 * MiB))
        # Grown again: the bytes past 3M read zero now and are dirty.
        srv.cli("resize", "v", "4M")
        self.crash(srv, power_cut=False)
        self.assertEqual(self.dirty_granules(srv, "live"), granules(1 * MiB, 2 * MiB) | granules(3 * MiB, VOL))
        srv.proc.kill()  # the pool as a crash leaves it: check finds it clean
        srv.proc.wait(30)
        srv.handles = []
        check = lib.run([lib.CLI, "check", os.path.join(srv.tmp, "pool")])
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_incremental_backup_cycle_across_crashes(self):
        srv = self.start_pool()
        rng = random.Random(int(os.environ.get("BITMAP_SEED", "3")))
        srv.cli("bitmap", "add", "v", "live", "--granularity", "4K", "--persistent")
        srv.cli("snapshot", "v", "s0")
        backup = bytearray(self.read_export(srv, "s0"))
        for rnd in range(1, 7):
            h = srv.connect("v")
            for _ in range(rng.randint(1, 30)):
                off = rng.randrange(0, VOL - 1)
                h.pwrite(bytes([rng.randrange(256)]) * rng.randint(1, min(128 * KiB, VOL - off)), off)
                if rng.random() < 0.2:
                    h.flush()  # what it covers must survive the crash, and be dirty
            self.crash(srv, power_cut=rnd % 2 == 0)
            snap, frozen = "s%d" % rnd, "f%d" % rnd
            self.snapshot_and_cut(srv, snap, frozen)
            if rng.random() < 0.5:
                self.crash(srv, power_cut=True)  # the frozen bitmap and the snapshot survive it
            self.backup_round(srv, backup, rnd)

    def snapshot_and_cut(self, srv, snap, frozen):
        """Snapshot v and cut its live bitmap at one point in time."""
        srv.control_ok("transaction", {"actions": [
            {"type": "snapshot-create", "data": {"origin": "v", "name": snap}},
            {"type": "bitmap-cut", "data": {"volume": "v", "name": "live", "into": frozen}}]})

    def backup_round(self, srv, backup, rnd):
        """Copies the dirty granules of f<rnd> from s<rnd> onto `backup`, which
        must then equal s<rnd>; drops f<rnd> and the previous snapshot."""
        snap, frozen = "s%d" % rnd, "f%d" % rnd
        s = srv.connect(snap)
        for e in srv.cli("bitmap", "extents", "v", frozen):
            if e["dirty"]:
                backup[e["offset"]:e["offset"] + e["length"]] = s.pread(e["length"], e["offset"])
        srv.disconnect(s)
        self.assertEqual(bytes(backup), self.read_export(srv, snap),
                         "round %d: the backup is not the snapshot" % rnd)
        srv.cli("bitmap", "remove", "v", frozen)
        srv.cli("delete", "s%d" % (rnd - 1))

    def read_export(self, srv, name):
        h = srv.connect(name)
        data = h.pread(VOL, 0)
        srv.disconnect(h)
        return data


if __name__ == "__main__":
    lib.main()
