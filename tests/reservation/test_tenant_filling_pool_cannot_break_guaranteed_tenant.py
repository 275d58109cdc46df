#!/usr/bin/python3
"""Two tenants overcommitting one pool (SPDK's test_thin_overprovisioning,
plus a snapshot so that overwrites need space): tenant B fills the pool
until ENOSPC; tenant A's written data and zero regions are unaffected under
every strategy, and A's overwrites of its snapshotted data still succeed
under provision, volume and full (under none they get ENOSPC: that is the
overcommit the other strategies remove). Under volume and full, A's holes
stay writable too.

Pool: 16 blocks of 64K (1M). A: 8 vblocks (512K) with the strategy under
test, a read-only snapshot Ab of it; B: 16 vblocks (1M), strategy none."""

import errno
import os
import sys

import nbd

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, ZERO, block, extents, flag_name  # noqa: E402


class TenantFillingPoolCannotBreakGuaranteedTenant(rlib.TestCase):
    def run_tenants(self, strategy, after_snapshot, b_blocks, overwrites_ok, holes_ok):
        """after_snapshot: (reserved, A's reserved) once A wrote 4 blocks and
        Ab was taken; b_blocks: how many blocks B gets before ENOSPC."""
        srv = self.start_server("size=1M", "block-size=64K", "volume=A:512K:" + strategy,
                                "volume=B:1M:none")
        ha = srv.connect("A")
        if strategy == "provision":
            ha.zero(4 * BS, 0, nbd.CMD_FLAG_NO_HOLE)  # provision vblocks 0-3
        data = [block(1000 + i) for i in range(4)]
        ha.pwrite(b"".join(data), 0)  # vblocks 4-7 stay a zero region
        srv.cli("snapshot", "--read-only", "A", "Ab")
        reserved, a_reserved = after_snapshot
        self.check(srv, strategy + ": A wrote 4, Ab taken", reserved=reserved,
                   per_volume={"A": a_reserved}, used=4, free=12)

        # B writes one block at a time until the pool refuses.
        hb = srv.connect("B")
        written = 0
        for i in range(16):
            try:
                hb.pwrite(block(2000 + i), i * BS)
            except nbd.Error as e:
                self.assertEqual(e.errnum, errno.ENOSPC, str(e))
                break
            written += 1
        self.assertEqual(written, b_blocks, strategy + ": blocks B got before ENOSPC")
        # B got everything that was neither used nor reserved.
        self.check(srv, strategy + ": B filled the pool", reserved=reserved,
                   per_volume={"A": a_reserved}, used=4 + b_blocks, free=12 - b_blocks)
        self.assertEqual(srv.status()["mode"], "out-of-data-space")
        self.assertBlocks(hb, 0, [block(2000 + i) for i in range(b_blocks)], "B's own data")

        # A is unaffected: data, zero region (reads zero, reported HOLE|ZERO).
        self.assertBlocks(ha, 0, data + [ZERO] * 4, strategy + ": A after B filled the pool")
        self.assertEqual([flag_name(f) for f in extents(ha, 8 * BS)][4:], ["HOLE|ZERO"] * 4)

        # A overwrites its snapshotted data (each needs a copy).
        patched = []
        for i in range(4):
            patch = b"tenant-A-%d" % i
            if overwrites_ok:
                ha.pwrite(patch, i * BS + 100)
                patched.append(data[i][:100] + patch + data[i][100 + len(patch):])
            else:
                self.assertENOSPC(ha.pwrite, patch, i * BS + 100)
                patched.append(data[i])
        if holes_ok:
            ha.pwrite(block(3000) * 4, 4 * BS)
            holes = [block(3000)] * 4
        else:
            self.assertENOSPC(ha.pwrite, block(3000), 4 * BS)
            holes = [ZERO] * 4
        self.assertBlocks(ha, 0, patched + holes, strategy + ": A after its overwrites")
        hab = srv.connect("Ab")
        self.assertBlocks(hab, 0, data + [ZERO] * 4, strategy + ": snapshot Ab")
        st = srv.status()
        self.assertLessEqual(st["reserved_blocks"], st["free_blocks"])
        return srv

    def test_none_keeps_data_but_overwrites_fail(self):
        # none: nothing reserved; B gets all 12 free blocks.
        srv = self.run_tenants("none", after_snapshot=(0, 0), b_blocks=12,
                               overwrites_ok=False, holes_ok=False)
        self.check(srv, "none: end", reserved=0, used=16, free=0)

    def test_provision_overwrites_succeed(self):
        # provision: vblocks 0-3 provisioned; with Ab: o=2, g=1 -> need 1
        # each = 4, charged to A. B gets 12 - 4 = 8.
        srv = self.run_tenants("provision", after_snapshot=(4, 4), b_blocks=8,
                               overwrites_ok=True, holes_ok=False)
        # A's 4 copies took the 4 reserved blocks: reserved 0, used 16.
        self.check(srv, "provision: end", reserved=0, used=16, free=0)

    def test_volume_overwrites_and_holes_succeed(self):
        # volume, A active: 4 unmapped vblocks (4) + 4 shared blocks with
        # o=2, g=1 (4) = 8, all A's. B gets 12 - 8 = 4.
        srv = self.run_tenants("volume", after_snapshot=(8, 8), b_blocks=4,
                               overwrites_ok=True, holes_ok=True)
        self.check(srv, "volume: end", reserved=0, used=16, free=0)

    def test_full_overwrites_and_holes_succeed(self):
        # full: the same sums as an active volume-mode A (8), B gets 4.
        srv = self.run_tenants("full", after_snapshot=(8, 8), b_blocks=4,
                               overwrites_ok=True, holes_ok=True)
        self.check(srv, "full: end", reserved=0, used=16, free=0)


if __name__ == "__main__":
    rlib.main()
