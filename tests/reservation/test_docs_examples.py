#!/usr/bin/python3
"""The worked examples of docs/reservation.md, step by step, against the
running server: every number the document prints is asserted here. If you
change an example there, change it here (and the other way round).

Each example: a pool of 16 blocks of 64K (size=1M), an 8-vblock (512K)
volume with the strategy being shown, and `other` (1M, none) to use up
space."""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, block, extents, flag_name  # noqa: E402


class DocsExamples(rlib.TestCase):
    def pool(self, volume):
        return self.start_server("size=1M", "block-size=64K", "extents=space", "volume=" + volume,
                                 "volume=other:1M:none")

    def test_none(self):
        srv = self.pool("web:512K:none")
        h = srv.connect("web")
        h.pwrite(block(1) * 6, 0)
        self.check(srv, "web wrote 6", reserved=0, used=6, free=10)
        srv.cli("snapshot", "web", "web-snap")
        self.check(srv, "web-snap", reserved=0, used=6, free=10)
        self.assertEqual([flag_name(f) for f in extents(h, 8 * BS)],
                         ["HOLE"] * 6 + ["HOLE|ZERO"] * 2)
        srv.connect("other").pwrite(block(2) * 10, 0)
        self.check(srv, "other wrote 10", reserved=0, used=16, free=0)
        self.assertENOSPC(h.pwrite, b"x", 0)

    def test_provision(self):
        srv = self.pool("db:512K:provision")
        vol = srv.cli("provision", "db", "0", "192K")
        self.assertEqual((vol["mapped_blocks"], vol["provisioned_blocks"]), (3, 3))
        h = srv.connect("db")
        h.pwrite(block(1) * 5, 0)
        self.check(srv, "db wrote 5", reserved=0, used=5, free=11)
        srv.cli("snapshot", "--read-only", "db", "db-ro")
        self.check(srv, "db-ro", reserved=3, per_volume={"db": 3}, used=5, free=11)
        srv.cli("snapshot", "db", "db-rw")
        self.check(srv, "db-rw", reserved=6, per_volume={"db": 3, "db-rw": 3}, used=5, free=11)
        vols = srv.ls()  # the `thinsim ls` table in the document
        self.assertEqual({n: (v["active"], v["read_only"], v["mapped_blocks"],
                              v["exclusive_blocks"], v["shared_blocks"], v["provisioned_blocks"],
                              v["reserved_blocks"], v["origin"]) for n, v in vols.items()},
                         {"db": (True, False, 5, 0, 5, 3, 3, None),
                          "other": (False, False, 0, 0, 0, 0, 0, None),
                          "db-ro": (False, True, 5, 0, 5, 3, 0, "db"),
                          "db-rw": (False, False, 5, 0, 5, 3, 3, "db")})
        self.assertEqual([flag_name(f) for f in extents(h, 8 * BS)],
                         ["DATA"] * 3 + ["HOLE"] * 2 + ["HOLE|ZERO"] * 3)
        # other may take free - reserved = 5; db's provisioned overwrites
        # then still succeed, its others do not.
        ho = srv.connect("other")
        ho.pwrite(block(2) * 5, 0)
        self.assertENOSPC(ho.pwrite, b"x", 5 * BS)
        # A third snapshot: 0-2 go from o=3, g=2 (need 2) to o=4, g=3 (need 3).
        self.assertCliNoSpace(srv, ["snapshot", "db", "db-rw2"], needed=3, free=6, unreserved=0,
                              reserved=6)
        h.pwrite(b"y" * BS * 3, 0)
        self.assertENOSPC(h.pwrite, b"x", 3 * BS)
        self.check(srv, "db rewrote 0-2", reserved=3, per_volume={"db-rw": 3}, used=13, free=3)

    def test_volume(self):
        srv = self.pool("vm:512K:volume")
        self.check(srv, "vm inactive", reserved=0, used=0, free=16)
        h = srv.connect("vm")
        self.check(srv, "vm connected", reserved=8, per_volume={"vm": 8}, used=0, free=16)
        h.pwrite(block(1) * 5, 0)
        self.check(srv, "vm wrote 5", reserved=3, per_volume={"vm": 3}, used=5, free=11)
        srv.cli("snapshot", "vm", "vm-snap")
        self.check(srv, "vm-snap", reserved=8, per_volume={"vm": 8}, used=5, free=11)
        srv.disconnect(h, "vm")
        self.check(srv, "vm disconnected", reserved=0, used=5, free=11)
        srv.cli("snapshot", "vm", "vm-snap2")
        self.check(srv, "vm-snap2", reserved=0, used=5, free=11)
        ho = srv.connect("other")
        ho.pwrite(block(2) * 4, 0)
        self.assertCliNoSpace(srv, ["activate", "vm"], needed=8, free=7, unreserved=7, reserved=0)
        ho.trim(BS, 0)
        srv.cli("activate", "vm")
        self.check(srv, "vm pinned", reserved=8, per_volume={"vm": 8}, used=8, free=8)

    def test_full(self):
        srv = self.pool("fs:512K:full")
        self.check(srv, "fs created", reserved=8, per_volume={"fs": 8}, used=0, free=16)
        h = srv.connect("fs")
        h.pwrite(block(1) * 5, 0)
        self.check(srv, "fs wrote 5", reserved=3, per_volume={"fs": 3}, used=5, free=11)
        srv.cli("snapshot", "fs", "fs-rw")
        self.check(srv, "fs-rw", reserved=11, per_volume={"fs": 3, "fs-rw": 8}, used=5, free=11)
        self.assertCliNoSpace(srv, ["snapshot", "--read-only", "fs", "fs-ro"], needed=5, free=11,
                              unreserved=0, reserved=11)
        self.assertCliNoSpace(srv, ["create", "fs2", "64K", "--reserve", "full"], needed=1,
                              free=11, unreserved=0, reserved=11)
        ho = srv.connect("other")
        self.assertENOSPC(ho.pwrite, b"x", 0)


if __name__ == "__main__":
    rlib.main()
