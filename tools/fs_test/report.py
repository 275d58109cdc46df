"""Reports: the JSON object of one run, its human text, a summary of many runs,
and two reports side by side."""

import shutil
import textwrap

from .util import fmt_size

REPORT_VERSION = 1


def build(run, verdict, reasons, duration, leftovers, error=None, pool_end=(None, None)):
    """The report of one run, as a JSON-able dict."""
    cfg = run.cfg if run else None
    status, volumes = pool_end
    vols = {}
    attach = None
    if run is not None:
        for v in run.volumes.values():
            if not v.attached:
                continue  # e.g. a filler volume written over NBD only
            d = dict(v.result)
            d["size"] = v.size
            d["strategy"] = v.strategy
            d["device"] = v.dev
            d["files_written"] = len(v.files)
            vols[v.name] = d
            if v.attached and attach is None:
                attach = dict(v.attached.detail)
    rep = {
        "version": REPORT_VERSION,
        "scenario": cfg.scenario if cfg else None,
        "fs": cfg.fs if cfg else None,
        "reserve": cfg.reserve if cfg else None,
        "when_full": cfg.when_full if cfg else None,
        "verdict": verdict,
        "reasons": reasons,
        "error": error,
        "duration_s": round(duration, 1),
        "run_dir": run.run_dir if run else None,
        "config": cfg.as_dict() if cfg else None,
        "pool_params": run.pool_params if run else None,
        "attach": attach,
        "block_size": cfg.block_size if cfg else None,
        "timeline": run.timeline if run else [],
        "first_failure": run.first_failure if run else None,
        "errors": run.errors[:50] if run else [],
        "errors_total": len(run.errors) if run else 0,
        "hang": run.hang if run else None,
        "volumes": vols,
        "pool_end": status,
        "volumes_end": volumes,
        "checks": run.checks if run else [],
        "notes": run.notes if run else [],
        "extra": run.extra if run else {},
        "cleanup": {"ok": not leftovers, "leftovers": leftovers},
    }
    return rep


def skipped(scenario, fs, reserve, reason, when_full=None):
    return {"version": REPORT_VERSION, "scenario": scenario, "fs": fs, "reserve": reserve,
            "when_full": when_full,
            "verdict": "skip", "reasons": [reason], "checks": [], "timeline": [],
            "volumes": {}, "cleanup": {"ok": True, "leftovers": []}}


def _pool_line(p, bs):
    """pool used/total, reserved if any, the mode if not `write`."""
    if not p:
        return ""
    s = "pool %s/%s" % (fmt_size(p["used_blocks"] * bs), fmt_size(p["total_blocks"] * bs))
    if p["reserved_blocks"]:
        s += " rsv %s" % fmt_size(p["reserved_blocks"] * bs)
    if p.get("mode") != "write":
        s += " " + {"out-of-data-space": "FULL"}.get(p.get("mode"), str(p.get("mode")).upper())
    return s


def _wrap(text, width, indent="", sub="    "):
    return textwrap.wrap(text, width=width, initial_indent=indent,
                         subsequent_indent=indent + sub, break_long_words=True,
                         break_on_hyphens=False) or [indent]


