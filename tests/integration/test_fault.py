#!/usr/bin/python3
"""Fault injection and power cuts (SPEC section 15), on a pool=DIR pool:
`thinsim fault add --layer data --op write --errno EIO --offset 1M --length
64K` fails exactly the writes to those bytes of the data file with EIO on the
wire, and `fault remove` ends it; with volatile-cache=on, `thinsim power-cut`
loses exactly what no FLUSH made durable (the restarted server shows the
flushed write, not the later one); without it power-cut is refused.

Offsets in a data-layer rule are byte offsets in DIR/data. A fresh pool
hands out data blocks in order, so writing volume blocks 0, 1, 2, ... in turn
puts volume block i at data offset i * 64K: data [1M, 1M+64K) is volume block
16. The test checks that mapping from the fault's `fired` count rather than
assuming it silently."""

import errno
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

BS = 64 * KiB


def pool_params(srv_dir, *extra):
    return ["pool=" + os.path.join(srv_dir, "pool"), "size=16M", "volume=v:4M",
            "commit-interval=0"] + list(extra)


class Faults(lib.TestCase):

    def start_pool(self, *extra):
        # The pool directory lives in the server's own directory, which stop()
        # removes; start with no pool= first to get that directory.
        srv = lib.Server()
        self.addCleanup(srv.stop)
        srv.params = pool_params(srv.tmp, *extra)
        srv.start()
        return srv

    def restart(self, srv):
        """Stops nbdkit and starts it again on the same pool directory."""
        for h in srv.handles:
            try:
                h.shutdown()
            except lib.nbd.Error:
                pass
        srv.handles = []
        srv.terminate()
        srv.start()

    def test_data_write_fault(self):
        srv = self.start_pool()
        h = srv.connect("v")
        for i in range(16):  # volume blocks 0..15 take data [0, 1M)
            h.pwrite(lib.pattern(BS, i), i * BS)
        fault = srv.cli("fault", "add", "--layer", "data", "--op", "write", "--errno", "EIO",
                        "--offset", "1M", "--length", "64K")
        self.assertIsInstance(fault["id"], int)
        # Volume block 16 is the next data block: data [1M, 1M+64K).
        self.assertNbdErrno(errno.EIO, h.pwrite, lib.pattern(BS, 16), 16 * BS)
        faults = srv.cli("fault", "ls")
        self.assertEqual(len(faults), 1)
        self.assertEqual(faults[0]["id"], fault["id"])
        self.assertEqual((faults[0]["layer"], faults[0]["op"], faults[0]["errno"],
                          faults[0]["offset"], faults[0]["length"]),
                         ("data", "write", "EIO", MiB, 64 * KiB))
        self.assertEqual(faults[0]["fired"], 1)
        # Outside the range: rewrites of data [0, 1M) succeed, and reads of
        # the range still work.
        h.pwrite(lib.pattern(BS, 100), 3 * BS)
        self.assertEqual(h.pread(BS, 3 * BS), lib.pattern(BS, 100))
        self.assertEqual(h.pread(BS, 15 * BS), lib.pattern(BS, 15))
        h.pread(BS, 16 * BS)
        table = srv.cli_text("fault", "ls")
        self.assertIn("EIO", table)
        srv.cli_text("fault", "remove", str(fault["id"]))
        self.assertEqual(srv.cli("fault", "ls"), [])
        h.pwrite(lib.pattern(BS, 16), 16 * BS)
        self.assertEqual(h.pread(BS, 16 * BS), lib.pattern(BS, 16))
        # Unknown id, bad layer: refused with a one-line reason.
        r = srv.cli_run("fault", "remove", str(fault["id"]), json_output=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("NotFound", r.stderr)
        r = srv.cli_run("fault", "add", "--layer", "disk", "--op", "write", "--errno", "EIO",
                        json_output=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("layer", r.stderr)
        self.assertEqual(srv.cli("fault", "ls"), [])

    def test_power_cut_loses_unflushed_writes(self):
        srv = self.start_pool("volatile-cache=on")
        h = srv.connect("v")
        a, b = lib.pattern(BS, 1), lib.pattern(BS, 2)
        h.pwrite(a, 0)
        h.pwrite(a, 2 * BS)
        h.flush()
        h.pwrite(b, 0)       # overwrite, not flushed
        h.pwrite(b, 5 * BS)  # new mapping, not flushed
        self.assertIn("power cut", srv.cli_text("power-cut"))
        # Until restart the pool serves nothing.
        self.assertNbdErrno(errno.EIO, h.pread, BS, 0)
        self.restart(srv)
        h = srv.connect("v")
        self.assertEqual(h.pread(BS, 0), a)
        self.assertEqual(h.pread(BS, 2 * BS), a)
        self.assertEqual(h.pread(BS, 5 * BS), bytes(BS))

    def test_power_cut_refused_without_volatile_cache(self):
        srv = self.start_pool()
        h = srv.connect("v")
        h.pwrite(lib.pattern(BS, 1), 0)
        r = srv.cli_run("power-cut", json_output=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("volatile-cache=on", r.stderr)
        self.assertEqual(h.pread(BS, 0), lib.pattern(BS, 1))


if __name__ == "__main__":
    lib.main()
