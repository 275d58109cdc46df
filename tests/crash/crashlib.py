"""Helpers for thinsim's crash and corruption tests (tests/crash/).

These tests start the real nbdkit with the real plugin on a persistent pool
(pool=DIR), kill it or damage its metadata files, restart it and compare what
it serves with what the client is owed. They talk NBD with libnbd (the Python
`nbd` module, Debian's python3-libnbd: run with /usr/bin/python3) and use the
real `thinsim` CLI. Paths come from the environment (CMake sets them):

  THINSIM_PLUGIN   nbdkit-thinsim-plugin.so  (default build/plugin/...)
  THINSIM_CLI      the thinsim CLI           (default build/tools/thinsim)
  THINSIM_NBDKIT   the nbdkit binary         (default: nbdkit on PATH)

Self-contained on purpose: tests/integration/lib.py belongs to another suite.
"""

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

try:
    import nbd
except ImportError:  # pragma: no cover - depends on the interpreter
    sys.stderr.write(
        "crashlib.py: cannot import the libnbd Python module 'nbd'; run the tests with "
        "/usr/bin/python3 (Debian's python3-libnbd)\n")
    raise

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLUGIN = os.environ.get("THINSIM_PLUGIN") or os.path.join(
    REPO, "build", "plugin", "nbdkit-thinsim-plugin.so")
CLI = os.environ.get("THINSIM_CLI") or os.path.join(REPO, "build", "tools", "thinsim")
NBDKIT = os.environ.get("THINSIM_NBDKIT") or "nbdkit"

KiB = 1024
MiB = 1024 * KiB
SECTOR = 512

START_TIMEOUT = 15.0
COMMAND_TIMEOUT = 30.0

# nbdsh and friends are Python wrappers: keep /usr/bin first.
TOOL_ENV = dict(os.environ, PATH="/usr/bin:" + os.environ.get("PATH", ""))


def require_binaries():
    for path, what in ((PLUGIN, "THINSIM_PLUGIN"), (CLI, "THINSIM_CLI")):
        if not os.path.exists(path):
            raise SystemExit("%s does not exist (set %s or build it)" % (path, what))