def human(rep, width=100, max_timeline=40, max_kernel=8):
    """The report as text lines, each at most `width` columns."""
    out = []
    W = lambda t, i="", s="    ": out.extend(_wrap(t, width, i, s))  # noqa: E731
    head = "%s  %s  reserve=%s  when-full=%s" % (rep.get("scenario"), rep.get("fs"),
                                                rep.get("reserve"), rep.get("when_full"))
    W("== %s: %s" % (head, rep["verdict"].upper()))
    if rep["verdict"] == "skip":
        for r in rep.get("reasons", []):
            W("skipped: " + r, "   ")
        return out
    bs = rep.get("block_size") or 65536
    att = rep.get("attach") or {}
    if att:
        how = att.get("method")
        if att.get("loop"):
            how += " %s%s" % (att["loop"], ", direct I/O" if att.get("loop_direct_io") else ", buffered")
        elif att.get("device"):
            how += " " + att["device"]
        W("attach: %s; %.0f s; pool: %s" % (how, rep.get("duration_s", 0),
                                             " ".join(rep.get("pool_params") or [])), "   ")
    if rep.get("error"):
        W("harness error: " + rep["error"], "   ")
    out.append("-- timeline")
    tl = rep.get("timeline", [])
    shown = tl if len(tl) <= max_timeline else tl[:max_timeline // 2] + [None] + tl[-max_timeline // 2:]
    for e in shown:
        if e is None:
            out.append("   ... (%d more in --json)" % (len(tl) - max_timeline))
            continue
        extra = _pool_line(e.get("pool"), bs)
        fsu = e.get("fs")
        if fsu:
            extra += "%sfs %s/%s" % ("; " if extra else "", fmt_size(fsu["used"]), fmt_size(fsu["size"]))
        W("%6.1fs %s%s" % (e["t"], e["what"], ("  [%s]" % extra) if extra else ""), " ", "          ")
    out.append("-- outcome")
    ff = rep.get("first_failure")
    if ff:
        W("first failure: %s() on %s%s in %s: %s (%s)" % (
            ff.get("op"), ff.get("file") or "-",
            (" at offset %s" % fmt_size(ff["offset"])) if ff.get("offset") else "",
            ff.get("volume"), ff.get("errno"), ff.get("message") or ""), "   ")
        if rep.get("errors_total", 0) > 1:
            W("(%d application errors in all)" % rep["errors_total"], "   ")
    else:
        W("first failure: none (no operation failed)", "   ")
    for name, v in rep.get("volumes", {}).items():
        fr = v.get("fs_reaction")
        if fr:
            W("%s filesystem: %s" % (name, fr.get("summary")), "   ")
        if v.get("fsck"):
            f = v["fsck"]
            W("%s fsck: %s%s  [%s]%s" % (name, f.get("verdict"),
                                         (" after %s" % f["log_replay"]) if f.get("log_replay") else "",
                                         f.get("tool", ""), ("; " + f["note"]) if f.get("note") else ""),
              "   ")
        for m in (v.get("kernel_after_scenario") or [])[:3]:
            W("%s later kernel: %s" % (name, m), "   ")
        cs = v.get("checksums")
        if cs:
            b = cs.get("before_event", {})
            txt = "%s checksums: %d/%d files intact; written before the event: %d/%d" % (
                name, cs["intact"], cs["checked"], b.get("intact", 0), b.get("checked", 0))
            if cs.get("mismatched"):
                txt += "; MISMATCH: " + ", ".join(cs["mismatched"][:5])
            if cs.get("unreadable"):
                txt += "; unreadable: " + ", ".join(cs["unreadable"][:5])
            if cs.get("indeterminate"):
                txt += "; %d cut off by the failure (not checked)" % cs["indeterminate"]
            if cs.get("note"):
                txt += "; " + cs["note"]
            W(txt, "   ")
    pe = rep.get("pool_end")
    if pe:
        W("pool at end: %d/%d blocks used (%s of %s), %d reserved, %d free, mode %s" % (
            pe["used_blocks"], pe["total_blocks"], fmt_size(pe["used_blocks"] * pe["block_size"]),
            fmt_size(pe["total_blocks"] * pe["block_size"]), pe["reserved_blocks"],
            pe["free_blocks"], pe["mode"]), "   ")
    for v in rep.get("volumes_end") or []:
        W("  %s %s %s: mapped %d, exclusive %d, shared %d, provisioned %d, reserved %d" % (
            v["name"], fmt_size(v["size"]), v["strategy"], v["mapped_blocks"], v["exclusive_blocks"],
            v["shared_blocks"], v["provisioned_blocks"], v["reserved_blocks"]), "   ")
    out.append("-- checks")
    for c in rep.get("checks", []):
        W("[%s] %s%s" % ({True: "ok", False: "FAIL", None: "--"}[c["ok"]], c["name"],
                         (": " + c["detail"]) if c.get("detail") else ""), "   ")
    for n in rep.get("notes", []):
        W("note: " + n, "   ")
    kshown = 0
    for name, v in rep.get("volumes", {}).items():
        fr = v.get("fs_reaction") or {}
        msgs = fr.get("kernel_messages") or []
        if msgs and max_kernel:
            out.append("-- kernel (%s: %d of %d lines)" % (name, min(max_kernel, len(_pick_kernel(msgs, max_kernel))),
                                                         fr.get("kernel_messages_total", len(msgs))))
            for m in _pick_kernel(msgs, max_kernel):
                W(m, "   ", "      ")
            kshown += 1
    cl = rep.get("cleanup", {})
    if not cl.get("ok", True):
        W("CLEANUP LEFT: " + "; ".join(cl.get("leftovers", [])), "   ")
    return out


def _pick_kernel(msgs, n):
    """Error lines first (one of each kind, then more), in log order."""
    from .kmsg import classify
    errs = [m for m in msgs if classify([(0, m)])]
    if errs:
        msgs = errs
    seen = []
    keys = set()
    for m in msgs:
        k = m.split(":")[0][:30] + ("ENOSPC" if "space" in m else "")
        if k not in keys:
            keys.add(k)
            seen.append(m)
    for m in msgs:
        if len(seen) >= n:
            break
        if m not in seen:
            seen.append(m)
    order = {m: i for i, m in enumerate(msgs)}
    return sorted(seen[:n], key=lambda m: order[m])


def summary(reports):
    lines = ["== summary"]
    for r in reports:
        ff = r.get("first_failure") or {}
        fsck = ",".join(v.get("fsck", {}).get("verdict", "-") for v in r.get("volumes", {}).values()) or "-"
        lines.append("   %-5s %-20s %-6s %-9s first failure %-16s fsck %-8s %5.0fs" % (
            r["verdict"].upper(), r.get("scenario"), r.get("fs"), r.get("reserve") or "-",
            ("%s@%s" % (ff.get("errno"), ff.get("op"))) if ff else "none", fsck,
            r.get("duration_s") or 0))
    n = {k: sum(1 for r in reports if r["verdict"] == k)
         for k in ("pass", "fail", "skip", "error", "interrupted", "xfail")}
    lines.append("   %d passed, %d failed, %d known failures, %d skipped%s" % (
        n["pass"], n["fail"] + n["error"] + n["interrupted"], n["xfail"], n["skip"],
        "" if not n["interrupted"] else ", interrupted"))
    return lines


def side_by_side(a, b, total_width=None):
    """Two reports' human text in two columns."""
    if total_width is None:
        total_width = max(120, min(200, shutil.get_terminal_size((160, 40)).columns))
    col = (total_width - 3) // 2
    la = human(a, width=col, max_timeline=30, max_kernel=5)
    lb = human(b, width=col, max_timeline=30, max_kernel=5)
    # Align the sections so that the same section starts on the same line.
    sa, sb = align(_sections(la), _sections(lb))
    out = []
    for (ha, ba), (hb, bb) in zip(sa, sb):
        n = max(len(ba), len(bb))
        ba = ba + [""] * (n - len(ba))
        bb = bb + [""] * (n - len(bb))
        for x, y in zip(ba, bb):
            out.append(x.ljust(col) + " | " + y)
    for extra in sa[len(sb):]:
        out += [x.ljust(col) + " |" for x in extra[1]]
    for extra in sb[len(sa):]:
        out += [" " * col + " | " + y for y in extra[1]]
    return out


def _sections(lines):
    """[(title, lines)] split at '-- ' headings; the first is the header."""
    secs = [("head", [])]
    for l in lines:
        if l.startswith("-- "):
            secs.append((l.split()[1], [l]))
        else:
            secs[-1][1].append(l)
    # Pair sections by title so that both columns show the same ones.
    return secs


def align(sa, sb):
    titles = []
    for t, _ in sa + sb:
        if t not in titles:
            titles.append(t)
    da, db = dict(sa), dict(sb)
    return [(t, da.get(t, [])) for t in titles], [(t, db.get(t, [])) for t in titles]
