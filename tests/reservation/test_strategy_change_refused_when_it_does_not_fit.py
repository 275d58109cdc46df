#!/usr/bin/python3
"""`thinsim set NAME reserve=S` re-walks the volume's blocks and takes or
gives back exactly the difference in reserved blocks; when the new guarantee
does not fit it fails with ENOSPC (error JSON with the numbers) and changes
nothing. Includes the g-1 rule: when a second owner of a block starts
guaranteeing it, the need does not grow (one of them can keep the block and
write in place), and `ls` moves the charge between owners.

Pool: 16 blocks of 64K. `x`: 8 vblocks, none, vblocks 0-3 written and 0-1
provisioned; `xs`: its writable snapshot; `n`: 16 vblocks, none."""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, block  # noqa: E402


class StrategyChangeRefusedWhenItDoesNotFit(rlib.TestCase):
    def test_set_reserve(self):
        srv = self.start_server("size=1M", "block-size=64K", "volume=x:512K:none",
                                "volume=n:1M:none")
        hx = srv.connect("x")
        hx.pwrite(b"".join(block(i) for i in range(4)), 0)
        # `thinsim provision` marks x's 2 exclusive blocks in place; under
        # `none` the mark guarantees nothing yet.
        self.assertEqual(srv.cli("provision", "x", "0", "128K")["provisioned_blocks"], 2)
        srv.disconnect(hx, "x")
        srv.cli("snapshot", "x", "xs")  # xs inherits none and the marks
        hn = srv.connect("n")
        hn.pwrite(b"".join(block(10 + i) for i in range(8)), 0)
        self.check(srv, "setup", reserved=0, used=12, free=4)

        # provision: x's provisioned blocks 0-1: o=2, g 0 -> 1, need 0 -> 1:
        # +2, charged to x (o > g).
        self.assertEqual(srv.cli("set", "x", "reserve=provision")["reserved_blocks"], 2)
        st, ls_before = self.check(srv, "x provision", reserved=2, per_volume={"x": 2},
                                   used=12, free=4)

        # full: blocks 2-3 become guaranteed too (o=2, g 0 -> 1: +2) and the
        # 4 holes (+4): +6 > 4 - 2 = 2 unreserved.
        self.assertCliNoSpace(srv, ["set", "x", "reserve=full"], needed=6, free=4, unreserved=2,
                              reserved=2)
        reply = srv.control("volume-set", {"name": "x", "reserve": "full"})
        err = self.assertNoSpaceReply(reply, needed=6, free=4, unreserved=2, reserved=2,
                                      what="volume-set x full")
        self.assertEqual(err["desc"], "strategy full for 'x' needs 6 more reserved block(s), "
                         "but only 2 are free and unreserved (4 free, 2 reserved)")
        self.assertEqual(srv.status(), st)
        self.assertEqual(srv.ls(), ls_before)

        # xs full: its 4 shared blocks o=2, g 1 -> 2 for 0-1 (need 1 -> 1:
        # +0) and g 0 -> 1 for 2-3 (+2), and its 4 holes (+4): +6.
        self.assertCliNoSpace(srv, ["set", "xs", "reserve=full"], needed=6, free=4, unreserved=2,
                              reserved=2)
        self.assertEqual(srv.volume("xs")["strategy"], "none")

        # volume on an inactive x guarantees nothing: -2, always allowed.
        self.assertEqual(srv.cli("set", "x", "reserve=volume")["reserved_blocks"], 0)
        self.check(srv, "x volume (inactive)", reserved=0, used=12, free=4)
        # ... and x cannot be activated: 4 shared blocks (o=2 > g=1) + 4 holes.
        self.assertCliNoSpace(srv, ["activate", "x"], needed=8, free=4, unreserved=4, reserved=0)

        # The g-1 rule: x provision again (+2), then xs provision: blocks 0-1
        # go from o=2,g=1 (need 1) to o=2,g=2 (need g-1 = 1): +0.
        srv.cli("set", "x", "reserve=provision")
        srv.cli("set", "xs", "reserve=provision")
        # Every owner guarantees 0-1: the oldest owner, x, is charged nothing.
        self.check(srv, "x and xs provision", reserved=2, per_volume={"xs": 2}, used=12, free=4)
        # x back to none: g 2 -> 1 with o=2: need 1 -> 1, +0; the charge
        # stays with xs (now o > g).
        srv.cli("set", "x", "reserve=none")
        self.check(srv, "x none, xs provision", reserved=2, per_volume={"xs": 2}, used=12, free=4)

        # The guarantee is real: n may take only the 2 unreserved blocks,
        # then xs still overwrites its provisioned blocks.
        hn.pwrite(block(30) + block(31), 8 * BS)
        self.assertENOSPC(hn.pwrite, block(32), 10 * BS)
        hxs = srv.connect("xs")
        hxs.pwrite(b"xs" * 100, 0)
        hxs.pwrite(b"xs" * 100, BS + 1000)
        self.assertENOSPC(hxs.pwrite, b"xs", 2 * BS)  # not provisioned
        self.check(srv, "end", reserved=0, used=16, free=0)

        # Unknown strategies and settings are refused before anything.
        p = srv.cli_run("set", "x", "reserve=sometimes")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("unknown strategy 'sometimes'", p.stderr)


if __name__ == "__main__":
    rlib.main()
