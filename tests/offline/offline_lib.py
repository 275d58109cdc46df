"""Helpers for thinsim's offline-tool tests (tests/offline/).

Each test starts the REAL nbdkit with the plugin on a pool directory, writes
data and snapshots over NBD and the control socket, stops nbdkit, then runs
the CLI's offline tools (check, dump, restore, repair, delta) on the
directory. Run with /usr/bin/python3 (Debian's python3-libnbd).

  THINSIM_PLUGIN   nbdkit-thinsim-plugin.so  (default build/plugin/...)
  THINSIM_CLI      the thinsim CLI           (default build/tools/thinsim)
  THINSIM_NBDKIT   the nbdkit binary         (default: nbdkit on PATH)
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

try:
    import nbd
except ImportError:  # pragma: no cover - depends on the interpreter
    sys.stderr.write("offline_lib.py: cannot import libnbd's 'nbd' module; "
                     "run with /usr/bin/python3\n")
    raise

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLUGIN = os.environ.get("THINSIM_PLUGIN") or os.path.join(
    REPO, "build", "plugin", "nbdkit-thinsim-plugin.so")
CLI = os.environ.get("THINSIM_CLI") or os.path.join(REPO, "build", "tools", "thinsim")
NBDKIT = os.environ.get("THINSIM_NBDKIT") or "nbdkit"

KiB = 1024
MiB = 1024 * KiB
BS = 64 * KiB  # the default block size

START_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0
ENV = dict(os.environ, PATH="/usr/bin:" + os.environ.get("PATH", ""))


def pattern(length, seed):
    """`length` pseudo-random bytes, a different sequence for every seed."""
    return random.Random(seed).randbytes(length)


class Nbdkit:
    """`nbdkit -f -U SOCK PLUGIN pool=DIR params... control=CTL`.

    start() waits until the server listens and raises if it exits first;
    start_failure() expects it to exit and returns (status, output).
    stop() sends SIGTERM (a clean shutdown commits) and waits."""

    def __init__(self, tmp, pool, *params, name="nbdkit"):
        self.tmp = tmp
        self.pool = pool
        self.params = list(params)
        self.sock = os.path.join(tmp, name + ".sock")
        self.ctl = os.path.join(tmp, name + ".ctl")
        self.pidfile = os.path.join(tmp, name + ".pid")
        self.log_path = os.path.join(tmp, name + ".log")
        self.proc = None
        self.handles = []

    def argv(self):
        return [NBDKIT, "-f", "--exit-with-parent", "-U", self.sock, "-P", self.pidfile,
                PLUGIN, "pool=" + self.pool] + self.params + ["control=" + self.ctl]

    def _spawn(self):
        for path in (self.sock, self.ctl, self.pidfile):
            if os.path.exists(path):
                os.unlink(path)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=ENV)

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def start(self):
        self._spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("nbdkit exited with status %d: %s\n%s" % (
                    self.proc.returncode, " ".join(self.argv()), self.log()))
            if (os.path.exists(self.pidfile) and os.path.getsize(self.pidfile) > 0
                    and os.path.exists(self.ctl)):
                return self
            if time.monotonic() > deadline:
                raise AssertionError("nbdkit did not start within %.0fs\n%s" % (
                    START_TIMEOUT, self.log()))
            time.sleep(0.02)

    def start_failure(self):
        """Starts nbdkit expecting it to refuse; returns (status, output)."""
        self._spawn()
        try:
            status = self.proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("nbdkit started although it should have refused:\n" + self.log())
        return status, self.log()

    def connect(self, export):
        h = nbd.NBD()
        h.connect_uri("nbd+unix:///%s?socket=%s" % (export, self.sock))
        self.handles.append(h)
        return h

    def cli(self, *args):
        """Runs an online CLI command; requires success."""
        proc = subprocess.run([CLI, "--socket", self.ctl] + list(args), capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT, env=ENV)
        if proc.returncode != 0:
            raise AssertionError("thinsim %s failed (%d): %s" % (" ".join(args), proc.returncode,
                                                                 proc.stderr))
        return proc.stdout

    def stop(self):
        for h in self.handles:
            try:
                h.shutdown()
            except Exception:
                pass
        self.handles = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def tool(*args, input=None):
    """Runs the thinsim CLI; returns the CompletedProcess (any exit status)."""
    return subprocess.run([CLI] + list(args), capture_output=True, text=True, input=input,
                          timeout=COMMAND_TIMEOUT, env=ENV)


class TestCase(unittest.TestCase):
    """Gives each test a temporary directory (under /tmp: socket paths must
    stay short) with a pool directory in it, and stops its servers."""

    maxDiff = None

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
        return server.start_failure()

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
        server.cli("snapshot", volume, "snap1")
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
        server.cli("snapshot", "--read-only", volume, "snap2")
        server.cli("create", "other", "4M")
        o = server.connect("other")
        o.pwrite(pattern(3 * BS, 300), BS)
        o.flush()
        return want


def main():
    unittest.main(verbosity=2)
