"""Helpers for thinsim's integration tests.

Every test starts the real nbdkit with the real plugin, talks NBD to it with
libnbd (the Python `nbd` module) and drives the control socket with the real
`thinsim` CLI or with raw JSON lines. Nothing is mocked.

Run the scripts with /usr/bin/python3: Debian's python3-libnbd is only
importable there. Paths come from the environment (CMake sets them):

  THINSIM_PLUGIN   nbdkit-thinsim-plugin.so  (default build/plugin/...)
  THINSIM_CLI      the thinsim CLI           (default build/tools/thinsim)
  THINSIM_NBDKIT   the nbdkit binary         (default: nbdkit on PATH)

Each server gets its own directory under /tmp (Unix socket paths must stay
short); the server is killed and the directory removed even when a test fails.
"""

import errno
import json
import os
import random
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
    sys.stderr.write(
        "lib.py: cannot import the libnbd Python module 'nbd'; run the tests with "
        "/usr/bin/python3 (Debian's python3-libnbd)\n")
    raise

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLUGIN = os.environ.get("THINSIM_PLUGIN") or os.path.join(
    REPO, "build", "plugin", "nbdkit-thinsim-plugin.so")
CLI = os.environ.get("THINSIM_CLI") or os.path.join(REPO, "build", "tools", "thinsim")
NBDKIT = os.environ.get("THINSIM_NBDKIT") or "nbdkit"

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# How long a server may take to create its sockets.
START_TIMEOUT = 10.0
# Default timeout of CLI runs and control requests.
COMMAND_TIMEOUT = 30.0

# Tools such as nbdsh are Python wrappers that run the first python3 on PATH;
# run them with /usr/bin first so that they find libnbd's module.
TOOL_ENV = dict(os.environ, PATH="/usr/bin:" + os.environ.get("PATH", ""))


def pattern(length, seed):
    """`length` pseudo-random bytes, a different sequence for every seed."""
    return random.Random(seed).randbytes(length)


def describe_mismatch(got, want):
    """A short description of where two byte strings first differ."""
    if len(got) != len(want):
        return "length %d != %d" % (len(got), len(want))
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return "first difference at byte %d: got %r, want %r" % (
                i, got[i:i + 16], want[i:i + 16])
    return "equal"


def run(argv, timeout=COMMAND_TIMEOUT, env=None, check=False, input=None):
    """Runs a command, capturing text output. Never raises on a non-zero exit
    unless `check`."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else TOOL_ENV, input=input)
    if check and proc.returncode != 0:
        raise AssertionError("command failed (exit %d): %s\nstdout: %s\nstderr: %s" % (
            proc.returncode, " ".join(argv), proc.stdout, proc.stderr))
    return proc


class CliError(AssertionError):
    """A CLI run that was expected to succeed failed."""


class ControlConnection:
    """One connection to the control socket: JSON lines both ways."""

    def __init__(self, path, timeout=COMMAND_TIMEOUT):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        """Sends bytes as they are (add the newline yourself)."""
        self.sock.sendall(data)

    def read_line(self):
        """The next line from the server, parsed; None when it closed."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                if self.buf:
                    raise AssertionError("control socket closed mid-line: %r" % self.buf)
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError as e:
            raise AssertionError("control socket sent a line that is not JSON: %r (%s)" %
                                 (line, e))

    def request_raw(self, line):
        """Sends one raw line (str or bytes, newline added) and returns the reply."""
        if isinstance(line, str):
            line = line.encode()
        self.send_raw(line + b"\n")
        reply = self.read_line()
        if reply is None:
            raise AssertionError("control socket closed instead of answering %r" % line)
        return reply

    def request(self, execute, arguments=None, id=None):
        """Sends {"execute", "arguments"?, "id"?}; returns the whole reply."""
        req = {"execute": execute}
        if arguments is not None:
            req["arguments"] = arguments
        if id is not None:
            req["id"] = id
        return self.request_raw(json.dumps(req))