def run(argv, timeout=COMMAND_TIMEOUT):
    """Runs a command and captures text output; never raises on exit status."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=TOOL_ENV, stdin=subprocess.DEVNULL)


# ---- sector contents ----------------------------------------------------------
#
# Every sector the tests write holds (op id u64, sector number u64) repeated
# 32 times, so any sector read back names the write it came from, and a torn
# or misplaced sector is recognisable. Value 0 means all zero bytes.

ZERO_SECTOR = bytes(SECTOR)


def sector_bytes(value, lba):
    return struct.pack("<QQ", value, lba) * (SECTOR // 16)


def payload(value, first_lba, count):
    return b"".join(sector_bytes(value, first_lba + i) for i in range(count))


GARBAGE = -1      # a sector that is neither zero nor one of our patterns
MISPLACED = -2    # a pattern written for another sector


def decode_sector(data, lba):
    """The op id stored in a sector, 0 for zeroes, or GARBAGE / MISPLACED."""
    if data == ZERO_SECTOR:
        return 0
    value, where = struct.unpack_from("<QQ", data, 0)
    if data != data[:16] * (SECTOR // 16):
        return GARBAGE
    if where != lba or value == 0:
        return MISPLACED
    return value


def decode_range(data, first_lba):
    return [decode_sector(data[i * SECTOR:(i + 1) * SECTOR], first_lba + i)
            for i in range(len(data) // SECTOR)]


# ---- nbdkit --------------------------------------------------------------------


class Nbdkit:
    """One `nbdkit -f -U SOCK PLUGIN params... control=CTL` at a time in `tmp`.

    The server may be started, killed (SIGKILL) and started again on the same
    pool; stale socket files are removed before each start.
    """

    def __init__(self, tmp, params):
        self.tmp = tmp
        self.params = list(params)
        self.sock = os.path.join(tmp, "nbd.sock")
        self.ctl = os.path.join(tmp, "ctl.sock")
        self.pidfile = os.path.join(tmp, "nbdkit.pid")
        self.log_path = os.path.join(tmp, "nbdkit.log")
        self.proc = None
        self._log = None
        self.starts = 0

    def argv(self):
        return [NBDKIT, "-f", "--exit-with-parent", "-U", self.sock, "-P", self.pidfile,
                PLUGIN] + self.params + ["control=" + self.ctl]

    def start(self, timeout=START_TIMEOUT):
        """Starts nbdkit. Returns None when it is ready, or (exit status, log)
        when it exited before that."""
        for p in (self.sock, self.ctl, self.pidfile):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        self.starts += 1
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=TOOL_ENV)
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._close_log()
                self.proc = None
                return rc, self.log()
            if (os.path.exists(self.sock) and os.path.exists(self.ctl) and
                    os.path.exists(self.pidfile) and os.path.getsize(self.pidfile) > 0):
                return None
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("nbdkit did not become ready within %.0fs: %s\n%s" % (
                    timeout, " ".join(self.argv()), self.log()))
            time.sleep(0.005)

    def start_or_fail(self):
        r = self.start()
        if r is not None:
            raise AssertionError("nbdkit exited with status %d at start: %s\n%s" % (
                r[0], " ".join(self.argv()), r[1]))

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL, and wait until it is gone."""
        if self.proc is not None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            self.proc = None
        self._close_log()

    def stop(self):
        """SIGTERM (a clean shutdown), SIGKILL if that takes too long."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        self._close_log()

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    # ---- NBD ---------------------------------------------------------------

    def uri(self, export):
        return "nbd+unix:///%s?socket=%s" % (export, self.sock)

    def connect(self, export, meta_context=False):
        h = nbd.NBD()
        h.set_handle_name("crash-" + export)
        if meta_context:
            h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        h.connect_uri(self.uri(export))
        return h

    def read_export(self, export, chunk=1 * MiB):
        """Every byte of an export, and its size."""
        h = self.connect(export)
        try:
            size = h.get_size()
            parts = []
            for off in range(0, size, chunk):
                parts.append(h.pread(min(chunk, size - off), off))
            return b"".join(parts)
        finally:
            close_handle(h)

    def allocation(self, export, block_size):
        """base:allocation flags of every block of an export, as a list."""
        h = self.connect(export, meta_context=True)
        try:
            size = h.get_size()
            flags = []
            pos = 0
            while pos < size:
                got = []

                def cb(metacontext, off, entries, err, got=got):
                    if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
                        got.extend(entries)
                    return 0

                h.block_status(size - pos, pos, cb)
                if not got:
                    raise AssertionError("block_status of %s at %d returned nothing" % (export, pos))
                for i in range(0, len(got), 2):
                    n, f = got[i], got[i + 1]
                    n = min(n, size - pos)
                    if n == 0:
                        break
                    if pos % block_size or n % block_size:
                        # Extents should come in whole blocks; record per block
                        # conservatively (the first flags win).
                        pass
                    first = pos // block_size
                    last = (pos + n - 1) // block_size
                    while len(flags) <= last:
                        flags.append(None)
                    for b in range(first, last + 1):
                        if flags[b] is None:
                            flags[b] = f
                    pos += n
                    if pos >= size:
                        break
            return flags
        finally:
            close_handle(h)

    # ---- CLI ---------------------------------------------------------------

    def cli(self, *args, json_output=True, timeout=COMMAND_TIMEOUT):
        argv = [CLI, "--socket", self.ctl] + (["--json"] if json_output else []) + list(args)
        return run(argv, timeout=timeout)

    def cli_json(self, *args):
        proc = self.cli(*args)
        if proc.returncode != 0:
            raise AssertionError("thinsim %s failed (exit %d): %s" % (
                " ".join(args), proc.returncode, proc.stderr.strip()))
        try:
            return json.loads(proc.stdout)
        except ValueError as e:
            raise AssertionError("thinsim --json %s printed no JSON (%s): %r" % (
                " ".join(args), e, proc.stdout))


def close_handle(h):
    try:
        h.shutdown()
    except Exception:
        pass
    try:
        h.close()
    except Exception:
        pass


# ---- thinsim check --------------------------------------------------------------

_check_available = None


def check_available():
    """True when the CLI has the offline `check` subcommand."""
    global _check_available
    if _check_available is None:
        proc = run([CLI, "--help"])
        text = proc.stdout + proc.stderr
        _check_available = re.search(r"^\s+check\b", text, re.M) is not None
    return _check_available


def is_unknown_command(proc):
    text = (proc.stdout + proc.stderr).lower()
    return proc.returncode != 0 and any(s in text for s in (
        "unknown command", "subcommand is required", "not expected", "unknown subcommand"))


def run_check(pool_dir):
    """Runs `thinsim check DIR`. Returns the CompletedProcess, or None when the
    subcommand does not exist (yet)."""
    if not check_available():
        return None
    proc = run([CLI, "check", pool_dir], timeout=120)
    if is_unknown_command(proc):
        return None
    return proc


_dump_available = None


def run_dump(pool_dir):
    """`thinsim --json dump DIR` parsed, or None when the subcommand does not
    exist (yet) or prints a shape this helper does not know."""
    global _dump_available
    if _dump_available is None:
        proc = run([CLI, "--help"])
        _dump_available = re.search(r"^\s+dump\b", proc.stdout + proc.stderr, re.M) is not None
    if not _dump_available:
        return None
    proc = run([CLI, "--json", "dump", pool_dir], timeout=120)
    if is_unknown_command(proc):
        return None
    if proc.returncode != 0:
        raise AssertionError("thinsim --json dump %s exited %d: %s%s" % (
            pool_dir, proc.returncode, proc.stdout, proc.stderr))
    try:
        dump = json.loads(proc.stdout)
        return dump_usage(dump)
    except (ValueError, KeyError, TypeError):
        return None


def dump_usage(dump):
    """From a dump: {"used": distinct mapped data blocks, "volumes": {name:
    {"mapped", "exclusive", "shared"}}}. A block is shared when more than
    one volume maps it (directly or through a shared chunk)."""
    chunk_blocks = {}
    for c in dump["chunks"]:
        blocks = []
        for r in c["runs"]:
            blocks.extend(range(r["dblock"], r["dblock"] + r["length"]))
        chunk_blocks[c["id"]] = blocks
    per_volume = {}
    owners = {}
    for v in dump["volumes"]:
        blocks = []
        for slot in v["chunks"]:
            blocks.extend(chunk_blocks[slot["chunk"]])
        per_volume[v["name"]] = blocks
        for b in set(blocks):
            owners[b] = owners.get(b, 0) + 1
    out = {"used": len(owners), "volumes": {}}
    for name, blocks in per_volume.items():
        excl = sum(1 for b in blocks if owners[b] == 1)
        out["volumes"][name] = {"mapped": len(blocks), "exclusive": excl,
                                "shared": len(blocks) - excl}
    return out


# ---- metadata files (metadata/journal.h, metadata/records.h) ---------------------

FILE_HEADER = 24          # magic u64, version u32, pad u32, generation u64
SUPERBLOCK_SIZE = 64      # ... log_length u64, commit_seq u64, crc u32, zero pad
SUPERBLOCK_USED = 44      # bytes 44..63 are zero padding outside the CRC
HEADER_PAD = range(12, 16)  # the pad u32 of checkpoint and log headers


def read_superblock(pool_dir):
    with open(os.path.join(pool_dir, "metadata"), "rb") as f:
        data = f.read()
    magic, version, _pad, gen, log_length, seq = struct.unpack_from("<QIIQQQ", data, 0)
    return {"generation": gen, "log_length": log_length, "commit_seq": seq}


def records(data, start=FILE_HEADER):
    """(offset, length, type) of each framed record from `start`, stopping at
    the end or at the first record that does not frame."""
    out = []
    pos = start
    while pos + 8 <= len(data):
        length, _crc = struct.unpack_from("<II", data, pos)
        if length == 0 or pos + 8 + length > len(data):
            break
        out.append((pos, 8 + length, data[pos + 8]))
        pos += 8 + length
    return out


KCOMMIT = 8


def metadata_files(pool_dir):
    sb = read_superblock(pool_dir)
    gen = sb["generation"]
    return {
        "superblock": os.path.join(pool_dir, "metadata"),
        "checkpoint": os.path.join(pool_dir, "metadata.ckpt.%d" % gen),
        "log": os.path.join(pool_dir, "metadata.log.%d" % gen),
    }


def copy_pool(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    # The lock file is for servers; a copy starts unlocked anyway.


def mkdtemp(prefix):
    # Unix socket paths must stay short: /tmp, not a build directory.
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")
