#!/usr/bin/python3
"""when-full=queue: a write that needs a block on a full pool waits; `thinsim
grow` (or a trim) releases it and it succeeds; reads and other requests keep
working meanwhile; with no-space-timeout=1 the write fails with ENOSPC after
about a second."""

import errno
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

import nbd  # noqa: E402

BS = 64 * KiB


class QueuedWrite:
    """A write on its own connection and thread; records result and timing."""

    def __init__(self, h, data, offset):
        self.h, self.data, self.offset = h, data, offset
        self.error = None
        self.done = threading.Event()
        self.elapsed = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.start = time.monotonic()
        self.thread.start()

    def run(self):
        try:
            self.h.pwrite(self.data, self.offset)
        except nbd.Error as e:
            self.error = e
        except Exception as e:  # pragma: no cover - reported by the test
            self.error = e
        finally:
            self.elapsed = time.monotonic() - self.start
            self.done.set()


class QueueMode(lib.TestCase):
    def start_full(self, timeout):
        srv = self.start_server("size=1M", "volume=vol0:8M", "when-full=queue",
                                "no-space-timeout=%d" % timeout)
        h = srv.connect("vol0")
        self.data = lib.pattern(1 * MiB, 1)
        h.pwrite(self.data, 0)  # all 16 blocks
        pool = srv.query_pool()
        self.assertEqual((pool["free_blocks"], pool["when_full"]), (0, "queue"), str(pool))
        return srv, h

    def test_grow_releases_queued_write(self):
        srv, h = self.start_full(30)
        w = QueuedWrite(srv.connect("vol0"), lib.pattern(BS, 2), 4 * MiB)
        self.assertFalse(w.done.wait(1.0), "the write must wait for space, but it ended: %s" % w.error)
        self.assertEqual(srv.query_pool()["mode"], "out-of-data-space")
        # Other requests are not blocked meanwhile.
        self.assertBytesEqual(h.pread(1 * MiB, 0), self.data, "read while a write is queued")
        h.pwrite(b"over", 100)  # overwrite of an exclusive block: no space needed
        self.assertIn("return", srv.control("query-volumes"))
        pool = srv.cli("grow", "2M")
        self.assertEqual(pool["total_blocks"], 32)
        self.assertTrue(w.done.wait(10), "the queued write did not finish after grow")
        self.assertIsNone(w.error, "the queued write failed after grow: %s" % w.error)
        self.assertBytesEqual(h.pread(BS, 4 * MiB), w.data, "the queued write's data")
        pool = srv.query_pool()
        self.assertEqual((pool["used_blocks"], pool["mode"]), (17, "write"), str(pool))

    def test_trim_releases_queued_write(self):
        srv, h = self.start_full(30)
        w = QueuedWrite(srv.connect("vol0"), lib.pattern(100, 3), 5 * MiB + 7)
        self.assertFalse(w.done.wait(0.5), "the write must wait for space")
        h.trim(BS, 0)
        self.assertTrue(w.done.wait(10), "the queued write did not finish after a trim")
        self.assertIsNone(w.error, "the queued write failed after trim: %s" % w.error)
        self.assertBytesEqual(h.pread(100, 5 * MiB + 7), w.data, "the queued write's data")

    def test_several_queued_writes(self):
        srv, h = self.start_full(30)
        writes = [QueuedWrite(srv.connect("vol0"), lib.pattern(BS, 10 + i), (2 + i) * MiB)
                  for i in range(3)]
        time.sleep(0.5)
        self.assertFalse(any(w.done.is_set() for w in writes), "writes must wait for space")
        srv.cli("grow", "2M")
        for i, w in enumerate(writes):
            self.assertTrue(w.done.wait(10), "queued write %d did not finish" % i)
            self.assertIsNone(w.error, "queued write %d: %s" % (i, w.error))
            self.assertBytesEqual(h.pread(BS, (2 + i) * MiB), w.data, "queued write %d" % i)

    def test_timeout_gives_enospc(self):
        srv, h = self.start_full(1)
        w = QueuedWrite(srv.connect("vol0"), lib.pattern(BS, 4), 6 * MiB)
        self.assertTrue(w.done.wait(15), "the write did not time out")
        self.assertIsInstance(w.error, nbd.Error, "the write must fail, got %r" % w.error)
        self.assertEqual(w.error.errnum, errno.ENOSPC, "error %s (%s)" % (w.error.errno, w.error.string))
        self.assertGreaterEqual(w.elapsed, 0.8, "failed after %.2fs, before the timeout" % w.elapsed)
        self.assertLess(w.elapsed, 5, "failed after %.2fs, long after the 1s timeout" % w.elapsed)
        self.assertBytesEqual(h.pread(BS, 6 * MiB), bytes(BS), "the failed write changed nothing")
        self.assertBytesEqual(h.pread(1 * MiB, 0), self.data, "old data intact")


if __name__ == "__main__":
    lib.main()
