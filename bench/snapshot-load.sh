#!/usr/bin/env bash
# bench/snapshot-load.sh: what snapshots cost, alone and under I/O (issue 6).
# Run on demand, not in CI.
#
# Usage: bench/snapshot-load.sh [options]
#   --runtime SECONDS    length of each fio run in part 2 (default 20)
#   --parts LIST         1, 2 or 1,2 (default 1,2)
#   --reps N             snapshots timed per case in part 1 (default 5)
#   --mapped LIST        part 1 volumes, MAPPED[/VBLOCKS] in blocks, K/M
#                        suffixes (x1024); VBLOCKS defaults to MAPPED
#                        (default 1K,100K,1M,1K/1M)
#   --strategies LIST    part 1 reservation strategies (default none,volume)
#   --snap-block-size S  part 1 pool block size (default 4K)
#   --size SIZE          part 2 volume / memory disk size (default 1G)
#   --block-size S       part 2 pool block size (default: the plugin's, 64K)
#   --interval SECONDS   part 2 snapshot period (default 1)
#   --json FILE          also write all results as JSON to FILE
#   --plugin PATH        thinsim plugin (default build/plugin/nbdkit-thinsim-plugin.so)
#   --cli PATH           thinsim CLI (default build/tools/thinsim)
#   -h, --help           this text
#
# Part 1, snapshot latency against the volume's size and mapped blocks: for
# every MAPPED[/VBLOCKS] and strategy, a fresh in-memory pool (size
# 2 x VBLOCKS + 64M, block size --snap-block-size) with volume vol0 of VBLOCKS
# blocks and that strategy; `thinsim provision vol0 0 MAPPED*bs` maps the
# first MAPPED blocks (allocation only, no data is written, so it is cheap).
# For `volume` the volume is pinned active (`thinsim activate vol0`, the same
# as an open writable connection for reservations), so the snapshot must
# reserve a block for every mapped block it shares. Then REPS times each:
#   cli   wall time of `thinsim snapshot vol0 sN` (includes the CLI's start)
#   ctl   request-to-reply time of snapshot-create over an open control
#         socket connection (a small Python client: no process start)
# and the snapshot is deleted again (untimed) after each. Prints the median
# and the max of each.
#
# Part 2, read/write latency while snapshots are taken: fio (nbd engine, 4K
# randrw 50/50, iodepth 8, time based) against a prefilled volume (one 1M
# sequential write of the whole size first):
#   memory      nbdkit's memory plugin, the baseline
#   thinsim     thinsim (strategy none), no snapshots
#   thinsim+snap  the same, with a background client taking a snapshot of
#               vol0 every --interval seconds and deleting the one before the
#               last (at most two kept, so memory stays bounded); pool size
#               4 x SIZE + 64M
# Prints p50/p99/p99.9/max of read and write latency (fio's lat: submission to
# completion), IOPS, and for thinsim+snap the snapshot-create and
# volume-delete latencies of the loop and the worst 100 ms windows of fio's
# latency log with the control operation that preceded each.
#
# Needs fio (with the nbd engine), nbdkit, jq, python3, and the built plugin
# and CLI. Servers are started with --exit-with-parent and killed on exit.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//p}' "$0"; }

die() { echo "snapshot-load: $*" >&2; exit 1; }
say() { echo "snapshot-load: $*" >&2; }

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
runtime=20
parts="1,2"
reps=5
mapped_list="1K,100K,1M,1K/1M"
strategies="none,volume"
snap_bs="4K"
size=1G
block_size=""
interval=1
json=""
plugin="$root/build/plugin/nbdkit-thinsim-plugin.so"
cli="$root/build/tools/thinsim"

while (($#)); do
  case "$1" in
    --runtime) runtime="${2:?--runtime needs a value}"; shift ;;
    --parts) parts="${2:?--parts needs a value}"; shift ;;
    --reps) reps="${2:?--reps needs a value}"; shift ;;
    --mapped) mapped_list="${2:?--mapped needs a value}"; shift ;;
    --strategies) strategies="${2:?--strategies needs a value}"; shift ;;
    --snap-block-size) snap_bs="${2:?--snap-block-size needs a value}"; shift ;;
    --size) size="${2:?--size needs a value}"; shift ;;
    --block-size) block_size="${2:?--block-size needs a value}"; shift ;;
    --interval) interval="${2:?--interval needs a value}"; shift ;;
    --json) json="${2:?--json needs a file}"; shift ;;
    --plugin) plugin="${2:?--plugin needs a path}"; shift ;;
    --cli) cli="${2:?--cli needs a path}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done

