#!/usr/bin/python3
"""QEMU and libnbd tools see every export as it really is (issue 10 item 5).

BLOCK_STATUS used to report blocks shared with a snapshot (and not covered by
a reservation) as HOLE without ZERO. QEMU reads such an extent as "not
allocated": `qemu-img compare` then found two snapshots holding different data
identical, reported a snapshot and its own byte-exact raw copy as different,
and `qemu-img map` / `qemu-io -c map` showed the data as absent. By default
(`extents=allocation`) every mapped block is now data and every unmapped
block HOLE|ZERO; `extents=space` keeps the old reporting.

Checked here with the real tools against the real nbdkit and plugin:
- the issue's reproduction (`qemu-img compare`, plain and strict `-s`);
- a snapshot family (data, holes, provisioned blocks, writable and read-only
  snapshots, a snapshot of a snapshot, partial divergence) under every
  reservation strategy: for each export `nbdcopy`, libnbd pread and a Python
  model agree byte for byte, `qemu-img compare` finds export and copy
  identical (and strict mode agrees with the copy's allocation),
  `qemu-img map`, `nbdinfo --map` and `qemu-io -c map` agree with the mapping,
  `qemu-img convert` gives the model's bytes, and `qemu-img compare` between
  exports finds exactly the differences the model has;
- `extents=space` still reports shared unreserved blocks as HOLE without ZERO,
  and reserved ones as data.
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

import nbd  # noqa: E402

BS = 64 * KiB  # the default block-size
SIZE = 1 * MiB
NBLOCKS = SIZE // BS
DATA = 0
HOLE = nbd.STATE_HOLE
ZERO = nbd.STATE_ZERO
UNMAPPED = HOLE | ZERO
SECTOR = 512  # qemu-img compare reports mismatches at sector granularity

IDENTICAL = "Images are identical."
MISMATCH_RE = re.compile(r"Content mismatch at offset (\d+)!")
STRICT_RE = re.compile(r"Strict mode: Offset (\d+) block status mismatch!")
# qemu-io's map: "64 KiB (0x10000) bytes not allocated at offset 0 bytes (0x0)"
QEMU_IO_MAP_RE = re.compile(
    r"^.*\((0x[0-9a-f]+)\) bytes\s+(not allocated|allocated) at offset .*\((0x[0-9a-f]+)\)\s*$")


def qemu_img_compare(a, b, strict=False):
    return lib.run(["qemu-img", "compare"] + (["-s"] if strict else []) +
                   ["-f", "raw", "-F", "raw", a, b])


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def file_data_runs(path):
    """The [start, end) ranges of `path` that hold data (SEEK_DATA/SEEK_HOLE),
    which is what QEMU's file driver reports as allocated."""
    runs = []
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            runs.append((start, end))
            pos = end
    finally:
        os.close(fd)
    return runs


def block_runs(mapped):
    """The [start, end) byte ranges covered by the set of block numbers."""
    runs = []
    for b in sorted(mapped):
        if runs and runs[-1][1] == b * BS:
            runs[-1] = (runs[-1][0], (b + 1) * BS)
        else:
            runs.append((b * BS, (b + 1) * BS))
    return runs


def first_difference(a, b):
    """The first offset where two equal-length byte strings differ, or None."""
    if a == b:
        return None
    for i in range(0, len(a), 4096):
        if a[i:i + 4096] != b[i:i + 4096]:
            for j in range(i, i + 4096):
                if a[j] != b[j]:
                    return j
    raise AssertionError("unreachable")


def run_kind(runs, offset):
    """(inside a run, end of the stretch of that kind that starts at offset)."""
    for s, e in runs:
        if s <= offset < e:
            return True, e
        if offset < s:
            return False, s
    return False, SIZE


