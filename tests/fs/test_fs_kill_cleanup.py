#!/usr/bin/python3
"""Killing `thinsim fs-test` in the middle leaves nothing mounted, attached
or running.

1. SIGTERM while a filesystem is mounted and being written: the harness
   cleans up itself and exits 143.
2. SIGINT (Ctrl-C, sent to the whole process group as a terminal would)
   while mkfs is stuck in the kernel on a full pool in queue mode with no
   timeout: cleanup must still finish (it unblocks the device by stopping
   nbdkit last) and the harness exits 130.
3. SIGKILL: the harness cannot clean up, so things are left; then
   `thinsim fs-test --cleanup RUN_DIR` takes all of them down using the
   state file.

Skips (exit 77) without root, FUSE or loop devices.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fs_env  # noqa: E402

fs_env.skip_if_unable()

FAILURES = []


def check(ok, what):
    print("%s %s" % ("ok  " if ok else "FAIL", what))
    if not ok:
        FAILURES.append(what)


def run_dirs(base):
    return [os.path.join(base, d) for d in os.listdir(base)] if os.path.isdir(base) else []


def state_items(base):
    items = []
    for d in run_dirs(base):
        try:
            with open(os.path.join(d, "state.json")) as f:
                items += json.load(f)["items"]
        except (OSError, ValueError):
            pass
    return items


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise SystemExit("FAIL: timed out waiting for %s" % what)


def start(base, args):
    """The harness through the real CLI, in its own process group."""
    log = open(base + ".out", "w")
    argv = [fs_env.CLI, "fs-test"] + args + ["--run-dir", base, "--timeout", "60"]
    print("$ " + " ".join(argv))
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def mounted_fs(base):
    return [m for m in fs_env.mounts_under(base) if "/mnt-" in m]


def finish(proc, timeout=120):
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def case_sigterm(top):
    base = os.path.join(top, "term")
    proc = start(base, ["fill-delete-trim", "--fs", "ext4", "--rounds", "20"])
    wait_for(lambda: mounted_fs(base), 60, "the filesystem to be mounted")
    time.sleep(1.5)  # in the middle of the rounds
    check(proc.poll() is None, "SIGTERM case: harness still running when signalled")
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = finish(proc)
    print("     (exited %.1f s after SIGTERM)" % (time.monotonic() - t))
    check(rc == 128 + signal.SIGTERM, "SIGTERM case: harness exited %s (want 143)" % rc)
    left = fs_env.leftovers(base)
    check(not left, "SIGTERM case: nothing left (%s)" % "; ".join(left))
    check(not state_items(base), "SIGTERM case: state file empty")


def case_sigint_stuck(top):
    base = os.path.join(top, "int")
    # 1T volume on a 1M pool, queue mode, no timeout: mkfs's writes wait in
    # the kernel forever.
    proc = start(base, ["tiny-pool-mkfs", "--fs", "ext4", "--when-full", "queue",
                        "--no-space-timeout", "0"])

    def pool_full():
        for d in run_dirs(base):
            sock = os.path.join(d, "ctl.sock")
            if os.path.exists(sock):
                r = subprocess.run([fs_env.CLI, "--socket", sock, "--json", "status"],
                                   capture_output=True, text=True, timeout=10)
                if r.returncode == 0 and json.loads(r.stdout)["free_blocks"] == 0:
                    return True
        return False

    wait_for(pool_full, 60, "mkfs to fill the pool")
    time.sleep(2)  # mkfs is now blocked on queued writes
    check(proc.poll() is None, "SIGINT case: harness still running when interrupted")
    t = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    rc = finish(proc)
    print("     (exited %.1f s after SIGINT)" % (time.monotonic() - t))
    check(rc == 128 + signal.SIGINT, "SIGINT case: harness exited %s (want 130)" % rc)
    left = fs_env.leftovers(base)
    check(not left, "SIGINT case: nothing left (%s)" % "; ".join(left))


def case_sigkill_then_cleanup(top):
    base = os.path.join(top, "kill")
    proc = start(base, ["snapshot-overwrite", "--fs", "ext4"])
    wait_for(lambda: mounted_fs(base), 60, "the filesystem to be mounted")
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    left = fs_env.leftovers(base)
    check(bool(left), "SIGKILL case: the killed harness left things behind (%d)" % len(left))
    dirs = run_dirs(base)
    check(len(dirs) == 1, "SIGKILL case: one run directory")
    r = subprocess.run([fs_env.CLI, "fs-test", "--cleanup"] + dirs, capture_output=True,
                       text=True, timeout=180)
    print(r.stdout + r.stderr)
    check(r.returncode == 0, "SIGKILL case: --cleanup exited %d" % r.returncode)
    # The orphaned worker may need a moment to notice its files are gone.
    end = time.monotonic() + 20
    while fs_env.leftovers(base) and time.monotonic() < end:
        time.sleep(0.5)
    left = fs_env.leftovers(base)
    check(not left, "SIGKILL case: nothing left after --cleanup (%s)" % "; ".join(left))
    check(not os.path.exists(dirs[0]), "SIGKILL case: --cleanup removed the run directory")


def main():
    top = tempfile.mkdtemp(prefix="fsk-", dir="/tmp")
    t0 = time.monotonic()
    try:
        case_sigterm(top)
        case_sigint_stuck(top)
        case_sigkill_then_cleanup(top)
    finally:
        # Never leave anything behind, whatever failed above.
        for sub in ("term", "int", "kill"):
            base = os.path.join(top, sub)
            if fs_env.leftovers(base):
                subprocess.run([fs_env.CLI, "fs-test", "--cleanup"] + run_dirs(base), timeout=180)
    print("%.0f s" % (time.monotonic() - t0))
    if FAILURES:
        print("%d check(s) failed; outputs in %s" % (len(FAILURES), top))
        return 1
    subprocess.run(["rm", "-rf", top])
    return 0


if __name__ == "__main__":
    sys.exit(main())
