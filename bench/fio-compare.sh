#!/usr/bin/env bash
# bench/fio-compare.sh: the same fio jobs against thinsim and against
# nbdkit's `memory` plugin, side by side, over NBD on Unix sockets.
#
# Usage: bench/fio-compare.sh [options]
#   --runtime SECONDS   length of each time-based job (default 10)
#   --size SIZE         volume / memory disk size, with K/M/G/T (default 1G)
#   --block-size SIZE   thinsim pool block size (default: the plugin's, 64K)
#   --json FILE         also write the results as JSON to FILE
#   --jobs REGEX        run only the jobs whose name matches (grep -E)
#   --servers LIST      thinsim,memory (default), or only one of them
#   --plugin PATH       thinsim plugin (default build/plugin/nbdkit-thinsim-plugin.so)
#   --cli PATH          thinsim CLI (default build/tools/thinsim)
#   -h, --help          this text
#
# Every job gets fresh servers: one thinsim in-memory pool with volume vol0
# (pool size 2 x SIZE + 64M, room for a full copy-on-write of the volume) and
# one `nbdkit memory SIZE`. Jobs (4K I/O is 4096 bytes at 4K-aligned offsets):
#   randread-4k-qd{1,32}       random reads of mapped data (prefilled)
#   randwrite-4k-qd{1,32}      random overwrites of mapped, exclusive data
#                              (prefilled)
#   seqwrite-1m-holes-qd8      1M sequential writes into a fresh, empty volume
#                              (every block allocated); the whole size once
#   snap-randwrite-4k-qd{1,32} prefill, thinsim snapshot, then time-based
#                              random 4K overwrites: the first write to each
#                              block is a copy-on-write, later ones are in
#                              place (memory: the same overwrites, no snapshot)
#   cow-4k-qd{1,32}            prefill, snapshot, then one 4K write at the
#                              start of every pool block (fio rw=write:SKIP):
#                              every write is a copy-on-write
# "Prefilled" means one sequential 1M write over the whole size first, on both
# servers, so that all data is mapped (thinsim) or allocated (memory).
#
# Prints a table of IOPS, bandwidth, mean latency and the ratio
# thinsim/memory (of IOPS; the I/O pattern is the same) per job, and how many
# pool blocks each thinsim job allocated (holes filled, CoW copies: a check
# that the job did what it says).
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//p}' "$0"; }

die() { echo "fio-compare: $*" >&2; exit 1; }

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
runtime=10
size=1G
block_size=""
json=""
jobs_re=""
servers="thinsim,memory"
plugin="$root/build/plugin/nbdkit-thinsim-plugin.so"
cli="$root/build/tools/thinsim"

while (($#)); do
  case "$1" in
    --runtime) runtime="${2:?--runtime needs a value}"; shift ;;
    --size) size="${2:?--size needs a value}"; shift ;;
    --block-size) block_size="${2:?--block-size needs a value}"; shift ;;
    --json) json="${2:?--json needs a file}"; shift ;;
    --jobs) jobs_re="${2:?--jobs needs a regex}"; shift ;;
    --servers) servers="${2:?--servers needs a list}"; shift ;;
    --plugin) plugin="${2:?--plugin needs a path}"; shift ;;
    --cli) cli="${2:?--cli needs a path}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "fio-compare: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

[[ "$runtime" =~ ^[1-9][0-9]*$ ]] || die "--runtime wants a positive number of seconds, got '$runtime'"
size_bytes="$(to_bytes "$size")"
((size_bytes >= 1 << 20 && size_bytes % (1 << 20) == 0)) || die "--size must be a multiple of 1M"
bs_bytes=$((64 << 10))
if [[ -n "$block_size" ]]; then
  bs_bytes="$(to_bytes "$block_size")"
  ((bs_bytes >= 4096 && (bs_bytes & (bs_bytes - 1)) == 0)) || die "--block-size must be a power of two >= 4K"
fi
((size_bytes % bs_bytes == 0)) || die "--size must be a multiple of the block size"
pool_bytes=$((2 * size_bytes + (64 << 20)))

use_thinsim=0 use_memory=0
IFS=, read -r -a _servers <<<"$servers"
for s in "${_servers[@]}"; do
  case "$s" in
    thinsim) use_thinsim=1 ;;
    memory) use_memory=1 ;;
    *) die "--servers: unknown server '$s' (thinsim, memory)" ;;
  esac
done
((use_thinsim || use_memory)) || die "--servers names no server"

for cmd in fio nbdkit jq; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (Debian package: $cmd)"
done
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd ioengine (fio 3.33 from Debian 12 has it)"
if ((use_thinsim)); then
  [[ -f "$plugin" ]] || die "thinsim plugin not found at $plugin (build it, or pass --plugin, or --servers memory)"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/fio-compare.XXXXXX")"
