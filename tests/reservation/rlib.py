"""Helpers for thinsim's reservation scenarios (tests/reservation).

Each scenario starts the real nbdkit with the real plugin, talks NBD to it
with libnbd's Python module and drives it with the real `thinsim` CLI (and
raw control-socket JSON where the CLI hides something, such as the error
object). Nothing is mocked.

Built on tests/common/thinsim_testlib.py (paths, command runs, the control
socket, nbdkit servers; its docstring says how to run the tests); this module
adds the reservation checks and re-exports the rest for the scenarios.

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
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import thinsim_testlib  # noqa: E402
# Re-exported: the scenarios use them as rlib.NAME or import them from here.
from thinsim_testlib import (  # noqa: E402,F401
    CLI, TOOL_ENV, ControlConnection, KiB, allocation_runs, main, nbd)
from thinsim_testlib import flag_names as flag_name  # noqa: E402,F401

BS = 64 * KiB  # every scenario uses block-size=64K unless it says otherwise


def block(seed, length=BS):
    """`length` bytes of a recognisable pattern for `seed` (cheap, distinct)."""
    unit = ("<%d>" % seed).encode()
    return (unit * (length // len(unit) + 1))[:length]


ZERO = bytes(BS)


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


class Server(thinsim_testlib.Server):
    """thinsim_testlib.Server with `thinsim events` streams (stopped first by
    stop()) and the CLI's view of the pool and its volumes."""

    tmp_prefix = "thinsim-res-"

    def __init__(self, *params, nbdkit_args=()):
        super().__init__(*params, nbdkit_args=nbdkit_args)
        self.streams = []

    def stop(self):
        for s in self.streams:
            s.stop()
        self.streams = []
        super().stop()

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

    def events(self):
        s = EventStream(self)
        self.streams.append(s)
        return s

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
    for _, n, f in allocation_runs(h, length, offset):
        flags.extend([f] * (n // BS))
    return flags


class TestCase(thinsim_testlib.TestCase):
    server_class = Server

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

