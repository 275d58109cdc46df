#!/usr/bin/env bash
# fuzz-soak.sh: the libFuzzer targets of fuzz/ for hours, on demand (never
# in CI; ctest -L fuzz runs each for seconds). Builds them (clang++, in
# BUILD_DIR), then runs each TARGET for DURATION seconds, up to JOBS at a
# time, one process each, over a working corpus kept between soaks in
# WORK/TARGET/corpus (started from fuzz/corpus/TARGET; the tree's corpus is
# never written). At the end prints, per target, executions, executions per
# second, corpus growth and any crash, leak, timeout or out-of-memory file.
#
#   bench/fuzz-soak.sh                          # every target, 1 hour each
#   bench/fuzz-soak.sh -t 28800 engine          # the engine fuzzer, 8 hours
#   nice -n 10 bench/fuzz-soak.sh -l /tmp/fuzz-soak metadata_pool engine
#
# Options:
#   -t DURATION     seconds per target (default 3600)
#   -j JOBS         targets run at once (default: the number of cores)
#   -b BUILD_DIR    the clang build (default build-fuzz; configured here
#                   with -DTHINSIM_BUILD_FUZZ=ON if it is not yet)
#   -w WORK         working corpora and findings (default BUILD_DIR/fuzz-soak)
#   -l PREFIX       write target T's libFuzzer output to PREFIX-T.log
#                   (default WORK/T/fuzz.log)
#   --no-build      use the fuzzers already built
# Targets: control metadata_records metadata_pool engine (default: all).
# A finding is WORK/T/artifacts/crash-* (or leak-, timeout-, oom-); rerun it
# with BUILD_DIR/fuzz/fuzz_T FILE.
set -euo pipefail

usage() { sed -n '2,28s/^# \{0,1\}//p' "$0"; }

root=$(cd "$(dirname "$0")/.." && pwd)
duration=3600
max_jobs=$(nproc)
build=$root/build-fuzz
work=
log_prefix=
do_build=1
targets=()
while (($#)); do
  case "$1" in
    -t) duration="$2"; shift ;;
    -j) max_jobs="$2"; shift ;;
    -b) build=$(realpath -m "$2"); shift ;;
    -w) work=$(realpath -m "$2"); shift ;;
    -l) log_prefix=$(realpath -m "$2"); shift ;;
    --no-build) do_build=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
((${#targets[@]})) || targets=(control metadata_records metadata_pool engine)
work=${work:-$build/fuzz-soak}

if ((do_build)); then
  if [[ ! -f $build/CMakeCache.txt ]]; then
    cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DTHINSIM_BUILD_FUZZ=ON -DTHINSIM_BUILD_BENCH=OFF
  fi
  cmake --build "$build" -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}")
fi

log_of() { if [[ -n $log_prefix ]]; then echo "$log_prefix-$1.log"; else echo "$work/$1/fuzz.log"; fi; }

run_one() {
  local t=$1 dir=$work/$1
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -n "$root/fuzz/corpus/$t"/* "$dir/corpus/" 2>/dev/null || true
  ls "$dir/corpus" | wc -l > "$dir/corpus-before"
  local args=(-max_total_time="$duration" -rss_limit_mb=2048 -timeout=25 -print_final_stats=1
              -artifact_prefix="$dir/artifacts/")
  [[ -f $root/fuzz/$t.dict ]] && args+=(-dict="$root/fuzz/$t.dict")
  echo "$(date '+%F %T') $t: ${duration}s, log $(log_of "$t")"
  "$build/fuzz/fuzz_$t" "${args[@]}" "$dir/corpus" > "$(log_of "$t")" 2>&1 || true
  echo "$(date '+%F %T') $t: done"
}

for t in "${targets[@]}"; do
  [[ -x $build/fuzz/fuzz_$t ]] || { echo "no fuzzer $build/fuzz/fuzz_$t" >&2; exit 2; }
  while (($(jobs -rp | wc -l) >= max_jobs)); do wait -n; done
  run_one "$t" &
done
wait

echo
printf '%-18s %14s %8s %16s  %s\n' target executions exec/s corpus findings
found=0
for t in "${targets[@]}"; do
  dir=$work/$t log=$(log_of "$t")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  before=$(cat "$dir/corpus-before")
  after=$(ls "$dir/corpus" | wc -l)
  findings=$(ls "$dir/artifacts" | wc -l)
  printf '%-18s %14s %8s %16s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$before -> $after" "$findings"
  for f in "$dir"/artifacts/*; do
    [[ -e $f ]] || continue
    found=1
    echo "  $f ($(wc -c < "$f") bytes): rerun with $build/fuzz/fuzz_$t $f"
  done
done
exit "$found"
