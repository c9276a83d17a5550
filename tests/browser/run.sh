#!/usr/bin/env bash
# Real-browser end-to-end test of the wsecho home page.
#
#   tests/browser/run.sh              build the server (release) and test it
#   tests/browser/run.sh --bin PATH   test an already built server binary
#   tests/browser/run.sh --tls        the page over https:// (--tls-self-signed),
#                                     echo over wss:// (issue 13)
#
# Sets itself up idempotently: Debian's chromium (apt-get, as root) if
# /usr/bin/chromium is missing, `npm ci` when node_modules is missing or does
# not match package-lock.json. Starts the server on a free loopback port,
# runs home.test.mjs against it and exits with the test's status.
# Server output goes to tests/browser/out/server.log, the screenshot to
# tests/browser/out/home.png.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$HERE/out"
BIN=""
SCHEME="http"
TLS_ARGS=()

while [ $# -gt 0 ]; do
  case "$1" in
    --bin) [ $# -ge 2 ] || { echo "run.sh: --bin needs a path" >&2; exit 2; }; BIN="$2"; shift 2 ;;
    --bin=*) BIN="${1#--bin=}"; shift ;;
    --tls) SCHEME="https"; TLS_ARGS=(--tls-self-signed); shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

log() { echo "run.sh: $*" >&2; }

# --- chromium ----------------------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
  log "installing Debian's chromium"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q chromium >/dev/null
fi

# --- node + playwright-core -------------------------------------------------------
command -v node >/dev/null || { log "node (>= 20) is required"; exit 2; }
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
[ "$NODE_MAJOR" -ge 20 ] || { log "node >= 20 is required, found $(node --version)"; exit 2; }

LOCK_SUM="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)"
STAMP="$HERE/node_modules/.wsecho-lock-sha256"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$LOCK_SUM" ]; then
  log "npm ci"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$LOCK_SUM" > "$STAMP"
fi

# --- server binary -----------------------------------------------------------
if [ -z "$BIN" ]; then
  log "cargo build --release --bin wsecho"
  (cd "$ROOT" && cargo build --release --bin wsecho)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wsecho"
fi
[ -x "$BIN" ] || { log "server binary not found or not executable: $BIN"; exit 2; }

# --- start the server on a free port -------------------------------------------
mkdir -p "$OUT"
SERVER_LOG="$OUT/server.log"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  node -e 'const s = require("net").createServer();
           s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

PORT=""
for attempt in 1 2 3; do
  port="$(free_port)"
  "$BIN" --addr "127.0.0.1:$port" ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  # Wait (max 10 s) until it accepts connections.
  for _ in $(seq 1 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then PORT="$port"; break; fi
    sleep 0.1
  done
  [ -n "$PORT" ] && break
  log "server did not come up on port $port (attempt $attempt); its output:"
  sed 's/^/  | /' "$SERVER_LOG" >&2 || true
  cleanup
  SERVER_PID=""
done
[ -n "$PORT" ] || { log "could not start the server"; exit 2; }
log "server $BIN listening on 127.0.0.1:$PORT (pid $SERVER_PID)"

# --- the test -------------------------------------------------------------------
status=0
WSECHO_URL="$SCHEME://127.0.0.1:$PORT" timeout 90 node "$HERE/home.test.mjs" || status=$?
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  log "the server exited during the test; its output:"
  sed 's/^/  | /' "$SERVER_LOG" >&2 || true
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