def strict_mismatch_explained(a, b, offset):
    """Whether qemu-img compare -s may report a block status mismatch at
    `offset` between sides whose data runs are `a` and `b`: the sides differ
    there in allocation, or (qemu compares the BDRV_BLOCK_EOF flag too) the
    stretch starting there reaches the end on one side only."""
    (ka, ea), (kb, eb) = run_kind(a, offset), run_kind(b, offset)
    return ka != kb or (ea == SIZE) != (eb == SIZE)


def first_run_difference(a, b):
    """The first byte offset where two sorted run lists disagree, or None."""
    def covered(runs, off):
        return any(s <= off < e for s, e in runs)
    if a == b:
        return None
    points = sorted({0} | {p for r in a + b for p in r})
    for p in points:
        if p < SIZE and covered(a, p) != covered(b, p):
            return p
    raise AssertionError("run lists %r and %r differ but agree at every boundary" % (a, b))


class Model:
    """What each export must read as, and which of its blocks are mapped."""

    def __init__(self):
        self.data = {}
        self.mapped = {}

    def create(self, name):
        self.data[name] = bytearray(SIZE)
        self.mapped[name] = set()

    def write(self, name, offset, buf):
        self.data[name][offset:offset + len(buf)] = buf
        self.mapped[name] |= set(range(offset // BS, (offset + len(buf) - 1) // BS + 1))

    def provision(self, name, offset, length):
        """WRITE_ZEROES with NO_HOLE: every touched block mapped, range zero."""
        self.write(name, offset, bytes(length))

    def trim(self, name, offset, length):
        """Whole blocks only (sub-block parts of a trim are ignored)."""
        assert offset % BS == 0 and length % BS == 0
        for b in range(offset // BS, (offset + length) // BS):
            self.data[name][b * BS:(b + 1) * BS] = bytes(BS)
            self.mapped[name].discard(b)

    def snapshot(self, origin, name):
        self.data[name] = bytearray(self.data[origin])
        self.mapped[name] = set(self.mapped[origin])


class QemuInteropCase(lib.TestCase):
    """Helpers that run one tool against one export and check its answer
    against the model."""

    def setUp(self):
        self.model = Model()
        self.handles = {}

    # ---- driving the server, and the model with it ----------------------------

    def h(self, name):
        if name not in self.handles:
            self.handles[name] = self.srv.connect(name)
        return self.handles[name]

    def write(self, name, offset, buf):
        self.h(name).pwrite(buf, offset)
        self.model.write(name, offset, buf)

    def provision(self, name, offset, length):
        self.h(name).zero(length, offset, nbd.CMD_FLAG_NO_HOLE)
        self.model.provision(name, offset, length)

    def trim(self, name, offset, length):
        self.h(name).trim(length, offset)
        self.model.trim(name, offset, length)

    def snapshot(self, origin, name, read_only=False):
        self.srv.cli("snapshot", *(["--read-only"] if read_only else []), origin, name)
        self.model.snapshot(origin, name)

    def uri(self, name):
        return self.srv.uri(name)

    def path(self, name):
        return os.path.join(self.srv.tmp, name)

    def want(self, name):
        return bytes(self.model.data[name])

    # ---- one tool, one export ---------------------------------------------------

    def check_pread_and_block_status(self, name):
        h = self.h(name)
        self.assertBytesEqual(h.pread(SIZE, 0), self.want(name), "%s: libnbd pread" % name)
        ext = lib.extents(h, SIZE, 0)
        got = [lib.flag_names(lib.flags_at(ext, b * BS)) for b in range(NBLOCKS)]
        want = [lib.flag_names(DATA if b in self.model.mapped[name] else UNMAPPED)
                for b in range(NBLOCKS)]
        self.assertEqual(got, want, "%s: libnbd block_status per block" % name)
        self.assertEqual(self.srv.volume(name)["mapped_blocks"], len(self.model.mapped[name]),
                         "%s: mapped_blocks of the model (the model is right)" % name)

    def nbdcopy(self, name):
        """A raw copy of the export made by nbdcopy: its path, checked against
        the model."""
        path = self.path(name + ".nbdcopy.img")
        lib.run(["nbdcopy", self.uri(name), path], check=True)
        self.assertBytesEqual(read_file(path), self.want(name), "%s: nbdcopy copy" % name)
        return path

    def mirrored_copy(self, name):
        """A raw file with the model's bytes, written only in the export's
        mapped blocks (the rest left holes): its path."""
        path = self.path(name + ".mirror.img")
        with open(path, "wb") as f:
            f.truncate(SIZE)
            for b in sorted(self.model.mapped[name]):
                f.seek(b * BS)
                f.write(self.model.data[name][b * BS:(b + 1) * BS])
        return path

    def check_compare_with_copy(self, name, path):
        """`qemu-img compare` of the export and its raw copy: identical. In
        strict mode (-s) qemu also compares the block status of both sides at
        every offset, so it must pass exactly when the copy's allocation (what
        SEEK_DATA says is data) is the export's mapping; nbdcopy leaves holes
        for runs of zeroes (-S 4096), so a mapped block holding zero sectors
        (provisioned, or only partly written) legitimately differs."""
        uri = self.uri(name)
        proc = qemu_img_compare(uri, path)
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, IDENTICAL),
                         "%s: qemu-img compare with its copy: %s" % (name, proc.stderr))
        self.check_strict_with_file(name, path)

    def check_strict_with_file(self, name, path):
        uri = self.uri(name)
        file_runs = file_data_runs(path)
        mapped_runs = block_runs(self.model.mapped[name])
        diff = first_run_difference(file_runs, mapped_runs)
        proc = qemu_img_compare(uri, path, strict=True)
        what = "%s: qemu-img compare -s with %s (data in the file %r, mapped %r)" % (
            name, os.path.basename(path), file_runs, mapped_runs)
        if diff is None:
            self.assertEqual((proc.returncode, proc.stdout.strip()), (0, IDENTICAL),
                             "%s: %s" % (what, proc.stderr))
        else:
            self.assertEqual(proc.returncode, 1, "%s: %s %s" % (what, proc.stdout, proc.stderr))
            m = STRICT_RE.search(proc.stdout)
            self.assertIsNotNone(m, "%s: want a block status mismatch: %r" % (what, proc.stdout))
            # qemu also compares the EOF flag, so it may stop at the start of
            # the run that ends at the first difference.
            self.assertLessEqual(int(m.group(1)), diff, what + ": " + proc.stdout)
            self.assertTrue(strict_mismatch_explained(mapped_runs, file_runs, int(m.group(1))),
                            "%s: the mapping and the file agree at that offset: %s" % (
                                what, proc.stdout))

    def check_qemu_img_map(self, name):
        proc = lib.run(["qemu-img", "map", "--output=json", "-f", "raw", self.uri(name)],
                       check=True)
        per_block = [None] * NBLOCKS
        pos = 0
        for e in json.loads(proc.stdout):
            self.assertEqual(e["start"], pos, "%s: qemu-img map is contiguous: %s" % (name, proc.stdout))
            self.assertEqual((e["start"] % BS, e["length"] % BS), (0, 0),
                             "%s: qemu-img map entries are block-aligned: %s" % (name, proc.stdout))
            for b in range(e["start"] // BS, (e["start"] + e["length"]) // BS):
                per_block[b] = (e["present"], e["data"], e["zero"])
            pos += e["length"]
        self.assertEqual(pos, SIZE, "%s: qemu-img map covers the export" % name)
        want = [(True, True, False) if b in self.model.mapped[name] else (True, False, True)
                for b in range(NBLOCKS)]
        self.assertEqual(per_block, want,
                         "%s: qemu-img map (present, data, zero) per block: %s" % (name, proc.stdout))

    def check_nbdinfo_map(self, name):
        proc = lib.run(["nbdinfo", "--map", "--json", self.uri(name)], check=True)
        per_block = []
        pos = 0
        for e in json.loads(proc.stdout):
            self.assertEqual(e["offset"], pos, "%s: nbdinfo --map is contiguous: %s" % (name, proc.stdout))
            self.assertEqual(e["length"] % BS, 0, "%s: nbdinfo --map block-aligned: %s" % (name, proc.stdout))
            per_block += [e["type"]] * (e["length"] // BS)
            pos += e["length"]
        self.assertEqual(pos, SIZE, "%s: nbdinfo --map covers the export" % name)
        want = [0 if b in self.model.mapped[name] else 3 for b in range(NBLOCKS)]
        self.assertEqual(per_block, want, "%s: nbdinfo --map types per block: %s" % (name, proc.stdout))

    def qemu_io_map(self, name):
        """qemu-io's `map` as [(offset, length, allocated)], checked to tile
        the export."""
        proc = lib.run(["qemu-io", "-f", "raw", "-r", "-c", "map", self.uri(name)], check=True)
        out = []
        pos = 0
        for line in proc.stdout.splitlines():
            m = QEMU_IO_MAP_RE.match(line)
            self.assertIsNotNone(m, "%s: unexpected qemu-io map line %r" % (name, line))
            length, state, offset = int(m.group(1), 16), m.group(2), int(m.group(3), 16)
            self.assertEqual(offset, pos, "%s: qemu-io map is contiguous: %s" % (name, proc.stdout))
            out.append((offset, length, state == "allocated"))
            pos += length
        self.assertEqual(pos, SIZE, "%s: qemu-io map covers the export: %s" % (name, proc.stdout))
        return out, proc.stdout

    def check_qemu_io_map(self, name):
        """No written byte may be "not allocated": QEMU assumes such a range
        reads from a backing file or as zeroes, and skips it when it copies or
        compares. (Unmapped blocks are HOLE|ZERO, which QEMU counts as
        allocated too, known to read as zero; so with a raw image nothing at
        all shows as "not allocated" now.)"""
        runs, text = self.qemu_io_map(name)
        for offset, length, allocated in runs:
            if allocated:
                continue
            for b in range(offset // BS, (offset + length - 1) // BS + 1):
                self.assertNotIn(b, self.model.mapped[name],
                                 "%s: qemu-io map says block %d is not allocated:\n%s" % (name, b, text))

    def check_qemu_img_convert(self, name):
        path = self.path(name + ".convert.img")
        lib.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", self.uri(name), path], check=True)
        self.assertBytesEqual(read_file(path), self.want(name), "%s: qemu-img convert" % name)
        os.unlink(path)

    def check_export(self, name):
        """Every tool on one export, each a subtest of its own so that a
        failure names the tool and the others still run."""
        with self.subTest(export=name, tool="libnbd"):
            self.check_pread_and_block_status(name)
        path = self.nbdcopy(name)
        with self.subTest(export=name, tool="qemu-img compare"):
            self.check_compare_with_copy(name, path)
        os.unlink(path)
        with self.subTest(export=name, tool="qemu-img compare -s, mirrored copy"):
            # A copy that holds data exactly in the mapped blocks (nbdcopy and
            # qemu-img convert either sparsify zero sectors or, with -S 0,
            # write every zero): its allocation is the export's mapping, so
            # even strict mode must find them identical.
            path = self.mirrored_copy(name)
            self.assertEqual(file_data_runs(path), block_runs(self.model.mapped[name]),
                             "%s: the mirrored copy has data exactly in the mapped blocks" % name)
            self.check_compare_with_copy(name, path)
            os.unlink(path)
        with self.subTest(export=name, tool="qemu-img map"):
            self.check_qemu_img_map(name)
        with self.subTest(export=name, tool="nbdinfo --map"):
            self.check_nbdinfo_map(name)
        with self.subTest(export=name, tool="qemu-io map"):
            self.check_qemu_io_map(name)
        with self.subTest(export=name, tool="qemu-img convert"):
            self.check_qemu_img_convert(name)

    def check_compare_exports(self, a, b, strict=False):
        """`qemu-img compare` of two exports finds exactly the model's first
        difference. Strict mode also fails when the mappings differ."""
        da, db = self.want(a), self.want(b)
        diff = first_difference(da, db)
        same_map = self.model.mapped[a] == self.model.mapped[b]
        proc = qemu_img_compare(self.uri(a), self.uri(b), strict)
        what = "qemu-img compare%s %s %s" % (" -s" if strict else "", a, b)
        if diff is None and (same_map or not strict):
            self.assertEqual((proc.returncode, proc.stdout.strip()), (0, IDENTICAL),
                             "%s: %s" % (what, proc.stderr))
            return
        self.assertEqual(proc.returncode, 1, "%s: want a difference: %s %s" % (
            what, proc.stdout, proc.stderr))
        m = MISMATCH_RE.search(proc.stdout)
        if not strict:
            self.assertIsNotNone(m, "%s: %r" % (what, proc.stdout))
            self.assertEqual(int(m.group(1)), diff // SECTOR * SECTOR,
                             "%s: the offset of the first difference: %r" % (what, proc.stdout))
            return
        s = STRICT_RE.search(proc.stdout)
        self.assertTrue(m or s, "%s: %r" % (what, proc.stdout))
        if s:
            self.assertFalse(same_map, "%s: a block status mismatch between exports with "
                             "the same mapping: %r" % (what, proc.stdout))
            runs_a, runs_b = block_runs(self.model.mapped[a]), block_runs(self.model.mapped[b])
            offset = int(s.group(1))
            self.assertLessEqual(offset, first_run_difference(runs_a, runs_b),
                                 what + ": " + proc.stdout)
            self.assertTrue(strict_mismatch_explained(runs_a, runs_b, offset),
                            "%s: the mappings agree at that offset: %s" % (what, proc.stdout))
            if diff is not None:
                self.assertLessEqual(offset, diff // SECTOR * SECTOR, what + ": " + proc.stdout)
        else:
            self.assertIsNotNone(diff, "%s: a content mismatch between equal exports: %r" % (
                what, proc.stdout))
            self.assertEqual(int(m.group(1)), diff // SECTOR * SECTOR, what + ": " + proc.stdout)
            # qemu got there only if the block status agreed all the way.
            diff_map = first_run_difference(block_runs(self.model.mapped[a]),
                                            block_runs(self.model.mapped[b]))
            if diff_map is not None:
                self.assertGreater(diff_map, diff, "%s: the mappings differ before the content: %s"
                                   % (what, proc.stdout))


class IssueReproduction(QemuInteropCase):
    """Issue 10 item 5 as reported: AAAA and BBBB snapshots compared equal."""

    def setUp(self):
        super().setUp()
        self.srv = self.start_server("size=16M", "volume=o:1M")
        self.model.create("o")
        self.write("o", 0, b"A" * BS)
        self.snapshot("o", "a1", read_only=True)
        self.snapshot("o", "a2", read_only=True)
        self.write("o", 0, b"B" * BS)
        self.snapshot("o", "b1", read_only=True)
        self.snapshot("o", "b2", read_only=True)

    def test_compare_snapshots(self):
        for strict in (False, True):
            with self.subTest(strict=strict):
                proc = qemu_img_compare(self.uri("a1"), self.uri("b1"), strict)
                self.assertEqual(proc.returncode, 1, "a1 (AAAA) vs b1 (BBBB): %s %s" % (
                    proc.stdout, proc.stderr))
                # Same mapping, so strict mode gets as far as the contents too.
                self.assertIn("Content mismatch at offset 0!", proc.stdout)
                for a, b in (("a1", "a2"), ("b1", "b2"), ("b1", "o"), ("a2", "b2"), ("o", "a1")):
                    self.check_compare_exports(a, b, strict)

    def test_compare_with_raw_copies(self):
        # The reported "Content mismatch at offset 0" of a snapshot and its own
        # copy.
        path = self.nbdcopy("a1")
        proc = qemu_img_compare(self.uri("a1"), path)
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, IDENTICAL),
                         "a1 vs its nbdcopy copy: %s" % proc.stderr)
        # nbdcopy copies the one data block and leaves the unmapped rest a
        # hole, so the copy's allocation is the snapshot's mapping and strict
        # mode, which compares the block status too, must pass as well.
        self.assertEqual(file_data_runs(path), [(0, BS)], "nbdcopy left the zero blocks sparse")
        proc = qemu_img_compare(self.uri("a1"), path, strict=True)
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, IDENTICAL),
                         "a1 vs its nbdcopy copy, strict: %s" % proc.stderr)

        # A fully allocated copy (every byte written, no holes) holds the same
        # bytes: plain compare passes. Strict mode must fail: the file says
        # every block is data, the snapshot rightly says blocks 1.. are
        # unallocated zeroes; that allocation difference is what -s is for.
        full = self.path("a1.full.img")
        with open(full, "wb") as f:
            f.write(self.want("a1"))
            f.flush()
            os.fsync(f.fileno())
        self.assertEqual(file_data_runs(full), [(0, SIZE)], "the full copy has no holes")
        proc = qemu_img_compare(self.uri("a1"), full)
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, IDENTICAL),
                         "a1 vs a fully allocated copy: %s" % proc.stderr)
        self.check_strict_with_file("a1", full)
        # ... and the copy of b1 is not a copy of a1.
        proc = qemu_img_compare(self.uri("b1"), path)
        self.assertEqual(proc.returncode, 1, "b1 vs a copy of a1: %s %s" % (proc.stdout, proc.stderr))
        self.assertIn("Content mismatch at offset 0!", proc.stdout)

    def test_every_export(self):
        for name in ("o", "a1", "a2", "b1", "b2"):
            with self.subTest(export=name):
                self.check_export(name)


