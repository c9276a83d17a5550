#!/usr/bin/env bash
# Issue 11 figures, interleaved ROUNDS times, medians at the end:
#  part 1 (threads): wsecho --threads 1 vs --threads 2 at the default log
#    level, on echo 100 x 20 B, echo 1000 x 1 KiB and handshakes; server and
#    swarm not pinned (a 2-reactor server needs both CPUs). Server CPU per
#    message / per handshake, and how the connections spread over the
#    reactors (the accepted counts in each reactor's summary line at exit).
#  part 2 (log level): --threads 1, handshakes, default level (info) vs
#    RUST_LOG=warn vs RUST_LOG=debug (the per-connection lines); server on
#    CPU 0, swarm on CPU 1.
#   loadtest/threads-bench.sh [ROUNDS] [PORT]
# One TSV line per run on stderr and in $OUT; medians on stdout. Loopback
# only; every run is bounded (DURATION s + WARMUP s).
set -euo pipefail
ROUNDS=${1:-3}
PORT=${2:-19400}
SERVER=${SERVER:-target/release/wsecho}
LT=${LT:-target/release/wsecho-loadtest}
DUR=${DURATION:-5}
WARM=${WARMUP:-1}
OUT=${OUT:-/tmp/threads-bench.tsv}
LOGS=$(mktemp -d /tmp/threads-bench.XXXXXX)
: >"$OUT"
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg); server logs in $LOGS" >&2

declare -A SWARM=(
  [echo_100x20B]="echo --conns 100 --size 20 --depth 1 --binary"
  [echo_1000x1KiB]="echo --conns 1000 --size 1024 --depth 1 --binary"
  [handshakes]="handshakes --concurrency 32 --source-ips 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4"
)

# run PART ARM SCENARIO ROUND LEVEL SERVER_TASKSET SWARM_TASKSET SERVER_ARGS...
run() {
  local part=$1 arm=$2 sc=$3 round=$4 level=$5 sset=$6 cset=$7
  shift 7
  local log="$LOGS/$part.$arm.$sc.$round.log"
  PORT=$((PORT + 1))
  # shellcheck disable=SC2086
  env ${level:+RUST_LOG=$level} RUST_LOG_STYLE=never $sset "$SERVER" --addr 127.0.0.1:$PORT "$@" 2>"$log" &
  local spid=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.05
  done
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  local json
  # shellcheck disable=SC2086
  json=$(timeout 120 $cset "$LT" ${SWARM[$sc]} --target ws://127.0.0.1:$PORT/echo --duration "$DUR" --warmup "$WARM" \
    --server-pid $spid --json --quiet 2>/dev/null | tail -1) || true
  kill -INT $spid
  wait $spid 2>/dev/null || true
  echo "$json" | python3 -c '
import json, re, sys
part, arm, sc, rnd, load, log = sys.argv[1:]
try:
    r = json.loads(sys.stdin.read())
except Exception:
    print("\t".join([part, arm, sc, rnd, "-", "-", "-", "-", load, "-"])); sys.exit()
sv = r.get("server", {})
if r["mode"] == "handshakes":
    rate, cpu = r["handshakes_per_s"], sv.get("cpu_us_per_handshake")
else:
    rate, cpu = r["msgs_per_s"], sv.get("cpu_us_per_msg")
# accepted per reactor, summed over its summary lines (they cover the run)
acc = {}
for line in open(log, errors="replace"):
    m = re.search(r"\] (r\d+) [\d.]+ s: \d+ open, (\d+) accepted", line)
    if m:
        acc[m.group(1)] = acc.get(m.group(1), 0) + int(m.group(2))
spread = "/".join(str(acc[k]) for k in sorted(acc)) or "-"
print("\t".join(str(x) for x in [part, arm, sc, rnd, round(rate), "%.3f" % (cpu or 0), sum(r["errors"].values()),
    r["latency_us"]["p99"], load, spread]))
' "$part" "$arm" "$sc" "$round" "$load" "$log" | tee -a "$OUT" >&2
}

for round in $(seq 1 "$ROUNDS"); do
  for sc in echo_100x20B echo_1000x1KiB handshakes; do
    for t in 1 2; do
      run threads "threads$t" "$sc" "$round" "" "" "" --threads "$t"
    done
  done
  for level in info warn debug; do
    lv=$level
    [ "$level" = info ] && lv=""   # the default: RUST_LOG unset
    run log "$level" handshakes "$round" "$lv" "taskset -c 0" "taskset -c 1" --threads 1
  done
done
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$OUT" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print("part\tarm\tscenario\truns\tmedian rate/s\tmedian server CPU us/op\terrors\tmedian p99 us\tconnections per reactor (each run)")
seen = []
for r in rows:
    k = (r[0], r[1], r[2])
    if k not in seen:
        seen.append(k)
for k in seen:
    rs = [r for r in rows if (r[0], r[1], r[2]) == k and r[4] != "-"]
    if not rs:
        print("\t".join(k) + "\t0\tno result"); continue
    med = lambda i: st.median(float(r[i]) for r in rs)
    print("%s\t%s\t%s\t%d\t%.0f\t%.3f\t%d\t%.0f\t%s" % (k[0], k[1], k[2], len(rs), med(4), med(5),
        sum(int(r[6]) for r in rs), med(7), " ".join(r[9] for r in rs)))
PY
