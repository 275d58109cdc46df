#!/usr/bin/python3
"""Exclusive use of a pool directory: every offline tool refuses a pool a
server has open, and a second nbdkit on the same pool refuses to start,
each with a clear message; once the server stops, the tools work."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import offline_lib as lib  # noqa: E402


class Exclusive(lib.TestCase):
    def test_offline_tools_refuse_a_live_pool(self):
        server = self.nbdkit("size=16M", "volume=vol0:4M", "volume=vol1:4M")
        dump_file = os.path.join(self.tmp, "dump.json")
        with open(dump_file, "w") as f:
            f.write("{}")
        message = "pool %s is in use (a server has it open); stop it first" % self.pool
        for args in (["check", self.pool], ["dump", self.pool], ["--json", "dump", self.pool],
                     ["repair", self.pool], ["restore", self.pool, dump_file],
                     ["delta", self.pool, "vol0", "vol1"], ["--pool", self.pool, "check"]):
            proc = lib.tool(*args)
            self.assertEqual(proc.returncode, 1, "%s: %s%s" % (args, proc.stdout, proc.stderr))
            self.assertIn(message, proc.stderr, args)
            self.assertEqual(proc.stdout, "", args)
        # The refusals changed nothing: the server still serves.
        h = server.connect("vol0")
        h.pwrite(b"still here", 0)
        h.flush()
        server.stop()
        self.assertClean()
        self.tool_ok("dump", self.pool)

    def test_second_nbdkit_on_the_same_pool_refuses_to_start(self):
        first = self.nbdkit("size=16M", "volume=vol0:4M")
        status, output = self.nbdkit_refuses("size=16M", name="second")
        self.assertNotEqual(status, 0)
        self.assertIn("in use", output)
        self.assertIn(self.pool, output)
        # The first server is unaffected.
        h = first.connect("vol0")
        h.pwrite(b"data", 0)
        h.flush()
        self.assertEqual(h.pread(4, 0), b"data")

    def test_tools_work_once_the_server_stopped(self):
        server = self.nbdkit("size=16M", "volume=vol0:4M")
        server.stop()
        self.assertClean()
        # And a server starts again after an offline tool ran.
        self.nbdkit("size=16M")


if __name__ == "__main__":
    lib.main()
