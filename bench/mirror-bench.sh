#!/usr/bin/env bash
# mirror-bench.sh: what a mirror job costs and how fast it copies (issue 13).
#   1. Throughput: a full mirror (`thinsim mirror --wait`) of a volume, half
#      of it mapped (every other MiB), to nbdkit's memory plugin, against
#      nbdcopy between the same two servers (a fresh target each time), in
#      the same round; ratio = nbdcopy's time / the mirror's.
#   2. Source latency: fio 4K random overwrites on the volume (--ioengine=nbd,
#      qd1 and qd32) with no mirror, and with a write-blocking mirror to an
#      nbdkit memory target running; IOPS, p99 and max latency, and the
#      ratio against no mirror.
# On demand, never in CI. Cases interleave within each round.
#
#   bench/mirror-bench.sh                  # 1G volume, 3 rounds, build/
#   bench/mirror-bench.sh -s 256M -r 2 -t 5
#
# Options:
#   -s SIZE     volume size (default 1G; half of it is written)
#   -r ROUNDS   rounds (default 3)
#   -t SECONDS  fio runtime per latency job (default 10)
#   -b BUILD    build directory with the plugin and CLI (default build)
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

size=1G
rounds=3
runtime=10
build=build
while getopts "s:r:t:b:h" opt; do
  case "$opt" in
    s) size="$OPTARG" ;;
    r) rounds="$OPTARG" ;;
    t) runtime="$OPTARG" ;;
    b) build="$OPTARG" ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
[[ "$build" = /* ]] || build="$root/$build"
plugin="$build/plugin/nbdkit-thinsim-plugin.so"
cli="$build/tools/thinsim"
for c in fio nbdkit nbdcopy jq; do command -v "$c" >/dev/null || { echo "mirror-bench: needs $c" >&2; exit 2; }; done
[[ -x "$cli" && -f "$plugin" ]] || { echo "mirror-bench: build the plugin and CLI in $build first" >&2; exit 2; }

die() { echo "mirror-bench: $*" >&2; exit 1; }
tmp="$(mktemp -d /tmp/thinsim-mirror-bench-XXXXXX)"
server_pids=()
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
cleanup() { stop_servers; rm -rf "$tmp"; }
trap cleanup EXIT

bytes="$(to_bytes "$size")"
src="nbd+unix:///vol0?socket=$tmp/src.sock"
tgt="nbd+unix:///?socket=$tmp/tgt.sock"
ctl() { "$cli" --socket "$tmp/ctl.sock" "$@"; }

# A source pool with vol0 half written (every other MiB, random bytes).
start_source() {
  start_server src "$plugin" size=$((2 * bytes / 1048576))M "volume=vol0:$size" "control=$tmp/ctl.sock"
  fio --name=halffill --ioengine=nbd --uri="$src" --rw=write:1M --bs=1M --iodepth=8 --size="$size" \
    --refill_buffers --output-format=json --output="$tmp/fill.json" >/dev/null
}
start_target() { start_server tgt memory "$size"; }

# seconds CMD...: wall time of CMD in seconds (3 decimals).
seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# latency CASE QD: "iops p99_us max_us" of fio on the source.
latency() {
  local case="$1" qd="$2" out="$tmp/lat-$1-$2.json"
  if [[ "$case" == write-blocking ]]; then
    start_target
    ctl --json mirror vol0 "$tgt" --sync none --copy-mode write-blocking --job-id wb >/dev/null
  fi
  fio --name=job --ioengine=nbd --uri="$src" --rw=randwrite --bs=4k --iodepth="$qd" --size="$size" \
    --time_based --runtime="$runtime" --norandommap --randrepeat=0 \
    --output-format=json --output="$out" >/dev/null
  if [[ "$case" == write-blocking ]]; then
    ctl job cancel wb --force >/dev/null
    while [[ "$(ctl --json jobs | jq length)" != 0 ]]; do sleep 0.05; done
    local last=$((${#server_pids[@]} - 1))
    kill "${server_pids[$last]}"; wait "${server_pids[$last]}" 2>/dev/null || true
    unset "server_pids[$last]"
  fi
  jq -r '.jobs[0].write | "\(.iops|floor) \(.clat_ns.percentile["99.000000"]/1000|floor) \(.clat_ns.max/1000|floor)"' "$out"
}

echo "mirror-bench: $size volume, half written; $rounds rounds; $(nproc) CPUs; $(nbdkit --version); $(fio --version)"
printf '%-5s %-28s %10s %10s\n' round copy seconds vs_nbdcopy
for ((r = 1; r <= rounds; r++)); do
  start_source
  start_target
  m=$(seconds ctl mirror vol0 "$tgt" --wait)
  stop_servers
  start_source
  start_target
  n=$(seconds nbdcopy "$src" "$tgt")
  stop_servers
  printf '%-5s %-28s %10s %10s\n' "$r" "thinsim mirror --wait" "$m" "$(awk -v a="$n" -v b="$m" 'BEGIN { printf "%.2f", a / b }')"
  printf '%-5s %-28s %10s %10s\n' "$r" "nbdcopy" "$n" "1.00"
done

echo
printf '%-5s %-4s %-15s %10s %9s %9s %9s\n' round qd case iops p99_us max_us vs_none
for ((r = 1; r <= rounds; r++)); do
  for qd in 1 32; do
    base=""
    for case in none write-blocking; do
      start_source
      read -r iops p99 max < <(latency "$case" "$qd")
      stop_servers
      [[ "$case" == none ]] && base="$iops"
      printf '%-5s %-4s %-15s %10s %9s %9s %9s\n' "$r" "$qd" "$case" "$iops" "$p99" "$max" \
        "$(awk -v a="$iops" -v b="$base" 'BEGIN { printf "%.2f", a / b }')"
    done
  done
done
