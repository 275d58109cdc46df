#!/usr/bin/python3
"""Block status contract (SPEC 4, NBD base:allocation): an extent reported
with HOLE clear must never fail a write with ENOSPC. So a mapped block that
is shared and not covered by a reservation is reported HOLE (not ZERO); one
covered (guaranteed) is reported as data, as is an exclusive block. Checked
for each strategy, then proven: with the pool exhausted by another volume,
every write to a HOLE-clear block succeeds.

Pool: 48 blocks of 64K (3M). p (provision), v (volume), f (full), n (none):
8 vblocks each, vblocks 0-3 written, p's 0-1 provisioned; a read-only
snapshot of each; `filler`: 48 vblocks, none."""

import errno
import os
import sys

import nbd

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, block, extents, flag_name  # noqa: E402

D, H, HZ = "DATA", "HOLE", "HOLE|ZERO"


class BlockStatusHoleClearMeansWriteCannotFail(rlib.TestCase):
    def test_block_status_contract(self):
        srv = self.start_server("size=3M", "block-size=64K", "extents=space", "volume=p:512K:provision",
                                "volume=v:512K:volume", "volume=f:512K:full",
                                "volume=n:512K:none", "volume=filler:3M:none")
        h = {}
        for name in ("p", "v", "f", "n"):
            h[name] = srv.connect(name)
            h[name].pwrite(b"".join(block(i) for i in range(4)), 0)
        srv.cli("provision", "p", "0", "128K")
        # used 16. reserved: v active, 4 holes (4); f, 4 holes (4); p's
        # provisioned blocks are exclusive (o=1: need 0); n 0. Total 8.
        self.check(srv, "written", reserved=8, per_volume={"v": 4, "f": 4}, used=16, free=32)

        def status(name):
            return [flag_name(x) for x in extents(h[name], 8 * BS)]

        # Exclusive blocks are data in every strategy.
        for name in h:
            self.assertEqual(status(name), [D] * 4 + [HZ] * 4, name)

        for name in ("p", "v", "f", "n"):
            srv.cli("snapshot", "--read-only", name, name + "r")
        # Shared blocks with o=2: p's 0-1 (g=1): +2; v's 0-3 (active, g=1):
        # +4; f's 0-3: +4; n's: g=0, 0. reserved 8 + 10 = 18.
        self.check(srv, "snapshots", reserved=18, per_volume={"p": 2, "v": 8, "f": 8},
                   used=16, free=32)
        self.assertEqual(status("p"), [D, D, H, H] + [HZ] * 4)
        self.assertEqual(status("v"), [D] * 4 + [HZ] * 4)
        self.assertEqual(status("f"), [D] * 4 + [HZ] * 4)
        self.assertEqual(status("n"), [H] * 4 + [HZ] * 4)
        # A read-only snapshot guarantees nothing: its shared blocks are HOLE.
        hr = srv.connect("nr")
        self.assertEqual([flag_name(x) for x in extents(hr, 8 * BS)], [H] * 4 + [HZ] * 4)

        # Overwriting a shared block (vblock 3) makes it exclusive: data. For
        # p and n that took an unreserved block; v and f used their cover
        # (-1 each). used 20, reserved 16.
        for name in h:
            h[name].pwrite(b"new", 3 * BS)
        self.check(srv, "vblock 3 rewritten", reserved=16, per_volume={"p": 2, "v": 7, "f": 7},
                   used=20, free=28)
        self.assertEqual(status("p"), [D, D, H, D] + [HZ] * 4)
        self.assertEqual(status("n"), [H, H, H, D] + [HZ] * 4)
        self.assertEqual(status("v"), [D] * 4 + [HZ] * 4)
        # The snapshot's copy of vblock 3 is now its own: data.
        self.assertEqual([flag_name(x) for x in extents(hr, 8 * BS)], [H, H, H, D] + [HZ] * 4)

        # Exhaust the pool: filler gets free - reserved = 28 - 16 = 12.
        hf = srv.connect("filler")
        hf.pwrite(block(99) * 12, 0)
        self.assertENOSPC(hf.pwrite, b"x", 12 * BS)
        self.check(srv, "exhausted", reserved=16, per_volume={"p": 2, "v": 7, "f": 7},
                   used=32, free=16)

        # The contract: every HOLE-clear extent takes a write.
        for name in ("p", "v", "f", "n"):
            flags = status(name)
            for i, fl in enumerate(flags):
                if fl == D:
                    h[name].pwrite(b"promise", i * BS + 10)
                elif fl == H or name in ("p", "n"):
                    # HOLE: a write may fail; here it does (shared, or a hole
                    # that p or n does not guarantee).
                    try:
                        h[name].pwrite(b"maybe", i * BS + 10)
                        self.fail("%s vblock %d (%s) took a write on a full pool" % (name, i, fl))
                    except nbd.Error as e:
                        self.assertEqual(e.errnum, errno.ENOSPC, str(e))
                else:
                    # v's and f's holes are guaranteed even though they are
                    # reported HOLE|ZERO (unmapped is always HOLE|ZERO).
                    h[name].pwrite(b"guaranteed", i * BS + 10)
        # p used 2 (vblocks 0-1), v and f 3 copies + 4 holes each: 16 blocks.
        self.check(srv, "end", reserved=0, used=48, free=0)


if __name__ == "__main__":
    rlib.main()
