#!/usr/bin/env bash
# Rolling-restart check of `wsecho-loadtest --reconnect`, on loopback.
#
# The swarm keeps C connections busy while the server is
#   1. stopped gracefully (SIGTERM: wsecho sends Close 1001 to every connection)
#      and started again on the same port, then
#   2. killed (SIGKILL: every TCP connection drops without a Close) and started again.
# From the swarm's --json-file it then checks that every connection was dropped
# and reconnected both times (C drops by close_1001, C TCP drops, 2C reconnects,
# none still down), that no echo was corrupted, that echoes kept flowing, and
# that nothing else counted as an error.
#
#   loadtest/rolling-restart.sh [--mode echo|rate|idle] [--conns C] [--port P]
#
# Bounded: the swarm runs 1 s warm-up + 10 s and stops by itself; servers are
# stopped on exit. Output: the swarm's table on stderr, the JSON in target/rolling-restart.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODE=echo C=50 PORT=19470
while [ $# -gt 0 ]; do
    case "$1" in
        --mode) MODE=$2; shift ;;
        --conns) C=$2; shift ;;
        --port) PORT=$2; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
case "$MODE" in
    echo) ARGS="echo --size 64 --depth 2" ;;
    rate) ARGS="rate --size 64 --rate $((C * 200))" ;;
    idle) ARGS="idle --ping-every 0.5" ;;
    *) echo "--mode: echo, rate or idle" >&2; exit 2 ;;
esac

cargo build --release -q -p wsecho -p wsecho-loadtest
OUT=target/rolling-restart.json
LOG=target/rolling-restart-server.log
rm -f "$OUT"
: >"$LOG"
SPID=""
start_server() {
    RUST_LOG=warn target/release/wsecho --addr "127.0.0.1:$PORT" >>"$LOG" 2>&1 &
    SPID=$!
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "server did not start (see $LOG)" >&2
    exit 1
}
stop_server() { # signal
    kill "-$1" "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
}
LPID=""
cleanup() {
    [ -n "$SPID" ] && stop_server KILL
    [ -n "$LPID" ] && kill "$LPID" 2>/dev/null || true
}
trap cleanup EXIT

start_server
# shellcheck disable=SC2086
target/release/wsecho-loadtest $ARGS --conns "$C" --target "ws://127.0.0.1:$PORT/echo" \
    --warmup 1 --duration 10 --reconnect --json-file "$OUT" --quiet &
LPID=$!
sleep 3
echo "t=3 s: SIGTERM the server (Close 1001 to all), start a new one" >&2
stop_server TERM
start_server
sleep 3.5
echo "t=6.5 s: SIGKILL the server (TCP drops), start a new one" >&2
stop_server KILL
start_server
wait "$LPID"
LPID=""

python3 - "$OUT" "$C" "$MODE" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
c, mode = int(sys.argv[2]), sys.argv[3]
rc = r["reconnect"]
tcp = sum(v for k, v in rc["drops"].items() if k != "close_1001")
checks = [
    ("drops by Close 1001 == C", rc["drops"].get("close_1001", 0) == c),
    ("TCP drops == C", tcp == c),
    ("reconnected == 2C", rc["reconnected"] == 2 * c),
    ("no slot still down", rc["pending_at_end"] == 0),
    ("no corrupted echo", r["corrupted"] == 0),
    ("no other error", not r["errors"]),
    ("all C open at the end (Close 1000 answered by C)", r["close_codes"].get("1000", 0) == c),
]
if mode != "idle":
    checks.append(("echoes verified in the window", r["msgs"] > 0))
print("reconnect: %s" % json.dumps(rc))
print("corrupted %d, msgs in window %d, msgs over the run %d, errors %s" % (r["corrupted"], r["msgs"], r["msgs_run"], r["errors"]))
failed = 0
for name, ok in checks:
    print("  %-50s %s" % (name, "ok" if ok else "FAILED"))
    failed += not ok
print("%d passed, %d failed" % (len(checks) - failed, failed))
sys.exit(1 if failed else 0)
PYEOF
