"""Small shared helpers: sizes, the run log, and commands with hard timeouts.

Every external command the harness runs goes through `run()`, which never
waits without a deadline: a command that outlives its timeout is killed
(its whole process group), and if it cannot even be killed (a process stuck
in uninterruptible sleep on a hung device) the harness stops waiting for it
and says so, instead of hanging with it.
"""

import os
import re
import select
import signal
import subprocess
import sys
import time

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

_SUFFIX = {"": 1, "b": 1, "s": 512, "k": KiB, "m": MiB, "g": GiB, "t": TiB,
           "p": 1 << 50, "e": 1 << 60}


class HarnessError(Exception):
    """A step failed in a way that ends the run (not a finding)."""


class StepTimeout(HarnessError):
    """A step did not finish within its timeout."""


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived. A BaseException so that no
    `except Exception` swallows it; cleanup runs from `finally` blocks."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class WatchdogExpired(BaseException):
    """The whole run took longer than its watchdog allows (SIGALRM)."""


def parse_size(text):
    """Bytes from an nbdkit-style size: 512, 64K, 1G, 1.5G (powers of 1024)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([bskmgtpeBSKMGTPE]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise ValueError("bad size %r (use e.g. 512, 64K, 256M, 1G)" % (text,))
    value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    return int(value)


def fmt_size(n):
    """A short human size: 0, 512, 64K, 1.5M, 256M, 1T."""
    if n is None:
        return "-"
    n = int(n)
    for unit, scale in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if abs(n) >= scale:
            v = n / scale
            if v == int(v):
                return "%d%s" % (v, unit)
            return ("%.1f%s" % (v, unit)) if v < 100 else ("%d%s" % (round(v), unit))
    return str(n)


def nbdkit_size(n):
    """A size as nbdkit and the thinsim CLI accept it (exact)."""
    for unit, scale in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if n % scale == 0:
            return "%d%s" % (n // scale, unit)
    return str(n)


class Log:
    """The run log: every command, its outcome and the harness's notes. Goes
    to RUN_DIR/harness.log, and to stderr with --verbose."""

    def __init__(self, path=None, verbose=False):
        self.t0 = time.monotonic()
        self.verbose = verbose
        self.file = open(path, "a", buffering=1) if path else None

    def __call__(self, msg):
        line = "[%7.2f] %s" % (time.monotonic() - self.t0, msg)
        if self.file:
            try:
                self.file.write(line + "\n")
            except (OSError, ValueError):
                pass
        if self.verbose:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def close(self):
        if self.file:
            self.file.close()
            self.file = None


class Result:
    """The outcome of `run()`."""

    def __init__(self, argv, rc, out, err, duration, timed_out=False, stuck_pid=None):
        self.argv = argv
        self.rc = rc
        self.out = out
        self.err = err
        self.duration = duration
        self.timed_out = timed_out
        self.stuck_pid = stuck_pid  # a pid that could not be killed in time

    @property
    def ok(self):
        return self.rc == 0 and not self.timed_out

    def tail(self, lines=8):
        text = (self.err or "") + (self.out or "")
        return "\n".join(text.strip().splitlines()[-lines:])

    def describe(self):
        if self.timed_out:
            return "timed out after %.0f s" % self.duration
        return "exit %d" % self.rc


def _kill_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def run(argv, timeout, log=None, input=None, env=None, cwd=None):
    """Runs argv in its own session (so the terminal's Ctrl-C reaches only the
    harness, which then cleans up in order), capturing text output. Never
    raises for a failed command; never waits past `timeout` + a few seconds.
    """
    start = time.monotonic()
    if log:
        log("$ " + " ".join(argv))
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", env=env, cwd=cwd, start_new_session=True)
    except OSError as e:
        if log:
            log("  cannot run %s: %s" % (argv[0], e))
        return Result(argv, 127, "", str(e), 0.0)
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
        res = Result(argv, proc.returncode, out, err, time.monotonic() - start)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGKILL)
        stuck = None
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out, err = "", "(could not be killed: stuck in the kernel)"
            stuck = proc.pid
        res = Result(argv, -9, out or "", err or "", time.monotonic() - start, True, stuck)
    except BaseException:
        # Interrupted while waiting: do not leave the child behind.
        _kill_group(proc, signal.SIGKILL)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        raise
    if log:
        log("  -> %s in %.2fs%s" % (res.describe(), res.duration,
                                    ("\n  " + res.tail(6).replace("\n", "\n  ")) if (res.rc and res.tail(6)) else ""))
    return res


def which(name):
    for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":") + ["/usr/sbin", "/sbin"]:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def proc_start_time(pid):
    """The start time of `pid` in clock ticks (field 22 of /proc/PID/stat), or
    None if it is gone. Recorded with every pid so that cleanup never signals
    an unrelated process that reused the number."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2:].split()
    return int(rest[19])


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
        return data[data.rfind(")") + 2:].split()[0]
    except OSError:
        return None


def pid_alive(pid, start=None):
    st = proc_start_time(pid)
    if st is None:
        return False
    if start is not None and st != start:
        return False
    return proc_state(pid) != "Z"


def wait_until(pred, timeout, interval=0.1):
    """Polls pred() until it is true or `timeout` passes. Returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


def read_lines_until(proc, deadline, on_line, on_tick=None, tick=0.5):
    """Reads proc.stdout line by line until EOF or `deadline` (monotonic),
    calling on_line(line) for each and on_tick() about every `tick` seconds.
    Returns True at EOF, False at the deadline."""
    fd = proc.stdout.fileno()
    buf = b""
    next_tick = time.monotonic() + tick
    while True:
        now = time.monotonic()
        if now >= deadline:
            return False
        wait = min(deadline, next_tick) - now
        r, _, _ = select.select([fd], [], [], max(0.0, wait))
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                if buf:
                    on_line(buf.decode(errors="replace"))
                return True
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                on_line(line.decode(errors="replace"))
        if on_tick and time.monotonic() >= next_tick:
            next_tick = time.monotonic() + tick
            on_tick()


ERRNO_TEXT = {
    "ENOSPC": "No space left on device",
    "EIO": "Input/output error",
    "EROFS": "Read-only file system",
    "EDQUOT": "Disk quota exceeded",
    "EUCLEAN": "Structure needs cleaning",
    "ENOTCONN": "Transport endpoint is not connected",
    "EPERM": "Operation not permitted",
    "EOPNOTSUPP": "Operation not supported",
    "EINVAL": "Invalid argument",
}


def errno_in_text(text):
    """The first errno name whose strerror() text appears in a tool's output
    (mkfs and fsck print strerror, not the symbol)."""
    best = None
    for name, msg in ERRNO_TEXT.items():
        i = text.find(msg)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, name)
    return best[1] if best else None
