#!/usr/bin/python3
"""Runs stress_client (tests/stress/stress_client.cc) against a fresh nbdkit.

Starts the real nbdkit with the plugin (tests/common/thinsim_testlib.py's
Server) with two volumes, runs the client, stops the server, and then:
  * for a persistent pool, runs the offline `thinsim check` on it;
  * with --tsan, starts nbdkit with the ThreadSanitizer runtime preloaded
    (the plugin is built with -fsanitize=thread, nbdkit is not) and fails if
    nbdkit's log holds any ThreadSanitizer report or nbdkit exited with 66.

Everything random comes from one seed, printed first:
  STRESS_SEED      the seed (default: random)
  STRESS_SECONDS   seconds of I/O (default: --seconds, else 20)
  STRESS_POOL      memory | dir (default: chosen by the seed)
  STRESS_BLOCK_SIZE, STRESS_STRATEGY, STRESS_SLOTS (aligned|half|straddle),
  STRESS_CONNECTIONS (4), STRESS_DEPTH (16), STRESS_MAX_SNAPSHOTS (3)
                   override what the seed chooses
Paths (CMake sets them): THINSIM_PLUGIN, THINSIM_CLI, THINSIM_STRESS_CLIENT,
THINSIM_TSAN_RUNTIME (else `gcc -print-file-name=libtsan.so`).

Run with /usr/bin/python3 (thinsim_testlib.py needs Debian's libnbd module).
"""

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import thinsim_testlib as lib  # noqa: E402

CLIENT = os.environ.get("THINSIM_STRESS_CLIENT") or os.path.join(
    lib.REPO, "build", "tests", "stress", "stress_client")


def tsan_runtime():
    path = os.environ.get("THINSIM_TSAN_RUNTIME")
    if path:
        return path
    out = subprocess.run(["gcc", "-print-file-name=libtsan.so"], capture_output=True, text=True)
    return out.stdout.strip()


