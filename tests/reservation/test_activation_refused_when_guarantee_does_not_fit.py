#!/usr/bin/python3
"""Activation of a `volume`-mode volume reserves its whole guarantee (its
holes, and its blocks that are shared): a writable NBD connection whose
activation does not fit is refused (the connect fails; the nbdkit log says
how many blocks were needed and free), and so is `thinsim activate`, with
the NoSpace error JSON giving the numbers; nothing changes. `thinsim
activate` pins a volume active without a connection, `thinsim deactivate`
drops the pin (a connected volume stays active until it disconnects).

Pool: 16 blocks of 64K. `v`: 8 vblocks, strategy volume; `n`: 16 vblocks,
none."""

import os
import sys

import nbd

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, block  # noqa: E402


class ActivationRefusedWhenGuaranteeDoesNotFit(rlib.TestCase):
    def state(self, srv, name):
        v = srv.volume(name)
        return (v["active"], v["pinned"], v["connections"])

    def test_activation_by_connection_and_pin(self):
        srv = self.start_server("size=1M", "block-size=64K", "volume=v:512K:volume",
                                "volume=n:1M:none")
        hn = srv.connect("n")
        hn.pwrite(b"".join(block(i) for i in range(10)), 0)
        self.check(srv, "n wrote 10", reserved=0, used=10, free=6)

        # A writable connection would guarantee v's 8 holes: 8 > 6 free.
        with self.assertRaises(nbd.Error) as cm:
            srv.connect("v")
        # The NBD handshake carries no errno for a failed open: libnbd reports
        # the option error; the reason is in the server's log.
        self.assertIn("handshake", str(cm.exception))
        msg = ("activating 'v' (strategy volume) needs 8 more reserved block(s), but only 6 are "
               "free and unreserved (6 free, 0 reserved)")
        self.assertIn(msg, srv.log())
        self.assertEqual(self.state(srv, "v"), (False, False, 0))
        self.check(srv, "connect refused", reserved=0, used=10, free=6)

        # The same through the CLI and the control socket.
        self.assertCliNoSpace(srv, ["activate", "v"], needed=8, free=6, unreserved=6, reserved=0)
        self.assertNoSpaceReply(srv.control("volume-activate", {"name": "v"}), needed=8, free=6,
                                unreserved=6, reserved=0, what="volume-activate v")
        self.assertEqual(self.state(srv, "v"), (False, False, 0))

        # n trims 2: free 8, and the pin fits: reserved 8 (all v's).
        hn.trim(2 * BS, 8 * BS)
        vol = srv.cli("activate", "v")
        self.assertEqual((vol["active"], vol["pinned"], vol["reserved_blocks"]), (True, True, 8))
        self.check(srv, "v pinned", reserved=8, per_volume={"v": 8}, used=8, free=8)
        # Pinned: n cannot take a reserved block.
        self.assertENOSPC(hn.pwrite, b"x", 8 * BS)

        # A connection to an already active volume needs nothing more.
        hv = srv.connect("v")
        hv.pwrite(block(20) + block(21), 0)  # 2 holes filled: reserved 6
        self.check(srv, "v wrote 2", reserved=6, per_volume={"v": 6}, used=10, free=6)
        srv.disconnect(hv, "v")
        self.assertEqual(self.state(srv, "v"), (True, True, 0))  # still pinned
        self.check(srv, "v disconnected, pinned", reserved=6, per_volume={"v": 6}, used=10, free=6)

        # Deactivate drops the pin and the reservation; n gets the space.
        vol = srv.cli("deactivate", "v")
        self.assertEqual((vol["active"], vol["pinned"], vol["reserved_blocks"]), (False, False, 0))
        self.check(srv, "v deactivated", reserved=0, used=10, free=6)

        # Deactivate while connected: the pin goes, the connection keeps it
        # active; closing the connection ends the reservation.
        srv.cli("activate", "v")
        hv = srv.connect("v")
        srv.cli("deactivate", "v")
        self.assertEqual(self.state(srv, "v"), (True, False, 1))
        self.check(srv, "v unpinned, connected", reserved=6, per_volume={"v": 6}, used=10, free=6)
        srv.disconnect(hv, "v")
        self.check(srv, "v disconnected", reserved=0, used=10, free=6)

        # Shared blocks need cover too: after a snapshot of the inactive v
        # (free: g=0), activation needs 2 (o=2, g=1 for v's 2 blocks) + 6
        # holes = 8 > 6.
        srv.cli("snapshot", "v", "vs")
        self.check(srv, "vs taken", reserved=0, used=10, free=6)
        self.assertCliNoSpace(srv, ["activate", "v"], needed=8, free=6, unreserved=6, reserved=0)
        with self.assertRaises(nbd.Error):
            srv.connect("v")
        self.assertIn("activating 'v' (strategy volume) needs 8 more reserved block(s), but only 6 "
                      "are free and unreserved (6 free, 0 reserved)", srv.log())
        hn.trim(2 * BS, 0)  # free 8
        hv = srv.connect("v")
        # v: 6 holes + 2 shared blocks (o=2 > g=1) = 8.
        self.check(srv, "v active with vs", reserved=8, per_volume={"v": 8}, used=8, free=8)
        # The snapshot inherited `volume`: opening it too would need its own
        # 6 holes, and its 2 shared blocks go from o=2,g=1 (need 1) to g=2
        # (need g-1 = 1): +6 > 0 unreserved.
        with self.assertRaises(nbd.Error):
            srv.connect("vs")
        self.assertIn("activating 'vs' (strategy volume) needs 6 more reserved block(s), but only "
                      "0 are free and unreserved (8 free, 8 reserved)", srv.log())
        srv.disconnect(hv, "v")

        # A read-only snapshot cannot be activated: it cannot be written.
        srv.cli("snapshot", "--read-only", "v", "vr")
        p = srv.cli_run("activate", "vr")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("read-only", p.stderr)
        reply = srv.control("volume-activate", {"name": "vr"})
        self.assertEqual(reply.get("error", {}).get("errno"), "EROFS", reply)
        self.check(srv, "end", reserved=0, used=8, free=8)


if __name__ == "__main__":
    rlib.main()