server_pids=()
cleanup() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${server_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# Takes snapshot `vol0` -> `snap1` through the control socket: with the CLI if
# it is built, else by speaking the control protocol with socat.
thinsim_snapshot() {
  local ctl="$tmp/thinsim.ctl" reply
  if [[ -x "$cli" ]]; then
    "$cli" --socket "$ctl" snapshot vol0 snap1 >/dev/null || die "thinsim snapshot vol0 snap1 failed"
    return
  fi
  command -v socat >/dev/null 2>&1 || die "neither $cli nor socat is available to take a snapshot"
  reply="$(printf '%s\n' '{"execute":"snapshot-create","arguments":{"origin":"vol0","name":"snap1"},"id":1}' |
    socat -t 10 - "UNIX-CONNECT:$ctl")" || die "cannot reach the control socket $ctl"
  jq -e '.return' >/dev/null 2>&1 <<<"$reply" || die "snapshot-create failed: $reply"
}

# Prints the pool's query-pool object (used_blocks, ...) as one line of JSON,
# or "null" if it cannot be had.
thinsim_pool_info() {
  local ctl="$tmp/thinsim.ctl" reply
  if [[ -x "$cli" ]]; then
    reply="$("$cli" --socket "$ctl" --json status 2>/dev/null)" || reply=""
    reply="$(jq -c 'if type == "object" and has("return") then .return else . end' <<<"$reply" 2>/dev/null)" || reply=""
  elif command -v socat >/dev/null 2>&1; then
    reply="$(printf '%s\n' '{"execute":"query-pool","id":1}' | socat -t 10 - "UNIX-CONNECT:$ctl" |
      jq -c '.return' 2>/dev/null)" || reply=""
  fi
  [[ -n "$reply" ]] && jq -e 'type == "object"' >/dev/null 2>&1 <<<"$reply" && echo "$reply" || echo null
}

# run_fio OUT URI FIO_ARGS... : one fio job, JSON output in OUT.
run_fio() {
  local out="$1" uri="$2"
  shift 2
  if ! fio --name=job --ioengine=nbd --uri="$uri" --output-format=json --output="$out" "$@" \
    >"$out.log" 2>&1; then
    cat "$out.log" >&2
    die "fio failed: $*"
  fi
}

prefill() {
  run_fio "$tmp/prefill.json" "$1" --rw=write --bs=1M --iodepth=8 --size="$size_bytes"
}

# Job table: NAME|PREP|DESCRIPTION|FIO ARGS. PREP: fill = prefill;
# snap = prefill, then snapshot (thinsim); none = fresh, empty.
cow_ios=$((size_bytes / bs_bytes))
timed="--time_based --runtime=$runtime --size=$size_bytes"
job_table=(
  "randread-4k-qd1|fill|4K random read of mapped data, iodepth 1|--rw=randread --bs=4k --iodepth=1 $timed"
  "randread-4k-qd32|fill|4K random read of mapped data, iodepth 32|--rw=randread --bs=4k --iodepth=32 $timed"
  "randwrite-4k-qd1|fill|4K random overwrite of mapped exclusive data, iodepth 1|--rw=randwrite --bs=4k --iodepth=1 $timed"
  "randwrite-4k-qd32|fill|4K random overwrite of mapped exclusive data, iodepth 32|--rw=randwrite --bs=4k --iodepth=32 $timed"
  "seqwrite-1m-holes-qd8|none|1M sequential write into holes (fresh volume), iodepth 8, size once|--rw=write --bs=1M --iodepth=8 --size=$size_bytes --runtime=$((runtime * 6))"
  "snap-randwrite-4k-qd1|snap|4K random overwrite right after a snapshot (CoW on first touch), iodepth 1|--rw=randwrite --bs=4k --iodepth=1 $timed"
  "snap-randwrite-4k-qd32|snap|4K random overwrite right after a snapshot (CoW on first touch), iodepth 32|--rw=randwrite --bs=4k --iodepth=32 $timed"
  "cow-4k-qd1|snap|4K write at the start of every block after a snapshot: all CoW, iodepth 1|--rw=write:$((bs_bytes - 4096)) --bs=4k --iodepth=1 --size=$size_bytes --io_size=$((cow_ios * 4096)) --runtime=$((runtime * 6))"
  "cow-4k-qd32|snap|4K write at the start of every block after a snapshot: all CoW, iodepth 32|--rw=write:$((bs_bytes - 4096)) --bs=4k --iodepth=32 --size=$size_bytes --io_size=$((cow_ios * 4096)) --runtime=$((runtime * 6))"
)

# result_of FILE -> {"iops","bw_kib","lat_mean_us","ios"} of the job's
# direction (reads for read jobs, writes otherwise).
result_of() {
  jq -c '.jobs[0] as $j
    | (if ($j.read.io_bytes > 0) then $j.read else $j.write end) as $d
    | {iops: $d.iops, bw_kib: $d.bw, lat_mean_us: ($d.lat_ns.mean / 1000), ios: $d.total_ios}' "$1"
}

