"""One run: a pool in nbdkit, volumes attached and mounted, a scenario, and
the evidence a report is made of (timeline, errors, kernel messages, fsck,
checksums, pool counters). Scenarios (scenarios.py) drive a `Run`."""

import json
import os
import subprocess
import sys
import threading
import time

from . import attach as att
from .control import Thinsim
from .fs import FILESYSTEMS
from .kmsg import KernelLog, classify
from .util import (HarnessError, MiB, fmt_size, nbdkit_size, proc_start_time,
                   read_lines_until, run)


class Config:
    """Everything a run is parameterised by (from the command line)."""

    def __init__(self, **kw):
        self.scenario = kw.get("scenario")
        self.fs = kw.get("fs", "ext4")
        self.reserve = kw.get("reserve")            # None: the scenario's default
        self.when_full = kw.get("when_full")        # None: the scenario's default
        self.pool_size = kw.get("pool_size")        # bytes or None
        self.volume_size = kw.get("volume_size")    # bytes or None
        self.block_size = kw.get("block_size", 64 * 1024)
        self.no_space_timeout = kw.get("no_space_timeout")
        self.timeout = kw.get("timeout", 120.0)     # per step
        self.attach = kw.get("attach", "auto")
        self.loop_dio = kw.get("loop_dio", True)
        self.io = kw.get("io", "direct")            # direct | fsync
        self.rounds = kw.get("rounds")
        self.plugin = kw.get("plugin")
        self.cli = kw.get("cli")
        self.base_dir = kw.get("base_dir")
        self.keep = kw.get("keep", False)
        self.verbose = kw.get("verbose", False)

    def as_dict(self):
        return {k: v for k, v in vars(self).items() if k not in ("plugin", "cli", "base_dir", "verbose")}


class Volume:
    """A volume under test: its device, mount and the files written to it."""

    def __init__(self, name, size, strategy):
        self.name = name
        self.size = size
        self.strategy = strategy
        self.attached = None
        self.mnt = None
        self.fs = None
        self.files = {}        # name -> {"sha256", "t", "phase"} (None sha: unknown content)
        self.event_t = None    # when the event (first failure, pool exhausted) happened
        self.result = {}       # this volume's part of the report

    @property
    def dev(self):
        return self.attached.dev if self.attached else None


class WorkerResult:
    def __init__(self):
        self.events = []
        self.files = []
        self.error = None
        self.timed_out = False
        self.done = None
        self.rc = None
        self.duration = 0.0


def statvfs_with_timeout(path, timeout=2.0):
    """os.statvfs in a daemon thread: a statfs on a stuck filesystem must
    not stall the harness."""
    box = {}

    def target():
        try:
            box["v"] = os.statvfs(path)
        except OSError as e:
            box["e"] = e

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(timeout)
    return box.get("v")


