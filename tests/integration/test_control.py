#!/usr/bin/python3
"""The control socket and the CLI: bad input of every kind gets a clear error
that changes nothing and leaves the server answering; the CLI's exit codes,
one-line messages, human table and JSON; create, delete, resize, provision,
grow and snapshot show up in ls/status and in the NBD export list; delete is
refused (Busy) while a connection is open; the default export is the first
volume."""

import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

BS = 64 * KiB


class ControlErrors(lib.TestCase):
    """Malformed and invalid requests on the raw control socket."""

    def setUp(self):
        self.srv = self.start_server("size=16M", "volume=vol0:4M")
        h = self.srv.connect("vol0")
        h.pwrite(lib.pattern(2 * BS, 1), 0)
        self.srv.disconnect(h)

    def state(self):
        return self.srv.query_volumes(), self.srv.query_pool()

    def check_refused(self, conn, request, cls="Invalid", what=None, desc_has=None):
        """Sends `request` (dict or raw str) on `conn`: error of class `cls`,
        nothing changed, the same connection still answers."""
        what = what or (request if isinstance(request, str) else json.dumps(request))
        before = self.state()
        if isinstance(request, str):
            reply = conn.request_raw(request)
        else:
            reply = conn.request_raw(json.dumps(request))
        err = self.assertControlError(reply, cls, what)
        if desc_has:
            self.assertIn(desc_has, err["desc"], "%s: desc %r" % (what, err["desc"]))
        self.assertEqual(self.state(), before, "%s changed the pool" % what)
        again = conn.request("query-pool", id="alive")
        self.assertIn("return", again, "connection still answers after %s: %s" % (what, again))
        self.assertEqual(again.get("id"), "alive")
        self.assertTrue(self.srv.alive(), "nbdkit died after %s" % what)
        return err

    def test_malformed_json(self):
        with self.srv.control_connection() as c:
            for line in ("{not json", "[]", "42", '"query-pool"', "null",
                         '{"execute": 5}', "{}", '{"arguments": {}}',
                         '{"execute": "query-pool", "arguments": []}',
                         '{"execute": "query-pool", "bogus": 1}',
                         '{"execute": "query-pool"} trailing',
                         '\x00\x01\x02', '{"execute": "query-pool", "arguments": {"a": '):
                self.check_refused(c, line, what="line %r" % line)

    def test_blank_lines_are_ignored(self):
        # The server skips blank lines (plugin/control_server.cc) rather than
        # answering them; what matters is that replies stay in step.
        with self.srv.control_connection() as c:
            c.send_raw(b"\n   \n\t\r\n")
            reply = c.request("query-pool", id=9)
            self.assertEqual(reply.get("id"), 9, "the reply after blank lines: %s" % reply)
            self.assertIn("return", reply)

    def test_unknown_command(self):
        with self.srv.control_connection() as c:
            err = self.check_refused(c, {"execute": "volume-explode", "arguments": {"name": "vol0"}})
            self.assertIn("volume-explode", err["desc"])
            self.assertEqual(err["errno"], "EINVAL")

    def test_unknown_and_missing_arguments(self):
        with self.srv.control_connection() as c:
            err = self.check_refused(c, {"execute": "volume-create",
                                         "arguments": {"name": "v1", "size": "1M", "colour": "red"}})
            self.assertIn("colour", err["desc"])
            self.check_refused(c, {"execute": "query-pool", "arguments": {"x": 1}})
            err = self.check_refused(c, {"execute": "volume-create", "arguments": {"name": "v1"}})
            self.assertIn("size", err["desc"])
            self.check_refused(c, {"execute": "volume-delete", "arguments": {}})
            self.check_refused(c, {"execute": "volume-create",
                                   "arguments": {"name": 7, "size": "1M"}})
            self.check_refused(c, {"execute": "volume-create",
                                   "arguments": {"name": "v1", "size": [1]}})
            self.check_refused(c, {"execute": "snapshot-create",
                                   "arguments": {"origin": "vol0", "name": "s", "read-only": "yes"}})
            self.check_refused(c, {"execute": "snapshot-create", "arguments": {"snapshots": "vol0:s"}})

    def test_bad_names(self):
        with self.srv.control_connection() as c:
            for name in ("a/b", "x" * 65, "", "a b", "../x", "naïve", "a:b"):
                self.check_refused(c, {"execute": "volume-create",
                                       "arguments": {"name": name, "size": "1M"}},
                                   what="volume-create name %r" % name)
                self.check_refused(c, {"execute": "snapshot-create",
                                       "arguments": {"origin": "vol0", "name": name}},
                                   what="snapshot-create name %r" % name)
            ok = c.request("volume-create", {"name": "A-z.0_9" + "y" * 57, "size": "1M"})
            self.assertIn("return", ok, "a 64-character name is fine: %s" % ok)
            self.check_refused(c, {"execute": "volume-create",
                                   "arguments": {"name": "vol0", "size": "1M"}}, cls="Exists")
            self.check_refused(c, {"execute": "volume-delete", "arguments": {"name": "nope"}},
                               cls="NotFound")

    def test_bad_sizes(self):
        with self.srv.control_connection() as c:
            for size in (-1, "-1", "12Q", "1000", 1000, "1M1", "", "0x100", 1.5, "1.5M", True,
                         "99999999999999999999", "16E"):
                self.check_refused(c, {"execute": "volume-create",
                                       "arguments": {"name": "v1", "size": size}},
                                   what="volume-create size %r" % (size,))
                self.check_refused(c, {"execute": "volume-resize",
                                       "arguments": {"name": "vol0", "size": size}},
                                   what="volume-resize size %r" % (size,))
            self.check_refused(c, {"execute": "pool-grow", "arguments": {"size": "12Q"}})
            self.check_refused(c, {"execute": "pool-grow", "arguments": {"size": -5}})
            ok = c.request("volume-create", {"name": "v512", "size": 512 * 3})
            self.assertIn("return", ok, "a sector-aligned size is fine: %s" % ok)

    def test_provision_out_of_range(self):
        with self.srv.control_connection() as c:
            for off, length in ((4 * MiB, BS), (4 * MiB - 1, 2), (0, 4 * MiB + 1),
                                ("5M", "64K"), (2 ** 62, 2 ** 62), (-1, 10), ("12Q", 1)):
                self.check_refused(c, {"execute": "provision", "arguments": {
                    "name": "vol0", "offset": off, "length": length}},
                    what="provision %r+%r" % (off, length))
            self.check_refused(c, {"execute": "provision", "arguments": {
                "name": "nope", "offset": 0, "length": 1}}, cls="NotFound")

    def test_id_echo_and_pipelining(self):
        with self.srv.control_connection() as c:
            c.send_raw(b'{"execute":"query-pool","id":1}\n'
                       b'{"execute":"nope","id":{"x":[1,2]}}\n'
                       b'{"execute":"query-volumes","id":"three"}\n')
            r1, r2, r3 = c.read_line(), c.read_line(), c.read_line()
            self.assertEqual(r1.get("id"), 1, r1)
            self.assertIn("return", r1)
            self.assertEqual(r2.get("id"), {"x": [1, 2]}, r2)
            self.assertIn("error", r2)
            self.assertEqual(r3.get("id"), "three", r3)
            self.assertEqual([v["name"] for v in r3["return"]], ["vol0"])

    def test_overlong_line_closes_only_that_connection(self):
        c = self.srv.control_connection()
        try:
            try:
                c.send_raw(b'{"execute":"query-pool","id":"' + b"x" * (2 * MiB) + b'"}\n')
                reply = c.read_line()
            except (BrokenPipeError, ConnectionResetError):
                reply = None
            self.assertIsNone(reply, "a line over 1 MiB closes the connection, got %s" % reply)
        finally:
            c.close()
        self.assertIn("return", self.srv.control("query-pool"), "server still answers")

    def test_client_disconnect_mid_line(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.srv.ctl)
        s.sendall(b'{"execute":"volume-create","arguments":{"name":"half"')
        s.close()
        self.assertIn("return", self.srv.control("query-pool"))
        self.assertEqual([v["name"] for v in self.srv.query_volumes()], ["vol0"])