class Server:
    """A running `nbdkit -f -U SOCK PLUGIN params... control=CTL`.

    Use as a context manager, or call stop() (idempotent) in a finally or a
    unittest cleanup. stop() closes every NBD handle opened through connect(),
    kills nbdkit and removes the temporary directory.
    """

    def __init__(self, *params, control=True, nbdkit_args=()):
        self.params = list(params)
        self.tmp = tempfile.mkdtemp(prefix="thinsim-it-", dir="/tmp")
        self.sock = os.path.join(self.tmp, "nbd.sock")
        self.ctl = os.path.join(self.tmp, "ctl.sock")
        self.log_path = os.path.join(self.tmp, "nbdkit.log")
        self.pidfile = os.path.join(self.tmp, "nbdkit.pid")
        self.with_control = control
        self.nbdkit_args = list(nbdkit_args)
        self.proc = None
        self.handles = []
        self.handle_names = {}
        self._log = None

    # ---- lifecycle -----------------------------------------------------------

    def argv(self):
        # -P: nbdkit writes the PID file once its socket is listening (the
        # socket file alone appears between bind and listen).
        # --exit-with-parent is only a safety net for a test process that is
        # killed (ctest timeout); stop() is what normally ends nbdkit.
        argv = [NBDKIT, "-f", "--exit-with-parent", "-U", self.sock, "-P", self.pidfile] + (
            self.nbdkit_args + [PLUGIN] + self.params)
        if self.with_control:
            argv.append("control=" + self.ctl)
        return argv

    def start(self, timeout=START_TIMEOUT):
        for path, what in ((PLUGIN, "THINSIM_PLUGIN"), (CLI, "THINSIM_CLI")):
            if not os.path.exists(path):
                raise AssertionError("%s does not exist (set %s or build it)" % (path, what))
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=TOOL_ENV)
        deadline = time.monotonic() + timeout
        wanted = [self.pidfile, self.sock] + ([self.ctl] if self.with_control else [])
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("nbdkit exited with status %d before it was ready: %s\n%s" % (
                    self.proc.returncode, " ".join(self.argv()), self.log()))
            if all(os.path.exists(p) for p in wanted) and os.path.getsize(self.pidfile) > 0:
                return self
            if time.monotonic() > deadline:
                missing = [p for p in wanted if not os.path.exists(p)]
                raise AssertionError("nbdkit did not create %s within %.0fs\n%s" % (
                    ", ".join(missing), timeout, self.log()))
            time.sleep(0.02)

    def stop(self):
        # Disconnect the clients first (nbdkit waits for open connections on
        # SIGTERM), each in a thread: a handle busy in another thread (a write
        # queued on a full pool) holds its lock until the server goes away.
        def shutdown(h):
            try:
                h.shutdown()
            except Exception:
                pass

        closers = [threading.Thread(target=shutdown, args=(h,), daemon=True)
                   for h in self.handles]
        for t in closers:
            t.start()
        deadline = time.monotonic() + 2
        for t in closers:
            t.join(max(0, deadline - time.monotonic()))
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for t in closers:
            t.join(5)
        self.handles = []
        self.handle_names = {}
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        """What nbdkit printed so far."""
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    # ---- NBD -----------------------------------------------------------------

    def uri(self, export=""):
        return "nbd+unix:///%s?socket=%s" % (export, self.sock)

    def connect(self, export="", meta_context=True, strict=True):
        """A connected nbd.NBD handle on `export`, closed by stop().

        strict=False turns off libnbd's client-side checks so that refused
        requests (writes to a read-only export, ...) reach the server."""
        h = nbd.NBD()
        h.set_handle_name("test-" + (export or "default"))
        if meta_context:
            h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        if not strict:
            h.set_strict_mode(0)
        h.connect_uri(self.uri(export))
        self.handles.append(h)
        if self.with_control:
            # The default export "" is the oldest volume (query-volumes lists
            # volumes in creation order).
            vols = self.query_volumes()
            self.handle_names[id(h)] = export or (vols[0]["name"] if vols else None)
        return h

    def disconnect(self, h):
        """Closes a handle opened by connect() and waits until the server has
        seen the connection go (the volume's `connections` count drops)."""
        name = self.handle_names.pop(id(h), None) if self.with_control else None
        before = self.connections(name) if name else None
        try:
            h.shutdown()
        except nbd.Error:
            pass
        if h in self.handles:
            self.handles.remove(h)
        del h
        if before is None:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            now = self.connections(name)
            if now is None or now < before:
                return
            time.sleep(0.01)
        raise AssertionError("the server still counts %d connection(s) to %s after a disconnect"
                             % (before, name))

    def connections(self, name):
        """The volume's open NBD connections, or None if it does not exist."""
        for v in self.query_volumes():
            if v["name"] == name:
                return v["connections"]
        return None

    # ---- control socket ------------------------------------------------------

    def control_connection(self):
        return ControlConnection(self.ctl)

    def control(self, execute, arguments=None, id=None):
        """One request on a fresh control connection; the whole reply."""
        with self.control_connection() as c:
            return c.request(execute, arguments, id)

    def control_ok(self, execute, arguments=None):
        """The `return` of a request that must succeed."""
        reply = self.control(execute, arguments)
        if "return" not in reply:
            raise AssertionError("control %s %s failed: %s" % (
                execute, json.dumps(arguments), json.dumps(reply)))
        return reply["return"]

    def query_pool(self):
        return self.control_ok("query-pool")

    def query_volumes(self):
        return self.control_ok("query-volumes")

    def volume(self, name):
        """The volume object named `name` (from query-volumes)."""
        for v in self.query_volumes():
            if v["name"] == name:
                return v
        raise AssertionError("no volume %r in query-volumes" % name)

    # ---- CLI -----------------------------------------------------------------

    def cli_run(self, *args, json_output=True, timeout=COMMAND_TIMEOUT):
        """Runs `thinsim --socket CTL [--json] ARGS`; the CompletedProcess."""
        argv = [CLI, "--socket", self.ctl] + (["--json"] if json_output else []) + list(args)
        return run(argv, timeout=timeout)

    def cli(self, *args, timeout=COMMAND_TIMEOUT):
        """Runs the CLI with --json, requires exit 0 and returns the parsed JSON."""
        proc = self.cli_run(*args, timeout=timeout)
        if proc.returncode != 0:
            raise CliError("thinsim %s failed (exit %d): %s" % (
                " ".join(args), proc.returncode, proc.stderr.strip()))
        try:
            return json.loads(proc.stdout)
        except ValueError as e:
            raise AssertionError("thinsim --json %s printed no JSON (%s): %r" % (
                " ".join(args), e, proc.stdout))

    def cli_text(self, *args, timeout=COMMAND_TIMEOUT):
        """Runs the CLI without --json, requires exit 0 and returns stdout."""
        proc = self.cli_run(*args, json_output=False, timeout=timeout)
        if proc.returncode != 0:
            raise CliError("thinsim %s failed (exit %d): %s" % (
                " ".join(args), proc.returncode, proc.stderr.strip()))
        return proc.stdout


