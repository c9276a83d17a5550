#!/usr/bin/env bash
# permessage-deflate cost on wsecho: echo of 1 KiB JSON text over 1000
# connections against `--compression off`, the default (no-context-takeover,
# compressed echoes passed through) and `context-takeover` (re-compressed,
# verified by inflating), interleaved ROUNDS times. Server on CPU 0, swarm on
# CPU 1. Prints one TSV line per run and the medians.
#   loadtest/compress-bench.sh [ROUNDS] [PORT]
set -euo pipefail
ROUNDS=${1:-3}
PORT=${2:-19200}
SERVER=${SERVER:-target/release/wsecho}
LT=${LT:-target/release/wsecho-loadtest}
ARGS=(--conns 1000 --size 1024 --text --payload json --duration ${DURATION:-10} --warmup 2 --json --quiet)
OUT=${OUT:-/tmp/compress-bench.tsv}
: > "$OUT"
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq 1 "$ROUNDS"); do
  for mode in off no-context-takeover context-takeover; do
    RUST_LOG=warn taskset -c 0 "$SERVER" --addr 127.0.0.1:$PORT --compression $mode >/dev/null 2>&1 &
    spid=$!
    sleep 0.5
    extra=()
    [ "$mode" != off ] && extra=(--compress)
    load=$(cut -d' ' -f1 /proc/loadavg)
    line=$(taskset -c 1 "$LT" echo --target ws://127.0.0.1:$PORT/echo "${ARGS[@]}" "${extra[@]}" \
      --server-pid $spid 2>/dev/null | tail -1)
    kill -INT $spid; wait $spid 2>/dev/null || true
    echo "$line" | python3 -c '
import json,sys
r=json.loads(sys.stdin.read()); m=sys.argv[1]
print("\t".join(str(x) for x in [sys.argv[2], m, round(r["msgs_per_s"]), r["latency_us"]["p50"], r["latency_us"]["p99"],
  round(r["server"].get("cpu_us_per_msg") or 0, 3), r.get("compressed_size") or "-", sum(r["errors"].values()), sys.argv[3]]))
' "$mode" "$round" "$load" | tee -a "$OUT"
    PORT=$((PORT + 1))
  done
done
python3 - "$OUT" <<'PY'
import sys, statistics as st
rows=[l.split("\t") for l in open(sys.argv[1]) if l.strip()]
print("mode\tmedian msgs/s\tmedian p50 us\tmedian p99 us\tmedian server CPU us/msg\tcompressed B\terrors")
for m in ["off","no-context-takeover","context-takeover"]:
    rs=[r for r in rows if r[1]==m]
    if not rs: continue
    med=lambda i,f=float: st.median(f(r[i]) for r in rs)
    print(f"{m}\t{med(2):.0f}\t{med(3):.0f}\t{med(4):.0f}\t{med(5):.3f}\t{rs[0][6]}\t{sum(int(r[7]) for r in rs)}")
PY
