"""Starting nbdkit, attaching a volume as a kernel block device, and taking
all of it down again.

Attach paths:
  nbdfuse     nbdkit -> nbdfuse (FUSE file DIR/nbd) -> loop device (losetup)
  nbd-client  nbdkit -> kernel NBD client (/dev/nbdN)

Everything the harness creates (processes, FUSE mounts, loop and NBD
devices, filesystem mounts) is written to RUN_DIR/state.json *before* it is
created, and removed from it once it is gone. `cleanup()` works from that
file alone, so a harness killed with SIGKILL leaves a record that
`thinsim fs-test --cleanup RUN_DIR` uses to take everything down.

Teardown order (each step with a timeout):
  1. kill worker processes;
  2. unmount filesystems (umount; on failure or timeout umount -l);
  3. detach loop devices (losetup -d) and NBD devices (nbd-client -d);
  4. unmount FUSE mounts (fusermount3 -u -z);
  5. wait for nbdfuse to exit while nbdkit still serves its last requests;
  6. stop nbdkit (SIGTERM, then SIGKILL): this also fails any I/O still
     queued in the plugin, which unblocks a hung device;
  7. if nbdfuse is still there: abort its FUSE connection
     (/sys/fs/fuse/connections/N/abort) and kill it;
  8. check that nothing recorded is left, and say what is.
"""

import json
import os
import signal
import subprocess
import time

from .util import (HarnessError, pid_alive, proc_start_time, run, wait_until, which)

STATE_VERSION = 1


class StateFile:
    """RUN_DIR/state.json: what exists and must be taken down."""

    def __init__(self, path, create=True):
        self.path = path
        if create:
            self.data = {"version": STATE_VERSION, "harness_pid": os.getpid(),
                         "harness_start": proc_start_time(os.getpid()),
                         "created": time.time(), "next_id": 1, "items": []}
            self.save()
        else:
            with open(path) as f:
                self.data = json.load(f)

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def add(self, kind, **fields):
        item = dict(fields, kind=kind, id=self.data["next_id"])
        self.data["next_id"] += 1
        self.data["items"].append(item)
        self.save()
        return item

    def update(self, item, **fields):
        item.update(fields)
        self.save()

    def remove(self, item):
        self.data["items"] = [i for i in self.data["items"] if i["id"] != item["id"]]
        self.save()

    def items(self, kind=None):
        return [i for i in self.data["items"] if kind is None or i["kind"] == kind]

    def harness_alive(self):
        return pid_alive(self.data.get("harness_pid", -1), self.data.get("harness_start"))


# --- what exists right now ------------------------------------------------------

