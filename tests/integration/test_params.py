#!/usr/bin/python3
"""Plugin parameters (SPEC section 2): nbdkit refuses to start on an unknown
key, a bad size, a non-power-of-two or out-of-range block size, a missing
size, a bad volume spec or an unknown reservation strategy, with a message
that names the key; valid values show up in query-pool; `--help`
lists every key."""

import errno
import json
import os
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

SPEC_KEYS = ("pool", "size", "block-size", "volume", "reserve", "when-full",
             "no-space-timeout", "low-water", "control", "commit-interval")


class Params(lib.TestCase):
    def refuse(self, params, key, also=None):
        """nbdkit with `params` must exit non-zero quickly, naming `key`."""
        tmp = tempfile.mkdtemp(prefix="thinsim-it-", dir="/tmp")
        try:
            argv = [lib.NBDKIT, "-f", "-U", os.path.join(tmp, "nbd.sock"), lib.PLUGIN] + list(params)
            if not any(p.startswith("control=") for p in params):
                argv.append("control=" + os.path.join(tmp, "ctl.sock"))
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=lib.TOOL_ENV)
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                self.fail("nbdkit started with %s (want a refusal naming %r)" % (params, key))
            what = " ".join(params)
            self.assertNotEqual(proc.returncode, 0, "nbdkit %s must refuse to start" % what)
            self.assertIn(key, err, "the message for %r names %r: %r" % (what, key, err))
            self.assertIn("error", err.lower(), "an error message for %r: %r" % (what, err))
            self.assertLessEqual(len(err.strip().splitlines()), 3,
                                 "a short message for %r: %r" % (what, err))
            if also:
                self.assertIn(also, err, "the message for %r: %r" % (what, err))
            return err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_unknown_key(self):
        self.refuse(["size=16M", "frobnicate=1"], "frobnicate")
        self.refuse(["size=16M", "blocksize=64K"], "blocksize")

    def test_bad_sizes(self):
        self.refuse(["size=12Q"], "size")
        self.refuse(["size=-1"], "size")
        self.refuse(["size="], "size")
        self.refuse(["size=1K"], "size")  # smaller than one block

    def test_missing_size(self):
        self.refuse([], "size")
        self.refuse(["volume=vol0:1M"], "size")

    def test_bad_block_size(self):
        for bs in ("96K", "3000", "2K", "2G", "0", "64Q"):
            self.refuse(["size=16M", "block-size=" + bs], "block-size")

    def test_bad_volume_specs(self):
        self.refuse(["size=16M", "volume=a/b:1M"], "volume")
        self.refuse(["size=16M", "volume=v0"], "volume")
        self.refuse(["size=16M", "volume=v0:12Q"], "v0")
        self.refuse(["size=16M", "volume=%s:1M" % ("x" * 65)], "volume")
        self.refuse(["size=16M", "volume=v0:1M", "volume=v0:2M"], "v0")
        self.refuse(["size=16M", "volume=v0:1M:sometimes"], "v0")

    def test_bad_other_values(self):
        self.refuse(["size=16M", "when-full=maybe"], "when-full")
        self.refuse(["size=16M", "low-water=101"], "low-water")
        self.refuse(["size=16M", "low-water=ten"], "low-water")
        self.refuse(["size=16M", "no-space-timeout=soon"], "no-space-timeout")
        self.refuse(["size=16M", "no-space-timeout=-1"], "no-space-timeout")
        self.refuse(["size=16M", "commit-interval=x"], "commit-interval")
        self.refuse(["size=16M", "extents=maybe"], "extents")

    def test_reserve_strategies(self):
        # Reservation strategies were refused ("not implemented yet") until
        # the reservation engine landed; now every SPEC strategy is accepted.
        srv = self.start_server("size=16M", "reserve=volume", "volume=v0:1M",
                                "volume=v1:1M:full", "volume=v2:1M:provision")
        got = [(v["name"], v["strategy"]) for v in srv.query_volumes()]
        self.assertEqual(got, [("v0", "volume"), ("v1", "full"), ("v2", "provision")])
        v = srv.cli("create", "v3", "1M")
        self.assertEqual(v["strategy"], "volume", "reserve= is the default for new volumes")
        self.refuse(["size=16M", "reserve=sometimes"], "reserve")
        self.refuse(["size=16M", "volume=v0:1M:sometimes"], "v0")

    def test_valid_values_are_applied(self):
        srv = self.start_server("size=8M", "block-size=4K", "when-full=queue", "low-water=20%",
                                "no-space-timeout=5", "commit-interval=2", "reserve=none",
                                "volume=a:1M", "volume=b:2M:none")
        pool = srv.query_pool()
        self.assertEqual((pool["block_size"], pool["total_blocks"]), (4 * KiB, 2048), str(pool))
        self.assertEqual(pool["when_full"], "queue")
        self.assertEqual(pool["low_water_percent"], 20)
        self.assertEqual([(v["name"], v["size"], v["strategy"]) for v in srv.query_volumes()],
                         [("a", 1 * MiB, "none"), ("b", 2 * MiB, "none")])
        h = srv.connect("a")
        self.assertEqual(h.get_block_size(lib.nbd.SIZE_PREFERRED), 4 * KiB)

    def test_preferred_block_size_capped(self):
        srv = self.start_server("size=32M", "block-size=4M", "volume=a:16M")
        h = srv.connect("a")
        self.assertEqual(h.get_block_size(lib.nbd.SIZE_MINIMUM), 1)
        self.assertEqual(h.get_block_size(lib.nbd.SIZE_PREFERRED), 2 * MiB, "capped at 2M")
        self.assertEqual(h.get_block_size(lib.nbd.SIZE_MAXIMUM), 32 * MiB)
        h.pwrite(b"x", 5 * MiB)
        self.assertEqual(srv.volume("a")["mapped_blocks"], 1)
        self.assertEqual(srv.query_pool()["used_blocks"], 1)

    def test_payload_above_the_advertised_maximum_is_refused(self):
        # SPEC 4: maximum 32M. nbdkit itself lets up to 64M through; the
        # plugin refuses what it does not advertise, says so in the log,
        # changes nothing and keeps serving.
        srv = self.start_server("size=128M", "volume=a:128M")
        h = srv.connect("a", strict=False)
        self.assertEqual(h.get_block_size(lib.nbd.SIZE_MAXIMUM), 32 * MiB)
        big = 32 * MiB + 512
        self.assertNbdErrno(errno.EINVAL, h.pwrite, b"w" * big, 0)
        self.assertNbdErrno(errno.EINVAL, h.pread, big, 0)
        self.assertEqual(srv.volume("a")["mapped_blocks"], 0, "a refused write maps nothing")
        self.assertIn("above the advertised maximum", srv.log())
        # At the maximum, and for TRIM and WRITE_ZEROES (no payload: the NBD
        # spec lets them exceed it), requests are served.
        h.pwrite(b"m" * (32 * MiB), 0)
        self.assertEqual(h.pread(32 * MiB, 0), b"m" * (32 * MiB))
        h.zero(64 * MiB, 0)
        h.trim(64 * MiB, 64 * MiB)
        self.assertEqual(h.pread(4096, 0), bytes(4096))

    def test_default_control_socket(self):
        srv = lib.Server("size=8M", "volume=a:1M", control=False)
        self.addCleanup(srv.stop)
        srv.start()
        tmpdir = os.environ.get("TMPDIR") or "/tmp"
        path = os.path.join(tmpdir, "thinsim-%d.sock" % srv.proc.pid)
        deadline = time.monotonic() + 5
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(os.path.exists(path), "default control socket %s" % path)
        self.assertEqual(os.stat(path).st_mode & 0o077, 0,
                         "the control socket is private to its owner")
        proc = lib.run([lib.CLI, "--socket", path, "--json", "status"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(json.loads(proc.stdout)["total_blocks"], 128)
        srv.stop()
        self.assertFalse(os.path.exists(path), "the default control socket is removed at exit")

    def test_control_socket_mode(self):
        # SPEC 2 and docs/control-protocol.md: "control socket (mode 0600)".
        srv = self.start_server("size=8M")
        mode = os.stat(srv.ctl).st_mode & 0o777
        self.assertEqual(mode, 0o600, "control socket mode is %o, want 600" % mode)

    def test_help_lists_every_key(self):
        proc = lib.run([lib.NBDKIT, lib.PLUGIN, "--help"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        for key in SPEC_KEYS:
            self.assertRegex(proc.stdout, r"(?m)^\s*%s=" % key, "--help lists %s=" % key)


if __name__ == "__main__":
    lib.main()
