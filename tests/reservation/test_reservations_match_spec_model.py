#!/usr/bin/python3
"""Random operations against an independent model of SPEC section 5.

The model knows nothing of the implementation: it keeps, per volume, which
abstract block each vblock maps and whether it is provisioned, and derives
everything from scratch after each step: o(b) (volumes mapping b), g(b)
(those whose guarantee covers it), reserved = sum of need(b) plus the
guaranteed unmapped vblocks, used and free. It predicts whether each
operation succeeds (a write that needs a block fits when, after it,
reserved <= free; snapshot, strategy change and activation are admitted
when reserved <= free holds after them) and then compares the pool's and
every volume's counters (query-pool / query-volumes, the objects behind
`thinsim status` / `thinsim ls`) and, at the end, every volume's data.

Fixed seeds: the run is deterministic. On a mismatch the failure message
holds the seed and the operation log: the reproducer.

Operations: whole-block write, trim, resize (grow, shrink), WRITE_ZEROES without MAY_TRIM
(provision), control `provision`, snapshot (read-only or writable, one or
two origins at once), strategy change, pin/unpin, connect/disconnect (a
writable connection activates), delete, grow."""

import copy
import errno
import os
import random
import shutil
import sys
import tempfile
import time

import nbd

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import BS, block  # noqa: E402

STRATEGIES = ("none", "provision", "volume", "full")
BASE = (("a", 8), ("b", 8), ("c", 12))
TOTAL = 20
OPS = 400
# THINSIM_MODEL_SEEDS=N runs seeds 1..N (default 6) for a longer search.
SEEDS = tuple(range(1, int(os.environ.get("THINSIM_MODEL_SEEDS", "6")) + 1))
MAX_VOLUMES = 8


def need(o, g):
    if g == 0:
        return 0
    return g if o > g else g - 1


class Vol:
    def __init__(self, name, order, strategy, nvb, ro=False):
        self.name, self.order, self.strategy, self.nvb, self.ro = name, order, strategy, nvb, ro
        self.map = {}      # vb -> [block id, provisioned]
        self.data = {}     # vb -> seed (absent: zeroes)
        self.conn = False  # a writable connection (read-only export for ro)
        self.pinned = False

    def guarantee(self):
        if self.ro:
            return False, False
        active = self.conn or self.pinned
        return (self.strategy == "full" or (self.strategy == "volume" and active),
                self.strategy == "provision")

    def covers(self, prov):
        all_, p = self.guarantee()
        return all_ or (p and prov)


class Model:
    def __init__(self, total):
        self.total = total
        self.vols = {}
        self.next_block = 0
        self.next_order = 0
        # Persistent pools: blocks freed since the last commit. They are not
        # reused before the commit (SPEC 8), but count as free: an allocation
        # that needs them commits first, so they are free for admission too.
        self.pending = 0

    def add(self, name, strategy, nvb, ro=False):
        v = Vol(name, self.next_order, strategy, nvb, ro)
        self.next_order += 1
        self.vols[name] = v
        return v

    def owners(self):
        o, g = {}, {}
        for v in self.vols.values():
            for b, prov in v.map.values():
                o[b] = o.get(b, 0) + 1
                g[b] = g.get(b, 0) + v.covers(prov)
        return o, g

    def live(self):
        return set(self.owners()[0])

    def used(self):
        return len(self.owners()[0])

    def free(self):
        return self.total - self.used()

    def reserved(self):
        o, g = self.owners()
        r = sum(need(o[b], g[b]) for b in o)
        for v in self.vols.values():
            if v.guarantee()[0]:
                r += v.nvb - len(v.map)
        return r

    def volume_reserved(self, v):
        """How `ls` attributes the reservation (VolumeReservedLocked)."""
        o, g = self.owners()
        r = v.nvb - len(v.map) if v.guarantee()[0] else 0
        for vb, (b, prov) in v.map.items():
            if not v.covers(prov):
                continue
            if o[b] > g[b]:
                r += 1
            else:
                oldest = min(w.order for w in self.vols.values()
                             if vb in w.map and w.map[vb][0] == b)
                r += oldest != v.order
        return r

    def new_block(self):
        self.next_block += 1
        return self.next_block

    def ok(self):
        return self.reserved() <= self.free()


