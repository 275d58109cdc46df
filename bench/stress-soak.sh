#!/usr/bin/env bash
# stress-soak.sh: the multi-connection stress test (tests/stress/) for hours,
# on demand (never in CI). Runs tests/stress/run_stress.py in rounds, each
# with a fresh server and the next seed (so each round draws its own block
# size, strategy, slot layout and pool kind), until DURATION seconds have
# passed or a round fails.
#
#   bench/stress-soak.sh                        # 1 hour in rounds of 5 min, build/
#   bench/stress-soak.sh -t 28800 -r 900        # 8 hours, 15 min rounds
#   bench/stress-soak.sh --tsan -b build-tsan   # nbdkit under ThreadSanitizer
#   STRESS_SEED=123 bench/stress-soak.sh -t 600 # first round's seed (then +1, ...)
#
# Options:
#   -t DURATION     total seconds of I/O (default 3600)
#   -r ROUND        seconds of I/O per round (default 300)
#   -b BUILD_DIR    where the plugin, CLI and stress_client were built
#                   (default build; build-tsan with --tsan)
#   --tsan          preload the TSan runtime into nbdkit; BUILD_DIR must be a
#                   -DTHINSIM_SANITIZE=thread build
# STRESS_POOL, STRESS_STRATEGY, STRESS_BLOCK_SIZE, STRESS_SLOTS,
# STRESS_CONNECTIONS, STRESS_DEPTH and STRESS_MAX_SNAPSHOTS pass through
# (run_stress.py documents them). A failing round prints its seed and keeps
# its directory (/tmp/thinsim-stress-*); rerun with STRESS_SEED=SEED.
set -euo pipefail

usage() { sed -n '2,25s/^# \{0,1\}//p' "$0"; }

total=3600
round_seconds=300
build=
tsan=0
while (($#)); do
  case "$1" in
    -t) total="$2"; shift ;;
    -r) round_seconds="$2"; shift ;;
    -b) build="$2"; shift ;;
    --tsan) tsan=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done

root="$(cd "$(dirname "$0")/.." && pwd)"
[[ -n "$build" ]] || build=$([[ $tsan == 1 ]] && echo build-tsan || echo build)
case "$build" in /*) ;; *) build="$root/$build" ;; esac
export THINSIM_PLUGIN="${THINSIM_PLUGIN:-$build/plugin/nbdkit-thinsim-plugin.so}"
export THINSIM_CLI="${THINSIM_CLI:-$build/tools/thinsim}"
export THINSIM_STRESS_CLIENT="${THINSIM_STRESS_CLIENT:-$build/tests/stress/stress_client}"
for f in "$THINSIM_PLUGIN" "$THINSIM_CLI" "$THINSIM_STRESS_CLIENT"; do
  [[ -e "$f" ]] || { echo "stress-soak: $f does not exist; build first (cmake --build $build)" >&2; exit 2; }
done
python=/usr/bin/python3  # Debian's: the only one with libnbd's `nbd` module
args=()
((tsan)) && args+=(--tsan)

seed="${STRESS_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
done_seconds=0
round=0
start=$SECONDS
while ((done_seconds < total)); do
  n=$((total - done_seconds < round_seconds ? total - done_seconds : round_seconds))
  round=$((round + 1))
  echo "== round $round: ${n}s, STRESS_SEED=$seed ($done_seconds of ${total}s done, $((SECONDS - start))s wall)"
  if ! STRESS_SEED="$seed" STRESS_SECONDS="$n" "$python" "$root/tests/stress/run_stress.py" "${args[@]}"; then
    echo "stress-soak: FAILED in round $round (STRESS_SEED=$seed) after ${done_seconds}s of passing rounds"
    exit 1
  fi
  done_seconds=$((done_seconds + n))
  seed=$((seed + 1))
done
echo "stress-soak: $round rounds, ${done_seconds}s of I/O passed in $((SECONDS - start))s"
