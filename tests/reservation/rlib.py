"""Helpers for thinsim's reservation scenarios (tests/reservation).

Each scenario starts the real nbdkit with the real plugin, talks NBD to it
with libnbd's Python module and drives it with the real `thinsim` CLI (and
raw control-socket JSON where the CLI hides something, such as the error
object). Nothing is mocked.

Run with /usr/bin/python3: Debian's python3-libnbd is only importable there.
Paths come from the environment (tests/reservation/CMakeLists.txt sets them):

  THINSIM_PLUGIN   nbdkit-thinsim-plugin.so  (default build/plugin/...)
  THINSIM_CLI      the thinsim CLI           (default build/tools/thinsim)
  THINSIM_NBDKIT   the nbdkit binary         (default: nbdkit on PATH)

This file is self-contained on purpose: tests/integration/lib.py belongs to
the integration suite and may change under it.

Every number a scenario checks is worked out by hand in the scenario, with
the SPEC section 5 formula written next to it:

  need(b) = g(b)       if o(b) > g(b)    o = owners of data block b,
          = g(b) - 1   otherwise         g = owners that guarantee it
  + 1 for each guaranteed unmapped vblock;  reserved = the sum;
  invariant: reserved <= free.

Per volume, `ls` charges a block's need to its guaranteeing owners: one each
when o > g; when every owner guarantees (o == g), one each except the
oldest owner (pool/reservation.cc VolumeReservedLocked).
"""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

try:
    import nbd
except ImportError:  # pragma: no cover - depends on the interpreter
    sys.stderr.write("rlib.py: cannot import libnbd's Python module 'nbd'; run the tests with "
                     "/usr/bin/python3 (Debian's python3-libnbd)\n")
    raise

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLUGIN = os.environ.get("THINSIM_PLUGIN") or os.path.join(REPO, "build", "plugin",
                                                          "nbdkit-thinsim-plugin.so")
CLI = os.environ.get("THINSIM_CLI") or os.path.join(REPO, "build", "tools", "thinsim")
NBDKIT = os.environ.get("THINSIM_NBDKIT") or "nbdkit"

KiB = 1024
MiB = 1024 * KiB
BS = 64 * KiB  # every scenario uses block-size=64K unless it says otherwise

START_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0
# nbdkit's Python wrappers and our subprocesses must find /usr/bin/python3.
TOOL_ENV = dict(os.environ, PATH="/usr/bin:" + os.environ.get("PATH", ""))


