#!/usr/bin/python3
"""Pool modes and events with reservations (SPEC 6): an unguaranteed write
that finds no unreserved block puts the pool in out-of-data-space (POOL_MODE
event); a discard or a delete that gives back unreserved space returns it to
`write` (POOL_MODE event), as `thinsim --json status` and `thinsim --json
events` both show; LOW_WATER fires once per crossing. Also for a persistent
pool, where freed blocks come back at the next commit.

test_mode_stays_out_of_data_space_while_no_block_is_unreserved asks that the
mode track *unreserved* space: a write to a guaranteed vblock, or a trim that
frees a block which is reserved again at once, must not report `write` while
every unguaranteed write would still fail.

Pool: 16 blocks of 64K. `g`: 4 vblocks, strategy volume (active while
connected); `n`: 16 vblocks, none; `d`: 8 vblocks, none (to be deleted)."""

import os
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, block, is_mode  # noqa: E402


def pool_mode(ev):
    return ev.get("event") == "POOL_MODE"


def summary(events):
    """(event, mode or threshold, free_blocks) of each event."""
    out = []
    for ev in events:
        d = ev["data"]
        key = d["mode"] if ev["event"] == "POOL_MODE" else d["threshold_blocks"]
        out.append((ev["event"], key, d["free_blocks"]))
    return out


