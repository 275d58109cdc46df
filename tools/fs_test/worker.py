"""The process that does the filesystem I/O.

The harness never reads or writes the filesystem under test itself: a write
to a device that hangs would hang the harness with it, in a system call that
no signal interrupts, and then nothing could clean up. This worker runs as a
child instead (`python3 -m fs_test.worker`), reads one JSON job on stdin and
reports each completed step as one JSON line on stdout, so the harness knows
exactly what finished even if it has to give up on the worker.

Events:  {"ev": "file", "name", "size", "sha256", "t"}   a file is written (and durable)
         {"ev": "error", "op", "name", "offset", "errno", "err", "msg", "t"}
         {"ev": "verify", "name", "sha256", "ok"} | {"ev": "verify", "name", "errno", ...}
         {"ev": "progress", "bytes", "t"}
         {"ev": "done", ...}
`op` is the system call that failed: open, write, fsync, close, read,
fallocate, pwrite (NBD), unlink, mkdir.
"""

import ctypes
import errno
import hashlib
import json
import mmap
import os
import random
import sys
import time

T0 = time.monotonic()
ALIGN = 4096


def emit(**ev):
    ev.setdefault("t", round(time.monotonic() - T0, 3))
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


def err_event(op, name, e, offset=None):
    code = e.errno if isinstance(e, OSError) else getattr(e, "errno", None)
    emit(ev="error", op=op, name=name, offset=offset, errno=code,
         err=errno.errorcode.get(code, str(code)) if code else None,
         msg=(e.strerror if isinstance(e, OSError) else str(e)))


