"""The kernel log, read from /dev/kmsg from the start of a run, and what it
says the filesystem and the block layer did.

Only lines naming one of the run's devices (loopN, nbdN) or a filesystem on
them are kept: other work on the machine logs too.
"""

import errno
import os
import re

# What a kernel message tells us. Each entry: key, regex. The first match wins.
_PATTERNS = [
    ("device_enospc", re.compile(r"critical space allocation error")),   # BLK_STS_NOSPC
    ("io_error", re.compile(r"I/O error|Buffer I/O error|blk_update_request|"
                            r"Other side returned error|critical medium error")),
    ("journal_aborted", re.compile(r"Aborting journal|aborted journal|Detected aborted journal|"
                                   r"JBD2: .*error")),
    ("remount_ro", re.compile(r"[Rr]emounting filesystem read-only|forced readonly|"
                              r"switching to read-only|read-only")),
    ("shutdown", re.compile(r"[Ss]hut(ting)? ?down|shutdown")),
    ("fs_error", re.compile(r"EXT4-fs error|BTRFS error|BTRFS critical|XFS \(.*\): .*(error|[Cc]orruption)|"
                            r"Transaction aborted|failed to convert unwritten|potential data loss|"
                            r"metadata I/O error|writeback error|lost async page write")),
    ("hung_task", re.compile(r"blocked for more than|hung_task")),
    ("warning", re.compile(r"WARNING:|BUG:|Call Trace|RIP:")),
]


class KernelLog:
    """Reads /dev/kmsg records that appear after construction."""

    def __init__(self):
        self.fd = None
        self.error = None
        self.records = []  # (usec, text)
        try:
            self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as e:
            self.error = "cannot read /dev/kmsg: %s" % e.strerror
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None

    def poll(self):
        """Reads every record logged since the last call."""
        if self.fd is None:
            return
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten before we read it
                    continue
                self.error = "reading /dev/kmsg: %s" % e.strerror
                return
            if not rec:
                return
            text = rec.decode(errors="replace")
            head, _, body = text.partition(";")
            try:
                usec = int(head.split(",")[2])
            except (IndexError, ValueError):
                usec = 0
            # Continuation lines (" KEY=VALUE") carry device metadata; drop them.
            msg = body.split("\n")[0]
            self.records.append((usec, msg))

    def close(self):
        self.poll()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def lines_for(self, devices):
        """Messages that name one of `devices` (e.g. ["loop3", "nbd0"])."""
        self.poll()
        names = [d.replace("/dev/", "") for d in devices if d]
        if not names:
            return []
        pat = re.compile(r"\b(%s)\b" % "|".join(re.escape(n) for n in names))
        return [(u, m) for (u, m) in self.records if pat.search(m)]


def classify(lines):
    """Counts of each kind of message, and the kinds present, from
    `lines_for()` output."""
    counts = {}
    for _, msg in lines:
        for key, pat in _PATTERNS:
            if pat.search(msg):
                counts[key] = counts.get(key, 0) + 1
                break
    return counts
