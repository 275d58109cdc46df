#!/usr/bin/python3
"""Mirror jobs (SPEC section 13) as a user runs them: `thinsim mirror VOLUME
URI --wait` onto real NBD servers - nbdkit's memory plugin and qemu-nbd
serving a qcow2 image - then the target read back over NBD must equal the
volume, and `cmp` of `nbdcopy` images and `qemu-img compare` must agree; an incremental mirror of a bitmap onto the previous copy; a
write-blocking mirror whose target equals the volume after every write,
without waiting for any copy; `thinsim jobs` and `thinsim job complete`; a
granularity below the target's preferred block size refused with both
sizes named; a mirror onto its own source refused; --json progress lines."""

import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB, nbd  # noqa: E402

VOL = 8 * MiB


class Target:
    """An NBD server of its own on a Unix socket: argv with @SOCK@ and
    @PID@ standing for its socket and PID file."""

    def __init__(self, tmp, name, argv):
        self.sock = os.path.join(tmp, name + ".sock")
        self.pidfile = os.path.join(tmp, name + ".pid")
        argv = [a.replace("@SOCK@", self.sock).replace("@PID@", self.pidfile) for a in argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (os.path.exists(self.pidfile) and os.path.getsize(self.pidfile) > 0):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("target server did not start: %s" % argv)
            time.sleep(0.02)
        self.uri = "nbd+unix:///?socket=" + self.sock

    def read(self):
        h = nbd.NBD()
        h.connect_uri(self.uri)
        data = h.pread(h.get_size(), 0)
        h.shutdown()
        return data

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Mirror(lib.TestCase):

    def setUp(self):
        self.srv = self.start_server("size=64M", "volume=v:8M")
        self.tmp = self.srv.tmp

    def target(self, name, argv):
        t = Target(self.tmp, name, argv)
        self.addCleanup(t.stop)
        return t

    def memory_target(self, *filters_and_params):
        return self.target("mem", ["nbdkit", "-f", "--exit-with-parent", "-U", "@SOCK@", "-P", "@PID@"] +
                           [f for f in filters_and_params if f.startswith("--")] + ["memory", "8M"] +
                           [p for p in filters_and_params if not p.startswith("--")])

    def write_random(self, h, rng, count, max_len=256 * KiB):
        for _ in range(count):
            off = rng.randrange(0, VOL - 1)
            h.pwrite(bytes([rng.randrange(1, 256)]) * rng.randint(1, min(max_len, VOL - off)), off)

    def assert_same_image(self, target_uri, export="v"):
        """The target equals the volume as standard tools see them: `cmp` of
        `nbdcopy` images of both, and `qemu-img compare` of the two exports."""
        images = []
        for i, uri in enumerate((self.srv.uri(export), target_uri)):
            images.append(os.path.join(self.tmp, "image%d.raw" % i))
            lib.run(["nbdcopy", uri, images[-1]], check=True)
        r = lib.run(["cmp", images[0], images[1]])
        self.assertEqual(r.returncode, 0, "cmp of the nbdcopy images: " + r.stdout + r.stderr)
        r = lib.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", self.srv.uri(export), target_uri])
        self.assertEqual(r.returncode, 0, "qemu-img compare: " + r.stdout + r.stderr)
        for image in images:
            os.unlink(image)

    def volume(self):
        h = self.srv.connect("v")
        data = h.pread(VOL, 0)
        self.srv.disconnect(h)
        return data

    def test_full_mirror_to_nbdkit_memory_and_to_qemu_nbd_qcow2(self):
        h = self.srv.connect("v")
        self.write_random(h, random.Random(1), 40)
        h.flush()
        self.srv.disconnect(h)
        mem = self.memory_target()
        r = self.srv.cli_run("mirror", "v", mem.uri, "--wait", json_output=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(mem.read(), self.volume())
        self.assert_same_image(mem.uri)
        self.assertEqual(self.srv.cli("jobs"), [])  # --wait dismissed it

        image = os.path.join(self.tmp, "t.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", image, str(VOL)], check=True)
        qcow = self.target("qcow", ["qemu-nbd", "-k", "@SOCK@", "--pid-file", "@PID@", "-f", "qcow2",
                                    "--cache=none", "-t", image])
        r = self.srv.cli_run("mirror", "v", qcow.uri, "--wait", "--buf-size", "1M", json_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertTrue(lines and all("current-progress" in line for line in lines))
        self.assertEqual(lines[-1]["status"], "concluded")
        self.assertEqual(qcow.read(), self.volume())
        self.assert_same_image(qcow.uri)

    def test_incremental_mirror_of_a_bitmap_onto_the_last_copy(self):
        h = self.srv.connect("v")
        rng = random.Random(2)
        self.write_random(h, rng, 20)
        self.srv.cli("bitmap", "add", "v", "inc", "--granularity", "64K")
        mem = self.memory_target()
        r = self.srv.cli_run("mirror", "v", mem.uri, "--wait", json_output=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        for rnd in range(3):
            self.write_random(h, rng, 10, 32 * KiB)
            dirty = self.srv.cli("bitmap", "ls", "v")[0]["count"]
            r = self.srv.cli_run("mirror", "v", mem.uri, "--sync", "incremental", "--bitmap", "inc", "--wait",
                                 "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            last = json.loads(r.stdout.splitlines()[-1])
            self.assertEqual(last["total-progress"], dirty, "round %d copies only the bitmap's granules" % rnd)
            self.assertEqual(mem.read(), self.volume(), "round %d" % rnd)
            self.assertEqual(self.srv.cli("bitmap", "ls", "v")[0]["count"], 0)  # on-success cleared it
        self.srv.disconnect(h)
        self.assert_same_image(mem.uri)

    def test_write_blocking_keeps_the_target_equal_after_every_write(self):
        mem = self.memory_target()
        started = self.srv.cli("mirror", "v", mem.uri, "--copy-mode", "write-blocking", "--job-id", "wb")
        self.assertEqual(started["id"], "wb")
        deadline = time.monotonic() + 30
        while not self.srv.cli("jobs")[0]["actively-synced"]:
            self.assertLess(time.monotonic(), deadline, "never actively synced")
            time.sleep(0.05)
        h = self.srv.connect("v")
        rng = random.Random(3)
        for i in range(15):
            self.write_random(h, rng, 1, 100 * KiB)
            if i % 5 == 4:
                h.zero(64 * KiB, rng.randrange(0, VOL // (64 * KiB)) * 64 * KiB)
            self.assertEqual(mem.read(), h.pread(VOL, 0), "after write %d" % i)
        table = self.srv.cli_text("jobs")
        self.assertIn("wb", table)
        self.assertIn("ready", table)
        self.srv.cli_text("job", "complete", "wb")
        deadline = time.monotonic() + 30
        while self.srv.cli("jobs"):
            self.assertLess(time.monotonic(), deadline, "the job did not end")
            time.sleep(0.05)
        self.assertEqual(mem.read(), h.pread(VOL, 0))
        self.srv.disconnect(h)
        self.assert_same_image(mem.uri)

    def test_a_thinsim_target_pool_that_fills_pauses_the_job_until_it_grows(self):
        """iotest 248 with a thinsim target: ENOSPC under on-target-error=enospc
        pauses the job; after `thinsim grow` on the target, job resume
        finishes it with the target identical."""
        h = self.srv.connect("v")
        self.write_random(h, random.Random(4), 60)
        h.flush()
        self.srv.disconnect(h)
        tgt = self.start_server("size=4M", "volume=t:8M", "when-full=error")
        uri = "nbd+unix:///t?socket=" + tgt.sock
        self.srv.cli("mirror", "v", uri, "--on-target-error", "enospc", "--job-id", "fill")
        deadline = time.monotonic() + 60
        while self.srv.cli("jobs")[0]["status"] != "paused":
            self.assertLess(time.monotonic(), deadline, "the job did not pause on ENOSPC")
            time.sleep(0.05)
        tgt.cli("grow", "16M")
        self.srv.cli_text("job", "resume", "fill")
        while self.srv.cli("jobs")[0]["status"] != "ready":
            self.assertLess(time.monotonic(), deadline, "the job did not get ready after the grow")
            time.sleep(0.05)
        self.srv.cli_text("job", "complete", "fill")
        while self.srv.cli("jobs"):
            self.assertLess(time.monotonic(), deadline, "the job did not end")
            time.sleep(0.05)
        t = tgt.connect("t")
        self.assertEqual(t.pread(VOL, 0), self.volume())
        tgt.disconnect(t)
        self.assert_same_image(uri)

    def test_refusals_name_what_is_wrong(self):
        mem = self.memory_target("--filter=blocksize-policy", "blocksize-preferred=256K")
        r = self.srv.cli_run("mirror", "v", mem.uri, "--granularity", "64K", json_output=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("65536", r.stderr)
        self.assertIn("262144", r.stderr)
        r = self.srv.cli_run("mirror", "v", "nbd+unix:///?socket=/nonexistent.sock", json_output=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent.sock", r.stderr)
        r = self.srv.cli_run("mirror", "v", mem.uri, "--sync", "incremental", json_output=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("needs a bitmap", r.stderr)
        self.assertEqual(self.srv.cli("jobs"), [])

    def test_mirror_onto_its_own_source_is_refused_and_onto_a_sibling_volume_works(self):
        """iotest 041's mirror to self, however the URI names the export (the
        default export "" is v here), while another volume of the same
        server is a target like any other."""
        h = self.srv.connect("v")
        self.write_random(h, random.Random(5), 20)
        h.flush()
        self.srv.disconnect(h)
        for uri in ("nbd+unix:///v?socket=" + self.srv.sock, "nbd+unix:///?socket=" + self.srv.sock):
            r = self.srv.cli_run("mirror", "v", uri, json_output=False)
            self.assertNotEqual(r.returncode, 0, uri)
            self.assertIn("is the source volume 'v' itself", r.stderr)
        self.assertEqual(self.srv.cli("jobs"), [])
        self.srv.cli("create", "w", "8M")
        r = self.srv.cli_run("mirror", "v", "nbd+unix:///w?socket=" + self.srv.sock, "--wait", json_output=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_same_image(self.srv.uri("w"))


if __name__ == "__main__":
    lib.main()
