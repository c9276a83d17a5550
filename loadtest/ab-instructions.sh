#!/usr/bin/env bash
# Before/after in instructions, not time: each wsecho binary runs under
# valgrind's callgrind (one reactor) while the swarm echoes 20-byte messages
# over 10 connections for 4 s; prints user-space instructions (Ir) per echoed
# message, start-up and drain included. Unlike CPU time (ab-compare.sh) this
# does not move when other processes load the machine.
#
#   loadtest/ab-instructions.sh OLD_BIN NEW_BIN [ROUNDS]
#
# Needs valgrind (callgrind_annotate) and a release wsecho-loadtest.
# Loopback only; every run is bounded (1 s warm-up + 4 s window).
set -euo pipefail
OLD=$1 NEW=$2 ROUNDS=${3:-2}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SWARM="$ROOT/target/release/wsecho-loadtest"
OUT=$(mktemp -d)
for r in $(seq 1 "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; off=0
    [ "$which" = new ] && bin=$NEW && off=1
    port=$((19600 + r * 2 + off))
    RUST_LOG=info valgrind --tool=callgrind --callgrind-out-file="$OUT/$which-$r.cg" \
      "$bin" --addr 127.0.0.1:$port --threads 1 2>"$OUT/$which-$r.log" &
    pid=$!
    for _ in $(seq 1 200); do grep -q "listening on" "$OUT/$which-$r.log" && break; sleep 0.1; done
    "$SWARM" echo --target ws://127.0.0.1:$port/echo --conns 10 --size 20 --duration 4 --warmup 1 \
      --json-file "$OUT/$which-$r.json" --quiet >/dev/null 2>&1 || true
    kill -INT $pid; wait $pid || true
    # The server's own count: its summary lines ("…; N messages, …").
    msgs=$(grep -o "; [0-9]* messages" "$OUT/$which-$r.log" | awk '{s += $2} END {print s + 0}')
    ir=$(callgrind_annotate "$OUT/$which-$r.cg" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); if (!ir) ir = $1} END {print ir}')
    echo "$which round $r: $msgs messages, $ir Ir, $((ir / (msgs > 0 ? msgs : 1))) Ir/message"
  done
done
