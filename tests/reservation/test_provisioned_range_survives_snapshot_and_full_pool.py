#!/usr/bin/python3
"""Chinner's provision model (strategy `provision`, Snitzer's per-block
bit): a provisioned range stays overwritable after snapshots and after
another volume has exhausted the pool. The snapshot re-reserves the COW
space of the provisioned blocks it shares; the provisioned mark is inherited
by the snapshots; fragmented (partial-block) overwrites of the range in the
origin and in the writable snapshot all succeed, while writes outside the
range get ENOSPC.

Pool: 16 blocks of 64K. `p`: 8 vblocks, strategy provision. `n`: 16 vblocks,
strategy none."""

import os
import sys

import nbd

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, block, extents, flag_name  # noqa: E402

KB4 = 4096


class ProvisionedRangeSurvivesSnapshotAndFullPool(rlib.TestCase):
    def setUp(self):
        self.model = {}

    def write(self, h, name, data, offset):
        """pwrite, and the same on the expected image."""
        h.pwrite(data, offset)
        self.model[name][offset:offset + len(data)] = data

    def verify(self, h, name):
        got = h.pread(8 * BS, 0)
        want = bytes(self.model[name])
        for i in range(8):
            if got[i * BS:(i + 1) * BS] != want[i * BS:(i + 1) * BS]:
                self.fail("%s block %d differs from the expected image" % (name, i))

    def test_provisioned_range_overwritable_after_snapshot_and_exhaustion(self):
        srv = self.start_server("size=1M", "block-size=64K", "extents=space", "volume=p:512K:provision",
                                "volume=n:1M:none")
        hp = srv.connect("p")
        self.model["p"] = bytearray(8 * BS)
        # provision strategy guarantees provisioned vblocks only: none yet.
        self.check(srv, "p active", reserved=0, used=0, free=16)

        # Provision vblocks 0-1 with NBD WRITE_ZEROES without MAY_TRIM
        # (NO_HOLE), and 2-3 with `thinsim provision`. 4 fresh blocks, each
        # o=1 g=1 -> need g-1 = 0.
        hp.zero(2 * BS, 0, nbd.CMD_FLAG_NO_HOLE)
        vol = srv.cli("provision", "p", "128K", "128K")
        self.assertEqual((vol["mapped_blocks"], vol["provisioned_blocks"]), (4, 4))
        # Fill them (in-place writes) and write 4-5 outside the range.
        for i in range(6):
            self.write(hp, "p", block(10 + i), i * BS)
        self.check(srv, "p provisioned 4, wrote 6", reserved=0, used=6, free=10)
        self.assertEqual(srv.volume("p")["provisioned_blocks"], 4)

        # Writable snapshot ps inherits `provision` and the provisioned marks.
        # vblocks 0-3: o=2, g=2 (both guarantee) -> need g-1 = 1 each: +4;
        # vblocks 4-5: g=0 -> 0. Every owner guarantees, so the oldest (p)
        # is charged nothing: ps 4.
        srv.cli("snapshot", "p", "ps")
        self.check(srv, "ps taken", reserved=4, per_volume={"ps": 4}, used=6, free=10)
        self.assertEqual(srv.volume("ps")["provisioned_blocks"], 4)
        # Read-only snapshot pr: vblocks 0-3 now o=3, g=2 -> need 2 each (+1
        # each: +4 -> 8). o > g, so each guaranteeing owner is charged 1:
        # p 4, ps 4, pr (guarantees nothing) 0.
        srv.cli("snapshot", "--read-only", "p", "pr")
        self.check(srv, "pr taken", reserved=8, per_volume={"p": 4, "ps": 4}, used=6, free=10)
        self.model["ps"] = bytearray(self.model["p"])
        self.model["pr"] = bytearray(self.model["p"])

        # Block status of p: provisioned shared blocks are guaranteed (data);
        # 4-5 are shared and unguaranteed (HOLE, not ZERO); 6-7 unmapped.
        self.assertEqual([flag_name(f) for f in extents(hp, 8 * BS)],
                         ["DATA"] * 4 + ["HOLE"] * 2 + ["HOLE|ZERO"] * 2)

        # n exhausts the pool: it may take free - reserved = 10 - 8 = 2 blocks.
        hn = srv.connect("n")
        hn.pwrite(block(20) + block(21), 0)
        self.assertENOSPC(hn.pwrite, block(22), 2 * BS)
        st, _ = self.check(srv, "n exhausted the pool", reserved=8,
                           per_volume={"p": 4, "ps": 4}, used=8, free=8)
        self.assertEqual(st["mode"], "out-of-data-space")

        # Outside the provisioned range p is not guaranteed: a shared block
        # and a hole both need a block that is not there.
        self.assertENOSPC(hp.pwrite, b"x" * KB4, 4 * BS)
        self.assertENOSPC(hp.pwrite, b"x" * KB4, 6 * BS)

        # Phase 1, fragmented overwrites: p patches vblocks 0-1, the writable
        # snapshot ps patches 2-3 (4K each at different offsets: copy + patch).
        hs = srv.connect("ps")  # provision: activation changes nothing
        self.check(srv, "ps connected", reserved=8, per_volume={"p": 4, "ps": 4}, used=8, free=8)
        self.write(hp, "p", b"A" * KB4, 0 * BS + 0)
        self.write(hp, "p", b"B" * KB4, 1 * BS + 60 * 1024)
        self.write(hs, "ps", b"C" * KB4, 2 * BS + 28 * 1024)
        self.write(hs, "ps", b"D" * KB4, 3 * BS + 4 * 1024)
        # Each copy: the old block loses a guaranteeing owner, o 3 -> 2 and
        # g 2 -> 1 -> need 2 -> 1: reserved 8 - 4 = 4, used 12, free 4.
        # Old 0-1 (owners ps, pr; g=1 by ps): ps charged 2; old 2-3 (owners
        # p, pr; g=1 by p): p charged 2.
        self.check(srv, "phase 1", reserved=4, per_volume={"p": 2, "ps": 2}, used=12, free=4)
        # A write straddling vblocks 0|1 of p: both exclusive now, in place.
        self.write(hp, "p", b"E" * KB4, BS - KB4 // 2)

        # Phase 2: p patches 2-3, ps patches 0-1: four more copies, o 2 -> 1,
        # g 1 -> 0 -> need 1 -> 0: reserved 0, used 16, free 0.
        self.write(hp, "p", b"F" * KB4, 2 * BS + 12 * 1024)
        self.write(hp, "p", b"G" * KB4, 3 * BS + 52 * 1024)
        self.write(hs, "ps", b"H" * KB4, 0 * BS + 32 * 1024)
        self.write(hs, "ps", b"I" * KB4, 1 * BS + 0)
        self.check(srv, "phase 2", reserved=0, used=16, free=0)
        # Whole-block overwrites of the provisioned range still work (in place).
        self.write(hp, "p", block(30), 1 * BS)
        self.write(hs, "ps", block(31), 3 * BS)

        # The marks stay (SPEC 4: sticky until trimmed) and each image holds
        # exactly what was written to it.
        vols = srv.ls()
        self.assertEqual([vols[n]["provisioned_blocks"] for n in ("p", "ps", "pr")], [4, 4, 4])
        self.verify(hp, "p")
        self.verify(hs, "ps")
        srv.disconnect(hs, "ps")
        hr = srv.connect("pr")  # read-only snapshot: a read-only export
        self.verify(hr, "pr")
        self.check(srv, "end", reserved=0, used=16, free=0)


if __name__ == "__main__":
    rlib.main()
