#!/usr/bin/env bash
# planted-bugs.sh: which crash test catches a known bug planted on purpose.
# For each bug, builds the plugin and CLI with -DTHINSIM_PLANTED_BUG=BUG in
# its own build directory (build-planted-BUG), then runs
# tests/crash/test_crash.py on it in each mode, SEEDS seeds of ITERATIONS
# crash points each, and prints a table: how many runs of each mode failed
# (caught the bug). On demand, never in CI (a second build of the tree).
#
#   bench/planted-bugs.sh                 # missing-sync, 3 seeds x 20 points per mode
#   bench/planted-bugs.sh -s 5 -n 40
#
# Options:
#   -s SEEDS        runs per mode (default 3; seeds CRASH_SEED, +1, ...)
#   -n ITERATIONS   crash points per run (default 20)
#   -j JOBS         build parallelism (default 2)
# The bugs (CMakeLists.txt, THINSIM_PLANTED_BUG):
#   missing-sync    the data file is never synced, so a commit can make a
#                   mapping durable before its data. A SIGKILL keeps the page
#                   cache and cannot see it; a power cut drops it.
# Exits 0 when every bug was caught by the mode expected to catch it and
# missed by the one expected to miss it (the claim this script checks).
set -euo pipefail

usage() { sed -n '2,20s/^# \{0,1\}//p' "$0"; }

seeds=3
iterations=20
jobs=2
while getopts "s:n:j:h" opt; do
  case "$opt" in
    s) seeds="$OPTARG" ;;
    n) iterations="$OPTARG" ;;
    j) jobs="$OPTARG" ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
python=/usr/bin/python3  # Debian's: the only one with libnbd's `nbd` module
seed0="${CRASH_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
logs="$(mktemp -d /tmp/thinsim-planted-XXXXXX)"

# bug -> "mode-that-must-catch mode-that-must-miss"
declare -A expect=([missing-sync]="power-cut kill")

build_planted() {
  local bug="$1" dir="$root/build-planted-$1"
  echo "== building with THINSIM_PLANTED_BUG=$bug in $dir"
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTHINSIM_PLANTED_BUG="$bug" \
    -DTHINSIM_BUILD_TESTS=OFF -DTHINSIM_BUILD_BENCH=OFF >"$logs/cmake-$bug.log" 2>&1 ||
    { cat "$logs/cmake-$bug.log"; exit 2; }
  cmake --build "$dir" -j"$jobs" --target thinsim nbdkit-thinsim-plugin >"$logs/build-$bug.log" 2>&1 ||
    { tail -40 "$logs/build-$bug.log"; exit 2; }
}

# Runs the crash test `seeds` times in `mode` on `bug`'s build; prints the
# number of failing runs.
caught() {
  local bug="$1" mode="$2" dir="$root/build-planted-$1" failed=0 i
  for ((i = 0; i < seeds; i++)); do
    local log="$logs/$bug-$mode-$i.log"
    if THINSIM_PLUGIN="$dir/plugin/nbdkit-thinsim-plugin.so" THINSIM_CLI="$dir/tools/thinsim" \
       CRASH_MODE="$mode" CRASH_SEED=$((seed0 + i)) CRASH_ITERATIONS="$iterations" \
       "$python" "$root/tests/crash/test_crash.py" >"$log" 2>&1; then
      :
    else
      failed=$((failed + 1))
      grep -m1 '^FAIL' "$log" | cut -c1-200 >&2 || true
    fi
  done
  echo "$failed"
}

status=0
results=()
for bug in "${!expect[@]}"; do
  build_planted "$bug"
  read -r must_catch must_miss <<<"${expect[$bug]}"
  echo "== $bug: $seeds runs x $iterations points per mode (CRASH_SEED=$seed0..)"
  c=$(caught "$bug" "$must_catch")
  m=$(caught "$bug" "$must_miss")
  results+=("$(printf '%-14s %-10s %s/%s    %-10s %s/%s' "$bug" "$must_catch" "$c" "$seeds" "$must_miss" "$m" "$seeds")")
  ((c == seeds && m == 0)) || status=1
done

echo
echo "bug            mode       caught  mode       caught"
printf '%s\n' "${results[@]}"
echo "logs in $logs"
if ((status == 0)); then
  echo "planted-bugs: every bug caught where expected and missed where expected"
else
  echo "planted-bugs: a bug was missed by the mode meant to catch it, or caught by the other"
fi
exit "$status"
