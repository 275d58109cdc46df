#!/usr/bin/python3
"""Foster's reserve mode (strategy `volume`): a snapshot of an *active*
origin must reserve a block for every origin block that becomes shared, and
fails with ENOSPC, changing nothing, when that cover does not fit; once space
is found it succeeds and reserves exactly that much, and every later write of
the active origin succeeds even with the pool full. A snapshot of an
*inactive* origin reserves nothing and succeeds on a full pool.

Pool: 16 blocks of 64K. `a`: 8 vblocks, strategy volume. `n`: 16 vblocks,
strategy none (the neighbour that eats space)."""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, block  # noqa: E402


class ActiveOriginSnapshotNeedsCover(rlib.TestCase):
    def test_snapshot_of_active_origin_needs_cover_inactive_is_free(self):
        srv = self.start_server("size=1M", "block-size=64K", "volume=a:512K:volume",
                                "volume=n:1M:none")
        # Nothing is active, nothing guaranteed.
        self.check(srv, "start", reserved=0, used=0, free=16)

        # A writable connection activates `a`: its 8 unmapped vblocks are
        # guaranteed, 1 each -> reserved 8.
        ha = srv.connect("a")
        self.assertTrue(srv.volume("a")["active"])
        self.check(srv, "a active", reserved=8, per_volume={"a": 8}, used=0, free=16)

        # a writes vblocks 0-5: 6 fresh blocks, o=1 g=1 -> need 0 each; the
        # unmapped guaranteed vblocks drop to 2 -> reserved 2. used 6, free 10.
        old = [block(100 + i) for i in range(6)]
        ha.pwrite(b"".join(old), 0)
        self.check(srv, "a wrote 6", reserved=2, per_volume={"a": 2}, used=6, free=10)

        # n (none) writes 6 blocks: unguaranteed, allowed while reserved <= free
        # stays true: free 10 -> 4, reserved 2 <= 4.
        hn = srv.connect("n")
        hn.pwrite(b"".join(block(200 + i) for i in range(6)), 0)
        st_before, ls_before = self.check(srv, "n wrote 6", reserved=2, per_volume={"a": 2},
                                          used=12, free=4)

        # Snapshot of the active origin: each of a's 6 blocks goes from o=1 to
        # o=2 with g=1 (a guarantees, the inactive snapshot does not):
        # need 0 -> 1, so +6. 2 + 6 = 8 > free 4: refused, 4 - 2 = 2 unreserved.
        self.assertCliNoSpace(srv, ["snapshot", "a", "s1"], needed=6, free=4, unreserved=2,
                              reserved=2)
        # A read-only snapshot costs the same: it guarantees nothing itself, but
        # a's blocks it would share still need cover (SPEC 5).
        reply = srv.control("snapshot-create", {"origin": "a", "name": "s1", "read-only": True})
        self.assertNoSpaceReply(reply, needed=6, free=4, unreserved=2, reserved=2,
                                what="read-only snapshot of active a")
        # ... and nothing changed: same status, same volumes, no s1.
        self.assertEqual(srv.status(), st_before)
        self.assertEqual(srv.ls(), ls_before)

        # n trims 4 of its blocks: free 4 -> 8; reserved stays 2.
        hn.trim(4 * BS, 0)
        self.check(srv, "n trimmed 4", reserved=2, per_volume={"a": 2}, used=8, free=8)

        # Now the cover fits exactly: 2 + 6 = 8 <= free 8.
        snap = srv.cli("snapshot", "a", "s1")
        self.assertEqual([(s["name"], s["strategy"], s["active"], s["read_only"]) for s in snap],
                         [("s1", "volume", False, False)])
        # a is charged both the 2 unmapped vblocks and the 6 shared blocks
        # (o=2 > g=1: a may have to copy each) -> a: 8; s1 guarantees nothing.
        self.check(srv, "s1 taken", reserved=8, per_volume={"a": 8}, used=8, free=8)
        vols = srv.ls()
        self.assertEqual((vols["a"]["shared_blocks"], vols["a"]["exclusive_blocks"]), (6, 0))

        # reserved == free: an unguaranteed write that needs a block may not
        # take a reserved one -> ENOSPC; n's exclusive blocks still overwrite.
        self.assertENOSPC(hn.pwrite, block(300), 10 * BS)
        hn.pwrite(block(301), 4 * BS)
        self.check(srv, "n refused a new block", reserved=8, per_volume={"a": 8}, used=8, free=8)

        # Every write of the active origin succeeds. Overwriting a shared block
        # copies it: new block for a, the old one keeps o=1 (s1), g=0 -> need
        # 1 -> 0. Partial writes (copy + patch) for 0-2, whole blocks for 3-5.
        patch = b"PATCHED!" * 512  # 4K
        for i in range(3):
            ha.pwrite(patch, i * BS + 8192)
        new = [block(400 + i) for i in range(3, 6)]
        ha.pwrite(b"".join(new), 3 * BS)
        # 6 copies: used 14, free 2, reserved 8 - 6 = 2 (a's unmapped vblocks).
        self.check(srv, "a overwrote 6 shared", reserved=2, per_volume={"a": 2}, used=14, free=2)
        # a's holes are guaranteed too: 2 fresh blocks, need 1 -> 0 each.
        ha.pwrite(block(500) + block(501), 6 * BS)
        self.check(srv, "a filled its holes", reserved=0, used=16, free=0)

        want_a = [o[:8192] + patch + o[8192 + len(patch):] for o in old[:3]] + new
        self.assertBlocks(ha, 0, want_a + [block(500), block(501)], "a after overwrites")
        # s1 inherited `volume`: opening it writable would activate it and
        # need 2 blocks for its 2 unmapped vblocks (free 0). Make it `none`
        # (inactive, so that changes no reservation) to read it.
        self.assertEqual(srv.cli("set", "s1", "reserve=none")["strategy"], "none")
        self.check(srv, "s1 set to none", reserved=0, used=16, free=0)
        hs = srv.connect("s1")
        self.assertBlocks(hs, 0, old + [rlib.ZERO, rlib.ZERO], "s1 keeps the point-in-time image")
        srv.disconnect(hs, "s1")

        # Inactive origin: once a's last writable connection closes, a
        # guarantees nothing and a snapshot needs no cover, even on a full
        # pool (0 free): o 1 -> 2 with g=0 keeps need 0.
        srv.disconnect(ha, "a")
        self.assertFalse(srv.volume("a")["active"])
        self.check(srv, "a inactive", reserved=0, used=16, free=0)
        srv.cli("snapshot", "a", "s2")
        srv.cli("snapshot", "--read-only", "a", "s3")
        self.check(srv, "inactive a snapshotted twice", reserved=0, used=16, free=0)
        self.assertEqual({n: v["active"] for n, v in srv.ls().items()},
                         {"a": False, "n": True, "s1": False, "s2": False, "s3": False})


if __name__ == "__main__":
    rlib.main()
