#!/usr/bin/python3
"""Damaged metadata: flipped bytes and truncation in the superblock,
checkpoint and log are found by `thinsim check` (exit 1, fatal) and make
nbdkit refuse the pool; a wrong refcount (restored from an edited dump) is
non-fatal and the pool is served read-only. `thinsim repair` fixes each,
after which check is clean and nbdkit serves the pool writable again."""

import errno
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import offline_lib as lib  # noqa: E402
from offline_lib import BS  # noqa: E402

import nbd  # noqa: E402


class DamageRepair(lib.TestCase):
    def setUp(self):
        super().setUp()
        server = self.nbdkit("size=16M", "volume=vol0:8M")
        self.want = self.populate(server)
        server.stop()
        self.assertClean()
        self.generation = self.check()[1]["generation"]

    def path(self, name):
        return os.path.join(self.pool, name)

    def metadata_file(self, kind):
        if kind == "superblock":
            return self.path("metadata")
        return self.path("metadata.%s.%d" % (kind, self.generation))

    def flip(self, name, offset):
        with open(name, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0x40]))

    def assertRefused(self, reason="damaged"):
        status, output = self.nbdkit_refuses("size=16M")
        self.assertNotEqual(status, 0)
        self.assertIn(reason, output)
        if reason == "damaged":
            self.assertIn("thinsim repair", output)

    def repair(self):
        proc = lib.tool("repair", self.pool)
        self.assertEqual(proc.returncode, 0, "repair failed:\n%s%s" % (proc.stdout, proc.stderr))
        self.assertIn("is clean now", proc.stdout)
        self.assertClean()
        return proc.stdout

    def assertServesWritable(self, volume="vol0"):
        server = self.nbdkit("size=16M")
        h = server.connect(volume)
        h.pwrite(b"after repair", 0)
        h.flush()
        self.assertEqual(h.pread(12, 0), b"after repair")
        server.stop()
        self.assertClean()

    def test_superblock_bit_flip(self):
        self.flip(self.metadata_file("superblock"), 20)
        out = self.assertDamaged(fatal=True)
        self.assertIn("superblock", out)
        self.assertRefused()
        report = self.repair()
        self.assertIn("salvag", report)
        # Nothing was lost: the checkpoint and the log were intact.
        server = self.nbdkit("size=16M")
        h = server.connect("vol0")
        for offset, data in sorted(self.want.items()):
            self.assertEqual(h.pread(len(data), offset), data, "vol0 at %d" % offset)
        server.stop()
        self.assertServesWritable()

    def rich_checkpoint(self):
        """Folds everything into a checkpoint (dump + restore in place), then
        logs more on top of it, so that both files matter."""
        path = os.path.join(self.tmp, "dump.json")
        with open(path, "w") as f:
            f.write(self.tool_ok("--json", "dump", self.pool))
        self.tool_ok("restore", self.pool, path)
        self.generation = self.check()[1]["generation"]
        server = self.nbdkit("size=16M")
        h = server.connect("other")
        h.pwrite(lib.pattern(BS, 77), 0)
        h.flush()
        server.stop()
        self.assertClean()

    def test_checkpoint_bit_flip(self):
        self.rich_checkpoint()
        ckpt = self.metadata_file("ckpt")
        self.flip(ckpt, os.path.getsize(ckpt) // 2)
        self.assertIn("checkpoint", self.assertDamaged(fatal=True))
        self.assertRefused()
        report = self.repair()
        self.assertIn("lost: ", report)
        self.assertServesWritable()

    def test_checkpoint_commit_record_bit_flip_loses_nothing(self):
        ckpt = self.metadata_file("ckpt")
        self.flip(ckpt, os.path.getsize(ckpt) - 3)
        self.assertIn("checkpoint", self.assertDamaged(fatal=True))
        self.assertRefused()
        self.repair()
        server = self.nbdkit("size=16M")
        h = server.connect("vol0")
        for offset, data in sorted(self.want.items()):
            self.assertEqual(h.pread(len(data), offset), data, "vol0 at %d" % offset)
        server.stop()

    def test_log_bit_flip(self):
        log = self.metadata_file("log")
        self.assertGreater(os.path.getsize(log), 100, "the workload left no log")
        self.flip(log, os.path.getsize(log) // 2)
        self.assertIn("log", self.assertDamaged(fatal=True))
        self.assertRefused()
        report = self.repair()
        self.assertIn("lost: ", report)
        self.assertServesWritable()

    def test_truncated_log(self):
        log = self.metadata_file("log")
        os.truncate(log, os.path.getsize(log) - 10)
        self.assertIn("truncated", self.assertDamaged(fatal=True))
        self.assertRefused()
        self.repair()
        self.assertServesWritable()

    def test_truncated_checkpoint(self):
        self.rich_checkpoint()
        ckpt = self.metadata_file("ckpt")
        os.truncate(ckpt, os.path.getsize(ckpt) // 2)
        self.assertDamaged(fatal=True)
        self.assertRefused()
        self.repair()
        self.assertServesWritable("vol0")

    def test_destroyed_checkpoint_cannot_be_repaired(self):
        os.truncate(self.metadata_file("ckpt"), 10)
        self.assertIn("checkpoint", self.assertDamaged(fatal=True))
        self.assertRefused()
        proc = lib.tool("repair", self.pool)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("no checkpoint can be read", proc.stderr)
        self.assertRefused()

    def test_missing_superblock(self):
        os.unlink(self.metadata_file("superblock"))
        self.assertIn("superblock", self.assertDamaged(fatal=True))
        self.assertRefused(reason=self.pool)
        self.repair()
        server = self.nbdkit("size=16M")
        h = server.connect("vol0")
        for offset, data in sorted(self.want.items()):
            self.assertEqual(h.pread(len(data), offset), data, "vol0 at %d" % offset)
        server.stop()
        self.assertServesWritable()

    def test_interrupted_commit_tail_is_a_note_not_damage(self):
        with open(self.metadata_file("log"), "ab") as f:
            f.write(b"\x10\x00\x00\x00garbage of an interrupted commit")
        code, report, proc = self.check()
        self.assertEqual(code, 0, proc.stdout)
        self.assertTrue(any("interrupted commit" in n for n in report["notes"]), report)
        self.assertIn("note: ", lib.tool("check", self.pool).stdout)
        self.assertServesWritable()

    def test_wrong_refcount_is_non_fatal_and_served_read_only(self):
        dump = json.loads(self.tool_ok("--json", "dump", self.pool))
        dump["refcounts"][0]["count"] += 1
        path = os.path.join(self.tmp, "edited.json")
        with open(path, "w") as f:
            json.dump(dump, f)
        proc = lib.tool("restore", self.pool, path)  # non-fatal: no --force needed
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("read-only", proc.stderr)
        out = self.assertDamaged(fatal=False)
        self.assertIn("refcount mismatch", out)

        server = self.nbdkit("size=16M")
        h = server.connect("vol0")
        for offset, data in sorted(self.want.items()):
            self.assertEqual(h.pread(len(data), offset), data, "vol0 at %d" % offset)
        with self.assertRaises(nbd.Error) as caught:
            h.pwrite(b"refused", 0)
        self.assertIn(caught.exception.errnum, (errno.EPERM, errno.EROFS))
        server.stop()

        report = self.repair()
        self.assertIn("fixed: rebuilt reference counts", report)
        self.assertServesWritable()


if __name__ == "__main__":
    lib.main()
