"""Filesystem specifics: mkfs, fsck, log replay, and mapping a file's extents
to device byte ranges (for `thinsim provision`)."""

import re

from .util import MiB, errno_in_text, run, which


class FsckResult:
    def __init__(self, tool, verdict, rc=None, output="", replayed=None, note=None):
        self.tool = tool          # the command line, as text
        self.verdict = verdict    # clean | errors | not-run | failed
        self.rc = rc
        self.output = output
        self.replayed = replayed  # None: no replay needed; else a description
        self.note = note

    def as_dict(self):
        return {"tool": self.tool, "verdict": self.verdict, "rc": self.rc,
                "log_replay": self.replayed, "note": self.note,
                "output_tail": "\n".join(self.output.strip().splitlines()[-12:])}


class Filesystem:
    name = None
    mkfs_tool = None
    fsck_tool = None
    min_volume = 16 * MiB
    # Scenarios this filesystem skips, with the reason.
    unsupported = {}
    # Scenarios whose failure is a known property of the filesystem, not a
    # harness or plugin bug: {scenario: {"checks": [names that may fail],
    # "reason": why}}. Such a run is reported as XFAIL (exit status 0) if
    # only those checks failed.
    known_failures = {}

    def tools(self):
        return [self.mkfs_tool, self.fsck_tool]

    def missing(self):
        """What this machine lacks to test this filesystem, or None."""
        for t in self.tools():
            if not which(t):
                return "%s is not installed" % t
        try:
            with open("/proc/filesystems") as f:
                known = {line.split()[-1] for line in f if line.strip()}
        except OSError:
            known = set()
        if self.name not in known:
            # It may still be a loadable module: try once.
            run(["modprobe", self.name], timeout=20)
            try:
                with open("/proc/filesystems") as f:
                    known = {line.split()[-1] for line in f if line.strip()}
            except OSError:
                pass
            if self.name not in known:
                return "the kernel has no %s support (/proc/filesystems)" % self.name
        return None

    def mkfs_argv(self, dev):
        raise NotImplementedError

    def mount_options(self):
        return []

    def fsck_argv(self, dev):
        raise NotImplementedError

    def needs_replay(self, res):
        """True if a read-only fsck refused or could not judge because the
        log needs replaying (which only a mount does)."""
        return False

    def fsck_verdict(self, res):
        return "clean" if res.rc == 0 else "errors"

    def fsck(self, dev, timeout, log, mount_replay):
        """Read-only check. If the log must be replayed first, `mount_replay()`
        is called (mount + unmount) and the check runs again."""
        argv = self.fsck_argv(dev)
        res = run(argv, timeout, log)
        replayed = None
        if not res.timed_out and self.needs_replay(res):
            ok, how = mount_replay()
            replayed = how
            if ok:
                res = run(argv, timeout, log)
        text = " ".join(argv)
        if res.timed_out:
            return FsckResult(text, "failed", None, res.tail(20), replayed, "fsck timed out")
        if res.rc == 127:
            return FsckResult(text, "not-run", res.rc, res.err, replayed, "fsck could not run")
        verdict = self.fsck_verdict(res)
        return FsckResult(text, verdict, res.rc, (res.out or "") + (res.err or ""), replayed)

    def extents(self, path, dev_block, log, timeout=30):
        """The device byte ranges of `path`'s data, as [(offset, length)],
        from `filefrag -v` (physical offsets are in filesystem blocks)."""
        res = run(["filefrag", "-v", "-b%d" % dev_block, path], timeout, log)
        if not res.ok:
            return None
        out = []
        for line in res.out.splitlines():
            m = re.match(r"\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*(\d+)\.\.\s*(\d+):\s*(\d+):", line)
            if m:
                phys = int(m.group(3))
                length = int(m.group(5))
                out.append((phys * dev_block, length * dev_block))
        return merge_ranges(out)

    def log_ranges(self, dev, log, timeout=30):
        """Device byte ranges of the filesystem's journal/log, or [] if not
        known. Used to provision the log as a provisioning-aware filesystem
        would."""
        return []


def merge_ranges(ranges):
    out = []
    for off, length in sorted(ranges):
        if out and off <= out[-1][0] + out[-1][1]:
            end = max(out[-1][0] + out[-1][1], off + length)
            out[-1] = (out[-1][0], end - out[-1][0])
        else:
            out.append((off, length))
    return out


