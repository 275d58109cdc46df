"""The pool's control socket, driven through the real `thinsim` CLI (so every
state change in a report is a command a user could type)."""

import json

from .util import run


class CliError(Exception):
    pass


class Thinsim:
    def __init__(self, cli, socket, log, timeout=30):
        self.cli = cli
        self.socket = socket
        self.log = log
        self.timeout = timeout

    def call(self, *args, timeout=None):
        """Runs `thinsim --socket S --json ARGS`. Returns (ok, value, error)."""
        res = run([self.cli, "--socket", self.socket, "--json"] + [str(a) for a in args],
                  timeout or self.timeout, self.log)
        if res.timed_out:
            return False, None, "thinsim %s timed out" % args[0]
        if res.rc != 0:
            msg = (res.err or res.out).strip().splitlines()
            return False, None, (msg[-1] if msg else "exit %d" % res.rc).replace("thinsim: ", "")
        try:
            return True, json.loads(res.out) if res.out.strip() else None, None
        except ValueError:
            return True, res.out.strip(), None

    def status(self):
        ok, v, err = self.call("status", timeout=10)
        return v if ok else None

    def volumes(self):
        ok, v, err = self.call("ls", timeout=10)
        return v if ok else None

    def volume(self, name):
        ok, v, err = self.call("ls", name, timeout=10)
        if ok and isinstance(v, list) and v:
            return v[0]
        return None
