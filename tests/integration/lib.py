"""Helpers for thinsim's integration tests.

Built on tests/common/thinsim_testlib.py (paths, command runs, the control
socket, nbdkit servers; its docstring says how to run the tests); this module
adds what only the integration tests use and re-exports the rest for them.

Each server gets its own directory under /tmp (Unix socket paths must stay
short); the server is killed and the directory removed even when a test fails.
"""

import errno
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import thinsim_testlib  # noqa: E402
# Re-exported: the scripts use them as lib.NAME.
from thinsim_testlib import (  # noqa: E402,F401
    CLI, KiB, MiB, NBDKIT, PLUGIN, TOOL_ENV, allocation_runs, flag_names, main, nbd, pattern,
    run)


def describe_mismatch(got, want):
    """A short description of where two byte strings first differ."""
    if len(got) != len(want):
        return "length %d != %d" % (len(got), len(want))
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return "first difference at byte %d: got %r, want %r" % (
                i, got[i:i + 16], want[i:i + 16])
    return "equal"


class Server(thinsim_testlib.Server):
    """thinsim_testlib.Server that remembers which volume each NBD handle is
    on, so that disconnect() can wait for the server to see it go."""

    tmp_prefix = "thinsim-it-"

    def __init__(self, *params, control=True, nbdkit_args=()):
        super().__init__(*params, control=control, nbdkit_args=nbdkit_args)
        self.handle_names = {}

    def stop(self):
        super().stop()
        self.handle_names = {}

    # ---- NBD -----------------------------------------------------------------

    def connect(self, export="", meta_context=True, strict=True):
        """A connected nbd.NBD handle on `export`, closed by stop().

        strict=False turns off libnbd's client-side checks so that refused
        requests (writes to a read-only export, ...) reach the server."""
        h = super().connect(export, meta_context, strict)
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


def extents(h, length, offset=0):
    """base:allocation extents of [offset, offset+length) as a list of
    (offset, length, flags), merged and covering exactly the range."""
    out = []
    for pos, n, flags in allocation_runs(h, length, offset):
        if out and out[-1][2] == flags and out[-1][0] + out[-1][1] == pos:
            out[-1] = (out[-1][0], out[-1][1] + n, flags)
        else:
            out.append((pos, n, flags))
    return out


def flags_at(ext, offset):
    """The base:allocation flags of the extent containing `offset`."""
    for off, n, flags in ext:
        if off <= offset < off + n:
            return flags
    raise AssertionError("offset %d not covered by extents %r" % (offset, ext))


class TestCase(thinsim_testlib.TestCase):
    server_class = Server

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