class ReservationsMatchSpecModel(rlib.TestCase):
    def run_seeds(self, persistent):
        self.stats = {}
        self.persistent = persistent
        # Persistent pools commit with fsync: half the seeds keep this short.
        for seed in SEEDS[:(len(SEEDS) + 1) // 2] if persistent else SEEDS:
            with self.subTest(seed=seed):
                self.run_seed(seed)
        # What was exercised (predicted outcomes, all seeds), for the log.
        sys.stderr.write("outcomes: %s\n" % ", ".join(
            "%s %s: %d" % (k[0], k[1], n) for k, n in sorted(self.stats.items())))

    def test_memory_pool(self):
        self.run_seeds(persistent=False)

    def test_persistent_pool(self):
        # pool=DIR: a freed block is reusable after the commit of the
        # transaction that freed it; commit-interval=3600 so that only the
        # requests themselves commit (flush, control commands, an allocation
        # that finds no space while freed blocks wait).
        self.run_seeds(persistent=True)

    # ---- plumbing --------------------------------------------------------

    def ctl(self, execute, arguments=None):
        return self.c.request(execute, arguments)

    def log(self, text):
        self.oplog.append(text)

    def fail_here(self, what):
        self.fail("seed %d, step %d: %s\noperation log:\n  %s" % (
            self.seed, len(self.oplog), what, "\n  ".join(self.oplog[-40:])))

    def expect(self, predicted, got_ok, what):
        key = (what.split()[0], "ok" if got_ok else "refused")
        self.stats[key] = self.stats.get(key, 0) + 1
        if predicted != got_ok:
            self.fail_here("%s: model says %s, server says %s" % (
                what, "success" if predicted else "ENOSPC", "success" if got_ok else "failure"))

    def wait_closed(self, name, before):
        deadline = time.monotonic() + 10
        while True:
            vols = {v["name"]: v for v in self.ctl("query-volumes")["return"]}
            if vols[name]["connections"] < before:
                return
            if time.monotonic() > deadline:
                self.fail_here("connection to %s not closed" % name)
            time.sleep(0.005)

    def compare(self):
        m = self.m
        pool = self.ctl("query-pool")["return"]
        want = (m.used(), m.free(), m.reserved(), m.total)
        got = (pool["used_blocks"], pool["free_blocks"], pool["reserved_blocks"],
               pool["total_blocks"])
        if got != want:
            self.fail_here("pool used/free/reserved/total: server %s, model %s" % (got, want))
        if pool["reserved_blocks"] > pool["free_blocks"] and self.broken is None:
            # Recorded, and reported at the end of the run, so that one such
            # step does not hide a later mismatch.
            self.broken = "seed %d, step %d: invariant reserved <= free broken: %s\n  %s" % (
                self.seed, len(self.oplog), pool, "\n  ".join(self.oplog[-12:]))
        o, _ = m.owners()
        vols = {v["name"]: v for v in self.ctl("query-volumes")["return"]}
        if sorted(vols) != sorted(m.vols):
            self.fail_here("volumes: server %s, model %s" % (sorted(vols), sorted(m.vols)))
        for name, v in m.vols.items():
            excl = sum(1 for b, _ in v.map.values() if o[b] == 1)
            want = {"mapped_blocks": len(v.map), "exclusive_blocks": excl,
                    "shared_blocks": len(v.map) - excl,
                    "provisioned_blocks": sum(1 for _, p in v.map.values() if p),
                    "reserved_blocks": m.volume_reserved(v), "strategy": v.strategy,
                    "active": (v.conn or v.pinned) and not v.ro, "read_only": v.ro}
            got = {k: vols[name][k] for k in want}
            if got != want:
                self.fail_here("volume %s: server %s, model %s" % (name, got, want))

    # ---- operations --------------------------------------------------------

    def apply(self, trial, commit):
        """Makes `trial` the model state. Blocks no volume maps any more are
        freed: at once in a memory pool, at the next commit in a persistent
        one (`commit`: this operation committed)."""
        freed = len(self.m.live() - trial.live())
        trial.pending = 0 if (commit or not self.persistent) else self.m.pending + freed
        self.m = trial

    def fits(self, trial):
        """Whether an allocation that leads to `trial` fits; like the pool,
        when it does not and blocks freed since the last commit exist, commit
        first (they become free) and check again."""
        if trial.ok():
            return True
        if trial.pending:
            trial.pending = 0
            self.m.pending = 0
            return trial.ok()
        return False

    def op_write(self, v, vb):
        m = self.m
        seed = self.rng.randrange(1, 1 << 30)
        trial = copy.deepcopy(m)
        tv = trial.vols[v.name]
        o, _ = m.owners()
        entry = v.map.get(vb)
        allocates = entry is None or o[entry[0]] > 1
        if allocates:
            tv.map[vb] = [trial.new_block(), entry[1] if entry else False]
        tv.data[vb] = seed
        predicted = (not allocates) or self.fits(trial)
        self.log("write %s vblock %d (%s)" % (v.name, vb, "allocates" if allocates else "in place"))
        try:
            self.h[v.name].pwrite(block(seed), vb * BS)
            got = True
        except nbd.Error as e:
            if e.errnum != errno.ENOSPC:
                self.fail_here("write: %s" % e)
            got = False
        self.expect(predicted, got, "write %s:%d" % (v.name, vb))
        if got:
            self.apply(trial, commit=False)

    def op_provision(self, v, vb, via_control):
        m = self.m
        trial = copy.deepcopy(m)
        tv = trial.vols[v.name]
        o, _ = m.owners()
        entry = v.map.get(vb)
        allocates = entry is None or o[entry[0]] > 1
        tv.map[vb] = [trial.new_block() if allocates else entry[0], True]
        if not via_control:
            tv.data.pop(vb, None)  # WRITE_ZEROES: reads zero
        predicted = (not allocates) or self.fits(trial)
        self.log("%s %s vblock %d (%s)" % ("provision" if via_control else "zero NO_HOLE", v.name,
                                            vb, "allocates" if allocates else "in place"))
        if via_control:
            r = self.ctl("provision", {"name": v.name, "offset": vb * BS, "length": BS})
            if "error" in r and r["error"]["errno"] != "ENOSPC":
                self.fail_here("provision: %s" % r)
            got = "return" in r
        else:
            try:
                self.h[v.name].zero(BS, vb * BS, nbd.CMD_FLAG_NO_HOLE)
                got = True
            except nbd.Error as e:
                if e.errnum != errno.ENOSPC:
                    self.fail_here("zero: %s" % e)
                got = False
        self.expect(predicted, got, "provision %s:%d" % (v.name, vb))
        if got:
            # A control command that succeeds commits.
            self.apply(trial, commit=via_control)

    def op_trim(self, v, vb):
        self.log("trim %s vblock %d" % (v.name, vb))
        self.h[v.name].trim(BS, vb * BS)
        trial = copy.deepcopy(self.m)
        trial.vols[v.name].map.pop(vb, None)
        trial.vols[v.name].data.pop(vb, None)
        self.apply(trial, commit=False)

    def op_flush(self, v):
        self.log("flush %s" % v.name)
        self.h[v.name].flush()
        self.m.pending = 0

    def op_snapshot(self, origins, ro):
        m = self.m
        trial = copy.deepcopy(m)
        pairs = []
        for o in origins:
            self.nsnap += 1
            name = "s%d" % self.nsnap
            src = trial.vols[o.name]
            s = trial.add(name, src.strategy, src.nvb, ro)
            s.map = copy.deepcopy(src.map)
            s.data = dict(src.data)
            pairs.append((o.name, name))
        predicted = trial.ok()
        self.log("snapshot%s %s" % (" --read-only" if ro else "",
                                    " ".join("%s:%s" % p for p in pairs)))
        args = {"snapshots": [{"origin": a, "name": b} for a, b in pairs]}
        if ro:
            args["read-only"] = True
        r = self.ctl("snapshot-create", args)
        if "error" in r and r["error"]["errno"] != "ENOSPC":
            self.fail_here("snapshot: %s" % r)
        self.expect(predicted, "return" in r, "snapshot")
        if "return" in r:
            self.apply(trial, commit=True)

    def op_set(self, v, strategy):
        trial = copy.deepcopy(self.m)
        trial.vols[v.name].strategy = strategy
        predicted = trial.ok() or trial.reserved() <= self.m.reserved()
        self.log("set %s reserve=%s" % (v.name, strategy))
        r = self.ctl("volume-set", {"name": v.name, "reserve": strategy})
        if "error" in r and r["error"]["errno"] != "ENOSPC":
            self.fail_here("set: %s" % r)
        self.expect(predicted, "return" in r, "set %s %s" % (v.name, strategy))
        if "return" in r:
            self.apply(trial, commit=True)

    def op_pin(self, v, pin):
        trial = copy.deepcopy(self.m)
        trial.vols[v.name].pinned = pin
        predicted = trial.ok() or trial.reserved() <= self.m.reserved()
        self.log("%s %s" % ("activate" if pin else "deactivate", v.name))
        r = self.ctl("volume-activate" if pin else "volume-deactivate", {"name": v.name})
        if "error" in r and r["error"]["errno"] != "ENOSPC":
            self.fail_here("pin: %s" % r)
        self.expect(predicted, "return" in r, "pin %s %s" % (v.name, pin))
        if "return" in r:
            self.apply(trial, commit=True)

    def op_connect(self, v):
        trial = copy.deepcopy(self.m)
        trial.vols[v.name].conn = True
        predicted = trial.ok() or trial.reserved() <= self.m.reserved()
        self.log("connect %s" % v.name)
        h = nbd.NBD()
        try:
            h.connect_uri(self.srv.uri(v.name))
            got = True
        except nbd.Error:
            got = False
        self.expect(predicted, got, "connect %s" % v.name)
        if got:
            self.h[v.name] = h
            self.apply(trial, commit=False)

    def op_disconnect(self, v):
        self.log("disconnect %s" % v.name)
        before = {x["name"]: x for x in self.ctl("query-volumes")["return"]}[v.name]["connections"]
        self.h.pop(v.name).shutdown()
        self.wait_closed(v.name, before)
        v.conn = False

    def op_delete(self, v):
        if v.conn:
            self.op_disconnect(v)
        self.log("delete %s" % v.name)
        r = self.ctl("volume-delete", {"name": v.name})
        if "return" not in r:
            self.fail_here("delete: %s" % r)
        trial = copy.deepcopy(self.m)
        del trial.vols[v.name]
        self.apply(trial, commit=True)

    def op_resize(self, v, nvb):
        """Grow or shrink, disconnected: an open NBD connection keeps the
        size it was given at connect time (NBD has no resize notice)."""
        if v.conn:
            self.op_disconnect(v)
        trial = copy.deepcopy(self.m)
        tv = trial.vols[v.name]
        tv.nvb = nvb
        for vb in [vb for vb in tv.map if vb >= nvb]:
            del tv.map[vb]
            tv.data.pop(vb, None)
        predicted = trial.ok() or trial.reserved() <= self.m.reserved()
        self.log("resize %s %d vblocks" % (v.name, nvb))
        r = self.ctl("volume-resize", {"name": v.name, "size": nvb * BS})
        if "error" in r and r["error"]["errno"] != "ENOSPC":
            self.fail_here("resize: %s" % r)
        self.expect(predicted, "return" in r, "resize %s %d" % (v.name, nvb))
        if "return" in r:
            self.apply(trial, commit=True)

    def op_grow(self):
        self.m.total += 2
        self.log("grow to %d blocks" % self.m.total)
        r = self.ctl("pool-grow", {"size": self.m.total * BS})
        if "return" not in r:
            self.fail_here("grow: %s" % r)
        self.m.pending = 0

    def verify_data(self):
        """Every volume's data: make each `none` (never refused: it only
        lowers the reservation), connect, read."""
        for v in list(self.m.vols.values()):
            if not v.ro and v.strategy != "none":
                self.op_set(v, "none")
            if not v.conn:
                self.op_connect(v)
            got = self.h[v.name].pread(v.nvb * BS, 0)
            for vb in range(v.nvb):
                want = block(v.data[vb]) if vb in v.data else rlib.ZERO
                if got[vb * BS:(vb + 1) * BS] != want:
                    self.fail_here("data of %s vblock %d" % (v.name, vb))

    # ---- driver ----------------------------------------------------------------

    def run_seed(self, seed):
        self.seed, self.rng, self.oplog, self.nsnap, self.h = seed, random.Random(seed), [], 0, {}
        self.broken = None
        self.c = None
        self.m = Model(TOTAL)
        params = ["size=%dK" % (TOTAL * 64), "block-size=64K"]
        if self.persistent:
            pool_dir = tempfile.mkdtemp(prefix="thinsim-res-model-", dir="/tmp")
            self.addCleanup(shutil.rmtree, pool_dir, True)
            params += ["pool=" + pool_dir, "commit-interval=3600"]
        strategies = [self.rng.choice(("provision", "volume", "none")) for _ in BASE]
        for (name, nvb), s in zip(BASE, strategies):
            params.append("volume=%s:%dK:%s" % (name, nvb * 64, s))
            self.m.add(name, s, nvb)
        self.srv = rlib.Server(*params)
        try:
            self.srv.start()
            self.c = rlib.ControlConnection(self.srv.ctl)
            self.log("start %s" % " ".join(params))
            self.compare()
            for _ in range(OPS):
                self.step()
                self.compare()
            self.verify_data()
            self.compare()
            if self.broken:
                self.fail(self.broken)
        finally:
            if self.c is not None:
                self.c.close()
            for h in self.h.values():
                try:
                    h.shutdown()
                except nbd.Error:
                    pass
            self.srv.stop()

    def step(self):
        rng, m = self.rng, self.m
        vols = sorted(m.vols.values(), key=lambda v: v.order)
        writable = [v for v in vols if v.conn and not v.ro]
        r = rng.random()
        if r < 0.38 and writable:
            v = rng.choice(writable)
            self.op_write(v, rng.randrange(v.nvb))
        elif r < 0.43 and writable:
            v = rng.choice(writable)
            self.op_trim(v, rng.randrange(v.nvb))
        elif r < 0.45 and writable:
            self.op_flush(rng.choice(writable))
        elif r < 0.52 and writable:
            v = rng.choice(writable)
            self.op_provision(v, rng.randrange(v.nvb), via_control=False)
        elif r < 0.55:
            v = rng.choice([v for v in vols if not v.ro] or vols)
            if not v.ro:
                self.op_provision(v, rng.randrange(v.nvb), via_control=True)
        elif r < 0.64 and len(vols) < MAX_VOLUMES:
            k = 2 if rng.random() < 0.25 and len(vols) >= 2 else 1
            self.op_snapshot(rng.sample(vols, k), ro=rng.random() < 0.4)
        elif r < 0.72:
            v = rng.choice(vols)
            self.op_set(v, rng.choice(STRATEGIES))
        elif r < 0.80:
            v = rng.choice([v for v in vols if not v.ro] or vols)
            if not v.ro:
                self.op_pin(v, not v.pinned)
        elif r < 0.93:
            v = rng.choice(vols)
            if v.conn:
                self.op_disconnect(v)
            else:
                self.op_connect(v)
        elif r < 0.96 and len(vols) > 2:
            self.op_delete(rng.choice(vols))
        elif r < 0.98:
            v = rng.choice([v for v in vols if not v.ro] or vols)
            if not v.ro:
                self.op_resize(v, max(1, v.nvb + rng.choice((-3, -1, 1, 2, 4))))
        elif m.total < 40:
            self.op_grow()


if __name__ == "__main__":
    rlib.main()
