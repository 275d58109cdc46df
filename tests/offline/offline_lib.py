"""Helpers for thinsim's offline-tool tests (tests/offline/).

Each test starts the REAL nbdkit with the plugin on a pool directory, writes
data and snapshots over NBD and the control socket, stops nbdkit, then runs
the CLI's offline tools (check, dump, restore, repair, delta) on the
directory.

Built on tests/common/thinsim_testlib.py (paths, command runs, nbdkit
servers; its docstring says how to run the tests); this module adds servers
on the test's pool and re-exports the rest for the tests.
"""

import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import thinsim_testlib  # noqa: E402
# Re-exported: the tests use them as lib.NAME.
from thinsim_testlib import CLI, KiB, MiB, main, nbd, pattern, run  # noqa: E402,F401

BS = 64 * KiB  # the default block size


class Nbdkit(thinsim_testlib.Nbdkit):
    """`nbdkit -f -U SOCK PLUGIN pool=DIR params... control=CTL` with its files
    in the test's directory, named after `name`: a test may run several."""

    stop_timeout = 10.0

    def __init__(self, tmp, pool, *params, name="nbdkit"):
        super().__init__(tmp, ["pool=" + pool] + list(params))
        self.pool = pool
        self.sock, self.ctl, self.pidfile, self.log_path = (
            os.path.join(tmp, name + ext) for ext in (".sock", ".ctl", ".pid", ".log"))

    def connect(self, export):
        return super().connect(export, meta_context=False)


def tool(*args, input=None):
    """Runs the thinsim CLI; returns the CompletedProcess (any exit status)."""
    return run([CLI] + list(args), input=input)


class TestCase(thinsim_testlib.TestCase):
    """Gives each test a temporary directory (under /tmp: socket paths must
    stay short) with a pool directory in it, and stops its servers."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="thinsim-off-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.pool = os.path.join(self.tmp, "pool")

    def nbdkit(self, *params, pool=None, name="nbdkit"):
        """A started server on the pool (or `pool`), stopped at cleanup."""
        server = Nbdkit(self.tmp, pool or self.pool, *params, name=name)
        self.addCleanup(server.stop)
        return server.start()

    def nbdkit_refuses(self, *params, pool=None, name="refused"):
        server = Nbdkit(self.tmp, pool or self.pool, *params, name=name)
        self.addCleanup(server.stop)
        return server.start_refused()

    def tool_ok(self, *args, input=None):
        proc = tool(*args, input=input)
        if proc.returncode != 0:
            self.fail("thinsim %s exited %d\nstdout: %s\nstderr: %s" % (
                " ".join(args), proc.returncode, proc.stdout, proc.stderr))
        return proc.stdout

    def check(self, pool=None):
        """`thinsim check --json`: (exit status, parsed report or None)."""
        proc = tool("--json", "check", pool or self.pool)
        report = json.loads(proc.stdout) if proc.stdout.strip() else None
        return proc.returncode, report, proc

    def assertClean(self, pool=None):
        code, report, proc = self.check(pool)
        self.assertEqual(code, 0, "check is not clean:\n%s%s" % (proc.stdout, proc.stderr))
        self.assertTrue(report["clean"])

    def assertDamaged(self, fatal, pool=None):
        """check must exit 1; returns the human report."""
        proc = tool("check", pool or self.pool)
        self.assertEqual(proc.returncode, 1, "check did not find damage:\n%s%s" % (
            proc.stdout, proc.stderr))
        code, report, _ = self.check(pool)
        self.assertEqual(code, 1)
        self.assertFalse(report["clean"])
        self.assertEqual(report["fatal"], fatal, proc.stdout)
        self.assertIn("fatal: " if fatal else "non-fatal: ", proc.stdout)
        return proc.stdout

    def populate(self, server, volume="vol0"):
        """A workload on `volume` (8M): data, a snapshot, overwrites, trims
        and provisioning. Returns {offset: bytes} of what `volume` holds."""
        h = server.connect(volume)
        want = {}
        for i, vb in enumerate([0, 1, 2, 3, 10, 63, 64, 65, 100]):
            data = pattern(BS, 100 + i)
            h.pwrite(data, vb * BS)
            want[vb * BS] = data
        h.pwrite(b"x" * 1000, 40 * BS + 7)  # a partial block
        want[40 * BS] = bytes(7) + b"x" * 1000 + bytes(BS - 1007)
        h.flush()
        server.cli_text("snapshot", volume, "snap1")
        for vb in (1, 64):
            data = pattern(BS, 200 + vb)
            h.pwrite(data, vb * BS)
            want[vb * BS] = data
        h.trim(2 * BS, 2 * BS)  # vblocks 2..3
        want[2 * BS] = bytes(BS)
        want[3 * BS] = bytes(BS)
        h.zero(2 * BS, 20 * BS, nbd.CMD_FLAG_NO_HOLE)  # provision 20..21
        want[20 * BS] = bytes(BS)
        want[21 * BS] = bytes(BS)
        h.flush()
        server.cli_text("snapshot", "--read-only", volume, "snap2")
        server.cli_text("create", "other", "4M")
        o = server.connect("other")
        o.pwrite(pattern(3 * BS, 300), BS)
        o.flush()
        return want

