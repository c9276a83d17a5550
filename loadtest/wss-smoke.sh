#!/usr/bin/env bash
# The swarm over wss:// against the real wsecho in every mode: echo (small
# and 70,000-byte messages), rate, idle with pings, handshakes (resumed, then
# full), churn, classic. Each run must report "errors      none".
#
#   SERVER=target/release/wsecho LT=target/release/wsecho-loadtest loadtest/wss-smoke.sh [PORT]
#
# The server gets a throw-away certificate for localhost/127.0.0.1 made with
# openssl (--tls-cert/--tls-key), which the swarm trusts with --ca; one echo
# run uses --insecure instead. Bounded: every run is a few seconds, the
# server is killed on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER=${SERVER:-$ROOT/target/release/wsecho}
LT=${LT:-$ROOT/target/release/wsecho-loadtest}
PORT=${1:-19443}
DIR=$(mktemp -d)
SP=
cleanup() { [ -n "$SP" ] && kill "$SP" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT

if ! "$SERVER" --help | grep -q -- --tls-cert; then
    echo "wss-smoke: $SERVER has no --tls-cert (the server's TLS support is not in this build)" >&2
    exit 2
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" \
    -days 1 -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
RUST_LOG=warn "$SERVER" --addr "127.0.0.1:$PORT" --tls-cert "$DIR/cert.pem" --tls-key "$DIR/key.pem" \
    >"$DIR/server.log" 2>&1 &
SP=$!
for _ in $(seq 1 50); do ss -Htln "sport = :$PORT" | grep -q . && break; sleep 0.1; done

T=(--target "wss://127.0.0.1:$PORT/echo" --ca "$DIR/cert.pem" --quiet)
FAILED=0
run() { # name, args...
    local name=$1; shift
    local out; out=$(timeout 60 "$LT" "$@" 2>&1) || true
    if grep -q "errors      none" <<<"$out"; then
        local what; what=$(grep -E '^  (throughput|handshakes) ' <<<"$out" || grep -E '^  conns ' <<<"$out")
        echo "ok    $name: $(head -1 <<<"$what" | tr -s ' ')"
        grep -E '^  tls' <<<"$out" | sed 's/^ */      /'
    else
        echo "FAIL  $name"; sed 's/^/      /' <<<"$out" | tail -12; FAILED=$((FAILED + 1))
    fi
}
run "echo" echo "${T[@]}" --conns 50 --depth 2 --size 100 --duration 3 --warmup 1
run "echo --insecure" echo --target "wss://localhost:$PORT/echo" --insecure --quiet --conns 10 --duration 2 --warmup 0.5
run "echo 70,000 B" echo "${T[@]}" --conns 4 --size 70000 --duration 2 --warmup 0.5
run "rate" rate "${T[@]}" --conns 50 --rate 2000 --duration 2 --warmup 0.5
run "idle" idle "${T[@]}" --conns 500 --duration 2 --settle 1 --ping-every 0.5 --server-pid "$SP"
run "handshakes (resumed)" handshakes "${T[@]}" --concurrency 8 --duration 3 --warmup 0.5 --server-pid "$SP"
run "handshakes (full)" handshakes "${T[@]}" --tls-no-resume --concurrency 8 --duration 3 --warmup 0.5 --server-pid "$SP"
run "churn" churn "${T[@]}" --conns 50 --lifetime-min 0.2 --lifetime-max 0.5 --duration 3 --warmup 0
out=$(timeout 30 "$LT" classic 10 127.0.0.1 "$PORT" 20 --tls --ca "$DIR/cert.pem" --duration 4.5 2>&1) || true
if grep -q "errors      none" <<<"$out" && grep -q "Msg/sec" <<<"$out"; then
    echo "ok    classic: $(grep Msg/sec <<<"$out" | tail -1)"
else
    echo "FAIL  classic"; tail -8 <<<"$out"; FAILED=$((FAILED + 1))
fi
kill -0 "$SP" 2>/dev/null || { echo "FAIL  the server died"; FAILED=$((FAILED + 1)); }
echo "wss-smoke: $FAILED failed"
[ "$FAILED" = 0 ]
