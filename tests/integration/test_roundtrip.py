#!/usr/bin/python3
"""Data written over NBD reads back intact: unaligned offsets, writes across
several blocks, partial overwrites, FUA writes and flush, on one and on a new
connection; unwritten space reads as zeroes."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

import nbd  # noqa: E402

BS = 64 * KiB


class RoundTrip(lib.TestCase):
    def setUp(self):
        self.srv = self.start_server("size=16M", "volume=vol0:8M")
        self.h = self.srv.connect("vol0")

    def test_fresh_volume_reads_zero(self):
        self.assertEqual(self.h.get_size(), 8 * MiB)
        self.assertBytesEqual(self.h.pread(1 * MiB, 0), bytes(1 * MiB), "unwritten volume")
        self.assertBytesEqual(self.h.pread(100, 8 * MiB - 100), bytes(100), "unwritten tail")

    def test_unaligned_write_inside_one_block(self):
        data = lib.pattern(5000, 1)
        self.h.pwrite(data, 1000)
        self.assertBytesEqual(self.h.pread(5000, 1000), data, "unaligned write")
        # The rest of the freshly allocated block reads as zero.
        block = self.h.pread(BS, 0)
        self.assertBytesEqual(block[:1000], bytes(1000), "bytes before the write")
        self.assertBytesEqual(block[6000:], bytes(BS - 6000), "bytes after the write")
        self.assertEqual(self.srv.volume("vol0")["mapped_blocks"], 1)

    def test_single_byte_writes(self):
        for off in (0, 1, BS - 1, BS, 3 * BS + 7, 8 * MiB - 1):
            self.h.pwrite(bytes([off % 251 + 1]), off)
        for off in (0, 1, BS - 1, BS, 3 * BS + 7, 8 * MiB - 1):
            self.assertEqual(self.h.pread(1, off), bytes([off % 251 + 1]), "byte at %d" % off)
        self.assertEqual(self.h.pread(1, 2), b"\0", "byte next to a written one")

    def test_multi_block_unaligned_write(self):
        off = BS - 100
        data = lib.pattern(3 * BS + 333, 2)  # touches 5 blocks
        self.h.pwrite(data, off)
        self.assertBytesEqual(self.h.pread(len(data), off), data, "multi-block write")
        self.assertBytesEqual(self.h.pread(off, 0), bytes(off), "before the write")
        end = off + len(data)
        self.assertBytesEqual(self.h.pread(6 * BS - end, end), bytes(6 * BS - end),
                              "after the write")
        self.assertEqual(self.srv.volume("vol0")["mapped_blocks"], 5)

    def test_large_write(self):
        data = lib.pattern(4 * MiB, 3)
        self.h.pwrite(data, 2 * MiB)
        self.assertBytesEqual(self.h.pread(4 * MiB, 2 * MiB), data, "4M write")
        self.assertEqual(self.srv.volume("vol0")["mapped_blocks"], 4 * MiB // BS)

    def test_partial_overwrite_keeps_the_rest(self):
        old = lib.pattern(2 * BS, 4)
        self.h.pwrite(old, 0)
        patch = lib.pattern(3000, 5)
        self.h.pwrite(patch, BS - 1500)  # straddles the two blocks
        want = bytearray(old)
        want[BS - 1500:BS + 1500] = patch
        self.assertBytesEqual(self.h.pread(2 * BS, 0), bytes(want), "after partial overwrite")
        self.assertEqual(self.srv.volume("vol0")["mapped_blocks"], 2,
                         "an overwrite of exclusive blocks allocates nothing")

    def test_fua_write_and_flush_visible_on_new_connection(self):
        self.assertTrue(self.h.can_fua(), "can_fua")
        self.assertTrue(self.h.can_flush(), "can_flush")
        a = lib.pattern(70000, 6)
        b = lib.pattern(12345, 7)
        self.h.pwrite(a, 3 * MiB + 17, nbd.CMD_FLAG_FUA)
        self.h.pwrite(b, 5 * MiB + 1)
        self.h.flush()
        h2 = self.srv.connect("vol0")
        self.assertBytesEqual(h2.pread(len(a), 3 * MiB + 17), a, "FUA write on a new connection")
        self.assertBytesEqual(h2.pread(len(b), 5 * MiB + 1), b, "flushed write on a new connection")

    def test_data_survives_reconnect(self):
        data = lib.pattern(200 * KiB, 8)
        self.h.pwrite(data, 123)
        self.h.flush()
        self.srv.disconnect(self.h)
        h2 = self.srv.connect("vol0")
        self.assertBytesEqual(h2.pread(len(data), 123), data, "after reconnect")

    def test_default_export_is_first_volume(self):
        data = lib.pattern(4096, 9)
        self.h.pwrite(data, 0)
        h2 = self.srv.connect("")
        self.assertEqual(h2.get_size(), 8 * MiB)
        self.assertBytesEqual(h2.pread(4096, 0), data, "default export")


if __name__ == "__main__":
    lib.main()