class PoolModeFollowsUnreservedSpace(rlib.TestCase):
    def start(self, *extra):
        srv = self.start_server("size=1M", "block-size=64K", "low-water=25",
                                "volume=g:256K:volume", "volume=n:1M:none", "volume=d:512K:none",
                                *extra)
        stream = srv.events()
        hg = srv.connect("g")  # active: 4 unmapped guaranteed vblocks
        hd = srv.connect("d")
        hd.pwrite(block(1) * 4, 0)
        srv.disconnect(hd, "d")
        hn = srv.connect("n")
        hn.pwrite(b"".join(block(10 + i) for i in range(8)), 0)
        # used 4 (d) + 8 (n) = 12, free 4, all 4 reserved for g. low-water=25
        # -> threshold 16 * 25 / 100 = 4 blocks: free 4 is not below it.
        self.check(srv, "filled", reserved=4, per_volume={"g": 4}, used=12, free=4)
        return srv, stream, hg, hn

    def first_out_of_space(self, srv, stream, hn):
        """n's next write (vblock 8) fails: no unreserved block. Returns the
        index of the POOL_MODE out-of-data-space event in the CLI's stream.

        `thinsim events` prints nothing when it has subscribed, so the first
        attempt may come before the subscription; then the pool is put back
        in `write` (trim one of n's blocks) and filled again, and the failing
        write retried, until the stream has seen the event."""
        for attempt in range(50):
            self.assertENOSPC(hn.pwrite, block(99), 8 * BS)
            self.assertEqual(srv.status()["mode"], "out-of-data-space")
            i = stream.wait_for(is_mode("out-of-data-space"), timeout=0.5 + attempt * 0.1)
            if i is not None:
                return i
            hn.trim(BS, 7 * BS)
            hn.pwrite(block(17), 7 * BS)
        self.fail("`thinsim events` never reported POOL_MODE out-of-data-space")

    def test_discard_and_delete_return_pool_to_write(self):
        srv, stream, hg, hn = self.start()
        i0 = self.first_out_of_space(srv, stream, hn)

        # Discard: n trims 2 blocks -> free 6, reserved 4: 2 unreserved.
        hn.trim(2 * BS, 6 * BS)
        st, _ = self.check(srv, "n trimmed 2", reserved=4, per_volume={"g": 4}, used=10, free=6)
        self.assertEqual(st["mode"], "write")
        # Full again: n writes 2 (free 4), the third is refused.
        hn.pwrite(block(20) + block(21), 6 * BS)
        self.assertENOSPC(hn.pwrite, block(22), 8 * BS)
        self.assertEqual(srv.status()["mode"], "out-of-data-space")

        # Delete: d's 4 exclusive blocks are freed -> free 8, reserved 4.
        srv.cli("delete", "d")
        st, _ = self.check(srv, "d deleted", reserved=4, per_volume={"g": 4}, used=8, free=8)
        self.assertEqual(st["mode"], "write")

        # LOW_WATER: n takes the 4 unreserved blocks (free 4, not below 4);
        # g's first guaranteed write makes free 3 < 4: LOW_WATER, once; g's
        # next 3 writes go below it without another event.
        hn.pwrite(b"".join(block(30 + i) for i in range(4)), 8 * BS)
        for i in range(4):
            hg.pwrite(block(40 + i), i * BS)
        self.check(srv, "g wrote 4", reserved=0, used=16, free=0)
        # n trims 5 (free 5 >= 4: re-armed), then writes 2 (free 3): again.
        hn.trim(5 * BS, 0)
        hn.pwrite(block(50) + block(51), 0)
        self.check(srv, "n trimmed 5, wrote 2", reserved=0, used=13, free=3)

        want = [("POOL_MODE", "out-of-data-space", 4),
                ("POOL_MODE", "write", 6),
                ("POOL_MODE", "out-of-data-space", 4),
                ("POOL_MODE", "write", 8),
                ("LOW_WATER", 4, 3),
                ("LOW_WATER", 4, 3)]
        deadline = time.monotonic() + 5
        while len(stream.snapshot()) - i0 < len(want) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # nothing more may arrive
        self.assertEqual(summary(stream.snapshot()[i0:]), want)

    def test_persistent_pool_discard_returns_pool_to_write(self):
        # With pool=DIR a freed block is reusable once the transaction that
        # freed it commits (SPEC 8): the commit after the trim (commit-interval
        # 1 s, or the next allocation) returns the pool to write.
        d = tempfile.mkdtemp(prefix="thinsim-res-pool-", dir="/tmp")
        self.addCleanup(shutil.rmtree, d, True)
        srv, stream, hg, hn = self.start("pool=" + d)
        i0 = self.first_out_of_space(srv, stream, hn)
        hn.trim(2 * BS, 6 * BS)
        hn.flush()  # commits: the 2 blocks are free again
        st, _ = self.check(srv, "n trimmed 2", reserved=4, per_volume={"g": 4}, used=10, free=6)
        self.assertEqual(st["mode"], "write")
        self.assertIsNotNone(stream.wait_for(is_mode("write"), start=i0 + 1))
        hn.pwrite(block(20) + block(21), 6 * BS)
        self.assertENOSPC(hn.pwrite, block(22), 8 * BS)
        srv.cli("delete", "d")  # control commands commit
        st, _ = self.check(srv, "d deleted", reserved=4, per_volume={"g": 4}, used=8, free=8)
        self.assertEqual(st["mode"], "write")

    def test_mode_stays_out_of_data_space_while_no_block_is_unreserved(self):
        srv, stream, hg, hn = self.start()
        i0 = self.first_out_of_space(srv, stream, hn)
        # g's write is guaranteed and takes one of its reserved blocks:
        # free 3, reserved 3 -- still no unreserved block, n still refused.
        hg.pwrite(block(60), 0)
        st, _ = self.check(srv, "g wrote 1", reserved=3, per_volume={"g": 3}, used=13, free=3)
        self.assertEqual(st["mode"], "out-of-data-space",
                         "a guaranteed write made no space for anyone else")
        # g trims it: the block is freed (free 4) but g's vblock is a
        # guaranteed hole again (reserved 4): still no unreserved block.
        hg.trim(BS, 0)
        st, _ = self.check(srv, "g trimmed 1", reserved=4, per_volume={"g": 4}, used=12, free=4)
        self.assertEqual(st["mode"], "out-of-data-space",
                         "a freed block that is reserved again made no space")
        self.assertENOSPC(hn.pwrite, block(61), 8 * BS)
        time.sleep(0.2)
        # (g's write took free below low-water: a LOW_WATER event is right.)
        modes = [e for e in summary(stream.snapshot()[i0:]) if e[0] == "POOL_MODE"]
        self.assertEqual(modes, [("POOL_MODE", "out-of-data-space", 4)],
                         "POOL_MODE events while no block was ever unreserved")


if __name__ == "__main__":
    rlib.main()
