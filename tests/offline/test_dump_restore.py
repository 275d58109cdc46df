#!/usr/bin/python3
"""A pool written by the real nbdkit checks clean offline; dump -> restore
-> dump gives identical output (JSON and human), in place and into a fresh
directory; a restored pool serves the same data."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import offline_lib as lib  # noqa: E402
from offline_lib import BS  # noqa: E402


class DumpRestore(lib.TestCase):
    def setUp(self):
        super().setUp()
        server = self.nbdkit("size=16M", "volume=vol0:8M")
        self.want = self.populate(server)
        server.stop()

    def assertVolumeHolds(self, server, want, volume="vol0"):
        h = server.connect(volume)
        for offset, data in sorted(want.items()):
            self.assertEqual(h.pread(len(data), offset), data, "%s at %d" % (volume, offset))

    def test_check_is_clean_after_real_io(self):
        self.assertClean()
        out = self.tool_ok("check", self.pool)
        self.assertIn(": clean", out)

    def test_dump_shows_pool_volumes_and_runs(self):
        text = self.tool_ok("dump", self.pool)
        self.assertTrue(text.startswith("pool: block size 65536 (64K), 256 blocks (16M), mode write"),
                        text)
        for name in ("vol0", "snap1", "snap2", "other"):
            self.assertIn("volume '%s'" % name, text)
        self.assertIn("snapshot of 'vol0'", text)
        self.assertIn(" provisioned\n", text)  # vblocks 20..21
        dump = json.loads(self.tool_ok("--json", "dump", self.pool))
        names = [v["name"] for v in dump["volumes"]]
        self.assertEqual(names, ["vol0", "snap1", "snap2", "other"])
        # snap1 and snap2 share the chunk objects vol0 had when they were taken.
        slots = {v["name"]: {s["index"]: s["chunk"] for s in v["chunks"]} for v in dump["volumes"]}
        self.assertEqual(slots["snap2"], slots["vol0"])
        self.assertNotEqual(slots["snap1"][0], slots["vol0"][0])
        ids = [c["id"] for c in dump["chunks"]]
        self.assertEqual(ids, list(range(1, len(ids) + 1)))

    def test_dump_restore_dump_in_place_is_identical_and_serves_the_data(self):
        dump1 = self.tool_ok("--json", "dump", self.pool)
        text1 = self.tool_ok("dump", self.pool)
        path = os.path.join(self.tmp, "dump.json")
        with open(path, "w") as f:
            f.write(dump1)
        out = self.tool_ok("restore", self.pool, path)
        self.assertIn("restored 4 volumes", out)
        self.assertEqual(self.tool_ok("--json", "dump", self.pool), dump1)
        self.assertEqual(self.tool_ok("dump", self.pool), text1)
        self.assertClean()
        server = self.nbdkit("size=16M")
        self.assertVolumeHolds(server, self.want)
        # And the restored pool keeps working: writes, snapshots, commits.
        h = server.connect("vol0")
        h.pwrite(lib.pattern(BS, 999), 5 * BS)
        h.flush()
        server.cli_text("snapshot", "vol0", "snap3")
        server.stop()
        self.assertClean()

    def test_restore_into_a_fresh_directory_is_identical(self):
        dump1 = self.tool_ok("--json", "--pool", self.pool, "dump")
        fresh = os.path.join(self.tmp, "fresh")
        self.tool_ok("--pool", fresh, "restore", "-", input=dump1)
        self.assertEqual(self.tool_ok("--json", "dump", fresh), dump1)
        self.assertEqual(self.tool_ok("dump", fresh), self.tool_ok("dump", self.pool))
        self.assertEqual(os.path.getsize(os.path.join(fresh, "data")), 16 * lib.MiB)
        self.assertClean(fresh)
        # The data file is new (sparse, zero), but the pool opens and serves.
        server = self.nbdkit("size=16M", pool=fresh)
        h = server.connect("snap1")
        self.assertEqual(h.pread(BS, 0), bytes(BS))

    def test_restore_refuses_fatal_damage_unless_forced(self):
        dump = json.loads(self.tool_ok("--json", "dump", self.pool))
        dump["chunks"][0]["runs"][0]["dblock"] = 100000  # outside the pool
        path = os.path.join(self.tmp, "bad.json")
        with open(path, "w") as f:
            json.dump(dump, f)
        proc = lib.tool("restore", self.pool, path)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("--force", proc.stderr)
        self.assertClean()  # untouched
        self.tool_ok("restore", "--force", self.pool, path)
        self.assertDamaged(fatal=True)

    def test_restore_of_a_malformed_file_is_a_usage_error(self):
        path = os.path.join(self.tmp, "bad.json")
        with open(path, "w") as f:
            f.write('{"format": "thinsim-metadata-dump", "version": 1}')
        proc = lib.tool("restore", self.pool, path)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("not a valid thinsim dump", proc.stderr)
        self.assertClean()


if __name__ == "__main__":
    lib.main()
