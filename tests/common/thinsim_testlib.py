"""What thinsim's Python test suites share (integration, reservation, crash,
offline, stress): paths, command runs, the control socket, nbdkit servers
and extents.

Every test starts the real nbdkit with the real plugin, talks NBD to it with
libnbd (the Python `nbd` module) and drives the control socket with the real
`thinsim` CLI or with raw JSON lines. Nothing is mocked.

Run the scripts with /usr/bin/python3: Debian's python3-libnbd is only
importable there. Paths come from the environment (CMake sets them):

  THINSIM_PLUGIN   nbdkit-thinsim-plugin.so  (default build/plugin/...)
  THINSIM_CLI      the thinsim CLI           (default build/tools/thinsim)
  THINSIM_NBDKIT   the nbdkit binary         (default: nbdkit on PATH)

A suite's own helper module (integration/lib.py, reservation/rlib.py,
crash/crashlib.py, offline/offline_lib.py) finds this one with
sys.path.insert(0, <its folder>/../common), builds on it and re-exports what
its scripts use, so that the scripts import only their suite's module.
"""

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
        "thinsim_testlib.py: cannot import the libnbd Python module 'nbd'; run the tests "
        "with /usr/bin/python3 (Debian's python3-libnbd)\n")
    raise

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLUGIN = os.environ.get("THINSIM_PLUGIN") or os.path.join(
    REPO, "build", "plugin", "nbdkit-thinsim-plugin.so")
CLI = os.environ.get("THINSIM_CLI") or os.path.join(REPO, "build", "tools", "thinsim")
NBDKIT = os.environ.get("THINSIM_NBDKIT") or "nbdkit"

KiB = 1024
MiB = 1024 * KiB

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


def missing_binary():
    """Why the plugin or the CLI cannot be used (it is not built), or None."""
    for path, what in ((PLUGIN, "THINSIM_PLUGIN"), (CLI, "THINSIM_CLI")):
        if not os.path.exists(path):
            return "%s does not exist (set %s or build it)" % (path, what)
    return None


def run(argv, timeout=COMMAND_TIMEOUT, env=None, check=False, input=None):
    """Runs a command, capturing text output. Never raises on a non-zero exit
    unless `check`."""
    # Without `input`, stdin is /dev/null: a command must never wait on the
    # terminal of whoever runs the tests.
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else TOOL_ENV, input=input,
                          stdin=subprocess.DEVNULL if input is None else None)
    if check and proc.returncode != 0:
        raise AssertionError("command failed (exit %d): %s\nstdout: %s\nstderr: %s" % (
            proc.returncode, " ".join(argv), proc.stdout, proc.stderr))
    return proc


class CliError(AssertionError):
    """A CLI run that was expected to succeed failed."""


def cli_stdout(proc, args):
    """The stdout of a CLI run of `args` that must have exited 0."""
    if proc.returncode != 0:
        raise CliError("thinsim %s failed (exit %d): %s" % (
            " ".join(args), proc.returncode, proc.stderr.strip()))
    return proc.stdout


def cli_json(proc, args):
    """The parsed stdout of a `thinsim --json` run of `args` that must have
    exited 0."""
    stdout = cli_stdout(proc, args)
    try:
        return json.loads(stdout)
    except ValueError as e:
        raise AssertionError("thinsim --json %s printed no JSON (%s): %r" % (
            " ".join(args), e, stdout))


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
        while True:
            reply = self.read_line()
            if reply is None:
                raise AssertionError("control socket closed instead of answering %r" % line)
            # A subscribed connection gets event lines between replies.
            if "event" not in reply:
                return reply

    def request(self, execute, arguments=None, id=None):
        """Sends {"execute", "arguments"?, "id"?}; returns the whole reply."""
        req = {"execute": execute}
        if arguments is not None:
            req["arguments"] = arguments
        if id is not None:
            req["id"] = id
        return self.request_raw(json.dumps(req))


def allocation_runs(h, length, offset=0):
    """Yields the base:allocation extents of [offset, offset+length) as
    (offset, length, flags), clipped to the range and covering it exactly;
    neighbours may have equal flags."""
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
            n = min(got[i], end - pos)
            if n == 0:
                break
            yield pos, n, got[i + 1]
            pos += n
            if pos >= end:
                break


def flag_names(flags):
    names = []
    if flags & nbd.STATE_HOLE:
        names.append("HOLE")
    if flags & nbd.STATE_ZERO:
        names.append("ZERO")
    return "|".join(names) or "DATA"


