#!/usr/bin/python3
"""While the pool is out of data space (every block used or reserved),
everything that needs no new block keeps working, in error mode and in
queue mode (where it must not wait behind a queued write): reads of every
volume and snapshot, whole and partial overwrites of exclusive blocks,
WRITE_ZEROES of exclusive blocks (with and without MAY_TRIM), trims, flush,
block status. A write that needs a block (a shared block, a hole) gets ENOSPC
(error mode).

Pool: 16 blocks of 64K. `a`: 8 vblocks, none, with a read-only snapshot
`as` sharing vblocks 0-3; `n`: 16 vblocks, none (fills the pool)."""

import os
import sys
import time

import nbd

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, ZERO, AsyncWrite, block, extents, flag_name  # noqa: E402


class ExclusiveBlocksWorkWhileOutOfSpace(rlib.TestCase):
    def fill(self, *params):
        srv = self.start_server("size=1M", "block-size=64K", "extents=space", "volume=a:512K:none",
                                "volume=n:1M:none", *params)
        ha = srv.connect("a")
        orig = [block(i) for i in range(8)]
        ha.pwrite(b"".join(orig), 0)
        srv.cli("snapshot", "--read-only", "a", "as")
        # a overwrites 4-7: 4 copies; 0-3 stay shared with `as`.
        now = [block(100 + i) for i in range(4)]
        ha.pwrite(b"".join(now), 4 * BS)
        hn = srv.connect("n")
        hn.pwrite(block(200) * 4, 0)
        # used 8 + 4 + 4 = 16: full; nothing is guaranteed.
        self.check(srv, "full", reserved=0, used=16, free=0)
        return srv, ha, hn, orig, orig[:4] + now

    def exercise(self, srv, ha, hn, orig, image):
        """Everything that needs no block, on a full pool."""
        image = list(image)
        self.assertBlocks(ha, 0, image, "a")
        hs = srv.connect("as")
        self.assertBlocks(hs, 0, orig, "snapshot")
        # Overwrite exclusive blocks: whole, partial, straddling two blocks.
        ha.pwrite(block(300), 4 * BS)
        image[4] = block(300)
        ha.pwrite(b"p" * 100, 5 * BS + 7)
        image[5] = image[5][:7] + b"p" * 100 + image[5][107:]
        ha.pwrite(b"s" * 2048, 7 * BS - 1024)
        image[6] = image[6][:BS - 1024] + b"s" * 1024
        image[7] = b"s" * 1024 + image[7][1024:]
        # WRITE_ZEROES of an exclusive block: NO_HOLE provisions in place;
        # MAY_TRIM of a partial range zeroes in place.
        ha.zero(BS, 6 * BS, nbd.CMD_FLAG_NO_HOLE)
        image[6] = ZERO
        ha.zero(4096, 7 * BS)
        image[7] = bytes(4096) + image[7][4096:]
        ha.flush()
        self.assertBlocks(ha, 0, image, "a after in-place writes")
        self.assertEqual([flag_name(f) for f in extents(ha, 8 * BS)],
                         ["HOLE"] * 4 + ["DATA"] * 4)
        # n's blocks are exclusive too.
        hn.pwrite(b"n" * 4096, 2 * BS)
        return image

    def test_error_mode(self):
        srv, ha, hn, orig, image = self.fill()
        self.assertENOSPC(hn.pwrite, b"x", 4 * BS)  # a hole
        self.assertEqual(srv.status()["mode"], "out-of-data-space")
        image = self.exercise(srv, ha, hn, orig, image)
        # A shared block needs a copy: ENOSPC, and the data is unchanged.
        self.assertENOSPC(ha.pwrite, b"x", 0)
        self.assertENOSPC(ha.zero, 4096, 1 * BS, nbd.CMD_FLAG_NO_HOLE)
        self.assertBlocks(ha, 0, image, "a after refused writes")
        # Trimming a shared block frees nothing (the snapshot keeps it), and
        # works; it reads as zero in a.
        ha.trim(BS, 0)
        image[0] = ZERO
        self.check(srv, "a trimmed a shared block", reserved=0, used=16, free=0)
        self.assertBlocks(ha, 0, image, "a after trim")
        self.assertEqual(srv.status()["mode"], "out-of-data-space")

    def test_queue_mode_does_not_make_them_wait(self):
        srv, ha, hn, orig, image = self.fill("when-full=queue", "no-space-timeout=30")
        w = AsyncWrite(srv.connect("n"), block(400), 4 * BS)
        rlib.wait_mode(srv, "out-of-data-space")
        t0 = time.monotonic()
        self.exercise(srv, ha, hn, orig, image)
        self.assertLess(time.monotonic() - t0, 10, "in-place requests waited for space")
        self.assertFalse(w.wait(0.1), "the queued write finished without space")
        # Trimming one of n's exclusive blocks frees it: the queued write runs.
        hn.trim(BS, 3 * BS)
        self.assertTrue(w.wait(10), "the queued write did not finish after a trim")
        self.assertIsNone(w.error, str(w.error))
        self.check(srv, "queued write done", reserved=0, used=16, free=0)


if __name__ == "__main__":
    rlib.main()