class Ext4(Filesystem):
    name = "ext4"
    mkfs_tool = "mkfs.ext4"
    fsck_tool = "e2fsck"
    min_volume = 8 * MiB

    known_failures = {
        "provision-then-fill": {
            "checks": ["the filesystem saw no error"],
            "reason": "writing into unwritten extents splits them; ext4 then needs new "
                      "extent-tree blocks outside the provisioned range, and their writeback "
                      "hits ENOSPC (the data writes themselves succeed; the journal replays "
                      "cleanly)"},
    }

    def tools(self):
        return [self.mkfs_tool, self.fsck_tool, "dumpe2fs", "debugfs"]

    def mkfs_argv(self, dev):
        return ["mkfs.ext4", "-F", "-q", dev]

    def fsck_argv(self, dev):
        return ["e2fsck", "-f", "-n", dev]

    def needs_replay(self, res):
        text = (res.out or "") + (res.err or "")
        return "journal recovery" in text or "needs_recovery" in text

    def fsck(self, dev, timeout, log, mount_replay):
        # e2fsck -n cannot replay the journal and then reports what the
        # journal would have fixed: replay by mounting first when the
        # superblock says a recovery is needed.
        res = run(["dumpe2fs", "-h", dev], 30, log)
        replayed = None
        if res.ok and re.search(r"Filesystem features:.*needs_recovery", res.out):
            ok, how = mount_replay()
            replayed = how
        r = super().fsck(dev, timeout, log, mount_replay)
        if replayed and not r.replayed:
            r.replayed = replayed
        # e2fsck -n exits 0 for a consistent filesystem whose superblock
        # records errors (ext4_error() during the run): say so.
        res = run(["dumpe2fs", "-h", dev], 30, log)
        if res.ok:
            state = re.search(r"Filesystem state:\s*(.*)", res.out)
            count = re.search(r"FS Error count:\s*(\d+)", res.out)
            func = re.search(r"First error function:\s*(\S+)", res.out)
            if (state and "error" in state.group(1)) or (count and int(count.group(1)) > 0):
                r.note = "the superblock records %s error(s) from the run (state: %s%s)" % (
                    count.group(1) if count else "some", state.group(1).strip() if state else "?",
                    ", first in %s()" % func.group(1) if func else "")
        return r

    def fsck_verdict(self, res):
        return "clean" if res.rc == 0 else "errors"

    def log_ranges(self, dev, log, timeout=30):
        res = run(["debugfs", "-R", "stat <8>", dev], timeout, log)
        if not res.ok:
            return []
        bs = 4096
        m = re.search(r"Block size:\s*(\d+)", run(["dumpe2fs", "-h", dev], 30, log).out or "")
        if m:
            bs = int(m.group(1))
        out = []
        # "(0-1023):1234-2257" or "(0):100"
        for a, b, c, d in re.findall(r"\((\d+)(?:-(\d+))?\):(\d+)(?:-(\d+))?", res.out):
            start = int(c)
            end = int(d) if d else start
            out.append((start * bs, (end - start + 1) * bs))
        return merge_ranges(out)


class Xfs(Filesystem):
    name = "xfs"
    mkfs_tool = "mkfs.xfs"
    fsck_tool = "xfs_repair"
    min_volume = 300 * MiB

    def tools(self):
        return [self.mkfs_tool, self.fsck_tool, "xfs_db"]

    def mkfs_argv(self, dev):
        return ["mkfs.xfs", "-f", "-q", dev]

    def fsck_argv(self, dev):
        return ["xfs_repair", "-n", dev]

    def needs_replay(self, res):
        text = " ".join(((res.out or "") + " " + (res.err or "")).split())  # it wraps lines
        # rc 2: it refused. With -n it may instead go on past a dirty log
        # ("... changes in a log which is being ignored because the -n option
        # was used. Expect spurious inconsistencies") and report those.
        return res.rc == 2 or "log which needs to be replayed" in text or \
            "log which is being ignored" in text

    def fsck_verdict(self, res):
        return "clean" if res.rc == 0 else "errors"

    def log_ranges(self, dev, log, timeout=30):
        res = run(["xfs_db", "-r", "-c", "sb 0", "-c", "print logstart logblocks blocksize", dev],
                  timeout, log)
        if not res.ok:
            return []
        vals = dict(re.findall(r"(\w+) = (\d+)", res.out))
        try:
            start, blocks, bs = int(vals["logstart"]), int(vals["logblocks"]), int(vals["blocksize"])
        except (KeyError, ValueError):
            return []
        if start == 0:
            return []  # external log
        conv = run(["xfs_db", "-r", "-c", "convert fsblock %d daddr" % start, dev], timeout, log)
        m = re.search(r"\((\d+)\)", conv.out or "") or re.search(r"(\d+)", conv.out or "")
        if not conv.ok or not m:
            return []
        return [(int(m.group(1)) * 512, blocks * bs)]


class Btrfs(Filesystem):
    name = "btrfs"
    mkfs_tool = "mkfs.btrfs"
    fsck_tool = "btrfs"
    min_volume = 128 * MiB
    unsupported = {
        "fill-delete-trim": "fstests' generic/500 excludes btrfs: deleting a file on a full "
                            "btrfs needs new metadata blocks (COW), so it fails with EIO and "
                            "goes read-only by design",
        "provision-then-fill": "btrfs writes new metadata blocks (copy-on-write) for every data "
                               "write, so provisioning a file's data range cannot cover it",
    }

    known_failures = {
        "two-tenants": {
            "reserve": ["provision"],
            "checks": ["tenantA's overwrites succeeded"],
            "reason": "btrfs overwrites are copy-on-write: they go to newly allocated blocks, "
                      "never to the provisioned ones, so provisioning cannot keep them writable "
                      "(the reservation strategy `volume` does)"},
    }

    def mkfs_argv(self, dev):
        return ["mkfs.btrfs", "-f", "-q", dev]

    def fsck_argv(self, dev):
        return ["btrfs", "check", "--readonly", dev]

    def fsck_verdict(self, res):
        return "clean" if res.rc == 0 else "errors"

    def extents(self, path, dev_block, log, timeout=30):
        # filefrag reports btrfs logical addresses, not device offsets;
        # mapping them needs the chunk tree. Not needed by the scenarios run
        # on btrfs.
        return None


FILESYSTEMS = {"ext4": Ext4(), "xfs": Xfs(), "btrfs": Btrfs()}


def mkfs_error(res):
    """errno name a failed mkfs reported, if any."""
    return errno_in_text((res.err or "") + (res.out or ""))
