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
point in time does the copy equal the snapshot. Bitmaps live in memory, so
the cycles do not cross server restarts yet."""

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
                srv.control_ok("transaction", {"actions": [
                    {"type": "snapshot-create", "data": {"origin": "v", "name": snap}},
                    {"type": "bitmap-cut", "data": {"volume": "v", "name": "live", "into": frozen}}]})
                s = srv.connect(snap)
                for e in srv.cli("bitmap", "extents", "v", frozen):
                    if e["dirty"]:
                        backup[e["offset"]:e["offset"] + e["length"]] = s.pread(e["length"], e["offset"])
                srv.disconnect(s)
                self.assertEqual(bytes(backup), self.read_export(srv, snap),
                                 "round %d: the backup is not the snapshot" % rnd)
                srv.cli("bitmap", "remove", "v", frozen)
                srv.cli("delete", "s%d" % (rnd - 1))
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(errors, [])

    def read_export(self, srv, name):
        h = srv.connect(name)
        data = h.pread(VOL, 0)
        srv.disconnect(h)
        return data


if __name__ == "__main__":
    lib.main()