class Cli(lib.TestCase):
    """The real CLI against the real server."""

    def setUp(self):
        self.srv = self.start_server("size=16M", "volume=vol0:4M")

    def test_exit_codes_and_one_line_errors(self):
        ok = self.srv.cli_run("status")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        for args, code, has in ((["delete", "nope"], 1, "NotFound"),
                                (["create", "vol0", "1M"], 1, "Exists"),
                                (["create", "a/b", "1M"], 1, "Invalid"),
                                (["create", "v1", "12Q"], 1, "Invalid"),
                                (["create", "v1", "1000"], 1, "Invalid"),
                                (["resize", "vol0", "-1"], None, None),
                                (["provision", "vol0", "4M", "64K"], 1, "Invalid"),
                                (["grow", "1G1"], 1, "Invalid")):
            proc = self.srv.cli_run(*args, json_output=False)
            what = "thinsim %s" % " ".join(args)
            self.assertNotEqual(proc.returncode, 0, "%s must fail" % what)
            if code is not None:
                self.assertEqual(proc.returncode, code, "%s exit status (stderr %r)" % (what, proc.stderr))
            lines = proc.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, "%s: one-line error, got %r" % (what, proc.stderr))
            self.assertTrue(lines[0].startswith("thinsim: "), "%s: %r" % (what, lines[0]))
            if has:
                self.assertIn(has, lines[0], what)
            self.assertEqual(proc.stdout, "", "%s prints nothing on stdout" % what)
        self.assertEqual([v["name"] for v in self.srv.query_volumes()], ["vol0"])

    def test_usage_errors(self):
        for args in (["create"], ["create", "x"], ["frobnicate"], [], ["provision", "vol0", "0"]):
            proc = self.srv.cli_run(*args, json_output=False)
            self.assertEqual(proc.returncode, 2, "thinsim %s: usage error exit 2 (stderr %r)" % (
                " ".join(args), proc.stderr))
        proc = lib.run([lib.CLI, "--socket", "/tmp/does-not-exist.sock", "status"])
        self.assertEqual(proc.returncode, 1, "no server: %r" % proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
        self.assertIn("/tmp/does-not-exist.sock", proc.stderr)
        env = dict(lib.TOOL_ENV, THINSIM_SOCKET=self.srv.ctl)
        proc = lib.run([lib.CLI, "--json", "status"], env=env)
        self.assertEqual(proc.returncode, 0, "$THINSIM_SOCKET: %r" % proc.stderr)
        self.assertEqual(json.loads(proc.stdout)["total_blocks"], 256)

    def test_ls_human_table(self):
        h = self.srv.connect("vol0")
        h.pwrite(b"x", 0)
        text = self.srv.cli_text("ls")
        lines = text.splitlines()
        self.assertEqual(len(lines), 2, "header and one row:\n" + text)
        header = lines[0].upper()
        for col in ("NAME", "SIZE", "STRATEGY", "ACTIVE", "MAPPED", "EXCL", "SHARED", "PROV",
                    "RESERVED"):
            self.assertIn(col, header, "ls header lacks %s:\n%s" % (col, text))
        row = lines[1].split()
        self.assertEqual(row[0], "vol0")
        self.assertIn("4M", row, "ls shows the size:\n" + text)
        self.assertIn("none", row, "ls shows the strategy:\n" + text)
        self.assertIn("yes", row, "ls shows the volume active while a writer is connected:\n" + text)
        status = self.srv.cli_text("status")
        for word in ("used", "free", "reserved", "mode", "write"):
            self.assertIn(word, status, "status lacks %r:\n%s" % (word, status))

    def test_json_shapes(self):
        pool = self.srv.cli("status")
        for key in ("block_size", "total_blocks", "used_blocks", "reserved_blocks",
                    "free_blocks", "mode"):
            self.assertIn(key, pool, "status --json lacks %s: %s" % (key, pool))
        self.assertEqual(pool["block_size"], BS)
        self.assertEqual(pool["total_blocks"], 256)
        vols = self.srv.cli("ls")
        self.assertIsInstance(vols, list)
        for key in ("name", "size", "strategy", "active", "read_only", "origin", "mapped_blocks",
                    "exclusive_blocks", "shared_blocks", "provisioned_blocks", "reserved_blocks"):
            self.assertIn(key, vols[0], "ls --json lacks %s: %s" % (key, vols[0]))
        self.assertEqual(vols[0]["size"], 4 * MiB)
        self.assertIsNone(vols[0]["origin"])
        self.assertEqual(pool, self.srv.query_pool(), "status --json is query-pool")
        self.assertEqual(vols, self.srv.query_volumes(), "ls --json is query-volumes")

    def test_active_tracks_writable_connections(self):
        self.assertFalse(self.srv.volume("vol0")["active"])
        h = self.srv.connect("vol0")
        v = self.srv.volume("vol0")
        self.assertTrue(v["active"], str(v))
        self.assertEqual((v["connections"], v["writable_connections"]), (1, 1), str(v))
        self.srv.disconnect(h)
        v = self.srv.volume("vol0")
        self.assertFalse(v["active"], str(v))
        self.assertEqual(v["connections"], 0)

    def test_create_resize_provision_grow_delete(self):
        v = self.srv.cli("create", "data1", "2M")
        self.assertEqual((v["name"], v["size"]), ("data1", 2 * MiB), str(v))
        self.assertIn("data1", self.srv.cli_text("ls"))
        self.assertEqual(self.srv.cli("status")["volumes"], 2)
        text = self.srv.cli_text("create", "data2", "1M")
        self.assertIn("data2", text, "human confirmation: %r" % text)

        v = self.srv.cli("resize", "data1", "3M")
        self.assertEqual(v["size"], 3 * MiB)
        h = self.srv.connect("data1")
        self.assertEqual(h.get_size(), 3 * MiB)
        h.pwrite(b"end", 3 * MiB - 3)
        self.srv.disconnect(h)
        v = self.srv.cli("resize", "data1", "1M")  # shrink unmaps the tail
        self.assertEqual((v["size"], v["mapped_blocks"]), (1 * MiB, 0), str(v))
        v = self.srv.cli("resize", "data1", "3M")
        h = self.srv.connect("data1")
        self.assertBytesEqual(h.pread(3, 3 * MiB - 3), bytes(3), "regrown tail reads zero")
        self.srv.disconnect(h)

        v = self.srv.cli("provision", "data1", "64K", "128K")
        self.assertEqual((v["mapped_blocks"], v["provisioned_blocks"]), (2, 2), str(v))
        self.assertEqual(self.srv.cli("status")["used_blocks"], 2)
        text = self.srv.cli_text("provision", "data1", "0", "1")
        self.assertIn("data1", text)
        self.assertEqual(self.srv.volume("data1")["provisioned_blocks"], 3)

        pool = self.srv.cli("grow", "32M")
        self.assertEqual((pool["total_blocks"], pool["free_blocks"]), (512, 509), str(pool))
        self.assertEqual(self.srv.cli("status")["total_blocks"], 512)
        self.assertIn("512 blocks", self.srv.cli_text("status"))

        self.srv.cli("delete", "data1")
        self.assertEqual([v["name"] for v in self.srv.cli("ls")], ["vol0", "data2"])
        self.assertEqual(self.srv.cli("status")["used_blocks"], 0, "delete frees the blocks")

    def test_grow_refuses_shrink(self):
        before = self.srv.query_pool()
        proc = self.srv.cli_run("grow", "8M")
        self.assertNotEqual(proc.returncode, 0, "grow to a smaller size must fail")
        self.assertEqual(self.srv.query_pool(), before)

    def test_delete_busy_while_connected(self):
        h = self.srv.connect("vol0")
        proc = self.srv.cli_run("delete", "vol0", json_output=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("Busy", proc.stderr)
        reply = self.srv.control("volume-delete", {"name": "vol0"})
        err = self.assertControlError(reply, "Busy", "delete while connected")
        self.assertEqual(err["errno"], "EBUSY")
        self.assertBytesEqual(h.pread(10, 0), bytes(10), "connection still works")
        # Shrinking is refused too; growing is fine online.
        self.assertControlError(self.srv.control("volume-resize", {"name": "vol0", "size": "1M"}),
                                "Busy", "shrink while connected")
        self.srv.cli("resize", "vol0", "8M")
        self.srv.disconnect(h)
        self.srv.cli("delete", "vol0")
        self.assertEqual(self.srv.query_volumes(), [])

    def test_read_only_connection_also_blocks_delete(self):
        self.srv.cli("snapshot", "vol0", "snap")
        h = self.srv.connect("snap")
        self.assertControlError(self.srv.control("volume-delete", {"name": "snap"}), "Busy",
                                "delete snapshot while connected")
        self.srv.disconnect(h)
        self.srv.cli("delete", "snap")

    def test_list_exports(self):
        def exports():
            proc = lib.run(["nbdinfo", "--list", "--json", self.srv.uri()], check=True)
            return sorted(e["export-name"] for e in json.loads(proc.stdout)["exports"])

        self.assertEqual(exports(), ["vol0"])
        self.srv.cli("create", "new1", "1M")
        self.srv.cli("snapshot", "vol0", "snap1")
        self.srv.cli("snapshot", "--read-only", "new1", "rosnap")
        self.assertEqual(exports(), ["new1", "rosnap", "snap1", "vol0"])
        h = self.srv.connect("new1")
        self.assertEqual(h.get_size(), 1 * MiB)
        self.srv.disconnect(h)
        self.srv.cli("delete", "new1")
        self.assertEqual(exports(), ["rosnap", "snap1", "vol0"])
        with self.assertRaises(Exception, msg="connecting to a deleted export fails"):
            self.srv.connect("new1")


class DefaultExport(lib.TestCase):
    def test_default_is_first_volume(self):
        srv = self.start_server("size=16M", "volume=first:1M", "volume=second:2M")
        h = srv.connect("")
        self.assertEqual(h.get_size(), 1 * MiB)
        h.pwrite(b"first", 0)
        self.assertEqual(srv.connect("first").pread(5, 0), b"first")
        srv.disconnect(h)
        srv.cli("create", "third", "3M")
        self.assertEqual(srv.connect("").get_size(), 1 * MiB, "still the first volume")
        srv.stop()

    def test_default_after_runtime_create(self):
        srv = self.start_server("size=16M")
        self.assertEqual(srv.query_volumes(), [])
        srv.cli("create", "made", "2M")
        h = srv.connect("")
        self.assertEqual(h.get_size(), 2 * MiB, "the default export is the first created volume")


if __name__ == "__main__":
    lib.main()
