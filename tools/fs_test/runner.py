"""`thinsim fs-test`: command line, environment checks, the run matrix,
signals, and the leftover cleaner."""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

from . import attach as att
from . import report as rpt
from .fs import FILESYSTEMS
from .harness import Config, Run
from .scenarios import ORDER, SCENARIOS
from .util import HarnessError, Interrupted, Log, WatchdogExpired, parse_size, which

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_ENV = 77  # the environment cannot run the harness (not root, no FUSE, no loop...)

STRATEGIES = ("none", "provision", "volume", "full")

USAGE_EPILOG = """\
scenarios (--list for details): %s
exit status: 0 every run passed (or was skipped), 1 a run failed, 2 usage,
77 this machine cannot run it (not root, no FUSE, no loop devices, ...).
Leftovers of a killed run: thinsim fs-test --cleanup [RUN_DIR...]
Docs: docs/fs-testing.md""" % ", ".join(ORDER)


def build_parser():
    p = argparse.ArgumentParser(
        prog="thinsim fs-test",
        description="Run a real filesystem on a thinsim volume (nbdkit + nbdfuse + loop, or "
                    "nbd-client) through an ENOSPC scenario and report what the application "
                    "and the filesystem saw.",
        epilog=USAGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", help="scenario name, or 'all'")
    p.add_argument("--fs", default=None, help="ext4, xfs, btrfs, or a comma list (default ext4; "
                                              "with --all every one)")
    p.add_argument("--pool-size", help="pool data capacity (default: per scenario)")
    p.add_argument("--volume-size", help="volume size (default: per scenario and filesystem)")
    p.add_argument("--reserve", help="strategy of the volume under test: none, provision, volume, "
                                     "full, or a comma list (default: per scenario)")
    p.add_argument("--when-full", choices=["error", "queue"], help="pool full mode (default: per scenario)")
    p.add_argument("--no-space-timeout", type=int, help="queue mode: seconds a write waits")
    p.add_argument("--block-size", default="64K", help="pool block size (default 64K)")
    p.add_argument("--attach", choices=["auto", "nbdfuse", "nbd-client"], default="auto",
                   help="how to make a block device (auto: nbd-client if /dev/nbd0 exists, "
                        "else nbdfuse + loop)")
    p.add_argument("--loop-dio", choices=["on", "off"], default="on",
                   help="direct I/O on the loop device (default on)")
    p.add_argument("--io", choices=["direct", "fsync"], default="direct",
                   help="how files are written: O_DIRECT, or buffered + fsync per file")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds any one step may take before it counts as a hang (default 120)")
    p.add_argument("--rounds", type=int, help="fill-delete-trim rounds (default 20)")
    p.add_argument("--all", action="store_true",
                   help="the full matrix: every scenario, filesystem and the scenario's strategies")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.add_argument("--keep", action="store_true",
                   help="keep the run directory (logs, state, report.json) after cleanup")
    p.add_argument("--run-dir", default=None,
                   help="where run directories go (default $THINSIM_FS_TEST_RUNS or /tmp/thinsim-fs-test)")
    p.add_argument("--cleanup", action="store_true",
                   help="take down what killed runs left (RUN_DIRs as arguments, else every "
                        "run directory whose harness is gone)")
    p.add_argument("--show", nargs="+", metavar="REPORT.json",
                   help="print saved --json reports (two side by side)")
    p.add_argument("--width", type=int, help="output width for --show")
    p.add_argument("--list", action="store_true", help="list the scenarios")
    p.add_argument("-v", "--verbose", action="store_true", help="log every command to stderr")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    return p


def base_dir(args):
    return args.run_dir or os.environ.get("THINSIM_FS_TEST_RUNS") or "/tmp/thinsim-fs-test"


# --- environment -------------------------------------------------------------------

def find_paths():
    """The plugin and CLI: $THINSIM_PLUGIN / $THINSIM_CLI (set by `thinsim
    fs-test`), else build/ under the source tree."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    plugin = os.environ.get("THINSIM_PLUGIN") or os.path.join(root, "build", "plugin",
                                                              "nbdkit-thinsim-plugin.so")
    cli = os.environ.get("THINSIM_CLI") or os.path.join(root, "build", "tools", "thinsim")
    return plugin, cli


def environment_problems(attach_mode, plugin, cli):
    """What this machine lacks to run any scenario (a list of sentences)."""
    probs = []
    if os.geteuid() != 0:
        probs.append("needs root (it mounts filesystems and creates loop/NBD devices): "
                     "run it as root, e.g. sudo thinsim fs-test ...")
    if not which("nbdkit"):
        probs.append("nbdkit is not installed (Debian: apt-get install nbdkit)")
    if not os.path.isfile(plugin):
        probs.append("the plugin %s is not built (cmake --build build)" % plugin)
    if not os.path.isfile(cli):
        probs.append("the CLI %s is not built" % cli)
    if attach_mode in ("nbdfuse", "auto") and not (attach_mode == "auto" and att.nbd_client_available()):
        for tool, pkg in (("nbdfuse", "libnbd-bin"), ("losetup", "mount")):
            if not which(tool):
                probs.append("%s is not installed (Debian: apt-get install %s)" % (tool, pkg))
        if not (which("fusermount3") or which("fusermount")):
            probs.append("fusermount3 is not installed (Debian: apt-get install fuse3)")
        if not os.path.exists("/dev/fuse"):
            probs.append("no FUSE support: /dev/fuse does not exist (modprobe fuse; in a "
                         "container, pass --device /dev/fuse)")
        else:
            try:
                fd = os.open("/dev/fuse", os.O_RDWR)
                os.close(fd)
            except OSError as e:
                probs.append("cannot open /dev/fuse: %s" % e.strerror)
        if not (os.path.exists("/dev/loop-control") or os.path.exists("/dev/loop0")):
            probs.append("no loop device support: /dev/loop-control does not exist (modprobe loop)")
    if attach_mode == "nbd-client":
        if not which("nbd-client"):
            probs.append("nbd-client is not installed (Debian: apt-get install nbd-client)")
        if not os.path.exists("/dev/nbd0"):
            probs.append("no kernel NBD client: /dev/nbd0 does not exist (modprobe nbd)")
    return probs


def scenario_problem(name, fs, cfg):
    """Why this scenario cannot run on this filesystem here, or None."""
    f = FILESYSTEMS[fs]
    if name in f.unsupported:
        return "%s on %s: %s" % (name, fs, f.unsupported[name])
    miss = f.missing()
    if miss:
        return miss
    if cfg.volume_size is not None and cfg.volume_size < f.min_volume and name != "tiny-pool-mkfs":
        from .util import fmt_size
        return "%s needs a volume of at least %s" % (fs, fmt_size(f.min_volume))
    tools = {"fill-delete-trim": ["fstrim"], "snapshot-overwrite": ["fsfreeze"],
             "provision-then-fill": ["filefrag"]}
    for t in tools.get(name, []):
        if not which(t):
            return "%s is not installed" % t
    if name == "provision-then-fill":
        try:
            import importlib
            importlib.import_module("nbd")  # only Debian's /usr/bin/python3 has it
        except ImportError:
            return "the Python module 'nbd' (python3-libnbd) is missing; run with /usr/bin/python3"
    return None


# --- signals ------------------------------------------------------------------------

class Signals:
    """SIGINT/SIGTERM/SIGHUP raise Interrupted in the main thread, except
    while cleanup runs (then they are noted and cleanup finishes). SIGALRM is
    the run watchdog."""

    def __init__(self):
        self.cleaning = False
        self.pending = None
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, self.on_signal)
        signal.signal(signal.SIGALRM, self.on_alarm)

    def on_signal(self, signum, frame):
        if self.cleaning:
            self.pending = self.pending or signum
            sys.stderr.write("thinsim fs-test: %s: cleaning up, please wait\n" % signal.Signals(signum).name)
            return
        raise Interrupted(signum)

    def on_alarm(self, signum, frame):
        if self.cleaning:
            return
        raise WatchdogExpired()


# --- one run -------------------------------------------------------------------------

def make_run_dir(base, label):
    os.makedirs(base, mode=0o700, exist_ok=True)
    base = os.path.realpath(base)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = os.path.join(base, "%s-%s-%d" % (stamp, label, os.getpid()))
    n = 0
    while os.path.exists(d) or len(d) > 80:
        n += 1
        if len(d) > 80:
            d = tempfile.mkdtemp(prefix="fst-%d-" % os.getpid(), dir=base if len(base) < 60 else "/tmp")
            break
        d = os.path.join(base, "%s-%s-%d.%d" % (stamp, label, os.getpid(), n))
    os.makedirs(d, exist_ok=True)
    return os.path.realpath(d)  # see attach._norm: paths in the state file are real


def remove_run_dir(d):
    """Removes a run directory, but never while anything is mounted under it."""
    real = os.path.realpath(d)
    if any(m[0] == real or m[0].startswith(real + "/") for m in att.mountinfo()):
        return False
    shutil.rmtree(d, ignore_errors=True)
    return True


def run_one(cfg, scenario, sig, progress):
    label = "%s-%s-%s" % (scenario.name, cfg.fs, cfg.reserve)
    rdir = make_run_dir(cfg.base_dir, label)
    log = Log(os.path.join(rdir, "harness.log"), cfg.verbose)
    log("run %s: %s" % (label, json.dumps(cfg.as_dict())))
    progress("fs-test: %s on %s, reserve=%s, when-full=%s (%s)" % (
        scenario.name, cfg.fs, cfg.reserve, cfg.when_full, rdir))
    start = time.monotonic()
    verdict, reasons, error, interrupted = None, [], None, None
    r = None
    try:
        r = Run(cfg, scenario, rdir, log)
        # The watchdog: a run may not take longer than this in all.
        signal.alarm(int(max(600, 8 * cfg.timeout)))
        scenario.func(r)
        failed = [c for c in r.checks if c["ok"] is False]
        verdict = "fail" if failed else "pass"
        reasons = [c["name"] + (": " + c["detail"] if c["detail"] else "") for c in failed]
        known = FILESYSTEMS[cfg.fs].known_failures.get(scenario.name)
        if known and cfg.reserve not in known.get("reserve", [cfg.reserve]):
            known = None
        if failed and known and all(any(k in c["name"] for k in known["checks"]) for c in failed):
            verdict = "xfail"
            reasons.append("known: " + known["reason"])
    except Interrupted as e:
        interrupted = e
        verdict, error = "interrupted", "interrupted by %s" % e
    except WatchdogExpired:
        verdict, error = "error", "the run watchdog expired"
    except HarnessError as e:
        verdict, error = "error", str(e)
    except Exception as e:  # a harness bug: report it, still clean up
        verdict, error = "error", "%s: %s" % (type(e).__name__, e)
        log(traceback.format_exc())
    finally:
        sig.cleaning = True
        signal.alarm(0)
        try:
            pool_end = (None, None)
            leftovers = []
            if r is not None:
                try:
                    pool_end = r.pool_end()
                except Exception as e:  # noqa: BLE001 - report, keep cleaning
                    log("pool status at end failed: %s" % e)
                leftovers = r.cleanup()
        finally:
            sig.cleaning = False
    if error:
        reasons = [error] + reasons
    if leftovers:
        reasons.append("cleanup left: " + "; ".join(leftovers))
        if verdict == "pass":
            verdict = "fail"
    rep = rpt.build(r, verdict, reasons, time.monotonic() - start, leftovers, error, pool_end)
    if r is None:
        rep.update({"scenario": scenario.name, "fs": cfg.fs, "reserve": cfg.reserve})
    rep["run_dir"] = rdir
    log("verdict %s %s" % (verdict, reasons))
    log.close()
    keep = cfg.keep or leftovers or verdict not in ("pass", "skip", "xfail")
    if keep:
        with open(os.path.join(rdir, "report.json"), "w") as f:
            json.dump(rep, f, indent=1)
        if leftovers:
            progress("fs-test: leftovers remain; take them down with: thinsim fs-test --cleanup %s" % rdir)
    else:
        if not remove_run_dir(rdir):
            rep["run_dir_kept"] = "something is still mounted under it"
        else:
            rep["run_dir"] = None
    if sig.pending and not interrupted:
        interrupted = Interrupted(sig.pending)
    return rep, interrupted


# --- the commands ------------------------------------------------------------------

def cmd_list(out):
    for name in ORDER:
        s = SCENARIOS[name]
        out.write("%-20s %s  [%s]\n" % (name, s.title, s.fstest))
        out.write("%-20s strategies: default %s, --all %s; when-full %s\n" % (
            "", s.default_reserve, ",".join(s.matrix_reserves), s.default_when_full))
        out.write("%-20s pass: %s\n\n" % ("", s.pass_means))
    return EXIT_OK


def load_reports(paths):
    reps = []
    for p in paths:
        with open(p) as f:
            data = json.load(f)
        if isinstance(data, dict) and "runs" in data:
            reps += data["runs"]
        elif isinstance(data, list):
            reps += data
        else:
            reps.append(data)
    return reps


def cmd_show(args, out):
    try:
        reps = load_reports(args.show)
    except (OSError, ValueError) as e:
        sys.stderr.write("thinsim fs-test: --show: %s\n" % e)
        return EXIT_USAGE
    if len(reps) == 2:
        for line in rpt.side_by_side(reps[0], reps[1], args.width):
            out.write(line.rstrip() + "\n")
    else:
        for r in reps:
            out.write("\n".join(rpt.human(r, args.width or 100)) + "\n\n")
    return EXIT_OK


def cmd_cleanup(args, out):
    dirs = list(args.extra)
    if args.scenario:
        dirs.insert(0, args.scenario)
    if not dirs:
        base = base_dir(args)
        try:
            dirs = [os.path.join(base, d) for d in sorted(os.listdir(base))]
        except OSError:
            dirs = []
    if os.geteuid() != 0:
        sys.stderr.write("thinsim fs-test: --cleanup needs root\n")
        return EXIT_ENV
    rc = EXIT_OK
    done = 0
    for d in dirs:
        sp = os.path.join(d, "state.json")
        if not os.path.isfile(sp):
            if args.extra or args.scenario:
                sys.stderr.write("thinsim fs-test: %s: no state.json, not a run directory\n" % d)
                rc = EXIT_FAIL
            continue
        try:
            state = att.StateFile(sp, create=False)
        except (OSError, ValueError) as e:
            sys.stderr.write("thinsim fs-test: %s: %s\n" % (sp, e))
            rc = EXIT_FAIL
            continue
        if state.harness_alive():
            sys.stderr.write("thinsim fs-test: %s: its harness (pid %d) is still running; "
                             "stop it first (it cleans up on SIGTERM)\n" % (d, state.data["harness_pid"]))
            rc = EXIT_FAIL
            continue
        log = Log(os.path.join(d, "cleanup.log"), args.verbose)
        n = len(state.items())
        left = att.cleanup(state, log)
        log.close()
        done += 1
        if left:
            out.write("%s: %d items, LEFT: %s\n" % (d, n, "; ".join(left)))
            rc = EXIT_FAIL
        else:
            out.write("%s: %d items taken down, nothing left\n" % (d, n))
            if not args.keep:
                remove_run_dir(d)
    if done == 0:
        out.write("nothing to clean up\n")
    return rc


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = sys.stdout
    if args.list:
        return cmd_list(out)
    if args.show:
        return cmd_show(args, out)
    if args.cleanup:
        return cmd_cleanup(args, out)
    if args.extra:
        sys.stderr.write("thinsim fs-test: unexpected arguments: %s\n" % " ".join(args.extra))
        return EXIT_USAGE

    # What to run.
    if args.scenario in (None, "all"):
        names = list(ORDER)
    elif args.scenario in SCENARIOS:
        names = [args.scenario]
    else:
        sys.stderr.write("thinsim fs-test: unknown scenario '%s' (one of: %s)\n" % (
            args.scenario, ", ".join(ORDER)))
        return EXIT_USAGE
    fss = (args.fs or ("ext4,xfs,btrfs" if args.all else "ext4")).split(",")
    for f in fss:
        if f not in FILESYSTEMS:
            sys.stderr.write("thinsim fs-test: unknown filesystem '%s' (ext4, xfs or btrfs)\n" % f)
            return EXIT_USAGE
    reserves = args.reserve.split(",") if args.reserve else None
    for s in reserves or []:
        if s not in STRATEGIES:
            sys.stderr.write("thinsim fs-test: unknown strategy '%s' (%s)\n" % (s, ", ".join(STRATEGIES)))
            return EXIT_USAGE
    try:
        sizes = {k: (parse_size(v) if v else None) for k, v in (
            ("pool_size", args.pool_size), ("volume_size", args.volume_size), ("block_size", args.block_size))}
    except ValueError as e:
        sys.stderr.write("thinsim fs-test: %s\n" % e)
        return EXIT_USAGE

    plugin, cli = find_paths()
    probs = environment_problems(args.attach, plugin, cli)
    if probs:
        sys.stderr.write("thinsim fs-test: cannot run here:\n" + "".join("  - %s\n" % p for p in probs))
        return EXIT_ENV

    plan = []
    for name in names:
        sc = SCENARIOS[name]
        for f in fss:
            for s in (reserves or (sc.matrix_reserves if args.all else [sc.default_reserve])):
                plan.append((sc, f, s))

    def progress(msg):
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    sig = Signals()
    reports = []
    interrupted = None
    for sc, f, s in plan:
        cfg = Config(scenario=sc.name, fs=f, reserve=s, when_full=args.when_full or sc.default_when_full,
                     pool_size=sizes["pool_size"], volume_size=sizes["volume_size"],
                     block_size=sizes["block_size"], no_space_timeout=args.no_space_timeout,
                     timeout=args.timeout, attach=args.attach, loop_dio=(args.loop_dio == "on"),
                     io=args.io, rounds=args.rounds, plugin=plugin, cli=cli,
                     base_dir=base_dir(args), keep=args.keep, verbose=args.verbose)
        why = scenario_problem(sc.name, f, cfg)
        if why:
            rep = rpt.skipped(sc.name, f, s, why, cfg.when_full)
            progress("fs-test: skip %s on %s: %s" % (sc.name, f, why))
        else:
            try:
                rep, interrupted = run_one(cfg, sc, sig, progress)
            except Interrupted as e:  # between runs
                interrupted = e
                break
        reports.append(rep)
        if not args.json:
            out.write("\n".join(rpt.human(rep)) + "\n\n")
            out.flush()
        if interrupted:
            break
    if args.json:
        counts = {k: sum(1 for r in reports if r["verdict"] == k)
                  for k in ("pass", "fail", "skip", "error", "interrupted", "xfail")}
        json.dump({"runs": reports, "passed": counts["pass"],
                   "failed": counts["fail"] + counts["error"] + counts["interrupted"],
                   "known_failures": counts["xfail"], "skipped": counts["skip"]}, out, indent=1)
        out.write("\n")
    elif len(reports) > 1:
        out.write("\n".join(rpt.summary(reports)) + "\n")
    out.flush()
    if interrupted:
        return 128 + interrupted.signum
    if any(r["verdict"] in ("fail", "error") for r in reports):
        return EXIT_FAIL
    if reports and all(r["verdict"] == "skip" for r in reports):
        return EXIT_ENV
    return EXIT_OK
