#!/usr/bin/env bash
# Before/after: two wsecho binaries under the same swarm, interleaved rounds,
# medians of msgs/s and server CPU µs per message (utime+stime from
# /proc/PID/stat over the measured window, read by the swarm).
#
#   loadtest/ab-compare.sh OLD_BIN NEW_BIN [ROUNDS]
#
# Server on CPU 0, swarm on CPU 1 (taskset; a server pinned to one CPU runs
# one reactor). Default flags apart from --addr, RUST_LOG unset (the default
# level). Loopback only; every run is bounded (2 s warm-up + 5 s window).
set -euo pipefail
OLD=$1 NEW=$2 ROUNDS=${3:-3}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SWARM="$ROOT/target/release/wsecho-loadtest"
OUT=$(mktemp -d)
PORT=19577
scenarios=("100 20" "1000 1024" "10 65536")
for r in $(seq 1 "$ROUNDS"); do
  for sc in "${scenarios[@]}"; do
    set -- $sc
    for which in old new; do
      bin=$OLD; [ $which = new ] && bin=$NEW
      taskset -c 0 "$bin" --addr 127.0.0.1:$PORT 2>/dev/null & pid=$!
      sleep 0.5
      taskset -c 1 "$SWARM" echo --target ws://127.0.0.1:$PORT/echo --conns "$1" --size "$2" \
        --duration 5 --warmup 2 --server-pid $pid --json-file "$OUT/$which-$1-$2-$r.json" --quiet >/dev/null 2>&1 || true
      kill $pid; wait $pid 2>/dev/null || true
    done
  done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys, statistics, glob
out, rounds = sys.argv[1], int(sys.argv[2])
print("| scenario | old msgs/s | new msgs/s | old CPU µs/msg | new CPU µs/msg | new/old CPU |")
print("|---|---:|---:|---:|---:|---:|")
for c, s in [(100, 20), (1000, 1024), (10, 65536)]:
    row = {}
    for w in ("old", "new"):
        rs = [json.load(open(f)) for f in glob.glob(f"{out}/{w}-{c}-{s}-*.json")]
        bad = sum(r.get("corrupted", 0) for r in rs) + sum(sum(r["errors"].values()) if isinstance(r["errors"], dict) else 0 for r in rs)
        row[w] = (statistics.median(r["msgs_per_s"] for r in rs), statistics.median(r["server"]["cpu_us_per_msg"] for r in rs), bad)
    o, n = row["old"], row["new"]
    print(f"| {c} conns × {s} B | {o[0]:,.0f} | {n[0]:,.0f} | {o[1]:.2f} | {n[1]:.2f} | {n[1]/o[1]:.2f} |  errors old {o[2]} new {n[2]}")
PY