def extents(h, length, offset=0):
    """base:allocation extents of [offset, offset+length) as a list of
    (offset, length, flags), merged and covering exactly the range."""
    out = []
    pos = offset
    end = offset + length
    while pos < end:
        got = []

        def cb(metacontext, off, entries, err, got=got):
            if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
                got.extend(entries)
            return 0

        h.block_status(end - pos, pos, cb)
        if not got:
            raise AssertionError("block_status at %d returned no base:allocation extents" % pos)
        for i in range(0, len(got), 2):
            n, flags = got[i], got[i + 1]
            n = min(n, end - pos)
            if n == 0:
                break
            if out and out[-1][2] == flags and out[-1][0] + out[-1][1] == pos:
                out[-1] = (out[-1][0], out[-1][1] + n, flags)
            else:
                out.append((pos, n, flags))
            pos += n
            if pos >= end:
                break
    return out


def flags_at(ext, offset):
    """The base:allocation flags of the extent containing `offset`."""
    for off, n, flags in ext:
        if off <= offset < off + n:
            return flags
    raise AssertionError("offset %d not covered by extents %r" % (offset, ext))


def flag_names(flags):
    names = []
    if flags & nbd.STATE_HOLE:
        names.append("HOLE")
    if flags & nbd.STATE_ZERO:
        names.append("ZERO")
    return "|".join(names) or "DATA"


class TestCase(unittest.TestCase):
    """unittest.TestCase with a server factory whose servers always stop."""

    maxDiff = None

    def start_server(self, *params, **kw):
        server = Server(*params, **kw)
        self.addCleanup(server.stop)
        server.start()
        return server

    def assertNbdErrno(self, expected_errno, fn, *args, **kw):
        """`fn(*args)` must fail with nbd.Error carrying `expected_errno`, in a
        reply from the server ("command failed"), not a libnbd-side check."""
        try:
            fn(*args, **kw)
        except nbd.Error as e:
            self.assertEqual(e.errnum, expected_errno,
                             "%s failed with %s (%s), want %s" % (
                                 getattr(fn, "__name__", fn), e.errno, e.string,
                                 errno.errorcode[expected_errno]))
            self.assertIn("command failed", e.string or "",
                          "the error came from libnbd, not from the server: %s" % e.string)
            return e
        self.fail("%s succeeded, want %s" % (getattr(fn, "__name__", fn),
                                             errno.errorcode[expected_errno]))

    def assertBytesEqual(self, got, want, what):
        if got != want:
            self.fail("%s: %s" % (what, describe_mismatch(got, want)))

    def assertControlError(self, reply, cls, what=""):
        """`reply` (a control reply) must be an error of class `cls`."""
        self.assertIn("error", reply, "%s: want a %s error, got %s" % (what, cls, json.dumps(reply)))
        self.assertNotIn("return", reply, "%s: reply has both error and return" % what)
        err = reply["error"]
        self.assertEqual(err.get("class"), cls, "%s: wrong error class in %s" % (what, json.dumps(reply)))
        self.assertTrue(isinstance(err.get("desc"), str) and err["desc"],
                        "%s: error without a desc: %s" % (what, json.dumps(reply)))
        return err


def main():
    unittest.main(verbosity=2)
