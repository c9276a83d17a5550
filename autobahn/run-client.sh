#!/usr/bin/env bash
# Run the Autobahn TestSuite fuzzing server against a WebSocket client and
# compare the results with autobahn/expected-client.json.
#
#   bash autobahn/run-client.sh [--client-cmd CMD | --bin PATH] [--cases '1.*,2.*']
#                               [--exclude '12.*,13.*'] [--timeout SECONDS] [--write-expected]
#
# Starts `wstest -m fuzzingserver` on 127.0.0.1:<free port>, then runs the
# client, which must do the whole Autobahn loop itself: /getCaseCount,
# /runCase?case=N&agent=wsecho-client for N = 1..count, /updateReports?agent=...
# By default the client is `target/release/wsecho-client --autobahn $URL`
# (built with `cargo build --release --bin wsecho-client` unless --bin given).
# --client-cmd CMD runs CMD with bash instead; it sees these variables:
#   URL    the fuzzing server, ws://127.0.0.1:PORT (no path)
#   AGENT  the agent name to report under (wsecho-client)
#   WSTEST, WSTEST_PY   the suite's wstest and python
# e.g. the suite's own client, as a stand-in:
#   --client-cmd '"$WSTEST" -m testeeclient -w "$URL" -i "$AGENT"'
# --check-server only starts the fuzzing server, checks that it answers
# /getCaseCount, and stops it (no client needed).
#
# Default selection: all cases except 12.* and 13.* unless
# WSECHO_AUTOBAHN_COMPRESSION=1; giving --cases drops the default exclude.
# Output: autobahn/reports/ (client.log, wstest-fuzzingserver.log, clients/).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

WRITE_EXPECTED=() BIN="" CLIENT_CMD="" CASES="" EXCLUDE="" EXCLUDE_SET=0 TIMEOUT="" CHECK_ONLY=0
AGENT="wsecho-client"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="${2:?--bin needs a path}"; shift 2 ;;
    --client-cmd) CLIENT_CMD="${2:?--client-cmd needs a command}"; shift 2 ;;
    --cases) CASES="${2:?--cases needs patterns}"; shift 2 ;;
    --exclude) EXCLUDE="${2-}"; EXCLUDE_SET=1; shift 2 ;;
    --timeout) TIMEOUT="${2:?--timeout needs seconds}"; shift 2 ;;
    --check-server) CHECK_ONLY=1; shift ;;
    --write-expected) WRITE_EXPECTED=(--write-expected); shift ;;
    -h|--help) usage ;;
    *) echo "run-client.sh: unknown argument: $1" >&2; usage ;;
  esac
done
if [ -z "$CASES" ]; then
  CASES="*"
  [ "$EXCLUDE_SET" = 1 ] || EXCLUDE="$(default_exclude)"
fi
if [ -z "$TIMEOUT" ]; then
  if [ -z "$EXCLUDE" ] || [ "${WSECHO_AUTOBAHN_COMPRESSION:-0}" = 1 ]; then TIMEOUT=3600; else TIMEOUT=900; fi
fi
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"

command -v python3 >/dev/null || die "python3 is required"
command -v timeout >/dev/null || die "timeout (coreutils) is required"
find_wstest
export WSTEST WSTEST_PY AGENT

if [ "$CHECK_ONLY" = 0 ] && [ -z "$CLIENT_CMD" ]; then
  if [ -z "$BIN" ]; then
    command -v cargo >/dev/null || die "cargo not found (or pass --bin PATH / --client-cmd CMD)"
    log "building: cargo build --release --bin wsecho-client"
    (cd "$ROOT" && cargo build --release --bin wsecho-client) \
      || die "cargo build --release --bin wsecho-client failed (does the wsecho-client binary exist yet?)"
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wsecho-client"
  fi
  [ -x "$BIN" ] || die "client binary not found or not executable: $BIN"
  CLIENT_BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
  export CLIENT_BIN
  CLIENT_CMD='"$CLIENT_BIN" --autobahn "$URL"'
fi

mkdir -p "$REPORTS"
rm -rf "$REPORTS/clients"
FUZZ_LOG="$REPORTS/wstest-fuzzingserver.log"
CLIENT_LOG="$REPORTS/client.log"
SPEC="$REPORTS/fuzzingserver.json"

