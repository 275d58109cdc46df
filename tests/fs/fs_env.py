"""Shared by the fs tests: can this machine run `thinsim fs-test`, and what
does a run leave behind?

Exit code 77 means "skipped" to CTest (SKIP_RETURN_CODE) and to
scripts/test; the reason is printed first.
"""

import os
import shutil
import sys

SKIP = 77

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("THINSIM_CLI") or os.path.join(REPO, "build", "tools", "thinsim")


def skip_reason():
    """Why the fs tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (the fs tests mount filesystems and create loop devices)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse (FUSE is needed for nbdfuse)"
    if not (os.path.exists("/dev/loop-control") or os.path.exists("/dev/loop0")):
        return "no loop devices (/dev/loop-control)"
    for tool in ("nbdkit", "nbdfuse", "losetup", "mkfs.ext4"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            return "%s is not installed" % tool
    if not os.path.isfile(CLI):
        return "the CLI %s is not built" % CLI
    return None


def skip_if_unable():
    why = skip_reason()
    if why:
        print("SKIP: %s" % why)
        sys.exit(SKIP)


def mounts_under(path):
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == real or mp.startswith(real + "/"):
                out.append(mp)
    return out


def loops_under(path):
    real = os.path.realpath(path)
    out = []
    for n in os.listdir("/sys/block"):
        if not n.startswith("loop"):
            continue
        try:
            with open("/sys/block/%s/loop/backing_file" % n) as f:
                back = f.read().strip()
        except OSError:
            continue
        if back.startswith(real + "/"):
            out.append("/dev/%s (%s)" % (n, back))
    return out


def processes_mentioning(path):
    """Live processes whose command line names `path` (nbdkit, nbdfuse and
    workers all get paths under the run directory)."""
    out = []
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open("/proc/%s/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if path in cmd and state != "Z":
            out.append("%s: %s" % (pid, cmd.strip()[:120]))
    return out


def leftovers(base):
    """Everything a run under `base` left: mounts, loop devices, processes."""
    return mounts_under(base) + loops_under(base) + processes_mentioning(base)
