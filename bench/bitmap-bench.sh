#!/usr/bin/env bash
# bench/bitmap-bench.sh: what a dirty bitmap costs the write path, and what
# bitmap-cut costs writers, on an in-memory pool (fio --ioengine=nbd, Unix
# socket, prefilled volume, 4K random overwrites). Rounds interleave the
# cases on fresh servers:
#   none       no bitmap
#   bitmap     one 4K-granular bitmap recording
#   cuts       the bitmap, cut every 100 ms into a new one (the old frozen one
#              removed), as an incremental backup loop would
# Prints IOPS, p99 and max write latency per case and round, and the ratios
# bitmap/none and cuts/none. On demand, never in CI. With -p the pool is a
# pool=DIR pool (fresh each job) and the bitmap persistent: the first write
# to each clean granule then waits for one group commit of its intent
# record (docs/format.md, the write-intent rule), and every cut commits.
#
#   bench/bitmap-bench.sh                      # 3 rounds, qd1 and qd32, 10 s each
#   bench/bitmap-bench.sh -r 5 -t 20 -s 1G
#   bench/bitmap-bench.sh -p                   # persistent bitmaps on pool=DIR
#
# Options: -r ROUNDS (3), -t SECONDS per job (10), -s SIZE (512M),
#          -b BUILD_DIR (build), -p persistent
set -euo pipefail

usage() { sed -n '2,22s/^# \{0,1\}//p' "$0"; }
rounds=3 runtime=10 size=512M build=build persistent=0
while getopts "r:t:s:b:ph" opt; do
  case "$opt" in
    r) rounds="$OPTARG" ;; t) runtime="$OPTARG" ;; s) size="$OPTARG" ;; b) build="$OPTARG" ;;
    p) persistent=1 ;;
    h) usage; exit 0 ;; *) usage >&2; exit 2 ;;
  esac
done
root="$(cd "$(dirname "$0")/.." && pwd)"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
plugin="$build/plugin/nbdkit-thinsim-plugin.so"
cli="$build/tools/thinsim"
for f in "$plugin" "$cli"; do [[ -e "$f" ]] || { echo "bitmap-bench: build first: $f" >&2; exit 2; }; done
for c in fio nbdkit jq; do command -v "$c" >/dev/null || { echo "bitmap-bench: needs $c" >&2; exit 2; }; done

tmp="$(mktemp -d /tmp/thinsim-bitmap-bench-XXXXXX)"
pid=""
cutter=""
cleanup() {
  [[ -n "$cutter" ]] && kill "$cutter" 2>/dev/null || true
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

start_server() {
  rm -rf "$tmp/nbd.sock" "$tmp/ctl.sock" "$tmp/pool"
  local pool=()
  ((persistent)) && pool=("pool=$tmp/pool")
  nbdkit -f -U "$tmp/nbd.sock" "$plugin" "${pool[@]}" size=2G block-size=64K "volume=vol0:$size" \
    "control=$tmp/ctl.sock" >"$tmp/nbdkit.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [[ -S "$tmp/ctl.sock" ]] && return; sleep 0.05; done
  echo "bitmap-bench: nbdkit did not start" >&2; cat "$tmp/nbdkit.log" >&2; exit 1
}
stop_server() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
ctl() { "$cli" --socket "$tmp/ctl.sock" --json "$@" >/dev/null; }
uri="nbd+unix:///vol0?socket=$tmp/nbd.sock"

# cut_loop: bitmap-cut every 100 ms, dropping the previous frozen bitmap.
cut_loop() {
  local n=0
  while sleep 0.1; do
    n=$((n + 1))
    ctl bitmap cut vol0 live "f$n" || break
    ((n > 1)) && ctl bitmap remove vol0 "f$((n - 1))"
  done
}

# one CASE QD: prints "iops p99_us max_us".
one() {
  local case="$1" qd="$2" out="$tmp/$1-$2.json"
  start_server
  fio --name=prefill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size="$size" \
    --output-format=json --output="$tmp/prefill.json" >/dev/null
  local keep=()
  ((persistent)) && keep=(--persistent)
  [[ "$case" != none ]] && ctl bitmap add vol0 live --granularity 4K "${keep[@]}"
  [[ "$case" == cuts ]] && { cut_loop & cutter=$!; }
  fio --name=job --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth="$qd" --size="$size" \
    --time_based --runtime="$runtime" --norandommap --randrepeat=0 \
    --output-format=json --output="$out" >/dev/null
  if [[ -n "$cutter" ]]; then kill "$cutter" 2>/dev/null || true; wait "$cutter" 2>/dev/null || true; cutter=""; fi
  stop_server
  jq -r '.jobs[0].write | "\(.iops|floor) \(.clat_ns.percentile["99.000000"]/1000|floor) \(.clat_ns.max/1000|floor)"' "$out"
}

echo "bitmap-bench: $( ((persistent)) && echo "pool=DIR, persistent bitmap," || echo "in memory,") $size volume, 4K random overwrites, ${runtime}s per job, $rounds rounds, $(nproc) CPUs, $(fio --version)"
printf '%-5s %-4s %-7s %10s %9s %9s %9s\n' round qd case iops p99_us max_us vs_none
for ((r = 1; r <= rounds; r++)); do
  for qd in 1 32; do
    base=""
    for case in none bitmap cuts; do
      read -r iops p99 max < <(one "$case" "$qd")
      [[ "$case" == none ]] && base="$iops"
      printf '%-5s %-4s %-7s %10s %9s %9s %9s\n' "$r" "$qd" "$case" "$iops" "$p99" "$max" \
        "$(awk -v a="$iops" -v b="$base" 'BEGIN { printf "%.2f", a / b }')"
    done
  done
done