def mountinfo():
    """[(mountpoint, fstype, source, options)] from /proc/self/mountinfo."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                lf = left.split()
                rf = right.split()
                mp = lf[4].replace("\\040", " ")
                out.append((mp, rf[0], rf[1] if len(rf) > 1 else "", lf[5] + "," + (rf[2] if len(rf) > 2 else "")))
    except OSError:
        pass
    return out


def _norm(path):
    # Never os.path.realpath() here: resolving a path stats every component,
    # and a stat of a FUSE mount whose daemon is stuck (its NBD requests
    # queued on a full pool) hangs. Run directories are created with real
    # paths, so a plain normalisation is enough.
    return os.path.normpath(os.path.abspath(path))


def is_mounted(mountpoint):
    mp = _norm(mountpoint)
    return any(m[0] == mp for m in mountinfo())


def mount_options(mountpoint):
    mp = _norm(mountpoint)
    for m in mountinfo():
        if m[0] == mp:
            return m[3].split(",")
    return None


def loops_backed_by(path_prefix):
    """Loop devices whose backing file is path_prefix or under it."""
    out = []
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return out
    for n in names:
        if not n.startswith("loop"):
            continue
        try:
            with open("/sys/block/%s/loop/backing_file" % n) as f:
                back = f.read().strip()
        except OSError:
            continue
        back = back.replace(" (deleted)", "")
        if back == path_prefix or back.startswith(path_prefix.rstrip("/") + "/"):
            out.append("/dev/" + n)
    return out


def nbd_connected(dev):
    name = os.path.basename(dev)
    return os.path.exists("/sys/block/%s/pid" % name)


# --- nbdkit -----------------------------------------------------------------------

class Nbdkit:
    """nbdkit with the thinsim plugin, in the foreground as our child, in its
    own session (the terminal's Ctrl-C must not stop it before the
    filesystems on it are unmounted)."""

    def __init__(self, state, run_dir, plugin, params, log, timeout=20):
        self.sock = os.path.join(run_dir, "nbd.sock")
        self.ctl = os.path.join(run_dir, "ctl.sock")
        self.logpath = os.path.join(run_dir, "nbdkit.log")
        argv = ["nbdkit", "-f", "-U", self.sock, plugin] + list(params) + ["control=" + self.ctl]
        self.argv = argv
        log("$ " + " ".join(argv))
        logf = open(self.logpath, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        except OSError as e:
            raise HarnessError("cannot start nbdkit: %s" % e)
        finally:
            logf.close()
        self.item = state.add("process", role="nbdkit", pid=self.proc.pid,
                              start=proc_start_time(self.proc.pid), argv=argv)
        ok = wait_until(lambda: (os.path.exists(self.sock) and os.path.exists(self.ctl))
                        or self.proc.poll() is not None, timeout)
        if self.proc.poll() is not None or not ok:
            msg = self.log_tail()
            raise HarnessError("nbdkit did not start (%s): %s" % (
                "exited %s" % self.proc.returncode if self.proc.poll() is not None else "timeout",
                msg or "no message"))

    def uri(self, export):
        return "nbd+unix:///%s?socket=%s" % (export, self.sock)

    def log_tail(self, n=10):
        try:
            with open(self.logpath, errors="replace") as f:
                return "\n".join(f.read().strip().splitlines()[-n:])
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None


# --- attach -----------------------------------------------------------------------

class Attached:
    """A volume attached as a block device."""

    def __init__(self, volume, dev, method, detail):
        self.volume = volume
        self.dev = dev
        self.method = method
        self.detail = detail  # dict for the report


def attach_nbdfuse(state, run_dir, nbdkit, volume, log, timeout, loop_dio=True):
    fuse_dir = os.path.join(run_dir, "fuse-" + volume)
    os.makedirs(fuse_dir, exist_ok=True)
    fuse_file = os.path.join(fuse_dir, "nbd")
    pidfile = os.path.join(run_dir, "nbdfuse-%s.pid" % volume)
    logpath = os.path.join(run_dir, "nbdfuse-%s.log" % volume)
    if os.path.exists(pidfile):
        os.unlink(pidfile)  # an earlier attach's (readiness waits for the new one)
    fuse_item = state.add("fuse", mountpoint=fuse_dir, conn=None)
    argv = ["nbdfuse", "-P", pidfile, fuse_dir + "/", nbdkit.uri(volume)]
    log("$ " + " ".join(argv))
    logf = open(logpath, "ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True)
    finally:
        logf.close()
    state.add("process", role="nbdfuse", pid=proc.pid,
                          start=proc_start_time(proc.pid), mountpoint=fuse_dir)
    ready = wait_until(lambda: os.path.exists(pidfile) or proc.poll() is not None, timeout)
    if proc.poll() is not None or not ready or not is_mounted(fuse_dir):
        with open(logpath, errors="replace") as f:
            msg = f.read().strip()[-500:]
        raise HarnessError("nbdfuse did not come up for %s: %s" % (volume, msg or "timeout"))
    try:
        st = os.stat(fuse_dir)
        state.update(fuse_item, conn=os.minor(st.st_dev))
    except OSError:
        pass
    loop_item = state.add("loop", device=None, backing=fuse_file)
    argv = ["losetup", "--find", "--show"]
    if loop_dio:
        argv.append("--direct-io=on")
    res = run(argv + [fuse_file], timeout, log)
    if not res.ok:
        found = loops_backed_by(fuse_file)
        if found:
            state.update(loop_item, device=found[0])
        raise HarnessError("losetup failed: %s %s" % (res.describe(), res.tail(3)))
    dev = res.out.strip()
    state.update(loop_item, device=dev)
    dio = None
    try:
        with open("/sys/block/%s/loop/dio" % os.path.basename(dev)) as f:
            dio = f.read().strip() == "1"
    except OSError:
        pass
    return Attached(volume, dev, "nbdfuse", {"method": "nbdfuse+loop", "loop": dev,
                                             "loop_direct_io": dio, "fuse_file": fuse_file,
                                             "nbdfuse_pid": proc.pid})


def free_nbd_device():
    for i in range(0, 256):
        dev = "/dev/nbd%d" % i
        if not os.path.exists(dev):
            break
        if not nbd_connected(dev):
            return dev
    return None


def attach_nbd_client(state, run_dir, nbdkit, volume, log, timeout, io_timeout=60):
    dev = free_nbd_device()
    if not dev:
        raise HarnessError("no free /dev/nbdN device (load the nbd module: modprobe nbd)")
    item = state.add("nbd", device=dev)
    res = run(["nbd-client", "-unix", nbdkit.sock, dev, "-N", volume, "-b", "4096",
               "-t", str(io_timeout)], timeout, log)
    if not res.ok or not wait_until(lambda: nbd_connected(dev), 10):
        raise HarnessError("nbd-client failed for %s: %s %s" % (dev, res.describe(), res.tail(3)))
    state.update(item, connected=True)
    return Attached(volume, dev, "nbd-client", {"method": "nbd-client", "device": dev,
                                                "io_timeout": io_timeout})


def nbd_client_available():
    return bool(which("nbd-client")) and os.path.exists("/dev/nbd0")


# --- mounts -----------------------------------------------------------------------

def mount(state, dev, mountpoint, log, timeout, options=None, fstype=None):
    os.makedirs(mountpoint, exist_ok=True)
    item = state.add("mount", mountpoint=mountpoint, device=dev)
    argv = ["mount"]
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", ",".join(options)]
    res = run(argv + [dev, mountpoint], timeout, log)
    if not res.ok:
        if not is_mounted(mountpoint):
            state.remove(item)
        return False, res
    return True, res


def unmount(state, mountpoint, log, timeout):
    """Unmounts; lazily if a plain unmount fails or hangs. Returns
    (ok, how) where how is 'umount', 'umount -l' or an error."""
    items = [i for i in state.items("mount") if i["mountpoint"] == mountpoint]
    if not is_mounted(mountpoint):
        for i in items:
            state.remove(i)
        return True, "not mounted"
    res = run(["umount", mountpoint], timeout, log)
    how = "umount"
    if not res.ok and is_mounted(mountpoint):
        how = "umount -l (umount %s: %s)" % (res.describe(), res.tail(1))
        run(["umount", "-l", mountpoint], 15, log)
    ok = not is_mounted(mountpoint)
    if ok:
        for i in items:
            state.remove(i)
    return ok, how


# --- cleanup ----------------------------------------------------------------------

def _signal_process(item, sig):
    if pid_alive(item["pid"], item.get("start")):
        try:
            os.kill(item["pid"], sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass


def _proc_gone(item):
    _reap(item["pid"])
    return not pid_alive(item["pid"], item.get("start"))


def _abort_fuse(item, log):
    conn = item.get("conn")
    base = "/sys/fs/fuse/connections"
    mounted_here = False
    if conn is None:
        return
    if not os.path.exists(os.path.join(base, str(conn))):
        if not any(m[1] == "fusectl" for m in mountinfo()):
            r = run(["mount", "-t", "fusectl", "fusectl", base], 10, log)
            mounted_here = r.ok
    path = os.path.join(base, str(conn), "abort")
    try:
        with open(path, "w") as f:
            f.write("1")
        log("aborted FUSE connection %s" % conn)
    except OSError as e:
        log("cannot abort FUSE connection %s: %s" % (conn, e))
    if mounted_here:
        run(["umount", base], 10, log)


def cleanup(state, log, timeout=30):
    """Takes down everything in `state`, in dependency order. Returns the
    list of leftovers (strings), empty when everything is gone."""
    items = state.items()
    procs = [i for i in items if i["kind"] == "process"]
    log("cleanup: %d recorded items" % len(items))

    # 1. workers
    for p in procs:
        if p.get("role") == "worker":
            if pid_alive(p["pid"], p.get("start")):
                try:
                    os.killpg(p["pid"], signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    _signal_process(p, signal.SIGKILL)
    for p in procs:
        if p.get("role") == "worker":
            if wait_until(lambda: _proc_gone(p), 3):
                state.remove(p)

    # 2. filesystem mounts, newest first
    for m in reversed(state.items("mount")):
        unmount(state, m["mountpoint"], log, timeout)

    # 3. block devices
    for lp in reversed(state.items("loop")):
        devs = set(loops_backed_by(lp["backing"]))
        if lp.get("device"):
            devs.add(lp["device"])
        for dev in sorted(devs):
            if os.path.exists("/sys/block/%s/loop" % os.path.basename(dev)):
                run(["losetup", "-d", dev], timeout, log)
        if not loops_backed_by(lp["backing"]):
            state.remove(lp)
    for nb in reversed(state.items("nbd")):
        if nbd_connected(nb["device"]):
            run(["nbd-client", "-d", nb["device"]], timeout, log)
        if wait_until(lambda: not nbd_connected(nb["device"]), 10):
            state.remove(nb)

    # 4. FUSE mounts (lazy: the loop device may still hold the file until
    # its I/O drains)
    fusers = which("fusermount3") and "fusermount3" or "fusermount"
    for fu in reversed(state.items("fuse")):
        if is_mounted(fu["mountpoint"]):
            run([fusers, "-u", "-z", fu["mountpoint"]], timeout, log)

    # 5. nbdfuse exits once its mount is released
    nbdfuses = [p for p in state.items("process") if p.get("role") == "nbdfuse"]
    wait_until(lambda: all(_proc_gone(p) for p in nbdfuses), 10)

    # 6. nbdkit
    for p in state.items("process"):
        if p.get("role") == "nbdkit":
            _signal_process(p, signal.SIGTERM)
            if not wait_until(lambda: _proc_gone(p), 5):
                _signal_process(p, signal.SIGKILL)
                wait_until(lambda: _proc_gone(p), 5)

    # 7. stragglers: with nbdkit gone, any I/O left fails, loops auto-clear,
    # FUSE files are released and nbdfuse exits. If not, force it.
    if not wait_until(lambda: all(_proc_gone(p) for p in nbdfuses)
                      and not any(loops_backed_by(lp["backing"]) for lp in state.items("loop")), 10):
        for fu in state.items("fuse"):
            _abort_fuse(fu, log)
        for p in nbdfuses:
            _signal_process(p, signal.SIGTERM)
        if not wait_until(lambda: all(_proc_gone(p) for p in nbdfuses), 5):
            for p in nbdfuses:
                _signal_process(p, signal.SIGKILL)
            wait_until(lambda: all(_proc_gone(p) for p in nbdfuses), 5)
        for lp in state.items("loop"):
            for dev in loops_backed_by(lp["backing"]):
                run(["losetup", "-d", dev], timeout, log)

    # 8. what is left
    leftovers = []
    for m in state.items("mount"):
        if is_mounted(m["mountpoint"]):
            leftovers.append("mount %s" % m["mountpoint"])
        else:
            state.remove(m)
    for lp in state.items("loop"):
        devs = loops_backed_by(lp["backing"])
        if devs:
            leftovers.append("loop %s (%s)" % (",".join(devs), lp["backing"]))
        else:
            state.remove(lp)
    for nb in state.items("nbd"):
        if nbd_connected(nb["device"]):
            leftovers.append("nbd %s" % nb["device"])
        else:
            state.remove(nb)
    for fu in state.items("fuse"):
        if is_mounted(fu["mountpoint"]):
            leftovers.append("fuse mount %s" % fu["mountpoint"])
        else:
            state.remove(fu)
    for p in state.items("process"):
        if _proc_gone(p):
            state.remove(p)
        else:
            leftovers.append("%s pid %d" % (p.get("role"), p["pid"]))
    log("cleanup: %s" % ("nothing left" if not leftovers else "LEFT: " + "; ".join(leftovers)))
    return leftovers