class SnapshotFamilies(QemuInteropCase):
    """One family per reservation strategy:

        o   origin: data, a partial block, provisioned zero blocks, holes
        ws  writable snapshot of o      ro  read-only snapshot of o
        ss  writable snapshot of ws     rr  read-only snapshot of ro
    then o, ws and ss diverge partly (partial overwrites, new blocks, trims,
    provisioning), so that each export mixes exclusive and shared blocks."""

    def family(self, strategy):
        if strategy in ("none", "volume"):
            self.srv = self.start_server("size=32M", "volume=o:1M:" + strategy)
        elif strategy == "provision":
            self.srv = self.start_server("size=32M")
            self.srv.cli("create", "o", "1M", "--reserve", "provision")
        else:
            self.srv = self.start_server("size=32M")
            self.srv.cli("create", "o", "1M")
            self.srv.cli("set", "o", "reserve=" + strategy)
        self.assertEqual(self.srv.volume("o")["strategy"], strategy)
        self.model.create("o")

        self.write("o", 0, lib.pattern(2 * BS, 1))  # blocks 0, 1
        self.write("o", 3 * BS + 500, lib.pattern(100, 2))  # block 3: a little data
        self.provision("o", 5 * BS, 2 * BS)  # blocks 5, 6: mapped zeroes
        self.write("o", 8 * BS, bytes(BS))  # block 8: written zeroes
        self.write("o", 9 * BS - 10, lib.pattern(20, 3))  # blocks 8, 9 straddled
        self.write("o", SIZE - BS, lib.pattern(BS, 4))  # block 15
        self.h("o").flush()

        self.snapshot("o", "ws")
        self.snapshot("o", "ro", read_only=True)

        self.write("o", BS + 1000, lib.pattern(3000, 5))  # CoW of block 1
        self.write("o", 11 * BS, lib.pattern(BS // 2, 6))  # new block 11
        self.trim("o", SIZE - BS, BS)  # o drops block 15, the snapshots keep it
        self.write("ws", 100, lib.pattern(50, 7))  # CoW of block 0
        self.trim("ws", 3 * BS, BS)  # ws drops block 3
        self.provision("ws", 12 * BS + 7, 10)  # new provisioned block 12

        self.snapshot("ws", "ss")
        self.snapshot("ro", "rr", read_only=True)

        self.write("ws", 2 * BS, lib.pattern(BS, 8))  # ws: new block 2 after ss
        self.write("ss", 13 * BS + BS // 2, lib.pattern(BS // 2, 9))  # ss: new block 13
        self.write("ss", 5 * BS + 4096, lib.pattern(4096, 10))  # ss: CoW of a provisioned block
        self.trim("ss", 0, BS)  # ss drops block 0
        for name in ("o", "ws", "ss"):
            self.h(name).flush()

        names = ["o", "ws", "ro", "ss", "rr"]
        for name in names:
            with self.subTest(strategy=strategy, export=name):
                self.check_export(name)
        # The model has both equal and different pairs: ro and rr are equal.
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for strict in (False, True):
                    with self.subTest(strategy=strategy, compare=(a, b), strict=strict):
                        self.check_compare_exports(a, b, strict)

    def test_none(self):
        self.family("none")

    def test_provision(self):
        self.family("provision")

    def test_volume(self):
        self.family("volume")

    def test_full(self):
        self.family("full")


class ExtentsSpace(lib.TestCase):
    """extents=space: a shared block that a write could fail on for lack of
    space is HOLE without ZERO; one covered by a reservation is data."""

    def per_block(self, h):
        ext = lib.extents(h, SIZE, 0)
        return [lib.flag_names(lib.flags_at(ext, b * BS)) for b in range(NBLOCKS)]

    def nbdinfo_types(self, srv, name):
        proc = lib.run(["nbdinfo", "--map", "--json", srv.uri(name)], check=True)
        out = []
        for e in json.loads(proc.stdout):
            out += [e["type"]] * (e["length"] // BS)
        return out

    def test_space_mode(self):
        srv = self.start_server("size=16M", "volume=o:1M:none", "volume=f:1M:full",
                                "extents=space")
        ho, hf = srv.connect("o"), srv.connect("f")
        for h in (ho, hf):
            h.pwrite(b"A" * (2 * BS), 0)  # blocks 0, 1
        srv.cli("snapshot", "--read-only", "o", "os")
        srv.cli("snapshot", "--read-only", "f", "fs")
        for h in (ho, hf):
            h.pwrite(b"B" * BS, BS)  # block 1 becomes exclusive again
            h.pwrite(b"C", 4 * BS)  # new exclusive block 4
        rest = ["HOLE|ZERO"] * (NBLOCKS - 5)
        # o (none): block 0 is shared and unreserved.
        self.assertEqual(self.per_block(ho), ["HOLE", "DATA", "HOLE|ZERO", "HOLE|ZERO", "DATA"] + rest)
        self.assertEqual(self.nbdinfo_types(srv, "o"), [1, 0, 3, 3, 0] + [3] * (NBLOCKS - 5))
        # f (full): the same shared block is covered by f's reservation.
        self.assertEqual(self.per_block(hf), ["DATA", "DATA", "HOLE|ZERO", "HOLE|ZERO", "DATA"] + rest)
        self.assertEqual(self.nbdinfo_types(srv, "f"), [0, 0, 3, 3, 0] + [3] * (NBLOCKS - 5))
        # HOLE never means zeroes: the shared block still reads its data.
        self.assertEqual(ho.pread(BS, 0), b"A" * BS)
        self.assertEqual(srv.connect("os").pread(2 * BS, 0), b"A" * (2 * BS))


if __name__ == "__main__":
    lib.main()