results="$tmp/results.jsonl"
: >"$results"
bs_arg=()
[[ -n "$block_size" ]] && bs_arg=("block-size=$bs_bytes")

echo "fio-compare: size $size ($size_bytes bytes), thinsim block size $bs_bytes, runtime ${runtime}s, $(nproc) CPUs, $(fio --version), $(nbdkit --version)" >&2
for entry in "${job_table[@]}"; do
  IFS='|' read -r name prep desc args <<<"$entry"
  if [[ -n "$jobs_re" ]] && ! grep -Eq -- "$jobs_re" <<<"$name"; then continue; fi
  echo "fio-compare: $name ..." >&2
  t_res=null m_res=null
  read -r -a fio_args <<<"$args"  # a list of options without spaces inside
  if ((use_thinsim)); then
    start_server thinsim "$plugin" size="$pool_bytes" "${bs_arg[@]}" volume="vol0:$size_bytes" \
      control="$tmp/thinsim.ctl"
    uri="nbd+unix:///vol0?socket=$tmp/thinsim.sock"
    [[ "$prep" == none ]] || prefill "$uri"
    [[ "$prep" == snap ]] && thinsim_snapshot
    before="$(thinsim_pool_info)"
    run_fio "$tmp/$name.thinsim.json" "$uri" "${fio_args[@]}"
    after="$(thinsim_pool_info)"
    # Blocks the job allocated: holes filled and copies made by CoW.
    t_res="$(result_of "$tmp/$name.thinsim.json" |
      jq -c --argjson b "$before" --argjson a "$after" \
        '. + {blocks_allocated: (if ($a != null and $b != null) then ($a.used_blocks - $b.used_blocks) else null end)}')"
    stop_servers
  fi
  if ((use_memory)); then
    start_server memory memory "$size_bytes"
    uri="nbd+unix:///?socket=$tmp/memory.sock"
    [[ "$prep" == none ]] || prefill "$uri"
    run_fio "$tmp/$name.memory.json" "$uri" "${fio_args[@]}"
    m_res="$(result_of "$tmp/$name.memory.json")"
    stop_servers
  fi
  jq -nc --arg name "$name" --arg desc "$desc" --arg fio_args "$args" \
    --argjson t "$t_res" --argjson m "$m_res" \
    '{name: $name, description: $desc, fio_args: $fio_args, thinsim: $t, memory: $m,
      ratio: (if ($t != null and $m != null and $m.iops > 0) then ($t.iops / $m.iops) else null end)}' \
    >>"$results"
done

[[ -s "$results" ]] || die "no job matched '${jobs_re}'"

# The table.
{
  printf '%-24s %12s %12s %10s %10s %10s %10s %8s %10s\n' job "thinsim IOPS" "memory IOPS" "ts MiB/s" \
    "mem MiB/s" "ts lat us" "mem lat us" ratio "ts blocks"
  jq -r '[.name,
          (if .thinsim then (.thinsim.iops | floor | tostring) else "-" end),
          (if .memory then (.memory.iops | floor | tostring) else "-" end),
          (if .thinsim then (.thinsim.bw_kib / 1024 * 10 | round / 10 | tostring) else "-" end),
          (if .memory then (.memory.bw_kib / 1024 * 10 | round / 10 | tostring) else "-" end),
          (if .thinsim then (.thinsim.lat_mean_us * 10 | round / 10 | tostring) else "-" end),
          (if .memory then (.memory.lat_mean_us * 10 | round / 10 | tostring) else "-" end),
          (if .ratio then (.ratio * 100 | round / 100 | tostring) else "-" end),
          (if .thinsim.blocks_allocated then (.thinsim.blocks_allocated | tostring) else "-" end)] | @tsv' "$results" |
    while IFS=$'\t' read -r n ti mi tb mb tl ml r nb; do
      printf '%-24s %12s %12s %10s %10s %10s %10s %8s %10s\n' "$n" "$ti" "$mi" "$tb" "$mb" "$tl" "$ml" "$r" "$nb"
    done
  echo "ratio = thinsim IOPS / memory IOPS; ts blocks = pool blocks the thinsim job allocated (holes filled, CoW copies)"
}

if [[ -n "$json" ]]; then
  jq -s --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg size "$size" \
    --argjson size_bytes "$size_bytes" --argjson block_size "$bs_bytes" \
    --argjson runtime "$runtime" --argjson cpus "$(nproc)" \
    --arg fio "$(fio --version)" --arg nbdkit "$(nbdkit --version)" \
    '{date: $date, size: $size, size_bytes: $size_bytes, thinsim_block_size: $block_size,
      runtime_seconds: $runtime, cpus: $cpus, fio: $fio, nbdkit: $nbdkit,
      ratio_is: "thinsim IOPS / memory IOPS", jobs: .}' "$results" >"$json"
  echo "fio-compare: JSON written to $json" >&2
fi