class Nbdkit:
    """`nbdkit -f -U SOCK [nbdkit_args] PLUGIN params... [control=CTL]` with
    its sockets, PID file and log in the directory `tmp`.

    It may be started again in the same directory after it stopped. stop()
    (idempotent) closes every NBD handle opened through connect() and ends
    nbdkit; use it in a finally or a unittest cleanup.
    """

    # How long stop() gives nbdkit after SIGTERM, and after SIGKILL.
    stop_timeout = 5.0
    # How often start() looks for the sockets.
    poll_interval = 0.02

    def __init__(self, tmp, params=(), nbdkit_args=(), control=True):
        self.tmp = tmp
        self.params = list(params)
        self.nbdkit_args = list(nbdkit_args)
        self.with_control = control
        self.sock = os.path.join(tmp, "nbd.sock")
        self.ctl = os.path.join(tmp, "ctl.sock")
        self.pidfile = os.path.join(tmp, "nbdkit.pid")
        self.log_path = os.path.join(tmp, "nbdkit.log")
        self.proc = None
        self.handles = []

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

    def spawn(self):
        """Launches nbdkit, its output going to the log, without waiting."""
        missing = missing_binary()
        if missing:
            raise AssertionError(missing)
        # Files of an earlier run in the same directory would look like
        # readiness.
        for path in (self.sock, self.ctl, self.pidfile):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=TOOL_ENV)

    def wait_ready(self, timeout=START_TIMEOUT):
        """None once nbdkit serves, or its exit status when it exits first.
        Kills it and raises when it does neither within `timeout`."""
        wanted = [self.pidfile, self.sock] + ([self.ctl] if self.with_control else [])
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                return self.proc.returncode
            if all(os.path.exists(p) for p in wanted) and os.path.getsize(self.pidfile) > 0:
                return None
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait(timeout=self.stop_timeout)
                missing = [p for p in wanted if not os.path.exists(p)]
                raise AssertionError("nbdkit did not create %s within %.0fs: %s\n%s" % (
                    ", ".join(missing), timeout, " ".join(self.argv()), self.log()))
            time.sleep(self.poll_interval)

    def start(self, timeout=START_TIMEOUT):
        """Starts nbdkit and waits until it serves; raises if it exits first."""
        self.spawn()
        status = self.wait_ready(timeout)
        if status is not None:
            raise AssertionError("nbdkit exited with status %d before it was ready: %s\n%s" % (
                status, " ".join(self.argv()), self.log()))
        return self

    def start_refused(self, timeout=START_TIMEOUT):
        """Starts nbdkit expecting it to refuse: (exit status, output)."""
        self.spawn()
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log = self.log()
            self.stop()
            raise AssertionError("nbdkit started although it should have refused:\n" + log)
        return status, self.log()

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
        self.terminate()
        for t in closers:
            t.join(5)
        self.handles = []

    def terminate(self):
        """SIGTERM (a clean shutdown commits), SIGKILL if that takes too long."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=self.stop_timeout)

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

    def new_handle(self, export="", meta_context=True, strict=True):
        """A connected nbd.NBD handle on `export` that the caller closes.

        strict=False turns off libnbd's client-side checks so that refused
        requests (writes to a read-only export, ...) reach the server."""
        h = nbd.NBD()
        h.set_handle_name("test-" + (export or "default"))
        if meta_context:
            h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        if not strict:
            h.set_strict_mode(0)
        h.connect_uri(self.uri(export))
        return h

    def connect(self, export="", meta_context=True, strict=True):
        """Like new_handle(), but stop() closes the handle."""
        h = self.new_handle(export, meta_context, strict)
        self.handles.append(h)
        return h

    # ---- control socket ------------------------------------------------------

    def control_connection(self):
        return ControlConnection(self.ctl)

    def control(self, execute, arguments=None, id=None):
        """One request on a fresh control connection; the whole reply."""
        with self.control_connection() as c:
            return c.request(execute, arguments, id)

    # ---- CLI -----------------------------------------------------------------

    def cli_run(self, *args, json_output=True, timeout=COMMAND_TIMEOUT):
        """Runs `thinsim --socket CTL [--json] ARGS`; the CompletedProcess."""
        argv = [CLI, "--socket", self.ctl] + (["--json"] if json_output else []) + list(args)
        return run(argv, timeout=timeout)

    def cli(self, *args, timeout=COMMAND_TIMEOUT):
        """Runs the CLI with --json, requires exit 0 and returns the parsed JSON."""
        return cli_json(self.cli_run(*args, timeout=timeout), args)

    def cli_text(self, *args, timeout=COMMAND_TIMEOUT):
        """Runs the CLI without --json, requires exit 0 and returns stdout."""
        return cli_stdout(self.cli_run(*args, json_output=False, timeout=timeout), args)


class Server(Nbdkit):
    """An Nbdkit in a directory of its own under /tmp (Unix socket paths must
    stay short), which stop() removes."""

    tmp_prefix = "thinsim-"

    def __init__(self, *params, control=True, nbdkit_args=()):
        super().__init__(tempfile.mkdtemp(prefix=self.tmp_prefix, dir="/tmp"), params,
                         nbdkit_args=nbdkit_args, control=control)

    def stop(self):
        super().stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class TestCase(unittest.TestCase):
    """unittest.TestCase with a server factory whose servers always stop."""

    maxDiff = None
    server_class = Server

    def start_server(self, *params, **kw):
        server = self.server_class(*params, **kw)
        self.addCleanup(server.stop)
        server.start()
        return server


def main():
    unittest.main(verbosity=2)
