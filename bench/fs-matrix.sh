#!/usr/bin/env bash
# The full real-filesystem matrix: every `thinsim fs-test` scenario on ext4,
# xfs and btrfs, under each scenario's strategies (--all), plus the
# measurements behind docs/fs-testing.md: where ENOSPC surfaces with the loop
# device in direct or buffered mode and with O_DIRECT or buffered+fsync
# writes. Needs root, FUSE and loop devices; about four minutes.
#
#   bench/fs-matrix.sh [--build DIR] [--out DIR] [--quick] [-- fs-test args...]
#
#   --build DIR   build tree with tools/thinsim and the plugin (default build/)
#   --out DIR     where the JSON reports go (default: a new /tmp/fs-matrix.XXXX)
#   --quick       only the --all matrix, not the ENOSPC-path measurements
#   -- ARGS       passed to every fs-test run (e.g. -- --timeout 300)
#
# Prints each run's line, then a summary; exits non-zero if a run of the
# matrix failed (known failures, XFAIL, do not count; nor do the
# measurements, some of which are expected to fail).
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build"
out=
quick=0
extra=()
while (($#)); do
  case "$1" in
    --build) build="$(cd "${2:?}" && pwd)"; shift ;;
    --out) out="${2:?}"; shift ;;
    --quick) quick=1 ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "fs-matrix.sh: unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
cli="$build/tools/thinsim"
[[ -x "$cli" ]] || { echo "fs-matrix.sh: $cli is not built" >&2; exit 2; }
[[ -n "$out" ]] || out="$(mktemp -d /tmp/fs-matrix.XXXXXX)"
mkdir -p "$out"
start=$SECONDS
failed=0

# summarize FILE: one line per run of a --json report
summarize() {
  /usr/bin/python3 - "$1" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["runs"]:
    ff = r.get("first_failure") or {}
    cfg = r.get("config") or {}
    vols = r.get("volumes") or {}
    fsck = ",".join(v.get("fsck", {}).get("verdict", "-") for v in vols.values()) or "-"
    what = "; ".join("%s: %s" % (n, (v.get("fs_reaction") or {}).get("summary", "-")) for n, v in vols.items())
    print("%-5s %-19s %-5s %-9s dio=%-3s io=%-6s %-15s fsck %-11s %5.1fs  %s" % (
        r["verdict"].upper(), r["scenario"], r["fs"], r.get("reserve") or "-",
        "on" if cfg.get("loop_dio", True) else "off", cfg.get("io", "-"),
        "%s@%s" % (ff.get("errno"), ff.get("op")) if ff else "no error", fsck,
        r.get("duration_s") or 0, what[:150]))
EOF
}

# fsrun NAME ARGS...: one fs-test invocation with --json into $out/NAME.json.
# With count=0 (measurements) a failed run is shown but not counted.
count=1
fsrun() {
  local name="$1"
  shift
  "$cli" fs-test "$@" "${extra[@]}" --json >"$out/$name.json" 2>"$out/$name.err"
  local rc=$?
  summarize "$out/$name.json" 2>/dev/null || { echo "FAIL  $name: no report (exit $rc)"; tail -n 5 "$out/$name.err"; }
  if ((rc != 0)); then
    ((count)) && failed=$((failed + 1))
    if ((rc == 77)); then
      cat "$out/$name.err" >&2
      echo "fs-matrix.sh: this machine cannot run fs-test (see above)" >&2
      exit 77
    fi
  fi
}

echo "== the matrix (fs-test --all)"
fsrun all --all

if ((!quick)); then
  # Measurements: some of these fail on purpose (a buffered loop device loses
  # acknowledged writes; ext4 aborts its journal when the device is full).
  count=0
  echo
  echo "== where ENOSPC surfaces: snapshot-overwrite, reserve none, error mode"
  for dio in on off; do
    for io in direct fsync; do
      fsrun "path-dio$dio-$io" snapshot-overwrite --fs ext4,xfs,btrfs --reserve none \
        --loop-dio "$dio" --io "$io"
    done
  done
  echo
  echo "== queue mode: fill-and-grow (writes wait for thinsim grow)"
  fsrun queue-grow fill-and-grow --fs ext4,xfs,btrfs --when-full queue
  echo
  echo "== fill-delete-trim with a pool smaller than the filesystem (device ENOSPC every round)"
  fsrun trim-small fill-delete-trim --fs ext4 --pool-size 96M --volume-size 128M --rounds 5
fi

echo
echo "fs-matrix.sh: $((SECONDS - start)) s, $failed invocation(s) with failures; reports in $out"
((failed == 0))
