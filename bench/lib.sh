# bench/lib.sh: what the fio benchmarks share. Sourced, not run.
#
# The sourcing script defines die MESSAGE, and before start_server: tmp (a
# scratch directory) and server_pids=() (its cleanup kills and waits for them).

# to_bytes SIZE: SIZE with an optional K/M/G/T suffix (powers of 1024, as
# nbdkit and fio read them) -> bytes.
to_bytes() {
  local s="$1" n unit
  [[ "$s" =~ ^([0-9]+)([KkMmGgTt]?)$ ]] || die "bad size '$s' (want a number with K, M, G or T)"
  n="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}"
  case "$unit" in
    "") echo "$n" ;;
    [Kk]) echo $((n << 10)) ;;
    [Mm]) echo $((n << 20)) ;;
    [Gg]) echo $((n << 30)) ;;
    [Tt]) echo $((n << 40)) ;;
  esac
}

# start_server NAME ARGS...: starts nbdkit ARGS on $tmp/NAME.sock in the
# background (log in $tmp/NAME.log) and waits until it accepts connections
# (its pid file appears), at most 20 s.
start_server() {
  local name="$1" pid i
  shift
  rm -f "$tmp/$name.sock" "$tmp/$name.pid"
  nbdkit --exit-with-parent -P "$tmp/$name.pid" -U "$tmp/$name.sock" "$@" \
    >"$tmp/$name.log" 2>&1 &
  pid=$!
  server_pids+=("$pid")
  for ((i = 0; i < 400; i++)); do
    [[ -s "$tmp/$name.pid" ]] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$tmp/$name.log" >&2
      die "nbdkit ($name) exited at start"
    fi
    sleep 0.05
  done
  cat "$tmp/$name.log" >&2
  die "nbdkit ($name) did not start within 20 s"
}

# stop_servers: stops every server start_server started.
stop_servers() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  server_pids=()
}
