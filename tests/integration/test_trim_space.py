#!/usr/bin/python3
"""TRIM gives space back: fully covered blocks are unmapped and freed (mapped
and used counts drop, the range reads zero); sub-block parts are ignored; a
shared block is only unmapped from the trimming volume."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

BS = 64 * KiB


class TrimSpace(lib.TestCase):
    def setUp(self):
        self.srv = self.start_server("size=16M", "volume=vol0:8M")
        self.h = self.srv.connect("vol0")
        self.data = lib.pattern(1 * MiB, 1)  # 16 blocks
        self.h.pwrite(self.data, 0)

    def counts(self):
        vol = self.srv.cli("ls")[0]
        pool = self.srv.cli("status")
        return vol["mapped_blocks"], pool["used_blocks"], pool["free_blocks"]

    def test_trim_frees_blocks(self):
        self.assertEqual(self.counts(), (16, 16, 256 - 16))
        self.assertTrue(self.h.can_trim(), "can_trim")
        self.h.trim(4 * BS, 2 * BS)  # blocks 2..5
        self.assertEqual(self.counts(), (12, 12, 256 - 12), "after trimming 4 blocks")
        want = self.data[:2 * BS] + bytes(4 * BS) + self.data[6 * BS:]
        self.assertBytesEqual(self.h.pread(1 * MiB, 0), want, "after trim")
        self.h.trim(1 * MiB, 0)
        self.assertEqual(self.counts(), (0, 0, 256), "after trimming everything")
        self.assertBytesEqual(self.h.pread(1 * MiB, 0), bytes(1 * MiB), "all trimmed")
        # Trimming holes is harmless.
        self.h.trim(8 * MiB, 0)
        self.assertEqual(self.counts(), (0, 0, 256))

    def test_sub_block_trim_is_a_no_op(self):
        self.h.trim(1000, 100)
        self.h.trim(BS - 1, BS + 1)
        self.assertEqual(self.counts(), (16, 16, 240), "sub-block trims unmap nothing")
        self.assertBytesEqual(self.h.pread(1 * MiB, 0), self.data, "sub-block trims change no data")

    def test_trim_with_partial_edges(self):
        self.h.trim(2 * BS + 20, BS - 10)  # whole blocks 1 and 2, parts of 0 and 3
        self.assertEqual(self.counts()[0], 14)
        want = self.data[:BS] + bytes(2 * BS) + self.data[3 * BS:]
        self.assertBytesEqual(self.h.pread(1 * MiB, 0), want, "edges kept, middle trimmed")

    def test_trim_shared_block_unmaps_only_this_volume(self):
        self.srv.cli("snapshot", "vol0", "snap")
        self.assertEqual(self.counts(), (16, 16, 240))
        self.h.trim(4 * BS, 0)
        vol, snap = self.srv.cli("ls")
        self.assertEqual(vol["name"], "vol0")
        self.assertEqual(vol["mapped_blocks"], 12, "origin after trim: %s" % vol)
        self.assertEqual(snap["mapped_blocks"], 16, "snapshot after origin trim: %s" % snap)
        self.assertEqual((snap["exclusive_blocks"], snap["shared_blocks"]), (4, 12), str(snap))
        pool = self.srv.cli("status")
        self.assertEqual(pool["used_blocks"], 16, "shared blocks are not freed: %s" % pool)
        hs = self.srv.connect("snap")
        self.assertBytesEqual(hs.pread(1 * MiB, 0), self.data, "snapshot data after origin trim")
        self.assertBytesEqual(self.h.pread(4 * BS, 0), bytes(4 * BS), "origin reads zero")
        # Trimming the same blocks from the snapshot frees them.
        hs.trim(4 * BS, 0)
        self.assertEqual(self.srv.cli("status")["used_blocks"], 12)
        self.assertBytesEqual(hs.pread(4 * BS, 0), bytes(4 * BS), "snapshot after its trim")

    def test_trim_fua(self):
        import nbd
        self.h.trim(1 * MiB, 0, nbd.CMD_FLAG_FUA)
        self.assertEqual(self.counts(), (0, 0, 256))


if __name__ == "__main__":
    lib.main()
