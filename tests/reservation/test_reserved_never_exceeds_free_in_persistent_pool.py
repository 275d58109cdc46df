#!/usr/bin/python3
"""The invariant reserved <= free must hold after every operation (SPEC 5),
also in a persistent pool, where a freed block is not free until the
transaction that freed it commits (SPEC 8).

Trimming a block of an active `volume`-mode volume turns the vblock back
into a guaranteed hole (reserved + 1) while the block it frees only becomes
free at the next commit: between the two, reserved > free.

Pool: 16 blocks of 64K, pool=DIR, commit-interval=3600 (so that only the
requests themselves commit). `g`: 4 vblocks, volume; `n`: 16 vblocks,
none."""

import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, block  # noqa: E402


class ReservedNeverExceedsFreeInPersistentPool(rlib.TestCase):
    def test_trim_of_guaranteed_block(self):
        d = tempfile.mkdtemp(prefix="thinsim-res-pool-", dir="/tmp")
        self.addCleanup(shutil.rmtree, d, True)
        srv = self.start_server("pool=" + d, "size=1M", "block-size=64K", "commit-interval=3600",
                                "volume=g:256K:volume", "volume=n:1M:none")
        hg = srv.connect("g")
        hg.pwrite(block(1) + block(2), 0)  # 2 holes filled: reserved 4 -> 2
        hn = srv.connect("n")
        hn.pwrite(block(3) * 12, 0)
        hn.flush()
        self.check(srv, "filled", reserved=2, per_volume={"g": 2}, used=14, free=2)

        # g trims vblock 0: a guaranteed hole again (+1 -> reserved 3). The
        # block it held is freed by this transaction; if it only counts as
        # free after the commit, the pool must commit (or otherwise keep
        # reserved <= free) before the trim completes.
        hg.trim(BS, 0)
        st = srv.status()
        self.assertLessEqual(st["reserved_blocks"], st["free_blocks"],
                             "after g's trim (no commit yet): %s" % st)
        hg.flush()
        self.check(srv, "after flush", reserved=3, per_volume={"g": 3}, used=13, free=3)


if __name__ == "__main__":
    rlib.main()
