#!/usr/bin/env bash
# Run the Autobahn TestSuite fuzzing client against a wsecho server build and
# compare the results with autobahn/expected-server.json.
#
#   bash autobahn/run-server.sh [--bin PATH] [--cases '1.*,2.*'] [--exclude '12.*,13.*']
#                               [--timeout SECONDS] [--write-expected] [--tls]
#
# Without --bin, builds `cargo build --release --bin wsecho` first.
# Default selection: all cases except 12.* and 13.* (permessage-deflate); set
# WSECHO_AUTOBAHN_COMPRESSION=1 to include them. Giving --cases drops the
# default exclude (use --exclude as well if you want one).
# Output: autobahn/reports/ (server.log, wstest-fuzzingclient.log, servers/).
# Exit status: 0 if the results match the expected file, non-zero otherwise.
# --write-expected records this run's results into the expected file instead
# of comparing (review `git diff autobahn/expected-server.json` afterwards).
# --tls runs the suite over wss:// against `wsecho --tls-self-signed` (the
# suite's Twisted client does not verify certificates when the spec names no
# "hostname"); the expected results are the same file.
#
# Testing aids (not needed normally):
#   --server-cmd CMD  start CMD (a shell command; $PORT is the port to listen
#                     on at 127.0.0.1) instead of the wsecho binary, e.g. the
#                     suite's own echo server:
#       --server-cmd '"$WSTEST_PY" autobahn/wstest_local.py -m echoserver -w ws://127.0.0.1:$PORT -u 0'
#   --path PATH       WebSocket path on the server (default /echo)
# WSECHO_SERVER_ARGS  extra flags for the wsecho binary (split on spaces),
#                     e.g. WSECHO_SERVER_ARGS='--threads 2'
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

WRITE_EXPECTED=() BIN="" CASES="" EXCLUDE="" EXCLUDE_SET=0 TIMEOUT="" SERVER_CMD="" WS_PATH="/echo" SCHEME="ws"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="${2:?--bin needs a path}"; shift 2 ;;
    --cases) CASES="${2:?--cases needs patterns}"; shift 2 ;;
    --exclude) EXCLUDE="${2-}"; EXCLUDE_SET=1; shift 2 ;;
    --timeout) TIMEOUT="${2:?--timeout needs seconds}"; shift 2 ;;
    --server-cmd) SERVER_CMD="${2:?--server-cmd needs a command}"; shift 2 ;;
    --path) WS_PATH="${2:?--path needs a path}"; shift 2 ;;
    --write-expected) WRITE_EXPECTED=(--write-expected); shift ;;
    --tls) SCHEME="wss"; shift ;;
    -h|--help) usage ;;
    *) echo "run-server.sh: unknown argument: $1" >&2; usage ;;
  esac
done
if [ -z "$CASES" ]; then
  CASES="*"
  [ "$EXCLUDE_SET" = 1 ] || EXCLUDE="$(default_exclude)"
fi
if [ -z "$TIMEOUT" ]; then
  # Core groups take a minute or two; 12.*/13.* add 10-15 minutes.
  if [ -z "$EXCLUDE" ] || [ "${WSECHO_AUTOBAHN_COMPRESSION:-0}" = 1 ]; then TIMEOUT=3600; else TIMEOUT=900; fi
fi
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"

command -v python3 >/dev/null || die "python3 is required"
command -v timeout >/dev/null || die "timeout (coreutils) is required"
find_wstest
export WSTEST WSTEST_PY

if [ -z "$SERVER_CMD" ]; then
  if [ -z "$BIN" ]; then
    command -v cargo >/dev/null || die "cargo not found (or pass --bin PATH)"
    log "building: cargo build --release --bin wsecho"
    (cd "$ROOT" && cargo build --release --bin wsecho) || die "cargo build --release --bin wsecho failed"
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wsecho"
  fi
  [ -x "$BIN" ] || die "server binary not found or not executable: $BIN"
  BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
fi

mkdir -p "$REPORTS"
rm -rf "$REPORTS/servers"
SERVER_LOG="$REPORTS/server.log"
WSTEST_LOG="$REPORTS/wstest-fuzzingclient.log"
SPEC="$REPORTS/fuzzingclient.json"

