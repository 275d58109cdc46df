#!/usr/bin/env bash
# A short subset of `thinsim fs-test` on ext4 and xfs with small sizes (about
# a minute as root). The full matrix: bench/fs-matrix.sh, or
# `thinsim fs-test --all`.
#
# Skips with exit 77 (CTest SKIP_RETURN_CODE) and says why when this machine
# cannot run it: not root, no FUSE, no loop devices, tools missing.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cli="${THINSIM_CLI:-$root/build/tools/thinsim}"
export THINSIM_CLI="$cli"

why="$(/usr/bin/python3 -c "import sys; sys.path.insert(0, '$here'); import fs_env; print(fs_env.skip_reason() or '')")"
if [[ -n "$why" ]]; then
  echo "SKIP: fs-test subset: $why"
  exit 77
fi

out="$(mktemp -d /tmp/fs-subset.XXXXXX)"
trap 'rm -rf "$out"' EXIT
failed=0
n=0
start=$SECONDS

# run NAME ARGS...: one `thinsim fs-test` invocation; its JSON goes to $out.
run() {
  local name="$1" rc
  shift
  n=$((n + 1))
  if "$cli" fs-test "$@" --json --timeout 90 --run-dir "$out/runs" >"$out/$name.json" 2>"$out/$name.err"; then
    rc=0
  else
    rc=$?
  fi
  if ! /usr/bin/python3 - "$out/$name.json" "$rc" "$name" <<'EOF'
import json, sys
path, rc, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    runs = json.load(open(path))["runs"]
except (OSError, ValueError) as e:
    print("FAIL %-34s exit %d, no report (%s)" % (name, rc, e))
    sys.exit(1)
bad = 0
for r in runs:
    ff = r.get("first_failure") or {}
    print("%-5s %-20s %-5s %-9s %-18s %5.1fs" % (
        r["verdict"].upper(), r["scenario"], r["fs"], r.get("reserve") or "-",
        "%s@%s" % (ff.get("errno"), ff.get("op")) if ff else "no error", r.get("duration_s") or 0))
    if r["verdict"] not in ("pass", "xfail", "skip"):
        bad = 1
        for reason in r.get("reasons", []):
            print("      " + reason)
        if r.get("run_dir"):
            print("      logs: " + r["run_dir"])
sys.exit(1 if bad or rc not in (0, 77) else 0)
EOF
  then
    failed=$((failed + 1))
    sed 's/^/      stderr: /' "$out/$name.err" | tail -n 5
  fi
}

for fs in ext4 xfs; do
  run "so-$fs" snapshot-overwrite --fs "$fs" --reserve none,volume
  run "fg-$fs" fill-and-grow --fs "$fs"
  run "tp-$fs" tiny-pool-mkfs --fs "$fs"
  run "fdt-$fs" fill-delete-trim --fs "$fs" --rounds 3
  run "pf-$fs" provision-then-fill --fs "$fs"
  run "tt-$fs" two-tenants --fs "$fs" --reserve volume
  run "pc-$fs" power-cut --fs "$fs"
done

echo "fs-test subset: $n invocations, $failed failed, $((SECONDS - start)) s"
if ((failed)); then
  # Keep the failed runs' logs (their run directories are kept by the harness).
  trap - EXIT
  echo "reports in $out"
  exit 1
fi
exit 0
