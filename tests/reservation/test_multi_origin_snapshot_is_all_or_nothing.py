#!/usr/bin/python3
"""`thinsim snapshot A:A1 B:B1` admits the snapshots together (SPEC 7, the
ZFS rule of checking every snapshot of one sync task together): when A1's
cover fits but A1's and B1's together do not, neither is taken, and every
counter (reserved, exclusive/shared blocks) is as before.

Pool: 16 blocks of 64K. `a`, `b`: 4 vblocks each, strategy volume, active,
3 blocks written each; `n`: 16 vblocks, none."""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import block  # noqa: E402


class MultiOriginSnapshotIsAllOrNothing(rlib.TestCase):
    def test_all_or_nothing(self):
        srv = self.start_server("size=1M", "block-size=64K", "volume=a:256K:volume",
                                "volume=b:256K:volume", "volume=n:1M:none")
        ha, hb, hn = srv.connect("a"), srv.connect("b"), srv.connect("n")
        ha.pwrite(block(1) * 3, 0)
        hb.pwrite(block(2) * 3, 0)
        hn.pwrite(block(3) * 4, 0)
        # used 10, free 6; a and b each have 1 guaranteed hole: reserved 2.
        st, ls_before = self.check(srv, "setup", reserved=2, per_volume={"a": 1, "b": 1},
                                   used=10, free=6)

        # a1 alone needs 3 (3 blocks o 1 -> 2, g=1): 2 + 3 = 5 <= 6. b1 then
        # needs 3 more: 5 + 3 = 8 > 6, with 6 - 5 = 1 unreserved.
        self.assertCliNoSpace(srv, ["snapshot", "a:a1", "b:b1"], needed=3, free=6, unreserved=1,
                              reserved=5)
        self.assertEqual(srv.status(), st)
        self.assertEqual(srv.ls(), ls_before)  # no a1; a's 3 blocks exclusive again

        # Each alone fits; the second then does not.
        srv.cli("snapshot", "a:a1")
        self.check(srv, "a1", reserved=5, per_volume={"a": 4, "b": 1}, used=10, free=6)
        self.assertCliNoSpace(srv, ["snapshot", "b:b1"], needed=3, free=6, unreserved=1,
                              reserved=5)
        vols = srv.ls()
        self.assertEqual([(vols[x]["exclusive_blocks"], vols[x]["shared_blocks"])
                          for x in ("a", "a1", "b")], [(0, 3), (0, 3), (3, 0)])


if __name__ == "__main__":
    rlib.main()
