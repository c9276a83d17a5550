#!/usr/bin/env bash
# What HAProxy costs: the same wsecho instance, echo traffic straight to it vs
# through HAProxy running deploy/haproxy.cfg, interleaved rounds, medians.
#
#   loadtest/balancer-bench.sh [ROUNDS]        (default 3)
#
# wsecho (--threads 1, default flags otherwise, default log level) on CPU 0,
# the swarm on CPU 1, HAProxy unpinned (its default: one thread per CPU). The
# three `server` lines of the config all point at the one instance. Per
# scenario and path: msgs/s, wsecho CPU µs/msg (from the swarm's
# --server-pid) and HAProxy CPU µs/msg (utime+stime from /proc over the same
# window). Loopback only; every run is bounded (2 s warm-up + 5 s window).
set -euo pipefail
ROUNDS=${1:-3}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v haproxy >/dev/null || { echo "needs haproxy (apt-get install haproxy)" >&2; exit 2; }
cargo build --release -q -p wsecho -p wsecho-loadtest
SERVER=target/release/wsecho SWARM=target/release/wsecho-loadtest
OUT=$(mktemp -d)
PORT=19611 MPORT=19612 LB=19613 STATS=19614
taskset -c 0 "$SERVER" --addr 127.0.0.1:$PORT --threads 1 --metrics-addr 127.0.0.1:$MPORT 2>/dev/null & SPID=$!
WSECHO_LB_BIND=127.0.0.1:$LB WSECHO_LB_STATS=127.0.0.1:$STATS WSECHO_HEALTH_PORT=$MPORT \
  WSECHO_S1=127.0.0.1:$PORT WSECHO_S2=127.0.0.1:$PORT WSECHO_S3=127.0.0.1:$PORT WSECHO_LB_MAXCONN=9000 \
  haproxy -db -f deploy/haproxy.cfg >"$OUT/haproxy.log" 2>&1 & HPID=$!
trap 'kill $SPID $HPID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -s "http://127.0.0.1:$STATS/stats;csv" | grep -q '^wsecho,s1,.*,UP,' && break
  sleep 0.1
done
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
scenarios=("100 20" "1000 1024")
for r in $(seq 1 "$ROUNDS"); do
  for sc in "${scenarios[@]}"; do
    set -- $sc
    for path in direct haproxy; do
      port=$PORT; [ $path = haproxy ] && port=$LB
      h0=$(cpu_ticks $HPID); t0=$(date +%s.%N)
      taskset -c 1 "$SWARM" echo --target ws://127.0.0.1:$port/echo --conns "$1" --size "$2" \
        --duration 5 --warmup 2 --server-pid $SPID --json-file "$OUT/$path-$1-$2-$r.json" --quiet >/dev/null 2>&1 || true
      h1=$(cpu_ticks $HPID); t1=$(date +%s.%N)
      echo "$h0 $h1 $t0 $t1" >"$OUT/$path-$1-$2-$r.hap"
    done
  done
done
python3 - "$OUT" "$ROUNDS" "$(getconf CLK_TCK)" <<'PY'
import json, sys, statistics, glob
out, rounds, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("| scenario | path | msgs/s | wsecho CPU µs/msg | HAProxy CPU µs/msg | errors |")
print("|---|---|---:|---:|---:|---:|")
for c, s in [(100, 20), (1000, 1024)]:
    base = None
    for p in ("direct", "haproxy"):
        rs, hap = [], []
        for f in sorted(glob.glob(f"{out}/{p}-{c}-{s}-*.json")):
            r = json.load(open(f)); rs.append(r)
            h0, h1, t0, t1 = map(float, open(f[:-5] + ".hap").read().split())
            # HAProxy's CPU over the whole run (warm-up included) per message
            # over the whole run.
            hap.append((h1 - h0) / hz * 1e6 / max(r.get("msgs_run", 0), 1))
        bad = sum(r.get("corrupted", 0) + sum(r["errors"].values()) for r in rs)
        mps = statistics.median(r["msgs_per_s"] for r in rs)
        cpu = statistics.median(r["server"]["cpu_us_per_msg"] for r in rs)
        hcpu = statistics.median(hap) if p == "haproxy" else 0.0
        rel = "" if base is None else f" ({mps / base:.2f}× direct)"
        base = base or mps
        print(f"| {c} conns × {s} B | {p} | {mps:,.0f}{rel} | {cpu:.2f} | {hcpu:.2f} | {bad} |")
PY
