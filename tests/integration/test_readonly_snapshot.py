#!/usr/bin/python3
"""A read-only snapshot is a read-only export: it advertises read-only,
reads its point-in-time data, and the server refuses writes, trims and zeroes
with EPERM on the wire (libnbd's client-side checks are off, so requests do
reach the server); control-plane changes to its data are refused ReadOnly."""

import errno
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

import nbd  # noqa: E402

BS = 64 * KiB


class ReadOnlySnapshot(lib.TestCase):
    def setUp(self):
        self.srv = self.start_server("size=16M", "volume=vol0:1M")
        self.h = self.srv.connect("vol0")
        self.data = lib.pattern(2 * BS, 1)
        self.h.pwrite(self.data, 0)
        out = self.srv.cli("snapshot", "--read-only", "vol0", "ro")
        self.assertTrue(out[0]["read_only"], "snapshot --read-only reply: %s" % out)

    def test_advertised_read_only(self):
        self.assertTrue(self.srv.volume("ro")["read_only"])
        self.assertFalse(self.srv.volume("vol0")["read_only"])
        proc = lib.run(["nbdinfo", "--json", self.srv.uri("ro")], check=True)
        info = json.loads(proc.stdout)["exports"][0]
        self.assertIs(info["is_read_only"], True, "nbdinfo of the read-only snapshot")
        proc = lib.run(["nbdinfo", "--json", self.srv.uri("vol0")], check=True)
        self.assertIs(json.loads(proc.stdout)["exports"][0]["is_read_only"], False, "nbdinfo of vol0")
        hr = self.srv.connect("ro")
        self.assertTrue(hr.is_read_only())
        text = self.srv.cli_text("ls")
        row = [line for line in text.splitlines() if line.startswith("ro ")]
        self.assertEqual(len(row), 1, "ls row of ro:\n" + text)
        self.assertIn("yes", row[0].split(), "ls shows RO yes:\n" + text)

    def test_writes_refused_on_the_wire(self):
        hr = self.srv.connect("ro", strict=False)
        self.assertBytesEqual(hr.pread(2 * BS, 0), self.data, "read-only snapshot data")
        self.assertNbdErrno(errno.EPERM, hr.pwrite, b"x" * 10, 0)
        self.assertNbdErrno(errno.EPERM, hr.pwrite, b"x" * 10, 5 * BS)  # a hole
        self.assertNbdErrno(errno.EPERM, hr.trim, BS, 0)
        self.assertNbdErrno(errno.EPERM, hr.zero, BS, 0)
        self.assertNbdErrno(errno.EPERM, hr.zero, BS, 0, nbd.CMD_FLAG_NO_HOLE)
        # Nothing changed, and the connection still works.
        self.assertBytesEqual(hr.pread(2 * BS, 0), self.data, "after refused writes")
        v = self.srv.volume("ro")
        self.assertEqual((v["mapped_blocks"], v["provisioned_blocks"]), (2, 0), str(v))
        hr.flush()

    def test_origin_still_writable_and_isolated(self):
        self.h.pwrite(b"new", 0)
        hr = self.srv.connect("ro")
        self.assertBytesEqual(hr.pread(2 * BS, 0), self.data, "read-only snapshot after origin write")

    def test_control_provision_refused(self):
        reply = self.srv.control("provision", {"name": "ro", "offset": 0, "length": BS})
        err = self.assertControlError(reply, "ReadOnly", "provision of a read-only snapshot")
        self.assertEqual(err["errno"], "EROFS")
        proc = self.srv.cli_run("provision", "ro", "0", "64K")
        self.assertEqual(proc.returncode, 1, "CLI exit status: %s" % proc.stderr)
        self.assertIn("ReadOnly", proc.stderr)


if __name__ == "__main__":
    lib.main()
