#!/usr/bin/python3
"""Standard tools see the same bytes as libnbd: `nbdcopy` of an export to a
file gives exactly the written pattern (data, holes, snapshot-shared blocks),
`qemu-img compare` finds the export and the file identical (and notices a
difference), and `nbdcopy` from a file into an export writes it faithfully."""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

BS = 64 * KiB
SIZE = 4 * MiB


def qemu_img_compare(uri, path):
    return lib.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", uri, path])


class NbdcopyCompare(lib.TestCase):
    def setUp(self):
        self.srv = self.start_server("size=32M", "volume=vol0:4M")
        self.h = self.srv.connect("vol0")
        self.expected = bytearray(SIZE)

    def write(self, h, data, offset, expected=None):
        h.pwrite(data, offset)
        (self.expected if expected is None else expected)[offset:offset + len(data)] = data

    def fill_pattern(self):
        self.write(self.h, lib.pattern(1 * MiB + 333, 1), 7)  # unaligned, many blocks
        self.write(self.h, lib.pattern(100, 2), 2 * MiB + 5)  # one block, mostly zero
        self.write(self.h, lib.pattern(BS, 3), SIZE - BS)  # the last block
        self.h.flush()

    def copy_to_file(self, export, name):
        path = os.path.join(self.srv.tmp, name)
        lib.run(["nbdcopy", self.srv.uri(export), path], check=True)
        with open(path, "rb") as f:
            return path, f.read()

    def test_nbdcopy_and_qemu_img_compare(self):
        self.fill_pattern()
        path, got = self.copy_to_file("vol0", "vol0.img")
        self.assertBytesEqual(got, bytes(self.expected), "nbdcopy of vol0")
        proc = qemu_img_compare(self.srv.uri("vol0"), path)
        self.assertEqual(proc.returncode, 0, "qemu-img compare: %s %s" % (proc.stdout, proc.stderr))
        self.assertIn("identical", proc.stdout)

        # A one-byte difference is found, at the right offset.
        self.h.pwrite(b"\xff", 3 * MiB + 1)
        proc = qemu_img_compare(self.srv.uri("vol0"), path)
        self.assertEqual(proc.returncode, 1, "qemu-img compare after a change: %s %s" % (
            proc.stdout, proc.stderr))
        m = re.search(r"offset (\d+)", proc.stdout)
        self.assertIsNotNone(m, "qemu-img compare names the offset: %r" % proc.stdout)
        # qemu-img reports the start of the sector or extent that differs.
        self.assertTrue(3 * MiB <= int(m.group(1)) <= 3 * MiB + 1,
                        "qemu-img compare offset: %r" % proc.stdout)

    def test_snapshot_copy(self):
        self.fill_pattern()
        self.srv.cli("snapshot", "vol0", "snap")
        snap_expected = bytes(self.expected)
        self.write(self.h, lib.pattern(2 * BS, 4), BS // 2)  # origin diverges
        _, got = self.copy_to_file("snap", "snap.img")
        self.assertBytesEqual(got, snap_expected, "nbdcopy of the snapshot")
        _, got = self.copy_to_file("vol0", "vol0.img")
        self.assertBytesEqual(got, bytes(self.expected), "nbdcopy of the diverged origin")
        # qemu-img convert copies shared blocks as data.
        path = os.path.join(self.srv.tmp, "snap-convert.img")
        lib.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", self.srv.uri("snap"), path],
                check=True)
        with open(path, "rb") as f:
            self.assertBytesEqual(f.read(), snap_expected, "qemu-img convert of the snapshot")

    def test_qemu_img_compare_with_shared_blocks(self):
        """Blocks shared with a snapshot are data in block status (SPEC 4),
        so qemu-img compare reads them instead of assuming zeroes."""
        self.fill_pattern()
        self.srv.cli("snapshot", "vol0", "snap")
        path, got = self.copy_to_file("snap", "snap.img")
        self.assertBytesEqual(got, bytes(self.expected), "nbdcopy of the snapshot")
        proc = qemu_img_compare(self.srv.uri("snap"), path)
        self.assertEqual(proc.returncode, 0, "qemu-img compare of a snapshot with its copy: %s %s" % (
            proc.stdout, proc.stderr))

    def test_nbdcopy_file_into_export(self):
        src = bytearray(SIZE)
        src[100:100 + 700 * KiB] = lib.pattern(700 * KiB, 5)
        src[3 * MiB:3 * MiB + BS] = lib.pattern(BS, 6)
        path = os.path.join(self.srv.tmp, "src.img")
        with open(path, "wb") as f:
            f.write(src)
        # Some old data where the file has zeroes: it must be overwritten.
        self.h.pwrite(lib.pattern(BS, 7), 2 * MiB)
        self.srv.disconnect(self.h)
        lib.run(["nbdcopy", "-C", "4", path, self.srv.uri("vol0")], check=True)
        h = self.srv.connect("vol0")
        self.assertBytesEqual(h.pread(SIZE, 0), bytes(src), "export after nbdcopy from a file")
        proc = qemu_img_compare(self.srv.uri("vol0"), path)
        self.assertEqual(proc.returncode, 0, "qemu-img compare: %s %s" % (proc.stdout, proc.stderr))
        self.assertLessEqual(self.srv.volume("vol0")["mapped_blocks"], 12 + 1 + 1,
                             "zero areas of the file stay (or become) unallocated")


if __name__ == "__main__":
    lib.main()