[[ "$runtime" =~ ^[1-9][0-9]*$ ]] || die "--runtime must be a positive integer"
[[ "$reps" =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive integer"
[[ "$interval" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--interval must be a number of seconds"
size_bytes="$(to_bytes "$size")"
snap_bs_bytes="$(to_bytes "$snap_bs")"
bs_bytes=65536
[[ -n "$block_size" ]] && bs_bytes="$(to_bytes "$block_size")"
do1=0 do2=0
[[ ",$parts," == *",1,"* ]] && do1=1
[[ ",$parts," == *",2,"* ]] && do2=1
((do1 || do2)) || die "--parts names no part (1, 2)"

for cmd in fio nbdkit jq python3; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found"
done
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd ioengine"
[[ -f "$plugin" ]] || die "thinsim plugin not found at $plugin (build it, or pass --plugin)"
[[ -x "$cli" ]] || die "thinsim CLI not found at $cli (build it, or pass --cli)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/snapshot-load.XXXXXX")"
server_pids=()
helper_pids=()
cleanup() {
  local pid
  for pid in "${helper_pids[@]}" "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${helper_pids[@]}" "${server_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


ts() { "$cli" --socket "$tmp/thinsim.ctl" "$@"; }

# The control socket client (no greeting; one JSON object per line each way).
cat >"$tmp/ctl.py" <<'EOF'
import json, signal, socket, sys, time

class Ctl:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        self.n = 0
    def call(self, execute, **args):
        self.n += 1
        msg = {"execute": execute, "arguments": args, "id": self.n}
        line = (json.dumps(msg) + "\n").encode()
        t0 = time.perf_counter()
        self.s.sendall(line)
        reply = self.f.readline()
        t1 = time.perf_counter()
        if not reply:
            raise SystemExit("control socket closed")
        return json.loads(reply), (t1 - t0) * 1000.0

def snaplat(path, reps, origin, prefix):
    c = Ctl(path)
    out = []
    for i in range(reps):
        name = "%s%d" % (prefix, i)
        r, ms = c.call("snapshot-create", origin=origin, name=name)
        if "return" not in r:
            raise SystemExit("snapshot-create failed: %s" % r)
        r2, dms = c.call("volume-delete", name=name)
        if "return" not in r2:
            raise SystemExit("volume-delete failed: %s" % r2)
        out.append({"snap_ms": ms, "delete_ms": dms})
    print(json.dumps(out))

def loop(path, interval, origin, prefix, outfile):
    # Every `interval` s: snapshot origin -> prefixN, then delete prefix(N-2),
    # so at most two snapshots exist. One line of JSON per operation, with the
    # wall-clock time (epoch ms) it started. Stops on SIGTERM.
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    c = Ctl(path)
    out = open(outfile, "w", buffering=1)
    names = []
    i = 0
    nxt = time.monotonic()
    while not stop:
        name = "%s%d" % (prefix, i)
        t = time.time() * 1000.0
        r, ms = c.call("snapshot-create", origin=origin, name=name)
        out.write(json.dumps({"t": t, "op": "snapshot", "name": name, "ms": ms,
                              "ok": "return" in r}) + "\n")
        if "return" in r:
            names.append(name)
        if len(names) > 2:
            old = names.pop(0)
            t = time.time() * 1000.0
            r, ms = c.call("volume-delete", name=old)
            out.write(json.dumps({"t": t, "op": "delete", "name": old, "ms": ms,
                                  "ok": "return" in r}) + "\n")
        i += 1
        nxt += interval
        while not stop and time.monotonic() < nxt:
            time.sleep(min(0.02, max(0.0, nxt - time.monotonic())))

if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "snaplat":
        snaplat(path, int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif mode == "loop":
        loop(path, float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
    else:
        raise SystemExit("unknown mode " + mode)
EOF

now_ns() { date +%s%N; }

results1="$tmp/part1.jsonl"
results2="$tmp/part2.jsonl"
: >"$results1"
: >"$results2"

say "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(fio --version), $(nbdkit --version)"

# ---------------------------------------------------------------- part 1
if ((do1)); then
  IFS=, read -r -a _cases <<<"$mapped_list"
  IFS=, read -r -a _strats <<<"$strategies"
  for c in "${_cases[@]}"; do
    m_str="${c%%/*}"
    v_str="$m_str"
    [[ "$c" == */* ]] && v_str="${c#*/}"
    mapped="$(to_bytes "$m_str")"
    vblocks="$(to_bytes "$v_str")"
    ((mapped <= vblocks)) || die "--mapped $c: more mapped blocks than vblocks"
    vol_bytes=$((vblocks * snap_bs_bytes))
    pool_bytes=$((2 * vol_bytes + (64 << 20)))
    for strat in "${_strats[@]}"; do
      say "part 1: mapped $mapped of $vblocks blocks ($snap_bs), strategy $strat ..."
      start_server thinsim "$plugin" size="$pool_bytes" block-size="$snap_bs_bytes" \
        volume="vol0:$vol_bytes:$strat" control="$tmp/thinsim.ctl"
      t0="$(now_ns)"
      ts provision vol0 0 $((mapped * snap_bs_bytes)) >/dev/null || die "provision failed"
      prov_ms="$(( ($(now_ns) - t0) / 1000000 ))"
      [[ "$strat" == volume ]] && { ts activate vol0 >/dev/null || die "activate failed"; }
      vinfo="$(ts --json ls | jq -c '(if type == "object" and has("return") then .return else . end)
                 | map(select(.name == "vol0"))[0] | {mapped_blocks, active, strategy}')"
      cli_ms=()
      for ((i = 0; i < reps; i++)); do
        t0="$(now_ns)"
        ts snapshot vol0 "c$i" >/dev/null || die "thinsim snapshot failed"
        t1="$(now_ns)"
        cli_ms+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')")
        ts delete "c$i" >/dev/null || die "thinsim delete failed"
      done
      ctl_json="$(python3 "$tmp/ctl.py" snaplat "$tmp/thinsim.ctl" "$reps" vol0 p)" ||
        die "control client failed"
      stop_servers
      jq -nc --argjson mapped "$mapped" --argjson vblocks "$vblocks" --arg strat "$strat" \
        --argjson bs "$snap_bs_bytes" --argjson prov_ms "$prov_ms" --argjson vinfo "$vinfo" \
        --argjson cli "[$(IFS=,; echo "${cli_ms[*]}")]" --argjson ctl "$ctl_json" \
        'def med: sort | if length % 2 == 1 then .[length / 2 | floor]
                         else (.[length / 2 - 1] + .[length / 2]) / 2 end;
         {mapped_blocks: $mapped, vblocks: $vblocks, strategy: $strat, block_size: $bs,
          provision_ms: $prov_ms, volume: $vinfo,
          cli_ms: $cli, ctl_ms: [$ctl[].snap_ms], delete_ms: [$ctl[].delete_ms],
          cli_median_ms: ($cli | med), cli_max_ms: ($cli | max),
          ctl_median_ms: ([$ctl[].snap_ms] | med), ctl_max_ms: ([$ctl[].snap_ms] | max),
          delete_median_ms: ([$ctl[].delete_ms] | med)}' >>"$results1"
    done
  done
  {
    echo
    echo "Part 1: snapshot latency (ms; median of $reps, max in parentheses; block size $snap_bs)"
    printf '%-10s %-10s %-9s %18s %18s %12s\n' "mapped" "vblocks" "strategy" "cli (wall)" "ctl socket" "delete med"
    jq -r '[.mapped_blocks, .vblocks, .strategy,
            "\(.cli_median_ms * 100 | round / 100) (\(.cli_max_ms * 100 | round / 100))",
            "\(.ctl_median_ms * 1000 | round / 1000) (\(.ctl_max_ms * 1000 | round / 1000))",
            (.delete_median_ms * 100 | round / 100)] | @tsv' "$results1" |
      while IFS=$'\t' read -r m v s a b d; do
        printf '%-10s %-10s %-9s %18s %18s %12s\n' "$m" "$v" "$s" "$a" "$b" "$d"
      done
  }
fi

# ---------------------------------------------------------------- part 2
# fio_run OUT URI [extra...]: the measured job, JSON in OUT, latency log
# (max per 100 ms window) under OUT.lat_*.log.
fio_run() {
  local out="$1" uri="$2"
  shift 2
  if ! fio --name=job --ioengine=nbd --uri="$uri" --rw=randrw --rwmixread=50 --bs=4k \
    --iodepth=8 --time_based --runtime="$runtime" --size="$size_bytes" \
    --lat_percentiles=1 --percentile_list=50:99:99.9 \
    --write_lat_log="$out" --log_avg_msec=100 --log_max_value=1 \
    --output-format=json --output="$out" "$@" >"$out.log" 2>&1; then
    cat "$out.log" >&2
    die "fio failed"
  fi
}

prefill() {
  fio --name=prefill --ioengine=nbd --uri="$1" --rw=write --bs=1M --iodepth=8 \
    --size="$size_bytes" --output-format=json --output="$tmp/prefill.json" >"$tmp/prefill.log" 2>&1 ||
    { cat "$tmp/prefill.log" >&2; die "prefill failed"; }
}

# summarize NAME OUT [SNAPLOG]: one JSON line with the percentiles (µs).
summarize() {
  local name="$1" out="$2" snaplog="${3:-}"
  python3 - "$name" "$out" "$snaplog" <<'EOF'
import json, sys, os
name, out, snaplog = sys.argv[1], sys.argv[2], sys.argv[3]
j = json.load(open(out))["jobs"][0]
res = {"name": name}
def pct(d):
    p = d["lat_ns"].get("percentile", {})
    g = lambda k: p.get(k, 0) / 1000.0
    return {"iops": d["iops"], "p50_us": g("50.000000"), "p99_us": g("99.000000"),
            "p99.9_us": g("99.900000"), "max_us": d["lat_ns"]["max"] / 1000.0,
            "mean_us": d["lat_ns"]["mean"] / 1000.0}
res["read"] = pct(j["read"])
res["write"] = pct(j["write"])
# fio's latency log: time ms since job start, max latency ns in the window,
# direction (0 read, 1 write).
win = []
logf = out + "_lat.1.log"
if os.path.exists(logf):
    for line in open(logf):
        f = [x.strip() for x in line.split(",")]
        if len(f) >= 3:
            win.append((int(f[0]), int(f[1]) / 1000.0, int(f[2])))
res["windows"] = len(win)
if snaplog and os.path.exists(snaplog):
    ops = [json.loads(l) for l in open(snaplog) if l.strip()]
    js = json.load(open(out))
    # job start (epoch ms) ~ end of output - runtime; fio writes
    # timestamp_ms when the job ends. Good to a few tens of ms.
    start = js["timestamp_ms"] - j["job_runtime"]
    for o in ops:
        o["rel_ms"] = o["t"] - start
    snaps = [o for o in ops if o["op"] == "snapshot"]
    dels = [o for o in ops if o["op"] == "delete"]
    def stats(xs):
        xs = sorted(xs)
        if not xs:
            return None
        return {"n": len(xs), "median_ms": xs[len(xs) // 2], "max_ms": xs[-1]}
    res["snapshot_ops"] = stats([o["ms"] for o in snaps])
    res["delete_ops"] = stats([o["ms"] for o in dels])
    res["snapshot_failures"] = sum(1 for o in ops if not o["ok"])
    # Worst windows, each with the last control operation that started
    # before the window's end (windows end at their timestamp).
    worst = sorted(win, key=lambda w: -w[1])[:8]
    tagged = []
    for t, lat, d in worst:
        prev = [o for o in ops if o["rel_ms"] <= t]
        p = prev[-1] if prev else None
        tagged.append({"window_end_ms": t, "max_us": lat, "dir": "write" if d else "read",
                       "prev_op": p["op"] if p else None,
                       "prev_op_age_ms": (t - p["rel_ms"]) if p else None,
                       "prev_op_ms": p["ms"] if p else None})
    res["worst_windows"] = tagged
    # Share of windows whose max is > 4x the median window max, split by
    # whether a control op started within the window or the one before.
    if win:
        for dname, dv in (("read", 0), ("write", 1)):
            w = [x for x in win if x[2] == dv]
            if not w:
                continue
            med = sorted(x[1] for x in w)[len(w) // 2]
            near = lambda t: any(t - 200 < o["rel_ms"] <= t for o in ops)
            hi = [x for x in w if x[1] > 4 * med]
            res["spikes_" + dname] = {"median_window_max_us": med, "windows": len(w),
                                      "spike_windows": len(hi),
                                      "spike_windows_near_op": sum(1 for x in hi if near(x[0])),
                                      "windows_near_op": sum(1 for x in w if near(x[0]))}
print(json.dumps(res))
EOF
}

if ((do2)); then
  pool_bytes=$((4 * size_bytes + (64 << 20)))
  bs_arg=()
  [[ -n "$block_size" ]] && bs_arg=("block-size=$bs_bytes")
  ((size_bytes % bs_bytes == 0)) || die "--size must be a multiple of the block size"

  say "part 2: memory plugin baseline ($size, ${runtime}s) ..."
  start_server memory memory "$size_bytes"
  uri="nbd+unix:///?socket=$tmp/memory.sock"
  prefill "$uri"
  fio_run "$tmp/memory.json" "$uri"
  stop_servers
  summarize memory "$tmp/memory.json" >>"$results2"

  say "part 2: thinsim, no snapshots ..."
  start_server thinsim "$plugin" size="$pool_bytes" "${bs_arg[@]}" volume="vol0:$size_bytes" \
    control="$tmp/thinsim.ctl"
  uri="nbd+unix:///vol0?socket=$tmp/thinsim.sock"
  prefill "$uri"
  fio_run "$tmp/thinsim.json" "$uri"
  stop_servers
  summarize thinsim "$tmp/thinsim.json" >>"$results2"

  say "part 2: thinsim, snapshot every ${interval}s ..."
  start_server thinsim "$plugin" size="$pool_bytes" "${bs_arg[@]}" volume="vol0:$size_bytes" \
    control="$tmp/thinsim.ctl"
  prefill "$uri"
  used_before="$(ts --json status | jq '(if has("return") then .return else . end).used_blocks')"
  python3 "$tmp/ctl.py" loop "$tmp/thinsim.ctl" "$interval" vol0 s "$tmp/snaplog.jsonl" &
  helper_pids+=("$!")
  fio_run "$tmp/thinsim-snap.json" "$uri"
  for pid in "${helper_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  helper_pids=()
  used_after="$(ts --json status | jq '(if has("return") then .return else . end).used_blocks')"
  vols_after="$(ts --json ls | jq -c '(if type == "object" and has("return") then .return else . end) | map(.name)')"
  stop_servers
  summarize "thinsim+snap" "$tmp/thinsim-snap.json" "$tmp/snaplog.jsonl" |
    jq -c --argjson ub "$used_before" --argjson ua "$used_after" --argjson v "$vols_after" \
      '. + {used_blocks_before: $ub, used_blocks_after: $ua, volumes_after: $v}' >>"$results2"

  {
    echo
    echo "Part 2: fio randrw 50/50 4K, iodepth 8, ${runtime}s, $size prefilled; latency in µs (submission to completion)"
    printf '%-13s %8s %8s %8s %9s %9s | %8s %8s %8s %9s %9s\n' server "rd IOPS" "rd p50" "rd p99" "rd p99.9" "rd max" \
      "wr IOPS" "wr p50" "wr p99" "wr p99.9" "wr max"
    jq -r '[.name, (.read.iops | floor), (.read.p50_us | floor), (.read.p99_us | floor), (.read["p99.9_us"] | floor),
            (.read.max_us | floor), (.write.iops | floor), (.write.p50_us | floor), (.write.p99_us | floor),
            (.write["p99.9_us"] | floor), (.write.max_us | floor)] | @tsv' "$results2" |
      while IFS=$'\t' read -r n a b c d e f g h i k; do
        printf '%-13s %8s %8s %8s %9s %9s | %8s %8s %8s %9s %9s\n' "$n" "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i" "$k"
      done
    jq -r 'select(.snapshot_ops) |
      "snapshot loop: \(.snapshot_ops.n) snapshot-create, median \(.snapshot_ops.median_ms * 1000 | round / 1000) ms, max \(.snapshot_ops.max_ms * 1000 | round / 1000) ms; " +
      "\(.delete_ops.n // 0) volume-delete, median \((.delete_ops.median_ms // 0) * 1000 | round / 1000) ms, max \((.delete_ops.max_ms // 0) * 1000 | round / 1000) ms; failures \(.snapshot_failures)\n" +
      "pool used blocks \(.used_blocks_before) -> \(.used_blocks_after); volumes at the end: \(.volumes_after | join(" "))\n" +
      "100 ms windows (fio lat log, max per window): " +
      ([("read", "write") as $d | .["spikes_" + $d] | select(.) |
        "\($d): median window max \(.median_window_max_us | floor) us, \(.spike_windows)/\(.windows) windows > 4x that, \(.spike_windows_near_op) of them within 200 ms after a control op (\(.windows_near_op)/\(.windows) of all windows are)"] | join("; ")) +
      "\nworst windows (end ms, max us, dir, preceding op, its age ms, its duration ms):\n" +
      ([.worst_windows[] | "  \(.window_end_ms) \(.max_us | floor) \(.dir) \(.prev_op) \((.prev_op_age_ms // 0) | floor) \((.prev_op_ms // 0) * 100 | round / 100)"] | join("\n"))' "$results2"
  }
fi

if [[ -n "$json" ]]; then
  jq -n --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --argjson cpus "$(nproc)" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg fio "$(fio --version)" --arg nbdkit "$(nbdkit --version)" \
    --argjson runtime "$runtime" --arg size "$size" --argjson bs "$bs_bytes" \
    --slurpfile p1 "$results1" --slurpfile p2 "$results2" \
    '{date: $date, cpus: $cpus, loadavg_end: $load, fio: $fio, nbdkit: $nbdkit,
      part1: $p1, part2: {runtime_seconds: $runtime, size: $size, thinsim_block_size: $bs, runs: $p2}}' >"$json"
  say "JSON written to $json"
fi
