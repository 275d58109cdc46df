"""Helpers for thinsim's crash and corruption tests (tests/crash/).

These tests start the real nbdkit with the real plugin on a persistent pool
(pool=DIR), kill it or damage its metadata files, restart it and compare what
it serves with what the client is owed.

Built on tests/common/thinsim_testlib.py (paths, command runs, nbdkit
servers; its docstring says how to run the tests); this module adds sector
patterns, restartable servers and the metadata file layout, and re-exports
the rest for the tests.
"""

import json
import os
import re
import shutil
import signal
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import thinsim_testlib  # noqa: E402
# Re-exported: the tests use them as crashlib.NAME or import them from here.
from thinsim_testlib import CLI, KiB, MiB, missing_binary, nbd, run  # noqa: E402,F401

SECTOR = 512

# Longer than thinsim_testlib's: every start opens a persistent pool and replays
# its metadata log.
START_TIMEOUT = 15.0


def require_binaries():
    missing = missing_binary()
    if missing:
        raise SystemExit(missing)


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


class Nbdkit(thinsim_testlib.Nbdkit):
    """One `nbdkit -f -U SOCK PLUGIN params... control=CTL` at a time in `tmp`.

    The server may be started, killed (SIGKILL) and started again on the same
    pool.
    """

    stop_timeout = 10.0
    # A test restarts the server hundreds of times: notice readiness early.
    poll_interval = 0.005

    def start(self, timeout=START_TIMEOUT):
        """Starts nbdkit. Returns None when it is ready, or (exit status, log)
        when it exited before that."""
        self.spawn()
        status = self.wait_ready(timeout)
        if status is None:
            return None
        self.proc = None
        return status, self.log()

    def start_or_fail(self):
        r = self.start()
        if r is not None:
            raise AssertionError("nbdkit exited with status %d at start: %s\n%s" % (
                r[0], " ".join(self.argv()), r[1]))

    def kill(self):
        """SIGKILL, and wait until it is gone."""
        if self.proc is not None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self):
        super().stop()
        self.proc = None

    # ---- NBD ---------------------------------------------------------------

    def connect(self, export, meta_context=False):
        """A handle on `export` that the caller closes (close_handle)."""
        return self.new_handle(export, meta_context)

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
        """base:allocation flags of every block of an export, as a list.
        Extents should come in whole blocks; a block split between extents
        gets the first one's flags."""
        h = self.connect(export, meta_context=True)
        try:
            flags = []
            for pos, n, f in thinsim_testlib.allocation_runs(h, h.get_size()):
                first = pos // block_size
                last = (pos + n - 1) // block_size
                while len(flags) <= last:
                    flags.append(None)
                for b in range(first, last + 1):
                    if flags[b] is None:
                        flags[b] = f
            return flags
        finally:
            close_handle(h)


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