def norandom_prefix():
    """setarch -R: sanitizer runtimes may fail to map their shadow memory
    with address randomisation on (scripts/test does the same)."""
    arch = platform.machine()
    try:
        ok = subprocess.run(["setarch", arch, "-R", "true"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    return ["setarch", arch, "-R"] if ok else []


class StressServer(lib.Server):
    """thinsim_testlib.Server, optionally with the TSan runtime preloaded into
    nbdkit, logging to a file that outlives stop()."""

    def __init__(self, *params, log_path, tsan_env=None, **kw):
        super().__init__(*params, **kw)
        self.log_path = log_path
        self.tsan_env = tsan_env

    def argv(self):
        argv = super().argv()
        if self.tsan_env is None:
            return argv
        return norandom_prefix() + ["env"] + ["%s=%s" % kv for kv in self.tsan_env.items()] + argv


def choose(rng, env, values):
    v = rng.choice(values)
    return type(v)(os.environ[env]) if os.environ.get(env) else v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of I/O (STRESS_SECONDS wins)")
    ap.add_argument("--tsan", action="store_true", help="preload the TSan runtime into nbdkit")
    ap.add_argument("--keep", action="store_true", help="keep the pool directory and logs")
    args = ap.parse_args()

    seed = int(os.environ.get("STRESS_SEED") or random.SystemRandom().randrange(1, 2**31))
    seconds = float(os.environ.get("STRESS_SECONDS") or args.seconds)
    rng = random.Random(seed)
    block_size = choose(rng, "STRESS_BLOCK_SIZE", [4096, 16384, 65536])
    strategy = choose(rng, "STRESS_STRATEGY", ["none", "none", "provision", "volume", "full"])
    layout = choose(rng, "STRESS_SLOTS", ["aligned", "half", "straddle"])
    pool_kind = choose(rng, "STRESS_POOL", ["memory", "dir"])
    connections = int(os.environ.get("STRESS_CONNECTIONS") or 4)
    depth = int(os.environ.get("STRESS_DEPTH") or 16)
    max_snapshots = int(os.environ.get("STRESS_MAX_SNAPSHOTS") or 3)
    print("stress: seed %d (repeat with STRESS_SEED=%d), %.0fs, block size %d, strategy %s, slots %s, "
          "%s pool%s" % (seed, seed, seconds, block_size, strategy, layout, pool_kind,
                         ", TSan nbdkit" if args.tsan else ""), flush=True)

    for path, what in ((CLIENT, "THINSIM_STRESS_CLIENT"), (lib.PLUGIN, "THINSIM_PLUGIN"),
                       (lib.CLI, "THINSIM_CLI")):
        if not os.path.exists(path):
            print("stress: %s does not exist (set %s or build it)" % (path, what))
            return 2

    geometry = ["--block-size", str(block_size), "--slot-layout", layout]
    sizes = subprocess.run([CLIENT, "--print-sizes"] + geometry, capture_output=True, text=True, check=True)
    vol0, vol1 = (int(x) for x in sizes.stdout.split())
    # Room for the volumes, the snapshots' copies and (full/volume
    # strategies) their reservations: the test never wants ENOSPC.
    pool_bytes = (vol0 + vol1) * (2 * max_snapshots + 8)

    work = tempfile.mkdtemp(prefix="thinsim-stress-", dir="/tmp")
    log_path = os.path.join(work, "nbdkit.log")
    # extents=space: the client checks the exclusive/shared counters
    # against block status, which only that mode tells apart (the default
    # mode is checked in both forms by the engine's model test).
    params = ["size=%d" % pool_bytes, "block-size=%d" % block_size, "reserve=" + strategy,
              "extents=space", "volume=vol0:%d" % vol0, "volume=vol1:%d" % vol1]
    pool_dir = None
    if pool_kind == "dir":
        pool_dir = os.path.join(work, "pool")
        params.insert(0, "pool=" + pool_dir)
    tsan_env = None
    wrap = []
    if args.tsan:
        runtime = tsan_runtime()
        if not runtime or not os.path.exists(runtime):
            print("stress: no TSan runtime (%r); cannot run nbdkit under TSan" % runtime)
            return 2
        tsan_env = {"LD_PRELOAD": runtime,
                    "TSAN_OPTIONS": "halt_on_error=1:exitcode=66:second_deadlock_stack=1"}
        wrap = norandom_prefix()

    failures = []
    start = time.monotonic()
    server = StressServer(*params, log_path=log_path, tsan_env=tsan_env)
    client_rc = None
    try:
        server.start(timeout=60 if args.tsan else lib.START_TIMEOUT)
        print("stress: nbdkit up in %.1fs: %s" % (time.monotonic() - start, " ".join(server.argv())),
              flush=True)
        argv = wrap + [CLIENT, "--socket", server.sock, "--control", server.ctl, "--cli", lib.CLI,
                       "--seed", str(seed), "--seconds", str(seconds), "--strategy", strategy,
                       "--connections", str(connections), "--depth", str(depth),
                       "--max-snapshots", str(max_snapshots)] + geometry
        try:
            client_rc = subprocess.run(argv, timeout=seconds + 240, env=lib.TOOL_ENV).returncode
        except subprocess.TimeoutExpired:
            failures.append("stress_client did not finish within %.0fs" % (seconds + 240))
        if client_rc not in (None, 0):
            failures.append("stress_client exited %d" % client_rc)
        if not server.alive():
            failures.append("nbdkit died during the run (exit %s)" % server.proc.returncode)
    except AssertionError as e:
        failures.append(str(e))
    finally:
        server.stop()
    nbdkit_rc = server.proc.returncode if server.proc is not None else None
    log = ""
    try:
        with open(log_path, errors="replace") as f:
            log = f.read()
    except OSError:
        pass

    if args.tsan:
        if "ThreadSanitizer" in log or nbdkit_rc == 66:
            failures.append("ThreadSanitizer reported in nbdkit (exit %s)" % nbdkit_rc)
    for marker in ("AddressSanitizer", "runtime error:", "terminate called", "Assertion", "internal error"):
        if marker in log:
            failures.append("nbdkit's log contains %r" % marker)
    if failures and log:
        lines = log.splitlines()
        # nbdkit logs one line per refused fast zero; show the rest.
        lines = [l for l in lines if "fast zero refused" not in l]
        print("---- nbdkit log (%d lines, refused fast zeroes left out) ----" % len(lines))
        print("\n".join(lines[:400]))
        if len(lines) > 400:
            print("... (%d more lines)" % (len(lines) - 400))

    if pool_dir and client_rc == 0:
        check = lib.run([lib.CLI, "check", pool_dir], timeout=120)
        if check.returncode != 0:
            failures.append("thinsim check on the pool failed (exit %d): %s%s" % (
                check.returncode, check.stdout, check.stderr))
        else:
            print("stress: thinsim check: " + (check.stdout.strip().splitlines() or ["ok"])[-1])

    elapsed = time.monotonic() - start
    if failures:
        keep = work
        print("stress: FAILED after %.1fs (seed %d, STRESS_SEED=%d to repeat); kept %s" % (
            elapsed, seed, seed, keep))
        for f in failures:
            print("  - " + f)
        return 1
    if args.keep:
        print("stress: kept %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("stress: PASSED in %.1fs (seed %d)" % (elapsed, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
