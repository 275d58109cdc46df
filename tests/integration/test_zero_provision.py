#!/usr/bin/python3
"""WRITE_ZEROES semantics: with NO_HOLE it provisions (every touched block is
allocated and marked provisioned, sharing is broken, the range reads zero,
the mark survives snapshots until a trim); with MAY_TRIM it unmaps whole
blocks and zeroes partial edges; FAST_ZERO is refused with ENOTSUP, changing
nothing, when data or allocation would be needed."""

import errno
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

import nbd  # noqa: E402

BS = 64 * KiB
NO_HOLE = nbd.CMD_FLAG_NO_HOLE
FAST = nbd.CMD_FLAG_FAST_ZERO


class ZeroProvision(lib.TestCase):
    def setUp(self):
        self.srv = self.start_server("size=16M", "volume=vol0:8M")
        self.h = self.srv.connect("vol0")

    def vol(self, name="vol0"):
        return self.srv.volume(name)

    def test_no_hole_zero_provisions_holes(self):
        self.h.zero(4 * BS, 0, NO_HOLE)
        v = self.vol()
        self.assertEqual(v["mapped_blocks"], 4, "NO_HOLE zero allocates: %s" % v)
        self.assertEqual(v["provisioned_blocks"], 4, "NO_HOLE zero provisions: %s" % v)
        self.assertEqual(self.srv.query_pool()["used_blocks"], 4)
        self.assertBytesEqual(self.h.pread(4 * BS, 0), bytes(4 * BS), "provisioned range")
        # Block status: allocated (not a hole) and zero or data, never HOLE.
        for off, n, flags in lib.extents(self.h, 4 * BS, 0):
            self.assertFalse(flags & nbd.STATE_HOLE,
                             "provisioned extent %d+%d reported %s" % (off, n, lib.flag_names(flags)))

    def test_no_hole_zero_unaligned_touches_whole_blocks(self):
        data = lib.pattern(4 * BS, 1)
        self.h.pwrite(data[:BS], 0)  # block 0 mapped, blocks 1..3 holes
        self.h.zero(2 * BS + 20, BS - 10, NO_HOLE)  # touches blocks 0..3
        v = self.vol()
        self.assertEqual((v["mapped_blocks"], v["provisioned_blocks"]), (4, 4), str(v))
        want = data[:BS - 10] + bytes(3 * BS + 10)
        self.assertBytesEqual(self.h.pread(4 * BS, 0), want, "data outside the range is kept")

    def test_no_hole_zero_breaks_sharing(self):
        data = lib.pattern(2 * BS, 2)
        self.h.pwrite(data, 0)
        self.srv.cli("snapshot", "vol0", "snap")
        self.h.zero(BS, 0, NO_HOLE)
        v = self.vol()
        self.assertEqual((v["exclusive_blocks"], v["shared_blocks"], v["provisioned_blocks"]),
                         (1, 1, 1), str(v))
        self.assertEqual(self.srv.query_pool()["used_blocks"], 3)
        self.assertBytesEqual(self.h.pread(2 * BS, 0), bytes(BS) + data[BS:], "origin")
        hs = self.srv.connect("snap")
        self.assertBytesEqual(hs.pread(2 * BS, 0), data, "snapshot keeps its data")

    def test_provisioned_is_sticky_across_snapshots_until_trim(self):
        self.h.zero(3 * BS, 0, NO_HOLE)
        self.h.pwrite(b"abc", 10)  # writing keeps the mark
        self.assertEqual(self.vol()["provisioned_blocks"], 3)
        self.srv.cli("snapshot", "vol0", "snap")
        self.assertEqual(self.vol("snap")["provisioned_blocks"], 3,
                         "a snapshot of provisioned blocks keeps the mark")
        self.h.trim(BS, 0)
        self.assertEqual(self.vol()["provisioned_blocks"], 2, "trim ends the promise")
        self.assertEqual(self.vol("snap")["provisioned_blocks"], 3,
                         "trim of the origin leaves the snapshot's mark")

    def test_provision_command_keeps_data(self):
        data = lib.pattern(BS, 3)
        self.h.pwrite(data, BS)
        v = self.srv.cli("provision", "vol0", "0", str(3 * BS))
        self.assertEqual((v["mapped_blocks"], v["provisioned_blocks"]), (3, 3), str(v))
        self.assertBytesEqual(self.h.pread(3 * BS, 0), bytes(BS) + data + bytes(BS),
                              "provision changes no data")

    def test_may_trim_zero_unmaps_whole_blocks(self):
        data = lib.pattern(4 * BS, 4)
        self.h.pwrite(data, 0)
        self.h.zero(2 * BS, BS)  # default flags: MAY_TRIM
        v = self.vol()
        self.assertEqual(v["mapped_blocks"], 2, "MAY_TRIM zero unmaps: %s" % v)
        self.assertEqual(self.srv.query_pool()["used_blocks"], 2)
        self.assertBytesEqual(self.h.pread(4 * BS, 0), data[:BS] + bytes(2 * BS) + data[3 * BS:],
                              "after MAY_TRIM zero")

    def test_may_trim_zero_partial_edges_zeroed_in_place(self):
        data = lib.pattern(2 * BS, 5)
        self.h.pwrite(data, 0)
        self.h.zero(BS, BS // 2)  # halves of blocks 0 and 1
        self.assertEqual(self.vol()["mapped_blocks"], 2, "partial blocks stay mapped")
        want = data[:BS // 2] + bytes(BS) + data[BS + BS // 2:]
        self.assertBytesEqual(self.h.pread(2 * BS, 0), want, "partial zero")

    def test_may_trim_zero_partial_edge_of_shared_block(self):
        data = lib.pattern(BS, 6)
        self.h.pwrite(data, 0)
        self.srv.cli("snapshot", "vol0", "snap")
        self.h.zero(100, 1000)
        self.assertBytesEqual(self.h.pread(BS, 0), data[:1000] + bytes(100) + data[1100:], "origin")
        hs = self.srv.connect("snap")
        self.assertBytesEqual(hs.pread(BS, 0), data, "snapshot after origin partial zero")
        self.assertEqual(self.srv.query_pool()["used_blocks"], 2, "sharing broken: one copy")

    def test_fast_zero_refused_when_allocation_needed(self):
        self.assertTrue(self.h.can_fast_zero(), "can_fast_zero")
        before = self.srv.query_volumes(), self.srv.query_pool()
        self.assertNbdErrno(errno.ENOTSUP, self.h.zero, 2 * BS, 0, NO_HOLE | FAST)
        self.assertEqual((self.srv.query_volumes(), self.srv.query_pool()), before,
                         "a refused fast zero changes nothing")

    def test_fast_zero_refused_when_data_needs_writing(self):
        data = lib.pattern(2 * BS, 7)
        self.h.pwrite(data, 0)
        before = self.srv.query_volumes(), self.srv.query_pool()
        # A partial block needs its bytes zeroed: not fast.
        self.assertNbdErrno(errno.ENOTSUP, self.h.zero, 100, 10, FAST)
        self.assertBytesEqual(self.h.pread(2 * BS, 0), data, "data after refused fast zero")
        self.assertEqual((self.srv.query_volumes(), self.srv.query_pool()), before)
        # Breaking sharing needs a copy: not fast.
        self.srv.cli("snapshot", "vol0", "snap")
        before = self.srv.query_volumes(), self.srv.query_pool()
        self.assertNbdErrno(errno.ENOTSUP, self.h.zero, 100, 10, NO_HOLE | FAST)
        self.assertEqual((self.srv.query_volumes(), self.srv.query_pool()), before)
        self.assertBytesEqual(self.h.pread(2 * BS, 0), data, "data after refused fast zero")

    def test_fast_zero_succeeds_when_nothing_to_do(self):
        self.h.zero(4 * BS, 4 * BS, FAST)  # holes, MAY_TRIM: already zero
        self.assertEqual(self.vol()["mapped_blocks"], 0)
        data = lib.pattern(2 * BS, 8)
        self.h.pwrite(data, 0)
        self.h.zero(2 * BS, 0, FAST)  # whole blocks with MAY_TRIM: unmap only
        self.assertEqual(self.vol()["mapped_blocks"], 0, "fast MAY_TRIM zero of whole blocks unmaps")
        self.assertBytesEqual(self.h.pread(2 * BS, 0), bytes(2 * BS), "after fast zero")


if __name__ == "__main__":
    lib.main()
