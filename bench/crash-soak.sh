#!/usr/bin/env bash
# crash-soak.sh: thousands of kill -9 points or power cuts through the real
# nbdkit, on demand (never in CI). Runs tests/crash/test_crash.py
# (CRASH_ITERATIONS kill points on one pool) in rounds, each with a fresh pool
# and the next seed, until ITERATIONS kill points have passed or a round
# fails; then the corruption test once with many cases. A power cut
# (volatile-cache=on, `thinsim power-cut`, then the kill) also drops every
# write not yet made durable, so it catches a missing sync; a kill cannot.
# A pool's log grows by ~14 KB per kill point, so a round of 6000 crosses the
# 64 MiB log threshold once and kills around a checkpoint too ("pool at the
# end: metadata generation 2").
#
#   bench/crash-soak.sh                          # 6000 kill points (~45 min), build/
#   bench/crash-soak.sh -n 20000 -b build-bench
#   bench/crash-soak.sh -m both -n 3000          # 3000 kill points, then 3000 power cuts
#   CRASH_SEED=123 bench/crash-soak.sh -n 500    # first round's seed (then +1, +2, ...)
#
# Options:
#   -m MODE         kill (default), power-cut, or both (each mode -n points)
#   -n ITERATIONS   total kill points (default 6000)
#   -r PER_ROUND    kill points per round, i.e. per pool (default 6000)
#   -b BUILD_DIR    where the plugin and CLI were built (default build)
#   -c CASES        corruption cases at the end (default 2000; 0 skips)
# A failing round prints its seed and keeps its pool under
# /tmp/thinsim-crash-fail-SEED-ITERATION; rerun with CRASH_SEED=SEED.
set -euo pipefail

usage() { sed -n '2,25s/^# \{0,1\}//p' "$0"; }

total=6000
per_round=6000
build=build
cases=2000
mode=kill
while getopts "m:n:r:b:c:h" opt; do
  case "$opt" in
    m) mode="$OPTARG" ;;
    n) total="$OPTARG" ;;
    r) per_round="$OPTARG" ;;
    b) build="$OPTARG" ;;
    c) cases="$OPTARG" ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
export THINSIM_PLUGIN="${THINSIM_PLUGIN:-$build/plugin/nbdkit-thinsim-plugin.so}"
export THINSIM_CLI="${THINSIM_CLI:-$build/tools/thinsim}"
for f in "$THINSIM_PLUGIN" "$THINSIM_CLI"; do
  [[ -e "$f" ]] || { echo "crash-soak: $f does not exist; build first (cmake --build $build)" >&2; exit 2; }
done
python=/usr/bin/python3  # Debian's: the only one with libnbd's `nbd` module
case "$mode" in
  kill|power-cut) modes=("$mode") ;;
  both) modes=(kill power-cut) ;;
  *) echo "crash-soak: -m must be kill, power-cut or both, not '$mode'" >&2; exit 2 ;;
esac

seed="${CRASH_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
start=$SECONDS
for m in "${modes[@]}"; do
  done_points=0
  round=0
  while ((done_points < total)); do
    n=$((total - done_points < per_round ? total - done_points : per_round))
    round=$((round + 1))
    echo "== $m round $round: $n points, CRASH_SEED=$seed ($done_points of $total done, $((SECONDS - start))s)"
    if ! CRASH_MODE="$m" CRASH_SEED="$seed" CRASH_ITERATIONS="$n" "$python" "$root/tests/crash/test_crash.py"; then
      echo "crash-soak: FAILED in $m round $round (CRASH_MODE=$m CRASH_SEED=$seed) after $done_points earlier points"
      exit 1
    fi
    done_points=$((done_points + n))
    seed=$((seed + 1))
  done
  echo "crash-soak: $done_points $m points passed ($((SECONDS - start))s so far)"
done

if ((cases > 0)); then
  echo "== corruption: $cases cases"
  CORRUPTION_CASES="$cases" "$python" "$root/tests/crash/test_corruption.py"
fi
