#!/usr/bin/python3
"""BLOCK_STATUS (base:allocation) matches the mapping: written blocks are
data (shared with a snapshot or not), unmapped blocks hole+zero. With
`extents=space`, blocks shared after a snapshot (which a write could still
fail on for lack of space) are reported HOLE without ZERO instead.
Checked both with libnbd's block_status and with `nbdinfo --map --json`."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

import nbd  # noqa: E402

BS = 64 * KiB
SIZE = 2 * MiB  # 32 blocks
DATA = 0
HOLE = nbd.STATE_HOLE
ZERO = nbd.STATE_ZERO
UNMAPPED = HOLE | ZERO


class BlockStatus(lib.TestCase):
    params = ()  # extra plugin parameters

    def setUp(self):
        self.srv = self.start_server("size=16M", "volume=vol0:2M", *self.params)
        self.h = self.srv.connect("vol0")
        self.assertTrue(self.h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION),
                        "base:allocation negotiated")

    def per_block(self, h):
        """The flags of each block of the volume, from libnbd block_status."""
        ext = lib.extents(h, SIZE, 0)
        for off, n, flags in ext:
            self.assertEqual(off % BS, 0, "extent boundary not block-aligned: %r" % (ext,))
            self.assertEqual(n % BS, 0, "extent length not block-aligned: %r" % (ext,))
        return [lib.flags_at(ext, b * BS) for b in range(SIZE // BS)]

    def nbdinfo_map(self, export):
        proc = lib.run(["nbdinfo", "--map", "--json", self.srv.uri(export)], check=True)
        entries = json.loads(proc.stdout)
        blocks = []
        pos = 0
        for e in entries:
            self.assertEqual(e["offset"], pos, "nbdinfo --map is contiguous: %s" % proc.stdout)
            pos += e["length"]
            blocks += [e["type"]] * (e["length"] // BS)
        self.assertEqual(pos, SIZE, "nbdinfo --map covers the export: %s" % proc.stdout)
        return blocks

    def assertMap(self, export, h, want, what):
        names = lambda flags: [lib.flag_names(f) for f in flags]  # noqa: E731
        got = self.per_block(h)
        self.assertEqual(names(got), names(want), "%s: libnbd block_status" % what)
        got = self.nbdinfo_map(export)
        self.assertEqual(names(got), names(want), "%s: nbdinfo --map" % what)

    def test_fresh_volume_is_one_hole(self):
        ext = lib.extents(self.h, SIZE, 0)
        self.assertEqual(ext, [(0, SIZE, UNMAPPED)])
        self.assertMap("vol0", self.h, [UNMAPPED] * 32, "fresh volume")

    def test_written_blocks_are_data(self):
        self.h.pwrite(b"x" * 100, 2 * BS + 10)  # block 2
        self.h.pwrite(lib.pattern(3 * BS, 1), 10 * BS)  # blocks 10..12
        self.h.pwrite(b"y", SIZE - 1)  # block 31
        want = [UNMAPPED] * 32
        for b in (2, 10, 11, 12, 31):
            want[b] = DATA
        self.assertMap("vol0", self.h, want, "after writes")
        # A range query inside one block.
        ext = lib.extents(self.h, 100, 2 * BS + 10)
        self.assertEqual([f for _, _, f in ext], [DATA], "sub-block query of a data block")

    def test_trim_and_zero_back_to_holes(self):
        self.h.pwrite(lib.pattern(4 * BS, 2), 0)
        self.h.trim(BS, 0)
        self.h.zero(BS, BS)  # MAY_TRIM: unmaps
        self.assertMap("vol0", self.h, [UNMAPPED] * 2 + [DATA] * 2 + [UNMAPPED] * 28,
                       "after trim and zero")

    def test_shared_blocks_are_data(self):
        self.h.pwrite(lib.pattern(4 * BS, 3), 0)  # blocks 0..3
        self.srv.cli("snapshot", "vol0", "snap")
        hs = self.srv.connect("snap")
        want = [DATA] * 4 + [UNMAPPED] * 28
        self.assertMap("vol0", self.h, want, "origin after snapshot")
        self.assertMap("snap", hs, want, "snapshot")
        self.h.pwrite(b"z", BS)
        self.assertMap("vol0", self.h, want, "origin after CoW of block 1")
        self.assertMap("snap", hs, want, "snapshot after origin's CoW of block 1")

    def test_provisioned_blocks_are_not_holes(self):
        self.h.zero(2 * BS, 0, nbd.CMD_FLAG_NO_HOLE)
        got = self.per_block(self.h)
        for b in (0, 1):
            self.assertFalse(got[b] & HOLE, "provisioned block %d is %s" % (b, lib.flag_names(got[b])))
        self.assertEqual(got[2:], [UNMAPPED] * 30)


class BlockStatusSpace(BlockStatus):
    """extents=space: everything above holds except for shared blocks."""
    params = ("extents=space",)

    test_shared_blocks_are_data = None  # the opposite holds here: see below

    def test_shared_blocks_are_hole_not_zero(self):
        self.h.pwrite(lib.pattern(4 * BS, 3), 0)  # blocks 0..3
        self.srv.cli("snapshot", "vol0", "snap")
        hs = self.srv.connect("snap")
        want = [HOLE] * 4 + [UNMAPPED] * 28
        self.assertMap("vol0", self.h, want, "origin after snapshot")
        self.assertMap("snap", hs, want, "snapshot")
        # Breaking sharing makes the block data again in the writer only.
        self.h.pwrite(b"z", BS)
        self.assertMap("vol0", self.h, [HOLE, DATA, HOLE, HOLE] + [UNMAPPED] * 28,
                       "origin after CoW of block 1")
        self.assertMap("snap", hs, [HOLE, DATA, HOLE, HOLE] + [UNMAPPED] * 28,
                       "snapshot after origin's CoW of block 1 (now exclusive)")
        # A shared block's HOLE still reads its data, never zeroes.
        self.assertNotEqual(hs.pread(BS, 0), bytes(BS))


if __name__ == "__main__":
    lib.main()