PORT="$(free_port)"
export PORT
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then stop_pid "$SERVER_PID"; SERVER_PID=""; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$SERVER_CMD" ]; then
  log "starting server: $SERVER_CMD (PORT=$PORT)"
  (cd "$ROOT" && exec bash -c "exec $SERVER_CMD") >"$SERVER_LOG" 2>&1 &
else
  read -r -a EXTRA_ARGS <<<"${WSECHO_SERVER_ARGS:-}"
  if [ "$SCHEME" = wss ]; then EXTRA_ARGS+=(--tls-self-signed); fi
  log "starting server: $BIN --addr 127.0.0.1:$PORT ${EXTRA_ARGS[*]+"${EXTRA_ARGS[*]}"}"
  "$BIN" --addr "127.0.0.1:$PORT" ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"} >"$SERVER_LOG" 2>&1 &
fi
SERVER_PID=$!
if ! wait_port "$PORT" "$SERVER_PID" 10; then
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "autobahn: ERROR: server did not accept TCP connections on 127.0.0.1:$PORT within 10 s" >&2
  else
    wait "$SERVER_PID" && st=0 || st=$?
    SERVER_PID=""
    echo "autobahn: ERROR: server exited (status $st) before listening on 127.0.0.1:$PORT" >&2
  fi
  echo "--- last lines of $SERVER_LOG:" >&2
  tail -n 20 "$SERVER_LOG" >&2
  exit 2
fi
log "server listening on 127.0.0.1:$PORT (log: ${SERVER_LOG#$ROOT/})"

URL="$SCHEME://127.0.0.1:$PORT$WS_PATH"
python3 - "$SPEC" "$REPORTS/servers" "$URL" "$(patterns_json "$CASES")" "$(patterns_json "$EXCLUDE")" <<'EOF'
import json, sys
spec, outdir, url, cases, exclude = sys.argv[1:]
with open(spec, "w") as f:
    json.dump({
        "outdir": outdir,
        "servers": [{"agent": "wsecho", "url": url}],
        "cases": json.loads(cases),
        "exclude-cases": json.loads(exclude),
        "exclude-agent-cases": {},
    }, f, indent=2)
EOF

log "running wstest -m fuzzingclient against $URL (cases: $CASES; exclude: ${EXCLUDE:-none}; limit ${TIMEOUT}s)"
log "wstest output: ${WSTEST_LOG#$ROOT/}"
FAILS=()
start=$SECONDS
rc=0
(cd "$REPORTS" && timeout --kill-after=10 "$TIMEOUT" "$WSTEST" -m fuzzingclient -s "$SPEC") >"$WSTEST_LOG" 2>&1 || rc=$?
log "wstest finished in $((SECONDS - start)) s (exit status $rc)"
last_case="$(grep -o 'Running test case ID [^ ]*' "$WSTEST_LOG" | tail -n 1 | awk '{print $5}' || true)"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  FAILS+=("wstest timed out after ${TIMEOUT}s; last case started: ${last_case:-none} (see ${WSTEST_LOG#$ROOT/})")
elif [ "$rc" != 0 ]; then
  FAILS+=("wstest exited with status $rc; last case started: ${last_case:-none} (see ${WSTEST_LOG#$ROOT/})")
fi
if grep -q 'Connection to .* failed' "$WSTEST_LOG"; then
  FAILS+=("wstest could not connect to the server: $(grep -m1 'Connection to .* failed' "$WSTEST_LOG")")
fi
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  wait "$SERVER_PID" && st=0 || st=$?
  SERVER_PID=""
  FAILS+=("the server exited during the run (status $st); last case started: ${last_case:-none}; see ${SERVER_LOG#$ROOT/}")
  echo "--- last lines of $SERVER_LOG:" >&2
  tail -n 20 "$SERVER_LOG" >&2
fi
cleanup

FAIL_ARGS=()
for f in "${FAILS[@]+"${FAILS[@]}"}"; do FAIL_ARGS+=(--fail "$f"); done
echo
exec python3 "$AB_DIR/report.py" "$REPORTS/servers/index.json" wsecho \
  --expected "$AB_DIR/expected-server.json" --cases "$CASES" --exclude "$EXCLUDE" \
  "${FAIL_ARGS[@]+"${FAIL_ARGS[@]}"}" "${WRITE_EXPECTED[@]+"${WRITE_EXPECTED[@]}"}"
