#!/usr/bin/python3
"""Snapshots are isolated point-in-time images: writes to the origin do not
show in the snapshot and writes to the snapshot do not show in the origin;
snapshots of snapshots work; deleting an origin leaves its snapshots intact;
several origins at once are all-or-nothing."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

BS = 64 * KiB


class SnapshotIsolation(lib.TestCase):
    def setUp(self):
        self.srv = self.start_server("size=32M", "volume=vol0:4M")
        self.h = self.srv.connect("vol0")
        self.base = lib.pattern(4 * BS, 1)
        self.h.pwrite(self.base, 0)
        self.h.flush()

    def snapshot(self, *args):
        return self.srv.cli("snapshot", *args)

    def test_origin_writes_do_not_reach_snapshot(self):
        out = self.snapshot("vol0", "snap1")  # taken with a writer connected
        self.assertEqual([v["name"] for v in out], ["snap1"], "snapshot --json reply")
        self.assertEqual(out[0]["origin"], "vol0")
        snap = self.srv.volume("snap1")
        self.assertEqual(snap["size"], 4 * MiB)
        self.assertEqual(snap["mapped_blocks"], 4)
        self.assertEqual(snap["shared_blocks"], 4)
        self.assertEqual(self.srv.volume("vol0")["shared_blocks"], 4)
        used_before = self.srv.query_pool()["used_blocks"]

        new = lib.pattern(1000, 2)
        self.h.pwrite(new, BS + 500)  # breaks sharing of block 1 only
        hs = self.srv.connect("snap1")
        self.assertBytesEqual(hs.pread(4 * BS, 0), self.base, "snapshot after origin write")
        want = bytearray(self.base)
        want[BS + 500:BS + 1500] = new
        self.assertBytesEqual(self.h.pread(4 * BS, 0), bytes(want), "origin after its write")

        self.assertEqual(self.srv.query_pool()["used_blocks"], used_before + 1,
                         "breaking sharing of one block allocates one block")
        origin = self.srv.volume("vol0")
        self.assertEqual((origin["exclusive_blocks"], origin["shared_blocks"]), (1, 3),
                         "origin exclusive/shared after one CoW: %s" % origin)

    def test_snapshot_writes_do_not_reach_origin(self):
        self.snapshot("vol0", "snap1")
        hs = self.srv.connect("snap1")
        new = lib.pattern(2 * BS, 3)
        hs.pwrite(new, BS // 2)
        hs.pwrite(b"x" * 10, 3 * MiB)  # an unmapped vblock of the snapshot
        self.assertBytesEqual(self.h.pread(4 * BS, 0), self.base, "origin after snapshot write")
        self.assertBytesEqual(self.h.pread(10, 3 * MiB), bytes(10), "origin where only the snapshot wrote")
        want = bytearray(self.base)
        want[BS // 2:BS // 2 + 2 * BS] = new
        self.assertBytesEqual(hs.pread(4 * BS, 0), bytes(want), "snapshot after its write")
        self.assertEqual(hs.pread(10, 3 * MiB), b"x" * 10)

    def test_snapshot_of_snapshot(self):
        self.snapshot("vol0", "s1")
        h1 = self.srv.connect("s1")
        a = lib.pattern(BS, 4)
        h1.pwrite(a, 0)
        self.snapshot("s1", "s2")
        h2 = self.srv.connect("s2")
        b = lib.pattern(BS, 5)
        h2.pwrite(b, BS)
        c = lib.pattern(BS, 6)
        self.h.pwrite(c, 2 * BS)

        base = self.base
        self.assertBytesEqual(self.h.pread(4 * BS, 0), base[:2 * BS] + c + base[3 * BS:], "vol0")
        self.assertBytesEqual(h1.pread(4 * BS, 0), a + base[BS:], "s1")
        self.assertBytesEqual(h2.pread(4 * BS, 0), a + b + base[2 * BS:], "s2")
        self.assertEqual(self.srv.volume("s2")["origin"], "s1")
        self.assertEqual(self.srv.volume("s1")["origin"], "vol0")

    def test_deleting_origin_keeps_snapshots(self):
        self.snapshot("vol0", "s1")
        self.snapshot("s1", "s2")
        self.srv.disconnect(self.h)
        used = self.srv.query_pool()["used_blocks"]
        self.srv.cli("delete", "vol0")
        names = [v["name"] for v in self.srv.query_volumes()]
        self.assertEqual(names, ["s1", "s2"])
        self.assertEqual(self.srv.query_pool()["used_blocks"], used,
                         "deleting an origin whose blocks are all shared frees nothing")
        s1 = self.srv.volume("s1")
        self.assertIsNone(s1["origin"], "origin of a snapshot whose origin was deleted")
        for name in ("s1", "s2"):
            h = self.srv.connect(name)
            self.assertBytesEqual(h.pread(4 * BS, 0), self.base, name + " after deleting vol0")
            self.srv.disconnect(h)
        self.srv.cli("delete", "s1")
        h = self.srv.connect("s2")
        self.assertBytesEqual(h.pread(4 * BS, 0), self.base, "s2 after deleting s1")
        s2 = self.srv.volume("s2")
        self.assertEqual((s2["exclusive_blocks"], s2["shared_blocks"]), (4, 0),
                         "the last owner holds its blocks exclusively: %s" % s2)
        self.assertEqual(self.srv.query_pool()["used_blocks"], 4)

    def test_delete_snapshot_frees_only_its_blocks(self):
        self.snapshot("vol0", "s1")
        hs = self.srv.connect("s1")
        hs.pwrite(lib.pattern(BS, 7), 0)  # s1 now owns one exclusive block
        self.assertEqual(self.srv.query_pool()["used_blocks"], 5)
        self.srv.disconnect(hs)
        self.srv.cli("delete", "s1")
        self.assertEqual(self.srv.query_pool()["used_blocks"], 4)
        self.assertBytesEqual(self.h.pread(4 * BS, 0), self.base, "origin after deleting snapshot")
        v = self.srv.volume("vol0")
        self.assertEqual((v["exclusive_blocks"], v["shared_blocks"]), (4, 0))

    def test_multi_origin_snapshot(self):
        self.srv.cli("create", "volB", "1M")
        hb = self.srv.connect("volB")
        b = lib.pattern(BS, 8)
        hb.pwrite(b, 0)
        out = self.snapshot("vol0:A1", "volB:B1")
        self.assertEqual(sorted(v["name"] for v in out), ["A1", "B1"])
        self.h.pwrite(bytes(BS), 0)
        hb.pwrite(bytes(BS), 0)
        self.assertBytesEqual(self.srv.connect("A1").pread(4 * BS, 0), self.base, "A1")
        self.assertBytesEqual(self.srv.connect("B1").pread(BS, 0), b, "B1")

    def test_multi_origin_all_or_nothing(self):
        self.srv.cli("create", "volB", "1M")
        self.srv.cli("create", "B1", "1M")  # the second pair's name is taken
        before_vols = self.srv.query_volumes()
        before_pool = self.srv.query_pool()
        proc = self.srv.cli_run("snapshot", "vol0:A1", "volB:B1")
        self.assertNotEqual(proc.returncode, 0, "snapshot with an existing name must fail")
        self.assertIn("B1", proc.stderr, "the error names the failing pair: %r" % proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1,
                         "one-line error: %r" % proc.stderr)
        self.assertEqual(self.srv.query_volumes(), before_vols, "nothing created")
        self.assertEqual(self.srv.query_pool(), before_pool, "pool unchanged")
        # The raw protocol says the same, with class Exists.
        reply = self.srv.control("snapshot-create", {"snapshots": [
            {"origin": "vol0", "name": "A1"}, {"origin": "volB", "name": "B1"}]})
        self.assertControlError(reply, "Exists", "snapshot-create with existing name")
        # A missing origin in the second pair also creates nothing.
        reply = self.srv.control("snapshot-create", {"snapshots": [
            {"origin": "vol0", "name": "A1"}, {"origin": "nope", "name": "N1"}]})
        self.assertControlError(reply, "NotFound", "snapshot-create with missing origin")
        # The same name twice in one request creates nothing.
        reply = self.srv.control("snapshot-create", {"snapshots": [
            {"origin": "vol0", "name": "D1"}, {"origin": "volB", "name": "D1"}]})
        self.assertIn("error", reply, "duplicate name in one request: %s" % reply)
        self.assertEqual(self.srv.query_volumes(), before_vols, "nothing created")

    def test_snapshot_is_a_new_export(self):
        self.snapshot("vol0", "snap1")
        proc = lib.run(["nbdinfo", "--list", "--json", self.srv.uri()], check=True)
        import json
        names = [e["export-name"] for e in json.loads(proc.stdout)["exports"]]
        self.assertEqual(sorted(names), ["snap1", "vol0"])


if __name__ == "__main__":
    lib.main()
