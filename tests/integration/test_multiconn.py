#!/usr/bin/python3
"""Several connections to one export: can_multi_conn is advertised, a write
followed by a flush (or a FUA write) on one connection is visible on another,
and concurrent writers to different halves of the same fresh blocks lose
nothing."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

import nbd  # noqa: E402

BS = 64 * KiB


class MultiConn(lib.TestCase):
    def setUp(self):
        self.srv = self.start_server("size=32M", "volume=vol0:8M")
        self.a = self.srv.connect("vol0")
        self.b = self.srv.connect("vol0")

    def test_can_multi_conn(self):
        self.assertTrue(self.a.can_multi_conn(), "can_multi_conn on a writable volume")
        self.srv.cli("snapshot", "--read-only", "vol0", "ro")
        self.assertTrue(self.srv.connect("ro").can_multi_conn(), "can_multi_conn on a read-only snapshot")
        v = self.srv.volume("vol0")
        self.assertEqual((v["connections"], v["writable_connections"]), (2, 2), str(v))

    def test_write_flush_visible_on_other_connection(self):
        for i in range(8):
            data = lib.pattern(BS + 100, i)
            off = i * 3 * BS + 50
            self.a.pwrite(data, off)
            self.a.flush()
            self.assertBytesEqual(self.b.pread(len(data), off), data, "round %d on b" % i)
            # And back the other way, with FUA.
            data2 = lib.pattern(777, 100 + i)
            self.b.pwrite(data2, off + 10, nbd.CMD_FLAG_FUA)
            self.assertBytesEqual(self.a.pread(777, off + 10), data2, "round %d on a" % i)

    def test_trim_visible_on_other_connection(self):
        data = lib.pattern(4 * BS, 1)
        self.a.pwrite(data, 0)
        self.a.flush()
        self.b.trim(2 * BS, BS)
        self.b.flush()
        self.assertBytesEqual(self.a.pread(4 * BS, 0), data[:BS] + bytes(2 * BS) + data[3 * BS:],
                              "trim on b seen by a")

    def test_concurrent_writers_share_blocks(self):
        n = 48  # blocks
        half = BS // 2
        errors = []

        def writer(h, which):
            try:
                for blk in range(n):
                    h.pwrite(lib.pattern(half, blk * 2 + which), blk * BS + which * half)
                h.flush()
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(h, w)) for w, h in enumerate((self.a, self.b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [], "writers failed")
        h = self.srv.connect("vol0")
        for blk in range(n):
            want = lib.pattern(half, blk * 2) + lib.pattern(half, blk * 2 + 1)
            self.assertBytesEqual(h.pread(BS, blk * BS), want, "block %d" % blk)
        self.assertEqual(self.srv.volume("vol0")["mapped_blocks"], n,
                         "each block allocated once")
        self.assertEqual(self.srv.query_pool()["used_blocks"], n)


if __name__ == "__main__":
    lib.main()
