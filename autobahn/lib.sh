# Shared helpers for run-server.sh and run-client.sh (sourced, not run).

AB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$AB_DIR/.." && pwd)"
REPORTS="$AB_DIR/reports"

die() { echo "autobahn: ERROR: $*" >&2; exit 2; }
log() { echo "autobahn: $*" >&2; }

# Default case selection: everything except the permessage-deflate groups
# (12.*, 13.*: slow, and compression is not implemented yet), unless
# WSECHO_AUTOBAHN_COMPRESSION=1. An explicit --cases drops the default exclude.
default_exclude() {
  if [ "${WSECHO_AUTOBAHN_COMPRESSION:-0}" = 1 ]; then echo ""; else echo "12.*,13.*"; fi
}

# JSON array from a comma-separated pattern list: '1.*, 2.1' -> ["1.*","2.1"]
patterns_json() {
  python3 -c 'import json,sys; print(json.dumps([p.strip() for p in sys.argv[1].split(",") if p.strip()]))' "$1"
}

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT PID SECONDS: wait until 127.0.0.1:PORT accepts TCP connections.
# Fails early if process PID exits.
wait_port() {
  local port=$1 pid=$2 limit=$3 start=$SECONDS
  while (( SECONDS - start < limit )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# stop_pid PID: TERM, then KILL after 5 s. Only ever the one process we started.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "process $pid ignored SIGTERM for 5 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# Install (or find) the suite; sets WSTEST and WSTEST_PY (the env's python,
# which runs wstest_local.py to bind servers to 127.0.0.1).
find_wstest() {
  WSTEST="$(bash "$AB_DIR/setup.sh" | tail -n 1)" || die "autobahn/setup.sh failed"
  [ -x "$WSTEST" ] || die "autobahn/setup.sh did not yield a wstest executable (got '$WSTEST')"
  WSTEST_PY="$(dirname "$WSTEST")/python"
  [ -x "$WSTEST_PY" ] || die "no python next to $WSTEST"
}
