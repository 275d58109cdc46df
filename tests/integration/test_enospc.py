#!/usr/bin/python3
"""The issue's acceptance test for a full pool (when-full=error).

A 64M pool with a 256M volume: distinct 1M writes succeed until the pool is
full, then a write fails with ENOSPC on the wire; everything written before
reads back intact; overwriting exclusive blocks, reading and trimming still
work; `thinsim status` shows free 0 and mode out-of-data-space; after a trim,
writes succeed again and the mode returns to write."""

import errno
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

import nbd  # noqa: E402

BS = 64 * KiB
POOL = 64 * MiB
PIECE = 1 * MiB


class Enospc(lib.TestCase):
    def setUp(self):
        self.srv = self.start_server("size=64M", "volume=vol0:256M")
        self.h = self.srv.connect("vol0")

    def fill(self):
        """Writes distinct 1M pieces from offset 0 until ENOSPC; returns the
        pieces written and the error."""
        written = []
        for i in range(256):
            data = lib.pattern(PIECE, 1000 + i)
            try:
                self.h.pwrite(data, i * PIECE)
            except nbd.Error as e:
                return written, e
            written.append(data)
        self.fail("256M written into a 64M pool without ENOSPC")

    def test_fill_until_enospc(self):
        written, err = self.fill()
        self.assertEqual(err.errnum, errno.ENOSPC,
                         "the failing write's error: %s (%s)" % (err.errno, err.string))
        self.assertEqual(len(written), POOL // PIECE,
                         "a 64M pool takes exactly 64 1M writes before ENOSPC")
        # Everything acknowledged reads back intact.
        for i, data in enumerate(written):
            self.assertBytesEqual(self.h.pread(PIECE, i * PIECE), data, "piece %d after ENOSPC" % i)
        # The failed write changed nothing.
        n = len(written)
        self.assertBytesEqual(self.h.pread(PIECE, n * PIECE), bytes(PIECE),
                              "the range of the failed write")

        pool = self.srv.cli("status")
        self.assertEqual(pool["free_blocks"], 0, "status --json: %s" % pool)
        self.assertEqual(pool["used_blocks"], pool["total_blocks"])
        self.assertEqual(pool["mode"], "out-of-data-space", "status --json: %s" % pool)
        text = self.srv.cli_text("status")
        self.assertIn("out-of-data-space", text, "human status:\n" + text)
        self.assertRegex(text, r"free:\s+0 blocks", "human status:\n" + text)
        vol = self.srv.cli("ls")[0]
        self.assertEqual(vol["mapped_blocks"], POOL // BS)

        # Every kind of write that needs a block fails with ENOSPC.
        self.assertNbdErrno(errno.ENOSPC, self.h.pwrite, b"x", 200 * MiB)
        self.assertNbdErrno(errno.ENOSPC, self.h.zero, BS, 100 * MiB, nbd.CMD_FLAG_NO_HOLE)

        # Overwrites of exclusive blocks still work, unaligned and multi-block.
        patch = lib.pattern(3 * BS + 99, 7)
        self.h.pwrite(patch, 5 * PIECE + 1234, nbd.CMD_FLAG_FUA)
        want = bytearray(written[5])
        want[1234:1234 + len(patch)] = patch
        self.assertBytesEqual(self.h.pread(PIECE, 5 * PIECE), bytes(want), "overwrite when full")
        self.h.flush()
        # Zeroing (MAY_TRIM) a partial edge of a mapped block needs no space.
        self.h.zero(100, 6 * PIECE + 10)
        self.assertBytesEqual(self.h.pread(100, 6 * PIECE + 10), bytes(100), "zero when full")

        # Trim gives space back; the mode returns to write; writes succeed.
        self.h.trim(PIECE, 0)
        pool = self.srv.cli("status")
        self.assertEqual(pool["free_blocks"], PIECE // BS, "free after trimming 1M: %s" % pool)
        self.assertEqual(pool["mode"], "write", "mode after a trim freed space: %s" % pool)
        self.assertBytesEqual(self.h.pread(PIECE, 0), bytes(PIECE), "trimmed piece reads zero")
        fresh = lib.pattern(PIECE, 99)
        self.h.pwrite(fresh, n * PIECE)
        self.assertBytesEqual(self.h.pread(PIECE, n * PIECE), fresh, "write after trim")
        for i in range(1, n):
            expect = bytes(want) if i == 5 else written[i]
            if i == 6:
                expect = bytearray(written[6])
                expect[10:110] = bytes(100)
                expect = bytes(expect)
            self.assertBytesEqual(self.h.pread(PIECE, i * PIECE), expect, "piece %d at the end" % i)
        # Full again: the next allocation fails (as in dm-thin, the mode
        # changes when an allocation fails, not when the last block goes).
        self.assertEqual(self.srv.query_pool()["free_blocks"], 0)
        self.assertNbdErrno(errno.ENOSPC, self.h.pwrite, b"y", 250 * MiB)
        self.assertEqual(self.srv.query_pool()["mode"], "out-of-data-space")

    def test_cow_of_shared_block_fails_when_full(self):
        written, err = self.fill()
        self.assertEqual(err.errnum, errno.ENOSPC)
        self.srv.cli("snapshot", "vol0", "snap")
        # Every block is now shared: an overwrite needs a copy and fails.
        self.assertNbdErrno(errno.ENOSPC, self.h.pwrite, b"z" * 10, 0)
        self.assertBytesEqual(self.h.pread(PIECE, 0), written[0], "origin after failed CoW")
        hs = self.srv.connect("snap")
        self.assertBytesEqual(hs.pread(PIECE, 0), written[0], "snapshot after failed CoW")
        # Trimming a shared block from the origin frees nothing.
        self.h.trim(PIECE, 0)
        self.assertEqual(self.srv.query_pool()["free_blocks"], 0)
        self.assertBytesEqual(hs.pread(PIECE, 0), written[0], "snapshot after origin trim")
        # Deleting the snapshot makes the origin's blocks exclusive again.
        self.srv.disconnect(hs)
        self.srv.cli("delete", "snap")
        self.assertEqual(self.srv.query_pool()["free_blocks"], PIECE // BS,
                         "blocks only the snapshot still mapped are freed")
        self.h.pwrite(b"z" * 10, PIECE)
        self.assertEqual(self.h.pread(10, PIECE), b"z" * 10)

    def test_grow_releases_error_mode(self):
        written, err = self.fill()
        self.assertEqual(err.errnum, errno.ENOSPC)
        pool = self.srv.cli("grow", "80M")
        self.assertEqual(pool["total_blocks"], 80 * MiB // BS, "grow --json: %s" % pool)
        self.assertEqual(pool["free_blocks"], 16 * MiB // BS)
        self.assertEqual(pool["mode"], "write")
        data = lib.pattern(PIECE, 5)
        self.h.pwrite(data, 100 * MiB)
        self.assertBytesEqual(self.h.pread(PIECE, 100 * MiB), data, "write after grow")


if __name__ == "__main__":
    lib.main()