def block(seed, length=BS):
    """`length` bytes of a recognisable pattern for `seed` (cheap, distinct)."""
    unit = ("<%d>" % seed).encode()
    return (unit * (length // len(unit) + 1))[:length]


ZERO = bytes(BS)


class ControlConnection:
    """One raw connection to the control socket: JSON lines both ways."""

    def __init__(self, path, timeout=COMMAND_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def read_line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, execute, arguments=None):
        req = {"execute": execute}
        if arguments is not None:
            req["arguments"] = arguments
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while True:
            reply = self.read_line()
            if reply is None:
                raise AssertionError("control socket closed instead of answering %s" % execute)
            if "event" not in reply:
                return reply


class EventStream:
    """`thinsim --socket CTL --json events` running in the background; every
    line it prints is parsed and kept. stop() ends the process (by its own
    Popen handle: only what this object started)."""

    def __init__(self, server):
        self.events = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.proc = subprocess.Popen([CLI, "--socket", server.ctl, "--json", "events"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=TOOL_ENV)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            ev = json.loads(line)
            with self.lock:
                self.events.append(ev)
                self.changed.notify_all()

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def wait_for(self, pred, timeout=5.0, start=0):
        """Waits until an event at index >= start satisfies pred; returns its
        index, or None on timeout."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for i in range(start, len(self.events)):
                    if pred(self.events[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.thread.join(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()


def is_mode(mode):
    return lambda ev: ev.get("event") == "POOL_MODE" and ev.get("data", {}).get("mode") == mode


class Server:
    """`nbdkit -f -U SOCK PLUGIN params... control=CTL` in its own /tmp dir."""

    def __init__(self, *params, nbdkit_args=()):
        self.params = list(params)
        self.tmp = tempfile.mkdtemp(prefix="thinsim-res-", dir="/tmp")
        self.sock = os.path.join(self.tmp, "nbd.sock")
        self.ctl = os.path.join(self.tmp, "ctl.sock")
        self.log_path = os.path.join(self.tmp, "nbdkit.log")
        self.pidfile = os.path.join(self.tmp, "nbdkit.pid")
        self.nbdkit_args = list(nbdkit_args)
        self.proc = None
        self.handles = []
        self.streams = []
        self._log = None

    def argv(self):
        return ([NBDKIT, "-f", "--exit-with-parent", "-U", self.sock, "-P", self.pidfile] +
                self.nbdkit_args + [PLUGIN] + self.params + ["control=" + self.ctl])

    def start(self, expect_failure=False):
        for path, what in ((PLUGIN, "THINSIM_PLUGIN"), (CLI, "THINSIM_CLI")):
            if not os.path.exists(path):
                raise AssertionError("%s does not exist (set %s or build it)" % (path, what))
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=TOOL_ENV)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                if expect_failure:
                    return self.proc.returncode
                raise AssertionError("nbdkit exited with %d before it was ready: %s\n%s" % (
                    self.proc.returncode, " ".join(self.argv()), self.log()))
            if (not expect_failure and os.path.exists(self.sock) and os.path.exists(self.ctl)
                    and os.path.exists(self.pidfile) and os.path.getsize(self.pidfile) > 0):
                return self
            if time.monotonic() > deadline:
                raise AssertionError("nbdkit %s within %.0fs\n%s" % (
                    "did not exit" if expect_failure else "was not ready", START_TIMEOUT,
                    self.log()))
            time.sleep(0.02)

    def stop(self):
        for s in self.streams:
            s.stop()
        self.streams = []
        for h in self.handles:
            try:
                h.shutdown()
            except Exception:
                pass
        self.handles = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    # ---- NBD ----------------------------------------------------------------

    def uri(self, export):
        return "nbd+unix:///%s?socket=%s" % (export, self.sock)

    def connect(self, export):
        """A writable NBD connection to `export` (it activates the volume)."""
        h = nbd.NBD()
        h.set_handle_name("res-" + export)
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        h.connect_uri(self.uri(export))
        self.handles.append(h)
        return h

    def disconnect(self, h, name):
        """Closes `h` and waits until the server has closed it (the volume's
        connection count drops), so that deactivation has happened."""
        before = self.volume(name)["connections"]
        h.shutdown()
        self.handles.remove(h)
        deadline = time.monotonic() + 10
        while self.volume(name)["connections"] >= before:
            if time.monotonic() > deadline:
                raise AssertionError("server still counts the connection to %s" % name)
            time.sleep(0.01)

    # ---- control --------------------------------------------------------------

    def control(self, execute, arguments=None):
        c = ControlConnection(self.ctl)
        try:
            return c.request(execute, arguments)
        finally:
            c.close()

    def events(self):
        s = EventStream(self)
        self.streams.append(s)
        return s

    def cli_run(self, *args, timeout=COMMAND_TIMEOUT):
        argv = [CLI, "--socket", self.ctl, "--json"] + list(args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=TOOL_ENV)

    def cli(self, *args, timeout=COMMAND_TIMEOUT):
        p = self.cli_run(*args, timeout=timeout)
        if p.returncode != 0:
            raise AssertionError("thinsim %s failed (exit %d): %s" % (
                " ".join(args), p.returncode, p.stderr.strip()))
        return json.loads(p.stdout)

    def status(self):
        return self.cli("status")

    def ls(self):
        return {v["name"]: v for v in self.cli("ls")}

    def volume(self, name):
        return self.ls()[name]


class AsyncWrite:
    """One write in flight on its own connection (libnbd aio, single-threaded)."""

    def __init__(self, h, data, offset):
        self.h = h
        self.buf = nbd.Buffer.from_bytearray(bytearray(data))
        self.start = time.monotonic()
        self.cookie = h.aio_pwrite(self.buf, offset)
        self.error = None
        self.done = False
        self.elapsed = None

    def wait(self, timeout):
        """Drives the connection for up to `timeout` seconds; True once the
        write has completed (successfully or not)."""
        deadline = time.monotonic() + timeout
        while not self.done:
            try:
                if self.h.aio_command_completed(self.cookie):
                    self.done = True
            except nbd.Error as e:
                self.error = e
                self.done = True
            if self.done:
                self.elapsed = time.monotonic() - self.start
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.h.poll(int(min(left, 0.05) * 1000) + 1)
        return self.done


def wait_mode(srv, mode, timeout=10):
    deadline = time.monotonic() + timeout
    while srv.status()["mode"] != mode:
        if time.monotonic() > deadline:
            raise AssertionError("pool mode did not become %s: %s" % (mode, srv.status()))
        time.sleep(0.02)


def extents(h, length, offset=0):
    """base:allocation flags for each BS block of [offset, offset+length)."""
    flags = []
    pos, end = offset, offset + length
    while pos < end:
        got = []

        def cb(metacontext, off, entries, err):
            if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
                got.extend(entries)
            return 0

        h.block_status(end - pos, pos, cb)
        if not got:
            raise AssertionError("block_status at %d returned nothing" % pos)
        for i in range(0, len(got), 2):
            n, f = min(got[i], end - pos), got[i + 1]
            for _ in range(n // BS):
                flags.append(f)
            pos += n
            if pos >= end:
                break
    return flags


def flag_name(f):
    names = [n for bit, n in ((nbd.STATE_HOLE, "HOLE"), (nbd.STATE_ZERO, "ZERO")) if f & bit]
    return "|".join(names) or "DATA"


class TestCase(unittest.TestCase):
    maxDiff = None

    def start_server(self, *params, **kw):
        srv = Server(*params, **kw)
        self.addCleanup(srv.stop)
        srv.start()
        return srv

    # ---- the reservation checks ---------------------------------------------

    def check(self, srv, step, reserved, per_volume=None, used=None, free=None):
        """After `step`: `thinsim status --json` reports `reserved` (and used /
        free when given); `thinsim ls --json` reports `per_volume[name]` for
        each named volume (volumes not named must report 0); the per-volume
        figures add up to the pool's; and reserved <= free."""
        st = srv.status()
        vols = srv.ls()
        where = "%s: status %s" % (step, json.dumps(st))
        self.assertEqual(st["reserved_blocks"], reserved, where)
        if used is not None:
            self.assertEqual(st["used_blocks"], used, where)
        if free is not None:
            self.assertEqual(st["free_blocks"], free, where)
        self.assertEqual(st["free_blocks"], st["total_blocks"] - st["used_blocks"], where)
        self.assertLessEqual(st["reserved_blocks"], st["free_blocks"],
                             "%s: invariant reserved <= free broken" % where)
        per_volume = per_volume or {}
        got = {n: v["reserved_blocks"] for n, v in vols.items()}
        want = {n: per_volume.get(n, 0) for n in vols}
        self.assertEqual(got, want, "%s: per-volume reserved_blocks (ls --json)" % step)
        self.assertEqual(sum(got.values()), st["reserved_blocks"],
                         "%s: per-volume reserved does not add up to the pool's" % step)
        return st, vols

    def assertNoSpaceReply(self, reply, needed, free, unreserved, reserved, what):
        """A control reply that must be the NoSpace error whose desc gives the
        numbers: `needed` more reserved blocks, `unreserved` free and
        unreserved, `free` free, `reserved` reserved."""
        self.assertIn("error", reply, "%s: want NoSpace, got %s" % (what, json.dumps(reply)))
        err = reply["error"]
        self.assertEqual((err.get("class"), err.get("errno")), ("NoSpace", "ENOSPC"), what)
        want = "needs %d more reserved block(s), but only %d are free and unreserved " \
               "(%d free, %d reserved)" % (needed, unreserved, free, reserved)
        self.assertIn(want, err.get("desc", ""), what)
        return err

    def assertCliNoSpace(self, srv, args, needed, free, unreserved, reserved):
        """`thinsim ARGS` must fail (exit != 0) with the NoSpace reason and the
        numbers on stderr."""
        p = srv.cli_run(*args)
        self.assertNotEqual(p.returncode, 0, "thinsim %s succeeded: %s" % (" ".join(args), p.stdout))
        want = "needs %d more reserved block(s), but only %d are free and unreserved " \
               "(%d free, %d reserved)" % (needed, unreserved, free, reserved)
        self.assertIn(want, p.stderr, "thinsim %s" % " ".join(args))
        self.assertIn("(NoSpace)", p.stderr, "thinsim %s" % " ".join(args))
        return p.stderr

    def assertENOSPC(self, fn, *args):
        try:
            fn(*args)
        except nbd.Error as e:
            self.assertEqual(e.errnum, errno.ENOSPC, "want ENOSPC, got %s" % e)
            return e
        self.fail("%s succeeded, want ENOSPC" % getattr(fn, "__name__", fn))

    def assertBlocks(self, h, first, datas, what):
        """Blocks first.. of `h` read back as `datas` (a list of BS bytes)."""
        got = h.pread(len(datas) * BS, first * BS)
        for i, want in enumerate(datas):
            if got[i * BS:(i + 1) * BS] != want:
                self.fail("%s: block %d reads %r..., want %r..." % (
                    what, first + i, got[i * BS:i * BS + 12], want[:12]))


def main():
    unittest.main(verbosity=2)
