#!/usr/bin/python3
"""when-full=queue with reservations: an unguaranteed write that cannot get
an *unreserved* block waits (the pool is out-of-data-space), while writes to
guaranteed vblocks go straight through; a block freed but at once reserved
again does not release the waiting write; `thinsim grow` does. With a short
no-space-timeout the waiting write fails with ENOSPC after the timeout.

Pool: 16 blocks of 64K. `g`: 8 vblocks, strategy volume (active while
connected); `n`: 16 vblocks, strategy none."""

import errno
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, AsyncWrite, block  # noqa: E402


class QueueModeWaitsForUnreservedSpace(rlib.TestCase):
    def fill(self, timeout):
        srv = self.start_server("size=1M", "block-size=64K", "when-full=queue",
                                "no-space-timeout=%d" % timeout, "volume=g:512K:volume",
                                "volume=n:1M:none")
        hg = srv.connect("g")  # active: 8 unmapped vblocks guaranteed
        hn = srv.connect("n")
        hn.pwrite(b"".join(block(60 + i) for i in range(8)), 0)
        # n took 8; the other 8 free blocks are all reserved for g.
        self.check(srv, "n wrote 8", reserved=8, per_volume={"g": 8}, used=8, free=8)
        self.assertEqual(srv.status()["when_full"], "queue")
        return srv, hg, hn

    def test_queued_write_waits_for_unreserved_block_and_grow_releases_it(self):
        srv, hg, hn = self.fill(timeout=30)
        w = AsyncWrite(srv.connect("n"), block(70), 8 * BS)
        rlib.wait_mode(srv, "out-of-data-space")
        self.assertFalse(w.wait(0.5), "n's write must wait: every free block is reserved")

        # g's writes are guaranteed: they do not queue (well under the 30 s
        # timeout). 2 holes: reserved 8 -> 6, used 10, free 6.
        t0 = time.monotonic()
        hg.pwrite(block(80) + block(81), 0)
        self.assertLess(time.monotonic() - t0, 10)
        # n's exclusive blocks overwrite in place.
        hn.pwrite(b"over", 3 * BS + 5)
        self.check(srv, "g wrote 2", reserved=6, per_volume={"g": 6}, used=10, free=6)
        self.assertFalse(w.wait(0.3), "still no unreserved block")

        # g trims one of its blocks: the block is freed (free 7), but the
        # vblock is again a guaranteed hole (reserved 7): still nothing for n.
        hg.trim(BS, BS)
        self.check(srv, "g trimmed 1", reserved=7, per_volume={"g": 7}, used=9, free=7)
        self.assertFalse(w.wait(0.5), "a freed but reserved block must not release n's write")
        # (The pool mode meanwhile: see test_pool_mode_follows_unreserved_space.py.)

        # Grow by one block (17): free 8, reserved 7: one unreserved block.
        self.assertEqual(srv.cli("grow", "1088K")["total_blocks"], 17)
        self.assertTrue(w.wait(10), "the queued write did not finish after grow")
        self.assertIsNone(w.error, "the queued write failed after grow: %s" % w.error)
        self.check(srv, "queued write done", reserved=7, per_volume={"g": 7}, used=10, free=7)
        self.assertEqual(srv.status()["mode"], "write")
        self.assertBlocks(hn, 8, [block(70)], "the queued write's data")

    def test_short_timeout_fails_with_enospc(self):
        srv, hg, hn = self.fill(timeout=1)
        w = AsyncWrite(srv.connect("n"), block(90), 8 * BS)
        self.assertTrue(w.wait(15), "the queued write did not end after no-space-timeout=1")
        self.assertIsNotNone(w.error, "the queued write succeeded without space")
        self.assertEqual(w.error.errnum, errno.ENOSPC, str(w.error))
        # It waited for the timeout (1 s; 0.9 allows for clock granularity).
        self.assertGreaterEqual(w.elapsed, 0.9)
        self.assertIn("pool out of data space: need 1 block(s), 8 free, 0 of them unreserved; "
                      "waited 1s", srv.log())
        # Nothing changed, and g's guaranteed writes still go through.
        self.check(srv, "after timeout", reserved=8, per_volume={"g": 8}, used=8, free=8)
        hg.pwrite(block(91), 0)
        self.check(srv, "g wrote 1", reserved=7, per_volume={"g": 7}, used=9, free=7)


if __name__ == "__main__":
    rlib.main()