class Run:
    def __init__(self, cfg, scenario, run_dir, log):
        self.cfg = cfg
        self.scenario = scenario
        self.run_dir = run_dir
        self.log = log
        self.t0 = time.monotonic()
        self.state = att.StateFile(os.path.join(run_dir, "state.json"))
        self.kmsg = KernelLog()
        self.nbdkit = None
        self.ctl = None
        self.volumes = {}
        self.timeline = []
        self.errors = []
        self.first_failure = None
        self.checks = []
        self.notes = []
        self.hang = None
        self.attach_method = None
        self.pool_params = []
        self.extra = {}    # scenario-specific report fields
        self.fs = FILESYSTEMS[cfg.fs]
        self.last_pool = None

    # --- bookkeeping -----------------------------------------------------------------

    def elapsed(self):
        return round(time.monotonic() - self.t0, 2)

    def pool_brief(self):
        if not self.ctl or not self.nbdkit or not self.nbdkit.alive():
            return None
        st = self.ctl.status()
        if not isinstance(st, dict):
            return None
        self.last_pool = st
        return {k: st.get(k) for k in ("used_blocks", "free_blocks", "reserved_blocks",
                                       "total_blocks", "mode")}

    def fs_usage(self, vol):
        if not vol or not vol.mnt or not att.is_mounted(vol.mnt):
            return None
        st = statvfs_with_timeout(vol.mnt)
        if st is None:
            return None
        return {"size": st.f_blocks * st.f_frsize, "used": (st.f_blocks - st.f_bfree) * st.f_frsize}

    def event(self, text, vol=None, kind="step", pool=True, **data):
        """A timeline entry, with the pool's usage at that moment."""
        entry = {"t": self.elapsed(), "kind": kind, "what": text}
        if pool:
            entry["pool"] = self.pool_brief()
        if vol is not None:
            entry["volume"] = vol.name
            u = self.fs_usage(vol)
            if u:
                entry["fs"] = u
        entry.update(data)
        self.timeline.append(entry)
        self.log("EVENT %s" % json.dumps(entry))
        return entry

    def note(self, text):
        self.notes.append(text)
        self.log("NOTE " + text)

    def check(self, name, ok, detail=""):
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail})
        self.log("CHECK [%s] %s %s" % ("ok" if ok else "FAIL", name, detail))
        return ok

    def observe(self, name, detail=""):
        """An outcome worth reporting that is not a pass/fail check."""
        self.checks.append({"name": name, "ok": None, "detail": detail})
        self.log("OBSERVE %s %s" % (name, detail))

    def record_error(self, ev, vol, phase):
        """An error the application saw (from a worker, or a tool)."""
        err = {"t": self.elapsed(), "volume": vol.name if vol else None, "phase": phase,
               "op": ev.get("op"), "file": ev.get("name"), "offset": ev.get("offset"),
               "errno": ev.get("err"), "message": ev.get("msg")}
        self.errors.append(err)
        if self.first_failure is None:
            self.first_failure = err
        if vol is not None and vol.event_t is None:
            vol.event_t = err["t"]
        self.event("%s failed in %s: %s %s" % (ev.get("op"), ev.get("name") or "-", ev.get("err"),
                                               "(%s)" % ev.get("msg") if ev.get("msg") else ""),
                   vol, kind="error")
        return err

    def mark_event(self, vol, text):
        """The moment files written before it are compared against."""
        if vol.event_t is None:
            vol.event_t = self.elapsed()
        self.event(text, vol, kind="event")

    # --- pool -------------------------------------------------------------------------

    def start_pool(self, pool_size, volumes, when_full, no_space_timeout=None, extra=()):
        """nbdkit with the plugin: an in-memory pool of pool_size with
        `volumes` [(name, size, strategy)] created at start."""
        params = ["size=" + nbdkit_size(pool_size), "block-size=" + nbdkit_size(self.cfg.block_size),
                  "when-full=" + when_full]
        if no_space_timeout is not None:
            params.append("no-space-timeout=%d" % no_space_timeout)
        for name, size, strategy in volumes:
            params.append("volume=%s:%s:%s" % (name, nbdkit_size(size), strategy))
        params += list(extra)
        self.pool_params = params
        self.nbdkit = att.Nbdkit(self.state, self.run_dir, self.cfg.plugin, params, self.log,
                                 timeout=min(30, self.cfg.timeout))
        self.ctl = Thinsim(self.cfg.cli, self.nbdkit.ctl, self.log)
        for name, size, strategy in volumes:
            self.volumes[name] = Volume(name, size, strategy)
        self.event("nbdkit started: pool %s, %s, when-full=%s%s" % (
            fmt_size(pool_size), ", ".join("%s %s (%s)" % (n, fmt_size(s), st) for n, s, st in volumes),
            when_full, (", no-space-timeout=%ds" % no_space_timeout) if no_space_timeout is not None else ""))

    def restart_pool(self, why):
        """nbdkit again with the same parameters, after the old one is gone
        (a pool=DIR pool reopens; the volumes and their files are kept)."""
        for path in (self.nbdkit.sock, self.nbdkit.ctl):
            if os.path.exists(path):
                os.unlink(path)  # left behind by a SIGKILL; readiness waits for new ones
        self.nbdkit = att.Nbdkit(self.state, self.run_dir, self.cfg.plugin, self.pool_params, self.log,
                                 timeout=min(30, self.cfg.timeout))
        self.ctl = Thinsim(self.cfg.cli, self.nbdkit.ctl, self.log)
        self.event("nbdkit restarted on the same pool: %s" % why)

    def thinsim(self, *args, vol=None, expect_ok=None):
        """A CLI command, recorded in the timeline. Returns (ok, value, error)."""
        ok, value, err = self.ctl.call(*args)
        self.event("thinsim %s: %s" % (" ".join(str(a) for a in args), "ok" if ok else "refused: " + err),
                   vol, kind="command", ok=ok, error=err)
        return ok, value, err

    # --- attach, mkfs, mount -------------------------------------------------------

    def choose_attach(self):
        m = self.cfg.attach
        if m == "auto":
            m = "nbd-client" if att.nbd_client_available() else "nbdfuse"
        return m

    def attach(self, name):
        vol = self.volumes[name]
        method = self.choose_attach()
        self.attach_method = method
        t = min(self.cfg.timeout, 60)
        if method == "nbd-client":
            vol.attached = att.attach_nbd_client(self.state, self.run_dir, self.nbdkit, name,
                                                 self.log, t)
        else:
            vol.attached = att.attach_nbdfuse(self.state, self.run_dir, self.nbdkit, name,
                                              self.log, t, loop_dio=self.cfg.loop_dio)
        vol.fs = self.fs
        self.event("attached %s as %s (%s)" % (name, vol.dev, vol.attached.detail["method"]), vol)
        return vol

    def mkfs(self, vol, timeout=None):
        argv = self.fs.mkfs_argv(vol.dev)
        res = run(argv, timeout or self.cfg.timeout, self.log)
        vol.result["mkfs"] = {"argv": " ".join(argv), "rc": res.rc, "timed_out": res.timed_out,
                              "seconds": round(res.duration, 2), "output_tail": res.tail(6)}
        self.event("%s: %s" % (argv[0], "ok" if res.ok else res.describe()), vol, kind="mkfs",
                   ok=res.ok)
        return res

    def mount(self, vol, options=None):
        vol.mnt = os.path.join(self.run_dir, "mnt-" + vol.name)
        ok, res = att.mount(self.state, vol.dev, vol.mnt, self.log, min(self.cfg.timeout, 60),
                            options or self.fs.mount_options(), self.fs.name)
        if not ok:
            raise HarnessError("mount of %s failed: %s %s" % (vol.dev, res.describe(), res.tail(3)))
        self.event("mounted %s on %s" % (vol.dev, os.path.relpath(vol.mnt, self.run_dir)), vol)
        return vol.mnt

    def fs_capacity(self, vol):
        u = self.fs_usage(vol)
        return u["size"] if u else vol.size

    def fs_free(self, vol):
        st = statvfs_with_timeout(vol.mnt)
        return st.f_bavail * st.f_frsize if st else 0

    # --- workers ----------------------------------------------------------------------

    def worker(self, job, vol=None, phase=None, timeout=None, on_event=None, on_tick=None,
               record_errors=True, track_files=True):
        """Runs one worker job (see worker.py); records files and errors.
        A worker that outlives `timeout` is reported as a hang and killed."""
        timeout = timeout or self.cfg.timeout
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + (
            (":" + env["PYTHONPATH"]) if env.get("PYTHONPATH") else "")
        self.log("worker %s: %s" % (job["op"], json.dumps(job)[:300]))
        wr = WorkerResult()
        start = time.monotonic()
        with open(os.path.join(self.run_dir, "worker.log"), "ab") as errf:
            proc = subprocess.Popen([sys.executable, "-m", "fs_test.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=errf, env=env,
                                    start_new_session=True)
        item = self.state.add("process", role="worker", pid=proc.pid, start=proc_start_time(proc.pid))
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()

            def on_line(line):
                try:
                    ev = json.loads(line)
                except ValueError:
                    self.log("worker: " + line)
                    return
                wr.events.append(ev)
                kind = ev.get("ev")
                if kind == "file":
                    wr.files.append(ev)
                    if vol is not None and track_files:
                        prev = vol.files.get(ev["name"])
                        vol.files[ev["name"]] = {"sha256": ev["sha256"],
                                                 "t": prev["t"] if prev else self.elapsed(),
                                                 "last_write": self.elapsed(),
                                                 "phase": phase, "size": ev.get("size")}
                elif kind == "error":
                    if wr.error is None:
                        wr.error = ev
                    if vol is None or not track_files:
                        pass
                    elif ev.get("name") in vol.files and ev.get("op") in (
                            "write", "fsync", "close", "fallocate"):
                        vol.files[ev["name"]]["sha256"] = None  # content now unknown
                    elif ev.get("name") and ev.get("op") in ("write", "fsync", "close"):
                        vol.files[ev["name"]] = {"sha256": None, "t": self.elapsed(), "phase": phase}
                    if record_errors:
                        self.record_error(ev, vol, phase)
                elif kind == "done":
                    wr.done = ev
                if on_event:
                    on_event(ev)

            finished = read_lines_until(proc, start + timeout, on_line, on_tick)
            if not finished:
                wr.timed_out = True
                self.hang = self.hang or {"t": self.elapsed(), "phase": phase, "op": job["op"],
                                          "seconds": timeout}
                self.event("worker %s (%s) still blocked after %.0f s: hang caught by timeout" % (
                    job["op"], phase, timeout), vol, kind="hang")
                try:
                    os.killpg(proc.pid, 9)
                except OSError:
                    pass
            try:
                wr.rc = proc.wait(timeout=5 if finished else 3)
            except subprocess.TimeoutExpired:
                self.note("worker pid %d could not be killed (blocked in the kernel)" % proc.pid)
        except BaseException:
            try:
                os.killpg(proc.pid, 9)
            except OSError:
                pass
            raise
        finally:
            if proc.poll() is not None:
                self.state.remove(item)
        wr.duration = time.monotonic() - start
        return wr

    def write_files(self, vol, phase, count=None, size=MiB, max_bytes=None, prefix="f", start=0,
                    chunk=MiB, timeout=None, on_tick=None, on_event=None, mode=None, max_errors=1,
                    hashed=True):
        job = {"op": "write_files", "dir": vol.mnt, "prefix": prefix, "start": start,
               "count": count, "size": size, "chunk": chunk, "mode": mode or self.cfg.io,
               "max_bytes": max_bytes, "seed": int(time.time() * 1000) % 100000,
               "max_errors": max_errors, "hash": hashed}
        return self.worker(job, vol, phase, timeout, on_tick=on_tick, on_event=on_event,
                           track_files=hashed)

    # --- the end of a volume: state, unmount, fsck, checksums ---------------------

    def kernel_lines(self):
        devs = [v.dev for v in self.volumes.values() if v.dev]
        return self.kmsg.lines_for(devs)

    def capture_fs_state(self, vol, probe=True):
        """What the filesystem did: kernel messages, read-only, still
        writable (a small file, fsynced)."""
        lines = [(u, m) for (u, m) in self.kernel_lines() if vol.dev and os.path.basename(vol.dev) in m]
        counts = classify(lines)
        opts = att.mount_options(vol.mnt) if vol.mnt else None
        r = {"kernel_counts": counts,
             "kernel_messages": [m for _, m in lines][:60],
             "kernel_messages_total": len(lines),
             "mounted": opts is not None,
             "read_only": bool(opts and "ro" in opts),
             "hang": self.hang}
        if self.kmsg.error:
            r["kernel_log_error"] = self.kmsg.error
        if probe and opts is not None and not self.hang:
            wr = self.worker({"op": "probe", "dir": vol.mnt}, vol, "probe", timeout=min(self.cfg.timeout, 60),
                             record_errors=False, track_files=False)
            if wr.timed_out:
                r["writable_after"] = {"ok": False, "error": "hang"}
            elif wr.error:
                r["writable_after"] = {"ok": False, "op": wr.error.get("op"), "error": wr.error.get("err")}
            else:
                r["writable_after"] = {"ok": True}
            after = [(u, m) for (u, m) in self.kernel_lines() if os.path.basename(vol.dev) in m]
            if len(after) > len(lines):
                r["probe_kernel_messages"] = [m for _, m in after[len(lines):]][:20]
                r["probe_kernel_counts"] = classify(after[len(lines):])
            opts = att.mount_options(vol.mnt)
            r["read_only_after_probe"] = bool(opts and "ro" in opts)
        r["summary"] = summarize_reaction(r, self.fs.name)
        vol.result["fs_reaction"] = r
        vol.kernel_seen = len([1 for (u, m) in self.kernel_lines() if os.path.basename(vol.dev) in m])
        self.event("filesystem on %s: %s" % (vol.name, r["summary"]), vol, kind="fs")
        return r

    def replay_mount(self, vol):
        """Mount and unmount once so the kernel replays the log."""
        mnt = os.path.join(self.run_dir, "replay-" + vol.name)
        ok, res = att.mount(self.state, vol.dev, mnt, self.log, min(self.cfg.timeout, 60), None, self.fs.name)
        if not ok:
            return False, "log replay mount failed: %s" % (res.tail(1) or res.describe())
        uok, how = att.unmount(self.state, mnt, self.log, min(self.cfg.timeout, 60))
        return uok, "log replayed by mount+umount" + ("" if uok else " (%s)" % how)

    def finish(self, vol, probe=True, verify=True, before_unmount=None):
        """Capture state (unless done already), run `before_unmount`, unmount,
        fsck, remount read-only and check the files written before the
        event. Fills vol.result."""
        if vol.mnt and att.is_mounted(vol.mnt):
            if "fs_reaction" not in vol.result:
                self.capture_fs_state(vol, probe=probe)
            if before_unmount:
                before_unmount()
            ok, how = att.unmount(self.state, vol.mnt, self.log, min(self.cfg.timeout, 60))
            vol.result["unmount"] = how if ok else "FAILED: " + how
            self.event("unmount %s: %s" % (vol.name, how), vol, kind="umount", ok=ok)
            if not ok:
                return
        elif "fs_reaction" not in vol.result and vol.mnt:
            self.capture_fs_state(vol, probe=False)
        if self.hang:
            self.note("a step hung; fsck and checksums of %s are skipped" % vol.name)
            vol.result["fsck"] = {"verdict": "not-run", "note": "skipped after a hang"}
            return
        fr = self.fs.fsck(vol.dev, self.cfg.timeout, self.log, lambda: self.replay_mount(vol))
        vol.result["fsck"] = fr.as_dict()
        self.event("fsck %s: %s%s" % (vol.name, fr.verdict, " (%s)" % fr.replayed if fr.replayed else ""),
                   vol, kind="fsck")
        if verify:
            self.verify(vol)
        self.late_kernel_messages(vol)

    def late_kernel_messages(self, vol):
        """Kernel lines about this device after the scenario (log replay,
        the read-only mount for checksums): warnings there matter too."""
        lines = [m for (u, m) in self.kernel_lines() if os.path.basename(vol.dev) in m]
        late = lines[getattr(vol, "kernel_seen", len(lines)):]
        bad = [m for m in late if classify([(0, m)]) or "warning" in m or "error" in m]
        if bad:
            vol.result["kernel_after_scenario"] = bad[:20]

    def verify(self, vol):
        want = {n: f["sha256"] for n, f in vol.files.items() if f.get("sha256")}
        unknown = sorted(n for n, f in vol.files.items() if not f.get("sha256"))
        before = {n for n, f in vol.files.items()
                  if vol.event_t is None or f["t"] <= vol.event_t}
        cs = {"checked": 0, "intact": 0, "mismatched": [], "unreadable": [],
              "indeterminate": len(unknown), "before_event": {"checked": 0, "intact": 0},
              "event_t": vol.event_t}
        vol.result["checksums"] = cs
        if not want:
            cs["note"] = "no files to check"
            return
        mnt = os.path.join(self.run_dir, "verify-" + vol.name)
        opts = ["ro"]
        ok, res = att.mount(self.state, vol.dev, mnt, self.log, min(self.cfg.timeout, 60), opts, self.fs.name)
        if not ok and self.fs.name == "ext4":
            ok, res = att.mount(self.state, vol.dev, mnt, self.log, 60, ["ro", "noload"], "ext4")
        if not ok:
            cs["note"] = "read-only mount for checking failed: %s" % res.tail(1)
            self.event("checksums of %s: not checked (mount failed)" % vol.name, vol, kind="verify")
            return
        wr = self.worker({"op": "verify", "dir": mnt, "files": want}, vol, "verify", record_errors=False,
                         track_files=False)
        for ev in wr.events:
            if ev.get("ev") != "verify":
                continue
            cs["checked"] += 1
            b = ev["name"] in before
            if b:
                cs["before_event"]["checked"] += 1
            if ev.get("ok"):
                cs["intact"] += 1
                if b:
                    cs["before_event"]["intact"] += 1
            elif ev.get("errno"):
                cs["unreadable"].append("%s (%s)" % (ev["name"], ev.get("err")))
            else:
                cs["mismatched"].append(ev["name"])
        if wr.timed_out:
            cs["note"] = "reading the files hung"
        att.unmount(self.state, mnt, self.log, min(self.cfg.timeout, 60))
        self.event("checksums of %s: %d/%d intact (%d written before the event: %d intact)" % (
            vol.name, cs["intact"], cs["checked"], cs["before_event"]["checked"],
            cs["before_event"]["intact"]), vol, kind="verify")

    def pool_end(self):
        if not self.ctl or not self.nbdkit or not self.nbdkit.alive():
            return None, None
        return self.ctl.status(), self.ctl.volumes()

    # --- the common checks ------------------------------------------------------------

    def check_fsck_clean(self, vol):
        f = vol.result.get("fsck", {})
        return self.check("fsck of %s clean" % vol.name, f.get("verdict") == "clean",
                          f.get("verdict", "not run") + (" (%s)" % f["log_replay"] if f.get("log_replay") else ""))

    def check_checksums(self, vol):
        cs = vol.result.get("checksums")
        if not cs:
            return self.check("files of %s intact" % vol.name, False, "not checked")
        b = cs["before_event"]
        ok = not cs["mismatched"] and not cs["unreadable"] and cs["checked"] > 0 and \
            b["intact"] == b["checked"]
        detail = "%d/%d intact, %d written before the event: %d intact" % (
            cs["intact"], cs["checked"], b["checked"], b["intact"])
        if cs.get("note"):
            detail += "; " + cs["note"]
        return self.check("files of %s written before the event read back intact" % vol.name, ok, detail)

    def check_no_hang(self):
        return self.check("no hang", self.hang is None,
                          "" if self.hang is None else "%s blocked > %ds" % (self.hang["op"], self.hang["seconds"]))

    # --- teardown -----------------------------------------------------------------------

    def cleanup(self):
        leftovers = att.cleanup(self.state, self.log, timeout=min(self.cfg.timeout, 30))
        self.kmsg.close()
        return leftovers


def summarize_reaction(r, fsname):
    """One line: what the filesystem did."""
    c = r.get("kernel_counts", {})
    parts = []
    if r.get("hang"):
        parts.append("hung (%s blocked > %ss)" % (r["hang"]["op"], r["hang"]["seconds"]))
    if c.get("device_enospc"):
        parts.append("%d ENOSPC from the device" % c["device_enospc"])
    if c.get("io_error"):
        parts.append("%d I/O error messages" % c["io_error"])
    if c.get("journal_aborted"):
        parts.append("journal aborted")
    if c.get("shutdown"):
        parts.append("shut down")
    if c.get("fs_error"):
        parts.append("%d filesystem error messages" % c["fs_error"])
    if r.get("read_only") or c.get("remount_ro"):
        parts.append("read-only")
    if c.get("warning"):
        parts.append("kernel WARNING/BUG")
    w = r.get("writable_after")
    if w is not None:
        if w.get("ok"):
            parts.append("still writable")
        else:
            parts.append("new writes fail (%s)" % (w.get("error") or "?"))
    if r.get("read_only_after_probe") and not r.get("read_only"):
        parts.append("read-only after that write")
    if not parts:
        return "no errors"
    if not any(k in c for k in ("device_enospc", "io_error", "journal_aborted", "shutdown", "fs_error")) \
            and not r.get("read_only") and not r.get("hang") and (w is None or w.get("ok")):
        return "no errors; " + ", ".join(parts)
    return ", ".join(parts)
