#!/usr/bin/env bash
# planted-bugs.sh: which test catches a known bug planted on purpose.
# For each bug, builds the tree with -DTHINSIM_PLANTED_BUG=BUG in its own
# build directory (build-planted-BUG), runs the test meant to catch it, and
# prints a table of how many runs caught it. On demand, never in CI (a
# second build of the tree per bug).
#   - a durability bug runs tests/crash/test_crash.py SEEDS times of
#     ITERATIONS crash points in each mode: the mode that must catch it and
#     the mode that must miss it;
#   - an engine bug runs the model test (pool/pool_model_test), each of its
#     25 seeds (1-20 in memory, 101-105 in a directory) on its own, and
#     reports the seeds that failed and the median step of the first failure.
#
#   bench/planted-bugs.sh                     # every bug
#   bench/planted-bugs.sh -b cow-no-copy -b reserve-need
#   bench/planted-bugs.sh -s 5 -n 40          # more crash runs
#
# Options:
#   -b BUG          only this bug (repeatable; default: all)
#   -s SEEDS        crash-test runs per mode (default 3; seeds CRASH_SEED, +1, ...)
#   -n ITERATIONS   crash points per run (default 20)
#   -j JOBS         build parallelism (default 2)
# The bugs (CMakeLists.txt, THINSIM_PLANTED_BUG):
#   missing-sync       the data file is never synced, so a commit can make a
#                      mapping durable before its data. A SIGKILL keeps the
#                      page cache and cannot see it; a power cut drops it.
#   cow-no-copy        a partial overwrite of a shared block skips the copy
#   refcount-leak      unmapping a shared block keeps its reference
#   provisioned-count  unmapping a provisioned vblock keeps the count
#   reserve-need       need(b) is one short when owners > guarantors
#   missing-intent     persistent bitmaps log no write intents: the crash
#                      test's bitmap check catches it after a plain SIGKILL
# Exits 0 when every bug was caught where expected (every model-test bug by
# at least one seed) and missed where expected (the claim this script checks).
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

seeds=3
iterations=20
jobs=2
only=()
while getopts "b:s:n:j:h" opt; do
  case "$opt" in
    b) only+=("$OPTARG") ;;
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

# bug -> "crash mode-that-must-catch [mode-that-must-miss]", or "model"
declare -A expect=([missing-sync]="crash power-cut kill" [cow-no-copy]=model [refcount-leak]=model
                   [provisioned-count]=model [reserve-need]=model [missing-intent]="crash kill")
bugs=("${only[@]:-missing-sync cow-no-copy refcount-leak provisioned-count reserve-need missing-intent}")
read -r -a bugs <<<"${bugs[*]}"
for bug in "${bugs[@]}"; do
  [[ -n "${expect[$bug]:-}" ]] || { echo "planted-bugs: unknown bug '$bug'" >&2; exit 2; }
done

# Builds `bug`'s tree: the plugin and CLI for the crash test, the model test
# binary for the model.
build_planted() {
  local bug="$1" checker="$2" dir="$root/build-planted-$1" tests=OFF targets=(thinsim nbdkit-thinsim-plugin)
  [[ "$checker" == model ]] && { tests=ON; targets=(pool_model_test); }
  echo "== building with THINSIM_PLANTED_BUG=$bug in $dir"
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTHINSIM_PLANTED_BUG="$bug" \
    -DTHINSIM_BUILD_TESTS="$tests" -DTHINSIM_BUILD_BENCH=OFF >"$logs/cmake-$bug.log" 2>&1 ||
    { cat "$logs/cmake-$bug.log"; exit 2; }
  cmake --build "$dir" -j"$jobs" --target "${targets[@]}" >"$logs/build-$bug.log" 2>&1 ||
    { tail -40 "$logs/build-$bug.log"; exit 2; }
}

# Runs each model-test seed alone on `bug`'s build; prints "FAILED STEP":
# the number of seeds that failed (or crashed) and the median step of their
# first failure ("-" when none failed; a crash counts as step "?").
model_caught() {
  local bug="$1" bin="$root/build-planted-$1/pool/pool_model_test" seed suite log steps=()
  for seed in $(seq 1 20) $(seq 101 105); do
    suite='Seeds/PoolModelTest.*'
    ((seed > 100)) && suite='Seeds/PoolModelPersistentTest.*'
    log="$logs/$bug-model-$seed.log"
    if THINSIM_MODEL_SEED=$seed "$bin" --gtest_filter="$suite" >"$log" 2>&1; then
      continue
    fi
    local step
    step=$(grep -m1 -oE "\(THINSIM_MODEL_SEED=$seed\), step [0-9]+" "$log" | grep -oE '[0-9]+$' || echo '?')
    steps+=("$step")
  done
  local median=-
  if ((${#steps[@]} > 0)); then
    median=$(printf '%s\n' "${steps[@]}" | grep -v '?' | sort -n |
             awk '{a[NR]=$1} END {print NR ? a[int((NR+1)/2)] : "?"}')
  fi
  echo "${#steps[@]} $median"
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
for bug in "${bugs[@]}"; do
  read -r checker must_catch must_miss <<<"${expect[$bug]}"
  build_planted "$bug" "$checker"
  if [[ "$checker" == model ]]; then
    echo "== $bug: the model test, 25 seeds one by one"
    read -r failed median <<<"$(model_caught "$bug")"
    results+=("$(printf '%-18s %-22s %2s/25 seeds, median first failing step %s' "$bug" "model test" "$failed" "$median")")
    ((failed > 0)) || status=1
  else
    echo "== $bug: $seeds runs x $iterations points per mode (CRASH_SEED=$seed0..)"
    c=$(caught "$bug" "$must_catch")
    line="$(printf '%-18s %-22s %s/%s runs' "$bug" "crash test $must_catch" "$c" "$seeds")"
    ((c == seeds)) || status=1
    if [[ -n "$must_miss" ]]; then
      m=$(caught "$bug" "$must_miss")
      line+="$(printf '; crash test %-9s %s/%s runs' "$must_miss" "$m" "$seeds")"
      ((m == 0)) || status=1
    fi
    results+=("$line")
  fi
done

echo
echo "bug                test                   caught"
printf '%s\n' "${results[@]}"
echo "logs in $logs"
if ((status == 0)); then
  echo "planted-bugs: every bug caught where expected and missed where expected"
else
  echo "planted-bugs: a bug was missed by the mode meant to catch it, or caught by the other"
fi
exit "$status"