PORT="$(free_port)"
URL="ws://127.0.0.1:$PORT"
export PORT URL
python3 - "$SPEC" "$REPORTS/clients" "$URL" "$(patterns_json "$CASES")" "$(patterns_json "$EXCLUDE")" <<'EOF'
import json, sys
spec, outdir, url, cases, exclude = sys.argv[1:]
with open(spec, "w") as f:
    json.dump({
        "url": url,
        "outdir": outdir,
        "cases": json.loads(cases),
        "exclude-cases": json.loads(exclude),
        "exclude-agent-cases": {},
    }, f, indent=2)
EOF

FUZZ_PID=""
cleanup() {
  if [ -n "$FUZZ_PID" ]; then stop_pid "$FUZZ_PID"; FUZZ_PID=""; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -u 0: no separate web UI port. wstest_local.py binds to 127.0.0.1 only.
log "starting wstest -m fuzzingserver on $URL (cases: $CASES; exclude: ${EXCLUDE:-none})"
(cd "$REPORTS" && exec "$WSTEST_PY" "$AB_DIR/wstest_local.py" -m fuzzingserver -s "$SPEC" -u 0) >"$FUZZ_LOG" 2>&1 &
FUZZ_PID=$!
if ! wait_port "$PORT" "$FUZZ_PID" 10; then
  echo "autobahn: ERROR: fuzzing server did not listen on 127.0.0.1:$PORT within 10 s" >&2
  tail -n 20 "$FUZZ_LOG" >&2
  exit 2
fi
count="$(timeout 20 python3 "$AB_DIR/wsctl.py" "$URL/getCaseCount")" \
  || die "fuzzing server on $URL does not answer /getCaseCount (log: $FUZZ_LOG)"
log "fuzzing server up on $URL, serving $count cases (log: ${FUZZ_LOG#$ROOT/})"
if [ "$CHECK_ONLY" = 1 ]; then
  log "listening sockets of the fuzzing server:"
  ss -ltnp 2>/dev/null | grep "pid=$FUZZ_PID," >&2 || true
  exit 0
fi

FAILS=()
log "running client (limit ${TIMEOUT}s): $CLIENT_CMD   (output: ${CLIENT_LOG#$ROOT/})"
start=$SECONDS
rc=0
(cd "$ROOT" && timeout --kill-after=10 "$TIMEOUT" bash -c "$CLIENT_CMD") >"$CLIENT_LOG" 2>&1 || rc=$?
log "client finished in $((SECONDS - start)) s (exit status $rc)"
last_case="$(grep -o 'Running test case ID [^ ]*' "$FUZZ_LOG" | tail -n 1 | awk '{print $5}' || true)"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  FAILS+=("client timed out after ${TIMEOUT}s; last case started: ${last_case:-none} (see ${CLIENT_LOG#$ROOT/})")
elif [ "$rc" != 0 ]; then
  FAILS+=("client exited with status $rc; last case started: ${last_case:-none} (see ${CLIENT_LOG#$ROOT/})")
  echo "--- last lines of $CLIENT_LOG:" >&2
  tail -n 20 "$CLIENT_LOG" >&2
fi

if kill -0 "$FUZZ_PID" 2>/dev/null; then
  # The client should have asked for the reports itself; ask again so that the
  # results of every case that ran are written even if it did not get that far.
  timeout 120 python3 "$AB_DIR/wsctl.py" "$URL/updateReports?agent=$AGENT" >/dev/null \
    || FAILS+=("could not ask the fuzzing server to write the reports (see ${FUZZ_LOG#$ROOT/})")
else
  FAILS+=("the fuzzing server died during the run (see ${FUZZ_LOG#$ROOT/})")
fi
cleanup

FAIL_ARGS=()
for f in "${FAILS[@]+"${FAILS[@]}"}"; do FAIL_ARGS+=(--fail "$f"); done
echo
exec python3 "$AB_DIR/report.py" "$REPORTS/clients/index.json" "$AGENT" \
  --expected "$AB_DIR/expected-client.json" --cases "$CASES" --exclude "$EXCLUDE" \
  "${FAIL_ARGS[@]+"${FAIL_ARGS[@]}"}" "${WRITE_EXPECTED[@]+"${WRITE_EXPECTED[@]}"}"
