#!/usr/bin/python3
"""After a crash (kill -9), blocks written by a transaction that never
committed are free again; when one is reused, the bytes the new write does
not cover must read as zero, never as the lost data (docs/format.md,
"Crash cases"). And the pool checks clean."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import offline_lib as lib  # noqa: E402
from offline_lib import BS  # noqa: E402

import nbd  # noqa: E402


class CrashReuse(lib.TestCase):
    def test_uncommitted_blocks_read_zero_when_reused(self):
        # No commit timer: only the flush below commits.
        params = ("size=16M", "volume=vol0:4M", "commit-interval=1000")
        server = self.nbdkit(*params)
        h = server.connect("vol0")
        h.pwrite(b"C" * BS, 0)
        h.flush()  # vblock 0 committed
        h.pwrite(b"S" * (4 * BS), BS)  # vblocks 1..4: written, never committed
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        server.handles = []

        self.assertClean()
        server = self.nbdkit(*params, name="again")
        h = server.connect("vol0")
        self.assertEqual(h.pread(BS, 0), b"C" * BS, "committed block")
        self.assertEqual(h.pread(4 * BS, BS), bytes(4 * BS), "uncommitted writes are gone")
        h.pwrite(b"x", 10 * BS)  # takes a free block, maybe one of the lost ones
        self.assertEqual(h.pread(BS, 10 * BS), b"x" + bytes(BS - 1), "partial write to a reused block")
        h.zero(3 * BS, 20 * BS, nbd.CMD_FLAG_NO_HOLE)  # provisions fresh blocks
        self.assertEqual(h.pread(3 * BS, 20 * BS), bytes(3 * BS), "provisioned blocks")
        h.flush()
        server.stop()
        self.assertClean()


if __name__ == "__main__":
    lib.main()
