#!/bin/sh
# Runs a libFuzzer target for a bounded time over a copy of its seed corpus
# (the tree's corpus is never written), for ctest -L fuzz. Passes when
# nothing is found; otherwise prints the crashing input and fails.
# Usage: run_fuzzer.sh FUZZER SEED_DIR SECONDS [DICT]
set -eu
fuzzer=$1 seeds=$2 seconds=$3 dict=${4:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/thinsim-fuzz-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/artifacts"
cp "$seeds"/* "$work/corpus/" 2>/dev/null || true
set -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/"
[ -n "$dict" ] && set -- "$@" -dict="$dict"
status=0
"$fuzzer" "$@" "$work/corpus" || status=$?
for f in "$work"/artifacts/*; do
  [ -e "$f" ] || continue
  echo "found: $(basename "$f") ($(wc -c < "$f") bytes), as hex:"
  od -An -tx1 "$f" | head -40
  mkdir -p "${TMPDIR:-/tmp}/thinsim-fuzz-findings"
  cp "$f" "${TMPDIR:-/tmp}/thinsim-fuzz-findings/"
  echo "copied to ${TMPDIR:-/tmp}/thinsim-fuzz-findings/$(basename "$f")"
done
exit "$status"
