#!/usr/bin/python3
"""Mirror jobs cross-checked with QEMU's (issue 13), through
qemu-storage-daemon (QMP, blockdev-mirror, an NBD server; no VM):
  - QEMU mirrors a qcow2 image into a thinsim export whose pool fills: with
    on-target-error=enospc the job pauses; after `thinsim grow` job-resume
    finishes it, and `qemu-img compare` finds the export identical;
  - QEMU mirrors from a thinsim export into a qcow2 image;
  - thinsim mirrors a volume into a qcow2 image that qemu-storage-daemon
    exports over NBD.
Every copy is checked with `qemu-img compare`."""

import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import KiB, MiB  # noqa: E402

VOL = 8 * MiB


class Qmp:
    """A QMP connection: commands answered in order, events kept aside."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.sock.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.file = self.sock.makefile("rw")
        self.events = []
        self.read()  # the greeting
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.file.readline()
        if not line:
            raise RuntimeError("qemu-storage-daemon closed QMP")
        return json.loads(line)

    def cmd(self, execute, **arguments):
        self.file.write(json.dumps({"execute": execute, "arguments": arguments}) + "\n")
        self.file.flush()
        while True:
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)
                continue
            if "error" in msg:
                raise RuntimeError("%s: %s" % (execute, msg["error"]))
            return msg["return"]

    def job_status(self, job):
        for j in self.cmd("query-jobs"):
            if j["id"] == job:
                return j["status"]
        return None

    def wait_status(self, job, status, timeout=60):
        deadline = time.monotonic() + timeout
        while self.job_status(job) != status:
            if time.monotonic() > deadline:
                raise AssertionError("job %s never reached %s (now %s)" % (job, status, self.job_status(job)))
            time.sleep(0.05)

    def close(self):
        self.sock.close()


class QemuMirror(lib.TestCase):

    def setUp(self):
        self.srv = self.start_server("size=64M", "volume=v:8M")
        self.tmp = self.srv.tmp
        self.qsd = None

    def tearDown(self):
        if self.qsd is not None and self.qsd.poll() is None:
            self.qsd.kill()
            self.qsd.wait(10)

    def image(self, name, pattern_seed=None):
        path = os.path.join(self.tmp, name)
        lib.run(["qemu-img", "create", "-q", "-f", "qcow2", path, str(VOL)], check=True)
        if pattern_seed is not None:
            for i in range(6):  # 1.5 MiB of data, one run in each of six MiBs
                off = i * MiB + pattern_seed * 64 * KiB
                lib.run(["qemu-io", "-f", "qcow2", "-c", "write -P %d %d 256k" % (i + 1, off), path], check=True)
        return path

    def start_qsd(self, *args):
        qmp = os.path.join(self.tmp, "qmp.sock")
        with open(os.path.join(self.tmp, "qsd.log"), "wb") as log:
            self.qsd = subprocess.Popen(
                ["qemu-storage-daemon", "--chardev", "socket,path=%s,server=on,wait=off,id=qmp0" % qmp,
                 "--monitor", "chardev=qmp0"] + list(args),
                stdout=log, stderr=subprocess.STDOUT)
        q = Qmp(qmp)
        self.addCleanup(q.close)
        return q

    def nbd_blockdev(self, node, sock, export):
        return "driver=nbd,node-name=%s,server.type=unix,server.path=%s,export=%s" % (node, sock, export)

    def compare(self, a, fmt_a, b, fmt_b):
        r = lib.run(["qemu-img", "compare", "-f", fmt_a, "-F", fmt_b, a, b])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def stop_qsd(self, q):
        """quit over QMP (the images' caches flushed), then wait."""
        try:
            q.cmd("quit")
        except (RuntimeError, OSError):
            pass
        self.qsd.wait(30)

    def test_qemu_mirror_into_a_filling_thinsim_export_pauses_and_resumes_after_grow(self):
        src = self.image("src.qcow2", pattern_seed=1)
        tgt = self.start_server("size=1M", "volume=t:8M", "when-full=error")
        q = self.start_qsd("--blockdev", "driver=file,filename=%s,node-name=f" % src,
                           "--blockdev", "driver=qcow2,file=f,node-name=src",
                           "--blockdev", self.nbd_blockdev("tgt", tgt.sock, "t"))
        q.cmd("blockdev-mirror", **{"job-id": "m", "device": "src", "target": "tgt", "sync": "full",
                                    "on-target-error": "enospc"})
        q.wait_status("m", "paused")
        self.assertTrue(any(e["event"] == "BLOCK_JOB_ERROR" for e in q.events))
        tgt.cli("grow", "16M")
        q.cmd("job-resume", id="m")
        q.wait_status("m", "ready")
        q.cmd("job-complete", id="m")
        q.wait_status("m", None)
        self.stop_qsd(q)
        self.compare(src, "qcow2", "nbd+unix:///t?socket=" + tgt.sock, "raw")

    def test_qemu_mirrors_from_a_thinsim_export(self):
        h = self.srv.connect("v")
        for i in range(8):
            h.pwrite(bytes([i + 1]) * (100 * KiB), i * 900 * KiB)
        h.flush()
        self.srv.disconnect(h)
        dst = self.image("dst.qcow2")
        q = self.start_qsd("--blockdev", self.nbd_blockdev("src", self.srv.sock, "v"),
                           "--blockdev", "driver=file,filename=%s,node-name=f" % dst,
                           "--blockdev", "driver=qcow2,file=f,node-name=dst")
        q.cmd("blockdev-mirror", **{"job-id": "m", "device": "src", "target": "dst", "sync": "full"})
        q.wait_status("m", "ready")
        q.cmd("job-complete", id="m")
        q.wait_status("m", None)
        self.stop_qsd(q)
        self.compare("nbd+unix:///v?socket=" + self.srv.sock, "raw", dst, "qcow2")

    def test_thinsim_mirrors_into_a_qemu_storage_daemon_qcow2_export(self):
        h = self.srv.connect("v")
        for i in range(8):
            h.pwrite(bytes([0x40 + i]) * (70 * KiB), i * 1000 * KiB + 333)
        self.srv.disconnect(h)
        dst = self.image("dst.qcow2")
        nbd_sock = os.path.join(self.tmp, "qsd-nbd.sock")
        q = self.start_qsd("--blockdev", "driver=file,filename=%s,node-name=f" % dst,
                       "--blockdev", "driver=qcow2,file=f,node-name=dst",
                       "--nbd-server", "addr.type=unix,addr.path=%s" % nbd_sock,
                       "--export", "type=nbd,id=e,node-name=dst,name=dst,writable=on")
        r = self.srv.cli_run("mirror", "v", "nbd+unix:///dst?socket=" + nbd_sock, "--wait", json_output=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.stop_qsd(q)
        self.compare("nbd+unix:///v?socket=" + self.srv.sock, "raw", dst, "qcow2")


if __name__ == "__main__":
    lib.main()
