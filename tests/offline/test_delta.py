#!/usr/bin/python3
"""`thinsim delta DIR A B` on known layouts made through the real nbdkit:
ranges same, different, left_only and right_only, exactly; and `thinsim
delta A B` on the running server (query-delta), with the same output."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import offline_lib as lib  # noqa: E402
from offline_lib import BS  # noqa: E402


def ranges(*items):
    """[(type, first vblock, count)] as delta's JSON."""
    return [{"type": t, "offset": vb * BS, "length": n * BS} for t, vb, n in items]


class Delta(lib.TestCase):
    def setUp(self):
        super().setUp()
        server = self.nbdkit("size=32M", "volume=A:16M")
        a = server.connect("A")
        for vb in list(range(0, 10)) + [70, 71, 72]:
            a.pwrite(lib.pattern(BS, vb), vb * BS)
        a.flush()
        server.cli_text("snapshot", "A", "B")
        b = server.connect("B")
        a.pwrite(lib.pattern(2 * BS, 1000), 2 * BS)   # 2..3 differ
        a.trim(2 * BS, 5 * BS)                        # 5..6 only in B
        a.pwrite(lib.pattern(2 * BS, 2000), 20 * BS)  # 20..21 only in A
        a.pwrite(b"partial", 130 * BS + 10)           # 130 only in A (second chunk... third)
        b.pwrite(lib.pattern(BS, 3000), 30 * BS)      # 30 only in B
        b.pwrite(lib.pattern(BS, 3001), 71 * BS)      # 71 differs (B broke sharing)
        a.flush()
        b.flush()
        server.cli_text("create", "C", "1M")
        server.stop()

    def delta(self, left, right):
        return json.loads(self.tool_ok("--json", "delta", self.pool, left, right))

    def test_a_against_its_snapshot(self):
        self.assertEqual(self.delta("A", "B"), ranges(
            ("same", 0, 2),
            ("different", 2, 2),
            ("same", 4, 1),
            ("right_only", 5, 2),
            ("same", 7, 3),
            ("left_only", 20, 2),
            ("right_only", 30, 1),
            ("same", 70, 1),
            ("different", 71, 1),
            ("same", 72, 1),
            ("left_only", 130, 1),
        ))

    def test_swapping_sides_swaps_left_and_right(self):
        self.assertEqual(self.delta("B", "A"), ranges(
            ("same", 0, 2),
            ("different", 2, 2),
            ("same", 4, 1),
            ("left_only", 5, 2),
            ("same", 7, 3),
            ("right_only", 20, 2),
            ("left_only", 30, 1),
            ("same", 70, 1),
            ("different", 71, 1),
            ("same", 72, 1),
            ("right_only", 130, 1),
        ))

    def test_a_volume_against_itself_is_all_same(self):
        self.assertEqual(self.delta("A", "A"), ranges(
            ("same", 0, 5), ("same", 7, 3), ("same", 20, 2), ("same", 70, 3), ("same", 130, 1)))

    def test_against_an_empty_volume_everything_is_one_sided(self):
        self.assertEqual(self.delta("C", "B"), ranges(
            ("right_only", 0, 10), ("right_only", 30, 1), ("right_only", 70, 3)))

    def test_human_output_names_vblock_ranges(self):
        out = self.tool_ok("delta", self.pool, "A", "B")
        self.assertIn("left 'A', right 'B', block size 65536", out)
        self.assertIn("different  vblocks 2..3  offset %d length %d" % (2 * BS, 2 * BS), out)
        self.assertIn("right_only vblock  30  offset %d length %d" % (30 * BS, BS), out)

    def test_online_delta_prints_what_the_offline_one_does(self):
        pairs = [("A", "B"), ("B", "A"), ("C", "B"), ("A", "A")]
        offline = {(l, r, j): self.tool_ok(*(["--json"] if j else []), "delta", self.pool, l, r)
                   for l, r in pairs for j in (False, True)}
        server = self.nbdkit("size=32M")
        for (l, r, j), want in offline.items():
            got = self.tool_ok("--socket", server.ctl, *(["--json"] if j else []), "delta", l, r)
            self.assertEqual(got, want, "delta %s %s%s" % (l, r, " --json" if j else ""))
        proc = lib.tool("--socket", server.ctl, "delta", "A", "nope")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("no volume named 'nope'", proc.stderr)
        # A running pool refuses the offline form, and says what to do.
        proc = lib.tool("delta", self.pool, "A", "B")
        self.assertNotEqual(proc.returncode, 0)

    def test_unknown_volume_fails(self):
        proc = lib.tool("delta", self.pool, "A", "nope")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("no volume named 'nope'", proc.stderr)


if __name__ == "__main__":
    lib.main()