class Buffer:
    """A page-aligned buffer (mmap) usable with O_DIRECT."""

    def __init__(self, size):
        self.size = max(ALIGN, (size + ALIGN - 1) // ALIGN * ALIGN)
        self.map = mmap.mmap(-1, self.size)
        self.view = memoryview(self.map)

    def fill(self, rng, n):
        """n bytes of new data: a slice of a random pattern at a random
        offset, stamped with 16 random bytes every 4K (cheap, and unique
        enough that no two chunks or files are alike)."""
        global _PATTERN
        if _PATTERN is None:
            _PATTERN = random.Random(12345).randbytes(PATTERN_SIZE)
        off = rng.randrange(0, PATTERN_SIZE - n) if n < PATTERN_SIZE else 0
        self.map[:n] = _PATTERN[off:off + n] if n <= PATTERN_SIZE else rng.randbytes(n)
        stamp = rng.randbytes(16)
        for o in range(0, n - 15, ALIGN):
            self.map[o:o + 16] = stamp
        return self.view[:n]


PATTERN_SIZE = 8 << 20
_PATTERN = None


def open_flags(mode, create=True, trunc=False):
    flags = os.O_WRONLY
    if create:
        flags |= os.O_CREAT
    if trunc:
        flags |= os.O_TRUNC
    if mode in ("direct", "direct-nosync"):
        flags |= os.O_DIRECT
    return flags


def write_all(fd, view, offset):
    """pwrite until done; a short write that makes no progress is an ENOSPC
    as the kernel reports it (it returns what it could write)."""
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n
    return done


def write_file(path, name, size, chunk, mode, rng, buf, trunc=True, create=True, hashed=True):
    """Writes `size` random bytes to path (in place when not trunc). Emits a
    file event on success or an error event. Returns True on success."""
    h = hashlib.sha256() if hashed else None
    try:
        fd = os.open(path, open_flags(mode, create=create, trunc=trunc), 0o644)
    except OSError as e:
        err_event("open", name, e)
        return False
    off = 0
    try:
        while off < size:
            n = min(chunk, size - off)
            view = buf.fill(rng, n)
            try:
                write_all(fd, view, off)
            except OSError as e:
                err_event("write", name, e, off)
                return False
            if h:
                h.update(view)
            off += n
        if mode not in ("buffered", "direct-nosync"):
            try:
                os.fsync(fd)
            except OSError as e:
                err_event("fsync", name, e)
                return False
    finally:
        try:
            os.close(fd)
        except OSError as e:
            err_event("close", name, e)
            return False
    emit(ev="file", name=name, size=size, sha256=h.hexdigest() if h else None)
    return True


def job_write_files(job):
    d = job["dir"]
    size = job["size"]
    chunk = job.get("chunk", 1 << 20)
    mode = job.get("mode", "direct")
    rng = random.Random(job.get("seed"))
    buf = Buffer(chunk)
    count = job.get("count")
    i = job.get("start", 0)
    written = 0
    budget = job.get("max_bytes")
    errors = 0
    max_errors = job.get("max_errors", 1)
    while count is None or written < count:
        if budget is not None and written * size >= budget:
            break
        name = "%s%05d" % (job.get("prefix", "f"), i)
        ok = write_file(os.path.join(d, name), name, size, chunk, mode, rng, buf,
                        hashed=job.get("hash", True))
        i += 1
        if ok:
            written += 1
        else:
            errors += 1
            if errors >= max_errors:
                break
    emit(ev="done", written=written, errors=errors)


def job_overwrite(job):
    """Rewrites each named file in place (no truncate) with new content."""
    d = job["dir"]
    chunk = job.get("chunk", 1 << 20)
    mode = job.get("mode", "direct")
    rng = random.Random(job.get("seed"))
    buf = Buffer(chunk)
    done = 0
    for name in job["files"]:
        path = os.path.join(d, name)
        try:
            size = os.stat(path).st_size
        except OSError as e:
            err_event("stat", name, e)
            break
        if not write_file(path, name, size, chunk, mode, rng, buf, trunc=False, create=False):
            break
        done += 1
    emit(ev="done", written=done)


def job_fragmented(job):
    """Writes `pieces` of `piece` bytes at shuffled offsets inside an existing
    (preallocated) file, then fsyncs; emits the file's expected sha256."""
    path = job["path"]
    name = os.path.basename(path)
    mode = job.get("mode", "direct")
    piece = job["piece"]
    rng = random.Random(job.get("seed"))
    try:
        size = os.stat(path).st_size
    except OSError as e:
        err_event("stat", name, e)
        emit(ev="done", written=0)
        return
    image = bytearray(size)  # preallocated ranges read as zeroes
    stride = job.get("stride", piece)
    offsets = [o for o in range(job.get("first", 0), size - piece + 1, stride)]
    if job.get("count"):
        offsets = offsets[:job["count"]]
    if job.get("shuffle", True):
        rng.shuffle(offsets)
    offsets = offsets[:int(len(offsets) * job.get("fraction", 1.0))]
    fsync_each = job.get("fsync_each", False)
    buf = Buffer(piece)
    try:
        fd = os.open(path, open_flags(mode, create=False), 0o644)
    except OSError as e:
        err_event("open", name, e)
        emit(ev="done", written=0)
        return
    n_done = 0
    ok = True
    try:
        for off in offsets:
            view = buf.fill(rng, piece)
            try:
                write_all(fd, view, off)
            except OSError as e:
                err_event("write", name, e, off)
                ok = False
                break
            image[off:off + piece] = view
            n_done += 1
            if fsync_each:
                try:
                    os.fsync(fd)
                except OSError as e:
                    err_event("fsync", name, e, off)
                    ok = False
                    break
            if n_done % 64 == 0:
                emit(ev="progress", bytes=n_done * piece)
        if ok:
            try:
                os.fsync(fd)
            except OSError as e:
                err_event("fsync", name, e)
                ok = False
    finally:
        try:
            os.close(fd)
        except OSError as e:
            if ok:
                err_event("close", name, e)
            ok = False
    if ok:
        emit(ev="file", name=name, size=size, sha256=hashlib.sha256(image).hexdigest())
    emit(ev="done", written=n_done)


def job_fallocate(job):
    path = job["path"]
    name = os.path.basename(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    except OSError as e:
        err_event("open", name, e)
        return
    try:
        os.posix_fallocate(fd, 0, job["size"])
        os.fsync(fd)
        emit(ev="file", name=name, size=job["size"],
             sha256=hashlib.sha256(bytes(job["size"])).hexdigest())
    except OSError as e:
        err_event("fallocate", name, e)
    finally:
        os.close(fd)
    emit(ev="done")


def job_verify(job):
    """Reads each file (O_DIRECT when aligned, so the page cache cannot
    answer) and compares its sha256."""
    d = job["dir"]
    buf = Buffer(1 << 20)
    for name, want in sorted(job["files"].items()):
        path = os.path.join(d, name)
        h = hashlib.sha256()
        try:
            size = os.stat(path).st_size
            direct = size % ALIGN == 0
            fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
        except OSError as e:
            emit(ev="verify", name=name, ok=False, errno=e.errno,
                 err=errno.errorcode.get(e.errno), msg=e.strerror, op="open")
            continue
        try:
            off = 0
            while True:
                if direct:
                    n = os.preadv(fd, [buf.map], off)
                    data = buf.view[:n]
                else:
                    data = os.pread(fd, 1 << 20, off)
                    n = len(data)
                if n <= 0:
                    break
                h.update(data)
                off += n
            got = h.hexdigest()
            emit(ev="verify", name=name, ok=(got == want), sha256=got)
        except OSError as e:
            emit(ev="verify", name=name, ok=False, errno=e.errno,
                 err=errno.errorcode.get(e.errno), msg=e.strerror, op="read")
        finally:
            os.close(fd)
    emit(ev="done")


def job_probe(job):
    """Can the filesystem still take a new small file? create, write, fsync."""
    path = os.path.join(job["dir"], job.get("name", ".probe"))
    buf = Buffer(ALIGN)
    ok = write_file(path, os.path.basename(path), ALIGN, ALIGN, "fsync", random.Random(1), buf)
    if ok:
        try:
            os.unlink(path)
        except OSError as e:
            err_event("unlink", os.path.basename(path), e)
    emit(ev="done")


def job_unlink(job):
    for name in job["files"]:
        try:
            os.unlink(os.path.join(job["dir"], name))
        except OSError as e:
            err_event("unlink", name, e)
            break
    emit(ev="done")


def job_syncfs(job):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(job["dir"], os.O_RDONLY)
    try:
        if libc.syncfs(fd) != 0:
            e = ctypes.get_errno()
            err_event("syncfs", os.path.basename(job["dir"].rstrip("/")), OSError(e, os.strerror(e)))
    finally:
        os.close(fd)
    emit(ev="done")


def job_nbd_fill(job):
    """Writes an NBD export from its start until a write fails (or the
    export ends), like a tenant filling the pool from another volume."""
    import nbd  # only Debian's /usr/bin/python3 has it
    h = nbd.NBD()
    h.connect_uri(job["uri"])
    size = h.get_size()
    chunk = job.get("chunk", 1 << 20)
    rng = random.Random(job.get("seed"))
    off = 0
    last = 0
    limit = min(size, job.get("max_bytes") or size)
    small = job.get("min_chunk", 64 << 10)
    try:
        while off < limit:
            n = min(chunk, limit - off)
            try:
                h.pwrite(rng.randbytes(n), off)
            except nbd.Error as e:
                if chunk > small:
                    # Use up the last blocks too: continue in small writes.
                    chunk = small
                    continue
                # libnbd gives the errno as its name ("ENOSPC"), or None.
                name = e.errno if isinstance(e.errno, str) else errno.errorcode.get(e.errno)
                emit(ev="error", op="pwrite", name=job["uri"].split("?")[0], offset=off,
                     errno=getattr(errno, name, None) if name else None, err=name, msg=e.string)
                break
            off += n
            if off - last >= 16 << 20:
                last = off
                emit(ev="progress", bytes=off)
    finally:
        try:
            h.shutdown()
        except nbd.Error:
            pass
    emit(ev="done", bytes=off)


JOBS = {
    "write_files": job_write_files,
    "overwrite": job_overwrite,
    "fragmented": job_fragmented,
    "fallocate": job_fallocate,
    "verify": job_verify,
    "probe": job_probe,
    "unlink": job_unlink,
    "syncfs": job_syncfs,
    "nbd_fill": job_nbd_fill,
}


def main():
    job = json.loads(sys.stdin.read())
    try:
        JOBS[job["op"]](job)
    except OSError as e:
        err_event(job["op"], job.get("dir") or job.get("path"), e)
        emit(ev="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
