"""The scenarios: fstests' thin-device tests replayed on a thinsim pool.

Each scenario is a function of a `Run` (harness.py). It starts the pool,
attaches and formats the volumes, does its workload, then calls
`run.finish(vol)` (state, unmount, fsck, checksums) and records its checks.
A run passes when every check holds.
"""

import os
import re
import time

from . import attach as att
from .fs import merge_ranges, mkfs_error
from .util import GiB, HarnessError, KiB, MiB, TiB, fmt_size, nbdkit_size, run as run_cmd


class Scenario:
    def __init__(self, name, func, fstest, title, default_reserve, matrix_reserves,
                 default_when_full, pass_means):
        self.name = name
        self.func = func
        self.fstest = fstest
        self.title = title
        self.default_reserve = default_reserve
        self.matrix_reserves = matrix_reserves
        self.default_when_full = default_when_full
        self.pass_means = pass_means


def round_to(n, unit):
    return max(unit, (n + unit - 1) // unit * unit)


def default_volume(run, base):
    return max(base, run.fs.min_volume)


def setup_one(run, name, pool_size, vol_size, strategy, when_full, nst=None, extra_volumes=()):
    run.start_pool(pool_size, [(name, vol_size, strategy)] + list(extra_volumes), when_full, nst)
    vol = run.attach(name)
    res = run.mkfs(vol)
    if not res.ok:
        raise HarnessError("%s failed: %s" % (res.argv[0], res.tail(3)))
    run.mount(vol)
    return vol


def first_error_line(text):
    """The line of a tool's output that says what went wrong."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for l in lines:
        if re.search(r"error|failed|No space|Input/output|[Uu]nable|cannot|[Cc]ould not", l):
            return l
    return lines[-1] if lines else ""


def pool_bytes(run, key="free_blocks"):
    p = run.pool_brief()
    if not p:
        return 0
    return p[key] * run.cfg.block_size


def fsfreeze(run, vol, freeze):
    r = run_cmd(["fsfreeze", "-f" if freeze else "-u", vol.mnt], min(run.cfg.timeout, 60), run.log)
    return r.ok


def syncfs(run, vol, phase="sync"):
    return run.worker({"op": "syncfs", "dir": vol.mnt}, vol, phase)


# --- fill-and-grow (generic/347) ------------------------------------------------

def fill_and_grow(run):
    cfg = run.cfg
    vsize = cfg.volume_size or default_volume(run, 1 * GiB)
    psize = cfg.pool_size or round_to(vsize // 10, max(MiB, cfg.block_size))
    when_full = cfg.when_full or "queue"
    nst = 60 if cfg.no_space_timeout is None else cfg.no_space_timeout
    strategy = cfg.reserve or "none"
    vol = setup_one(run, "vol0", psize, vsize, strategy, when_full,
                    nst if when_full == "queue" else cfg.no_space_timeout)

    overfill = max(8 * MiB, psize // 10)
    nfiles = (pool_bytes(run) + overfill) // MiB
    new_size = round_to(psize + max(psize // 2, 2 * overfill), max(MiB, cfg.block_size))
    st = {"last": time.monotonic(), "grown": False, "waited": False, "files": 0}
    run.event("overfill: %d files of 1M into %s free" % (nfiles, fmt_size(pool_bytes(run))), vol)

    def on_event(ev):
        if ev.get("ev") == "file":
            st["last"] = time.monotonic()
            st["files"] += 1

    def grow(why):
        run.mark_event(vol, why)
        ok, _, err = run.thinsim("grow", nbdkit_size(new_size), vol=vol)
        st["grown"] = ok
        st["grow_error"] = err
        st["grow_t"] = run.elapsed()

    def on_tick():
        if st["grown"] or when_full != "queue":
            return
        p = run.pool_brief()
        stalled = time.monotonic() - st["last"]
        if p and stalled > 1.5 and (p["mode"] == "out-of-data-space" or
                                    p["free_blocks"] * cfg.block_size < 2 * MiB):
            st["waited"] = True
            grow("pool full after %d files; writes waiting for %.1f s" % (st["files"], stalled))

    wr = run.write_files(vol, "overfill", count=nfiles, on_tick=on_tick, on_event=on_event,
                         timeout=cfg.timeout + (nst or cfg.timeout))
    if not st["grown"] and not wr.timed_out:
        if wr.error:
            grow("pool ran out: %s" % wr.error.get("err"))
        else:
            run.note("the overfill never filled the pool (free %s)" % fmt_size(pool_bytes(run)))
    more = run.write_files(vol, "after grow", count=10, prefix="g") if not wr.timed_out else None
    if more is not None:
        syncfs(run, vol)
        run.event("wrote %d more files after the grow" % len(more.files), vol)
    run.extra["grow"] = {"to": new_size, "ok": st["grown"], "at": st.get("grow_t"),
                         "writes_waited": st["waited"], "files_before_grow": st["files"]}
    run.finish(vol)

    if when_full == "queue":
        run.check("writes waited for space (queue mode)", st["waited"],
                  "pool full and writes blocked" if st["waited"] else "writes never blocked")
        run.check("no write failed: the waiting writes completed after the grow",
                  wr.error is None and not wr.timed_out and len(wr.files) == nfiles,
                  "%d/%d files%s" % (len(wr.files), nfiles,
                                     ", first error %s" % wr.error.get("err") if wr.error else ""))
    else:
        run.check("the pool ran out and a write failed (ENOSPC or EIO)",
                  wr.error is not None and wr.error.get("err") in ("ENOSPC", "EIO"),
                  wr.error.get("err") if wr.error else "no error")
    run.check("thinsim grow succeeded", st["grown"], st.get("grow_error") or "")
    run.check("writes after the grow succeeded", more is not None and more.error is None and
              len(more.files) == 10, "" if more is None else "%d/10 files" % len(more.files))
    run.check_no_hang()
    run.check_fsck_clean(vol)
    run.check_checksums(vol)


# --- tiny-pool-mkfs (generic/405) -------------------------------------------------

def tiny_pool_mkfs(run):
    cfg = run.cfg
    vsize = cfg.volume_size or 1 * TiB
    psize = cfg.pool_size or 1 * MiB
    when_full = cfg.when_full or "error"
    nst = 5 if cfg.no_space_timeout is None else cfg.no_space_timeout
    strategy = cfg.reserve or "none"
    run.start_pool(psize, [("vol0", vsize, strategy)], when_full,
                   nst if when_full == "queue" else cfg.no_space_timeout)
    vol = run.attach("vol0")
    res = run.mkfs(vol, timeout=max(cfg.timeout, 4 * (nst or 30)))
    if res.timed_out:
        run.hang = {"t": run.elapsed(), "phase": "mkfs", "op": "mkfs", "seconds": int(res.duration)}
    elif not res.ok:
        run.record_error({"op": "mkfs", "name": vol.dev, "err": mkfs_error(res) or "exit %d" % res.rc,
                          "msg": first_error_line((res.err or "") + (res.out or ""))}, vol, "mkfs")
    vol.mnt = None
    run.capture_fs_state(vol, probe=False)
    if res.ok:
        run.finish(vol, probe=False, verify=False)
    run.extra["mkfs"] = vol.result.get("mkfs")
    run.check_no_hang()
    if res.ok:
        run.check("mkfs succeeded, so fsck must be clean",
                  vol.result.get("fsck", {}).get("verdict") == "clean",
                  vol.result.get("fsck", {}).get("verdict", "not run"))
    else:
        run.check("mkfs failed cleanly (reported an error and exited)", not res.timed_out,
                  "exit %s: %s" % (res.rc, first_error_line((res.err or "") + (res.out or ""))))


# --- fill-delete-trim (generic/500) -----------------------------------------------

def fill_delete_trim(run):
    cfg = run.cfg
    base = 300 * MiB if run.fs.name == "xfs" else 128 * MiB
    psize = cfg.pool_size or base
    vsize = cfg.volume_size or max(run.fs.min_volume, psize + 512 * KiB)
    when_full = cfg.when_full or "error"
    strategy = cfg.reserve or "none"
    rounds = cfg.rounds or 20
    vol = setup_one(run, "vol0", psize, vsize, strategy, when_full, cfg.no_space_timeout)
    run.write_files(vol, "canaries", count=4, prefix="canary")
    syncfs(run, vol)
    r0 = run_cmd(["fstrim", vol.mnt], min(cfg.timeout, 60), run.log)
    start_used = pool_bytes(run, "used_blocks")
    run.event("before the rounds: pool used %s (after fstrim: %s)" % (
        fmt_size(start_used), "ok" if r0.ok else r0.tail(1)), vol)
    fsize = 2 * psize
    slack = max(16 * cfg.block_size, psize // 50)
    settle = 10.0
    results = []
    baseline = None
    for i in range(rounds):
        wr = run.write_files(vol, "round %d" % (i + 1), count=1, size=fsize, chunk=64 * KiB,
                             prefix="testfile", start=i, hashed=False)
        if wr.timed_out:
            results.append({"round": i + 1, "hang": "write"})
            break
        peak = pool_bytes(run, "used_blocks")
        fname = "testfile%05d" % i
        un = run.worker({"op": "unlink", "dir": vol.mnt, "files": [fname]}, vol, "round %d rm" % (i + 1))
        vol.files.pop(fname, None)
        # Blocks freed by rm only become free (and trimmable) when the
        # transaction that freed them commits.
        syncfs(run, vol, "round %d sync" % (i + 1))
        # fstrim can only discard what the filesystem has really freed: XFS
        # frees a deleted file's extents in the background (inode
        # inactivation, busy extents), so a first fstrim may find little.
        # Repeat (sync, fstrim) for up to `settle` seconds until the usage
        # is back, and report how many tries it took.
        tries, t_start = 0, time.monotonic()
        while True:
            tries += 1
            tr = run_cmd(["fstrim", vol.mnt], min(cfg.timeout, 120), run.log)
            if tr.timed_out:
                run.hang = {"t": run.elapsed(), "phase": "round %d" % (i + 1), "op": "fstrim",
                            "seconds": int(tr.duration)}
            after = pool_bytes(run, "used_blocks")
            target = (baseline if baseline is not None else start_used) + slack
            if tr.timed_out or not tr.ok or after <= target or time.monotonic() - t_start > settle:
                break
            time.sleep(0.5)
            syncfs(run, vol, "round %d sync" % (i + 1))
        if baseline is None:
            baseline = after
        res = {"round": i + 1, "written": wr.done.get("written") if wr.done else None,
               "error": (wr.error or {}).get("err"), "error_op": (wr.error or {}).get("op"),
               "pool_used_peak": peak, "pool_used_after_trim": after,
               "rm": "ok" if not un.error else un.error.get("err"), "fstrim_tries": tries,
               "settle_s": round(time.monotonic() - t_start, 1),
               "fstrim": "ok" if tr.ok else ("hang" if tr.timed_out else tr.tail(1))}
        results.append(res)
        run.event("round %d: write %s, peak %s, after rm+fstrim %s%s" % (
            i + 1, "%s at %s()" % (res["error"], res["error_op"]) if res["error"] else "ok",
            fmt_size(peak), fmt_size(after),
            "" if tries == 1 else " (%d fstrims, %.1fs)" % (tries, res["settle_s"])),
            vol, kind="round", pool=False)
        if tr.timed_out or un.timed_out:
            break
    run.extra["rounds"] = results
    run.extra["trim_slack"] = slack
    run.finish(vol)

    run.check_no_hang()
    run.check("all %d rounds ran" % rounds, len(results) == rounds and not run.hang,
              "%d rounds" % len(results))
    worst = max((r.get("pool_used_after_trim") or 0) for r in results) if results else None
    run.check("pool usage returns after every fstrim",
              results and all(r.get("pool_used_after_trim") is not None and
                              r["pool_used_after_trim"] <= baseline + slack for r in results)
              and baseline <= start_used + slack,
              "before %s, after first trim %s, worst %s (slack %s)" % (
                  fmt_size(start_used), fmt_size(baseline), fmt_size(worst), fmt_size(slack)))
    run.check("rm and fstrim worked every round",
              all(r.get("rm") == "ok" and r.get("fstrim") == "ok" for r in results),
              "; ".join("round %d: rm %s, fstrim %s" % (r["round"], r.get("rm"), r.get("fstrim"))
                        for r in results if r.get("rm") != "ok" or r.get("fstrim") != "ok")[:300])
    run.check_fsck_clean(vol)
    run.check_checksums(vol)


# --- snapshot-overwrite (generic/171-174 at device level) -------------------------

def snapshot_overwrite(run):
    cfg = run.cfg
    vsize = cfg.volume_size or default_volume(run, 256 * MiB)
    psize = cfg.pool_size or round_to(vsize, cfg.block_size)
    when_full = cfg.when_full or "error"
    strategy = cfg.reserve or "none"
    vol = setup_one(run, "vol0", psize, vsize, strategy, when_full, cfg.no_space_timeout)

    free = run.fs_free(vol)
    nfiles = max(4, int(free * 0.6) // MiB)
    run.event("fill: %d files of 1M (60%% of the filesystem's free space)" % nfiles, vol)
    wr = run.write_files(vol, "fill", count=nfiles)
    syncfs(run, vol)
    run.event("filled %d files" % len(wr.files), vol)

    frozen = fsfreeze(run, vol, True)
    snap_ok, _, snap_err = run.thinsim("snapshot", "vol0", "snap0", vol=vol)
    if frozen:
        fsfreeze(run, vol, False)
    run.extra["snapshot"] = {"ok": snap_ok, "error": snap_err, "frozen": frozen}

    files = sorted(wr.files, key=lambda e: e["name"])
    ow = run.worker({"op": "overwrite", "dir": vol.mnt, "files": [f["name"] for f in files],
                     "mode": cfg.io, "seed": 7}, vol, "overwrite")
    run.event("overwrote %d of %d files in place" % (len(ow.files), len(files)), vol)
    if snap_ok and not ow.error and not ow.timed_out:
        run.write_files(vol, "fill until the pool runs out", count=None, prefix="m")
    if not ow.timed_out:
        syncfs(run, vol, "sync")

    def release_snapshot():
        if snap_ok:
            run.thinsim("delete", "snap0", vol=vol)

    # Deleting the snapshot gives the space back, so that unmount can write
    # the log and fsck can check it (as an administrator would).
    run.finish(vol, before_unmount=release_snapshot)

    app_errors = [e for e in run.errors if e["volume"] == "vol0"]
    dev_errors = vol.result.get("fs_reaction", {}).get("kernel_counts", {})
    guarded = strategy in ("volume", "full")
    if guarded:
        run.check("the snapshot was refused (%s guarantees the origin's overwrites)" % strategy,
                  not snap_ok, snap_err or "snapshot was taken")
        run.check("the filesystem never saw an error", not app_errors and not dev_errors.get("device_enospc")
                  and not dev_errors.get("io_error"),
                  "; ".join("%s %s" % (e["op"], e["errno"]) for e in app_errors[:3]) or
                  ", ".join("%s=%d" % kv for kv in dev_errors.items()))
        run.check("every overwrite succeeded", not ow.error and len(ow.files) == len(files),
                  "%d/%d" % (len(ow.files), len(files)))
    else:
        run.check("the snapshot was taken", snap_ok, snap_err or "")
        surfaced = bool(app_errors) or bool(dev_errors.get("device_enospc") or dev_errors.get("io_error"))
        run.check("the pool ran out and the error surfaced", surfaced,
                  ("%s at %s()" % (app_errors[0]["errno"], app_errors[0]["op"])) if app_errors else
                  ", ".join("%s=%d" % kv for kv in dev_errors.items()) or "no error anywhere")
    run.check_no_hang()
    run.check_fsck_clean(vol)
    run.check_checksums(vol)


# --- provision-then-fill (generic/274 at device level) ------------------------

def provision_then_fill(run):
    cfg = run.cfg
    vsize = cfg.volume_size or default_volume(run, 256 * MiB)
    psize = cfg.pool_size or round_to(vsize, cfg.block_size)
    when_full = cfg.when_full or "error"
    strategy = cfg.reserve or "provision"
    filler = ("filler", psize, "none")
    vol = setup_one(run, "vol0", psize, vsize, strategy, when_full, cfg.no_space_timeout,
                    extra_volumes=[filler])
    run.write_files(vol, "canaries", count=4, prefix="canary")
    fsize = round_to(min(64 * MiB, run.fs_free(vol) // 4), MiB)
    path = os.path.join(vol.mnt, "prealloc")
    fa = run.worker({"op": "fallocate", "path": path, "size": fsize}, vol, "fallocate")
    syncfs(run, vol)
    ranges = run.fs.extents(path, 4096, run.log) if not fa.error else None
    log_ranges = [] if os.environ.get("THINSIM_FS_TEST_NO_LOG_PROVISION") else \
        run.fs.log_ranges(vol.dev, run.log)
    run.event("prealloc: %s fallocated in %d extents; log: %d ranges" % (
        fmt_size(fsize), len(ranges or []), len(log_ranges)), vol)
    prov_ok = ranges is not None
    provisioned = 0
    for off, length in (ranges or []) + log_ranges:
        ok, _, err = run.thinsim("provision", "vol0", str(off), str(length), vol=vol)
        prov_ok = prov_ok and ok
        if ok:
            provisioned += length
    run.extra["provisioned"] = {"file_ranges": ranges, "log_ranges": log_ranges, "bytes": provisioned}

    fill = run.worker({"op": "nbd_fill", "uri": run.nbdkit.uri("filler"), "chunk": MiB, "seed": 3},
                      None, "fill from filler", record_errors=False)
    run.extra["filler"] = {"bytes": (fill.done or {}).get("bytes"),
                           "error": (fill.error or {}).get("err"), "message": (fill.error or {}).get("msg")}
    run.mark_event(vol, "pool filled from the volume 'filler' (%s written, then %s)" % (
        fmt_size((fill.done or {}).get("bytes") or 0), (fill.error or {}).get("err") or "no error"))

    # generic/274's pattern: 4K at every other 4K block of the first 4M,
    # each followed by fsync.
    fr = run.worker({"op": "fragmented", "path": path, "piece": 4 * KiB, "stride": 8 * KiB,
                     "first": 4 * KiB, "count": 512, "shuffle": False, "fsync_each": True,
                     "mode": cfg.io, "seed": 11}, vol, "fragmented overwrite of prealloc")
    run.event("fragmented overwrite of the preallocated file (512 x 4K, every other block): %s" % (
        "ok" if not fr.error and not fr.timed_out else (fr.error or {}).get("err", "hang")), vol)
    if not fr.timed_out:
        syncfs(run, vol, "sync")
    # Deleting the filler gives the space back so that unmount can write
    # and fsck judges the filesystem, not the full pool.
    run.finish(vol, before_unmount=lambda: run.thinsim("delete", "filler", vol=vol))

    run.check("the file's range was provisioned", prov_ok and provisioned > 0, fmt_size(provisioned))
    run.check("the filler ran the pool out of space", fill.error is not None and
              fill.error.get("err") == "ENOSPC", (fill.error or {}).get("err") or "no error")
    # `thinsim provision` allocates under every strategy; what the strategy
    # changes is whether the promise survives a snapshot (snapshot-overwrite).
    run.check("writes into the provisioned range succeeded",
              not fr.error and not fr.timed_out,
              "%s at %s()" % (fr.error.get("err"), fr.error.get("op")) if fr.error else "")
    errs = [e for e in run.errors if e["volume"] == "vol0"]
    run.check("the filesystem saw no error", not errs and not vol.result["fs_reaction"]
              ["kernel_counts"].get("device_enospc"),
              vol.result["fs_reaction"]["summary"])
    run.check_no_hang()
    run.check_fsck_clean(vol)
    run.check_checksums(vol)


# --- two-tenants -------------------------------------------------------------------

def two_tenants(run):
    cfg = run.cfg
    # tenantA (the strategy under test) gets vsize; tenantB's volume is
    # twice the pool, so that B's filesystem never fills before the pool
    # does: B alone can use up every unreserved block.
    vsize = cfg.volume_size or default_volume(run, 256 * MiB)
    psize = cfg.pool_size or round_to(vsize * 5 // 4, MiB)
    bsize = max(2 * psize, run.fs.min_volume)
    when_full = cfg.when_full or "error"
    strategy = cfg.reserve or "volume"
    run.start_pool(psize, [("tenantA", vsize, strategy), ("tenantB", bsize, "none")], when_full,
                   cfg.no_space_timeout)
    a = run.attach("tenantA")
    b = run.attach("tenantB")
    for v in (a, b):
        res = run.mkfs(v)
        if not res.ok:
            raise HarnessError("%s failed on %s: %s" % (res.argv[0], v.name, res.tail(3)))
        run.mount(v)
    na = max(4, run.fs_free(a) // 8 // MiB)
    wa = run.write_files(a, "A writes", count=na, prefix="a")
    syncfs(run, a)
    if strategy == "provision":
        # Provision A's files and its log, as a provisioning-aware filesystem
        # would: an in-place overwrite also commits the journal (mtime), and
        # a journal block never written before needs a new pool block.
        ranges = []
        for f in wa.files:
            ranges += run.fs.extents(os.path.join(a.mnt, f["name"]), 4096, run.log) or []
        ranges = merge_ranges(ranges) + run.fs.log_ranges(a.dev, run.log)
        n = 0
        for off, length in ranges:
            ok, _, _ = run.thinsim("provision", "tenantA", str(off), str(length), vol=a)
            n += length if ok else 0
        run.extra["provisioned"] = n
    wb = run.write_files(b, "B fills", count=None, prefix="b")
    run.mark_event(a, "tenantB stopped after %d files: %s" % (
        len(wb.files), ("%s at %s()" % (wb.error.get("err"), wb.error.get("op"))) if wb.error else "no error"))
    ow = run.worker({"op": "overwrite", "dir": a.mnt, "files": [f["name"] for f in wa.files],
                     "mode": cfg.io, "seed": 5}, a, "A overwrites")
    nf = run.write_files(a, "A new file", count=1, size=4 * MiB, prefix="new")
    syncfs(run, a, "A sync")
    run.extra["tenantA"] = {"files": len(wa.files), "overwrites": len(ow.files),
                            "overwrite_error": (ow.error or {}).get("err"),
                            "new_file_error": (nf.error or {}).get("err")}
    run.extra["tenantB"] = {"files": len(wb.files), "error": (wb.error or {}).get("err"),
                            "error_op": (wb.error or {}).get("op")}
    run.capture_fs_state(b)
    run.capture_fs_state(a)
    # Give the pool room (as an administrator would) so that unmount, log
    # replay and fsck judge the filesystems rather than the full pool.
    run.thinsim("grow", nbdkit_size(round_to(psize + bsize, MiB)))
    run.finish(b)
    run.finish(a)

    run.check("tenantB filled the pool (or its filesystem)", wb.error is not None,
              (wb.error or {}).get("err") or "no error")
    if strategy in ("volume", "full", "provision"):
        run.check("tenantA's overwrites succeeded", not ow.error and len(ow.files) == len(wa.files),
                  "%d/%d%s" % (len(ow.files), len(wa.files),
                               ", %s" % ow.error.get("err") if ow.error else ""))
    else:
        run.observe("tenantA's overwrites in place", "%d/%d succeeded%s" % (
            len(ow.files), len(wa.files), ", then %s" % ow.error.get("err") if ow.error else ""))
    if strategy in ("volume", "full"):
        run.check("tenantA could still write a new file", not nf.error,
                  (nf.error or {}).get("err") or "")
    else:
        run.observe("tenantA writes a new file", "%s" % (
            "%s at %s()" % (nf.error.get("err"), nf.error.get("op")) if nf.error else "succeeded"))
    run.check_no_hang()
    run.check_fsck_clean(a)
    run.check_fsck_clean(b)
    run.check_checksums(a)


# --- power-cut (a disk with a volatile write cache loses power) -------------------

def power_cut(run):
    """A pool=DIR pool with volatile-cache=on: files synced, then files
    written with O_DIRECT and never synced, then `thinsim power-cut` (every
    write not made durable by a FLUSH or FUA is dropped), teardown, restart
    on the same directory. The journal must make the filesystem consistent
    again and the synced files must read back intact. Periodic commits are
    off (commit-interval=0) and ext4's journal commit is 60 s, so only the
    filesystem's own FLUSHes make anything durable and the unsynced writes
    are really lost (fewer mapped blocks after the restart)."""
    cfg = run.cfg
    vsize = cfg.volume_size or default_volume(run, 256 * MiB)
    psize = cfg.pool_size or round_to(vsize, cfg.block_size)
    extra = ["pool=" + os.path.join(run.run_dir, "pool"), "volatile-cache=on", "commit-interval=0"]
    run.start_pool(psize, [("vol0", vsize, cfg.reserve or "none")], cfg.when_full or "error",
                   cfg.no_space_timeout, extra=extra)
    vol = run.attach("vol0")
    res = run.mkfs(vol)
    if not res.ok:
        raise HarnessError("%s failed: %s" % (res.argv[0], res.tail(3)))
    run.mount(vol, run.fs.mount_options() + (["commit=60"] if run.fs.name == "ext4" else []))

    nfiles = max(4, int(run.fs_free(vol) * 0.3) // MiB)
    run.write_files(vol, "synced", count=nfiles)
    syncfs(run, vol)
    run.mark_event(vol, "synced %d files of 1M" % nfiles)
    time.sleep(0.05)  # files after the event are stamped later than it
    run.write_files(vol, "unsynced", count=nfiles, prefix="u", mode="direct-nosync")
    mapped_before = run.ctl.volume("vol0")["mapped_blocks"]

    cut_ok, _, cut_err = run.thinsim("power-cut", vol=vol)
    run.check("thinsim power-cut accepted", cut_ok, cut_err or "")
    run.event("tearing down after the cut: unmount, detach, stop nbdkit", vol)
    left = att.cleanup(run.state, run.log, timeout=min(cfg.timeout, 30))
    if left:
        raise HarnessError("teardown after the power cut left: %s" % "; ".join(left))
    run.restart_pool("after the power cut")
    mapped_after = run.ctl.volume("vol0")["mapped_blocks"]
    run.extra["power_cut"] = {"mapped_blocks_before": mapped_before, "mapped_blocks_after": mapped_after}
    run.check("the cut dropped the unflushed writes", mapped_after < mapped_before,
              "vol0 mapped %d blocks before the cut, %d after the restart" % (mapped_before, mapped_after))

    # Files written after the last sync may or may not have survived; the
    # checksums below judge only the synced ones.
    unsynced = [n for n, f in vol.files.items() if f["t"] > vol.event_t]
    for n in unsynced:
        del vol.files[n]
    run.observe("unsynced files", "%d written after the last sync (not checked)" % len(unsynced))
    vol.mnt = None
    vol = run.attach("vol0")
    run.finish(vol, probe=False)
    run.check_fsck_clean(vol)
    run.check_checksums(vol)


SCENARIOS = {s.name: s for s in [
    Scenario("fill-and-grow", fill_and_grow, "generic/347",
             "Overfill a pool 10x smaller than the volume, grow it while writes wait",
             "none", ["none"], "queue",
             "in queue mode the writes wait and then complete after `thinsim grow`; the writes "
             "after the grow succeed; fsck clean; files intact"),
    Scenario("tiny-pool-mkfs", tiny_pool_mkfs, "generic/405",
             "mkfs on a 1T volume over a 1M pool",
             "none", ["none"], "error",
             "mkfs either fails with an error (no hang) or succeeds and fsck is clean"),
    Scenario("fill-delete-trim", fill_delete_trim, "generic/500",
             "20 rounds of fill past the pool, delete, fstrim (error mode)",
             "none", ["none"], "error",
             "no hang, every round runs, pool usage returns after each fstrim, fsck clean"),
    Scenario("snapshot-overwrite", snapshot_overwrite, "generic/171-174 (device level)",
             "Fill half, snapshot, overwrite the origin until the pool runs out",
             "none", ["none", "volume"], "error",
             "under none/provision: the snapshot is taken and the error surfaces; under "
             "volume/full: the snapshot is refused and the filesystem sees no error; fsck clean; "
             "files written before the event intact"),
    Scenario("provision-then-fill", provision_then_fill, "generic/274 (device level)",
             "Provision a preallocated file's range, fill the pool from another volume, "
             "overwrite the range",
             "provision", ["provision"], "error",
             "under provision/volume/full the writes into the provisioned range succeed and the "
             "filesystem sees no error; fsck clean"),
    Scenario("two-tenants", two_tenants, "SPDK test_thin_overprovisioning",
             "Two filesystems on one overcommitted pool; B fills it; A keeps working",
             "volume", ["none", "provision", "volume"], "error",
             "A's earlier files are intact; under volume/provision A's overwrites succeed (and "
             "under volume/full a new file too); fsck clean on both"),
    Scenario("power-cut", power_cut, "generic/482-style (dm-log-writes), device level",
             "Sync files, write more without syncing, cut the power (volatile-cache=on), restart",
             "none", ["none"], "error",
             "the unflushed writes are lost (fewer mapped blocks after the restart); after the "
             "journal replays, fsck is clean and every file synced before the cut is intact"),
]}

ORDER = ["fill-and-grow", "tiny-pool-mkfs", "fill-delete-trim", "snapshot-overwrite",
         "provision-then-fill", "two-tenants", "power-cut"]
