#!/usr/bin/python3
"""Strategy `full` (no overcommit, Stratis-like): every vblock of a full
volume is backed, always, active or not. So a full volume that cannot be
backed is refused, whether asked for at start (`volume=NAME:SIZE:full`), by
`thinsim create`, `thinsim resize`, `thinsim set NAME reserve=full` or a
writable snapshot; each refusal is ENOSPC with the numbers and changes
nothing, and once admitted every write of a full volume succeeds.

Pool: 16 blocks of 64K (1M)."""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import block  # noqa: E402


class FullStrategyRefusesUnbackableVolumes(rlib.TestCase):
    def test_start_refuses_unbackable_full_volume(self):
        # 2M = 32 vblocks, all guaranteed from creation; 16 free.
        srv = rlib.Server("size=1M", "block-size=64K", "volume=big:2M:full")
        self.addCleanup(srv.stop)
        rc, _ = srv.start_refused()
        self.assertNotEqual(rc, 0)
        self.assertIn("volume big: volume 'big' (strategy full) needs 32 more reserved block(s), "
                      "but only 16 are free and unreserved (16 free, 0 reserved)", srv.log())

    def test_full_volumes_are_admitted_only_when_backed(self):
        srv = self.start_server("size=1M", "block-size=64K", "volume=f1:512K:full")
        # An inactive full volume guarantees its 8 unmapped vblocks: 8.
        self.assertFalse(srv.volume("f1")["active"])
        self.check(srv, "f1 created", reserved=8, per_volume={"f1": 8}, used=0, free=16)

        # 576K = 9 vblocks > 16 - 8 = 8 unreserved.
        self.assertCliNoSpace(srv, ["create", "f2", "576K", "--reserve", "full"], needed=9,
                              free=16, unreserved=8, reserved=8)
        reply = srv.control("volume-create", {"name": "f2", "size": "576K", "reserve": "full"})
        self.assertNoSpaceReply(reply, needed=9, free=16, unreserved=8, reserved=8,
                                what="volume-create f2 576K full")
        self.assertEqual(sorted(srv.ls()), ["f1"])
        # 512K = 8 vblocks fits exactly: reserved 16 == free 16.
        srv.cli("create", "f2", "512K", "--reserve", "full")
        self.check(srv, "f2 created", reserved=16, per_volume={"f1": 8, "f2": 8}, free=16)

        # A none volume costs nothing to create, but every block left is
        # reserved: its first write is refused.
        srv.cli("create", "n", "1M")
        hn = srv.connect("n")
        self.assertENOSPC(hn.pwrite, b"n", 0)
        # Growing f1 by one vblock, or making n full, needs more.
        self.assertCliNoSpace(srv, ["resize", "f1", "576K"], needed=1, free=16, unreserved=0,
                              reserved=16)
        self.assertEqual(srv.volume("f1")["size"], 512 * 1024)
        self.assertCliNoSpace(srv, ["set", "n", "reserve=full"], needed=16, free=16,
                              unreserved=0, reserved=16)
        self.assertEqual(srv.volume("n")["strategy"], "none")
        # A writable snapshot of f1 is full too: its 8 unmapped vblocks need 8.
        self.assertCliNoSpace(srv, ["snapshot", "f1", "f1w"], needed=8, free=16, unreserved=0,
                              reserved=16)
        # A read-only snapshot of an empty f1 shares nothing: it costs 0.
        srv.cli("snapshot", "--read-only", "f1", "f1r")
        self.check(srv, "f1r taken", reserved=16, per_volume={"f1": 8, "f2": 8}, free=16)

        # f1 writes 3 vblocks: each fresh block takes one of its reserved
        # blocks: reserved 13, used 3, free 13.
        hf = srv.connect("f1")
        data = [block(40 + i) for i in range(3)]
        hf.pwrite(b"".join(data), 0)
        self.check(srv, "f1 wrote 3", reserved=13, per_volume={"f1": 5, "f2": 8}, used=3, free=13)
        # A read-only snapshot now shares 3 blocks: o=2, g=1 -> 1 each, +3;
        # 13 + 3 > 13.
        self.assertCliNoSpace(srv, ["snapshot", "--read-only", "f1", "f1r2"], needed=3, free=13,
                              unreserved=0, reserved=13)
        # Deleting f2 releases its 8: reserved 5 (f1's unmapped vblocks).
        srv.cli("delete", "f2")
        self.check(srv, "f2 deleted", reserved=5, per_volume={"f1": 5}, used=3, free=13)
        srv.cli("snapshot", "--read-only", "f1", "f1r2")
        # f1: 5 unmapped + 3 shared with o=2 > g=1 -> 8.
        self.check(srv, "f1r2 taken", reserved=8, per_volume={"f1": 8}, used=3, free=13)
        # Writable full snapshot: 3 blocks o 2 -> 3, g 1 -> 2, need 1 -> 2
        # (+3), plus its own 5 unmapped vblocks (+5): 8 > 13 - 8 = 5.
        self.assertCliNoSpace(srv, ["snapshot", "f1", "f1w"], needed=8, free=13, unreserved=5,
                              reserved=8)

        # Every write of f1 succeeds: 3 copies of shared blocks and 5 holes
        # use exactly the 8 reserved blocks: used 11, free 5, reserved 0.
        new = [block(50 + i) for i in range(8)]
        hf.pwrite(b"".join(new), 0)
        self.check(srv, "f1 rewrote everything", reserved=0, used=11, free=5)
        self.assertBlocks(hf, 0, new, "f1")
        hr = srv.connect("f1r2")
        self.assertBlocks(hr, 0, data + [rlib.ZERO] * 5, "f1r2")


if __name__ == "__main__":
    rlib.main()
