#!/usr/bin/env bash
# The C1M benchmark: one million idle WebSocket connections to wsecho on this
# box, opened in steps, each step measured (server RSS, kernel slab, an echo
# sweep over every connection), then everything closed and checked.
#
#   loadtest/c1m.sh [--steps 100000,250000,500000,1000000] [--port 19700]
#                   [--servers N] [--procs N] [--ips N] [--size 20] [--in-flight 2048]
#                   [--max-time 540] [--step-timeout MAX_TIME/3] [--min-available-mib 2048]
#                   [--out target/c1m] [--no-build] [-- extra wsecho flags]
#
# Not a CI test. Needs root for the sysctls it sets (it says which, and puts
# the old values back at the end). Everything runs on 127.0.0.x and stops by
# itself: the swarm under `timeout --max-time`, every child killed on exit.
#
# Why several processes: the open-file hard limit here is 20,000 per process
# and cannot be raised, so the servers are N wsecho processes sharing one
# port (--reuse-port, --threads 1 each; the kernel spreads connections over
# them by hash, so each gets ~18,000 with room for the spread), and the swarm
# is P processes of at most 19,000 connections, spread over many 127.0.0.x
# source addresses (one source address has ~64k ports toward one server).
#
# --in-flight: connects/upgrades in progress at once over all swarm processes
# (each gets its share as --ramp). The first quiet-box run let 256 per process
# (13,568 in all) queue up, and 1,553 handshakes waited past the swarm's 10 s
# limit; fewer in flight connect as fast and none waits that long.
#
# Output: a markdown table on stdout (and OUT/c1m.md), the full report in
# OUT/c1m.json, server logs and kernel messages in OUT/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STEPS=100000,250000,500000,1000000
PORT=19700
SERVERS=
PROCS=
IPS=
SIZE=20
IN_FLIGHT=2048
MAX_TIME=540
STEP_TIMEOUT=
MIN_AVAIL=2048
OUT=$ROOT/target/c1m
BUILD=1
SERVER_EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) STEPS=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --procs) PROCS=$2; shift 2 ;;
        --ips) IPS=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --in-flight) IN_FLIGHT=$2; shift 2 ;;
        --max-time) MAX_TIME=$2; shift 2 ;;
        --step-timeout) STEP_TIMEOUT=$2; shift 2 ;;
        --min-available-mib) MIN_AVAIL=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --) shift; SERVER_EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "c1m.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

MAX=$(tr ',' '\n' <<<"$STEPS" | sort -n | tail -1)
# ~18,000 connections per server process: the reuseport hash does not split
# evenly (a few hundred either way at this size) and each has 20,000 fds.
SERVERS=${SERVERS:-$(( (MAX + 17999) / 18000 ))}
PROCS=${PROCS:-$(( (MAX + 18999) / 19000 ))}
# One source address per 30,000 connections (each has ~64k ports with the
# port range below), at least 2.
IPS=${IPS:-$(( (MAX + 29999) / 30000 ))}
[ "$IPS" -lt 2 ] && IPS=2
[ "$IPS" -gt 250 ] && IPS=250
RAMP=$(( IN_FLIGHT / PROCS ))
[ "$RAMP" -lt 4 ] && RAMP=4
SRC=$(seq -s, -f '127.0.0.%g' 2 $((IPS + 1)))
mkdir -p "$OUT"

say() { echo "c1m: $*" >&2; }

# ---- kernel settings: set what is needed, say so, restore on exit ----
declare -A OLD_SYSCTL=()
set_sysctl() { # key value reason
    local key=$1 want=$2 why=$3 file=/proc/sys/${1//.//} cur
    if [ ! -e "$file" ]; then say "sysctl $key: absent ($why)"; return; fi
    cur=$(tr -s ' \t' ' ' <"$file")
    if [ "$cur" = "$want" ]; then say "sysctl $key = $cur (already; $why)"; return; fi
    if echo "$want" >"$file" 2>/dev/null; then
        OLD_SYSCTL[$key]=$cur
        say "sysctl $key: $cur -> $want ($why)"
    else
        say "sysctl $key: could not set $want, stays $cur ($why)"
    fi
}
at_least() { # key minimum reason
    local file=/proc/sys/${1//.//}
    if [ ! -e "$file" ]; then say "sysctl $1: absent ($3)"; return; fi
    local cur; cur=$(awk '{print $1}' "$file")
    if [ "$cur" -ge "$2" ]; then say "sysctl $1 = $cur (enough; $3)"; else set_sysctl "$1" "$2" "$3"; fi
}

SERVER_PIDS=()
SWARM_PID=
START_TS=$(date +%s)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$SWARM_PID" ] && kill "$SWARM_PID" 2>/dev/null || true
    for p in "${SERVER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    local i=0
    while [ $i -lt 50 ]; do
        local alive=0
        for p in "${SERVER_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1; i=$((i + 1))
    done
    for p in "${SERVER_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for key in "${!OLD_SYSCTL[@]}"; do
        echo "${OLD_SYSCTL[$key]}" >"/proc/sys/${key//.//}" 2>/dev/null \
            && say "sysctl $key restored to ${OLD_SYSCTL[$key]}"
    done
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "steps $STEPS: $SERVERS server processes on 127.0.0.1:$PORT, $PROCS swarm processes ($RAMP connects in flight each), $IPS source addresses"
say "open-file limit per process: soft $(ulimit -Sn), hard $(ulimit -Hn) (each process stays under it)"
ulimit -n "$(ulimit -Hn)"
# Client ports: the default 32768-60999 gives ~28k per source address.
set_sysctl net.ipv4.ip_local_port_range "1024 65535" "client ports per source address"
# Every connection is two fds on this box (client and server).
at_least fs.file-max $((2 * MAX + 200000)) "system-wide open files: 2 per connection"
# The servers listen with --backlog 4096; the kernel caps it at somaxconn.
at_least net.core.somaxconn 4096 "accept queue per listener"
at_least net.ipv4.tcp_max_syn_backlog 8192 "half-open connections during the ramp-up"
# TCP buffer memory (pages): the echo sweep has a message queued on up to a
# million sockets at once (~1 KiB each counted); the default cap here is ~2.2 GB.
TCP_MEM_MAX=$(( MAX / 2 + 262144 ))
CUR_TCP_MEM_MAX=$(awk '{print $3}' /proc/sys/net/ipv4/tcp_mem)
if [ "$CUR_TCP_MEM_MAX" -lt "$TCP_MEM_MAX" ]; then
    set_sysctl net.ipv4.tcp_mem "$((TCP_MEM_MAX / 2)) $((TCP_MEM_MAX * 3 / 4)) $TCP_MEM_MAX" \
        "TCP buffer pages: the sweep queues a message on every socket"
else
    say "sysctl net.ipv4.tcp_mem = $(cat /proc/sys/net/ipv4/tcp_mem) (enough; TCP buffer pages)"
fi
if [ -e /proc/sys/net/netfilter/nf_conntrack_max ]; then
    at_least net.netfilter.nf_conntrack_max $((MAX + 100000)) \
        "conntrack is loaded; it tracks $(cat /proc/sys/net/netfilter/nf_conntrack_count) now"
else
    say "conntrack not loaded: nf_conntrack_max not needed"
fi

if [ "$BUILD" = 1 ]; then
    say "building (release)..."
    (cd "$ROOT" && cargo build --release -q -p wsecho -p wsecho-loadtest)
fi
SERVER_BIN=$ROOT/target/release/wsecho
LT_BIN=$ROOT/target/release/wsecho-loadtest
[ -x "$SERVER_BIN" ] && [ -x "$LT_BIN" ] || { say "missing $SERVER_BIN or $LT_BIN"; exit 2; }
if ss -Htln "sport = :$PORT" | grep -q .; then say "port $PORT is in use; pick another with --port"; exit 2; fi

DMESG_BEFORE=$(dmesg 2>/dev/null | wc -l || echo 0)
grep -E '^(MemTotal|MemAvailable|Slab|SUnreclaim):' /proc/meminfo >"$OUT/meminfo-before.txt"

# ---- servers ----
# --idle-timeout 0: no keepalive pings, so the held connections stay idle
# (the sweep is the only traffic).
for i in $(seq 1 "$SERVERS"); do
    RUST_LOG=warn "$SERVER_BIN" --addr "127.0.0.1:$PORT" --threads 1 --reuse-port --backlog 4096 \
        --idle-timeout 0 "${SERVER_EXTRA[@]}" >"$OUT/server-$i.log" 2>&1 &
    SERVER_PIDS+=($!)
done
for _ in $(seq 1 100); do
    [ "$(ss -Htln "sport = :$PORT" | wc -l)" -ge "$SERVERS" ] && break
    sleep 0.1
done
LISTENING=$(ss -Htln "sport = :$PORT" | wc -l)
[ "$LISTENING" -ge "$SERVERS" ] || { say "only $LISTENING of $SERVERS servers listen on $PORT"; exit 1; }
say "$SERVERS servers listening (pids ${SERVER_PIDS[*]:0:3}...)"
PIDS=$(IFS=,; echo "${SERVER_PIDS[*]}")

# ---- the swarm ----
STEP_TIMEOUT=${STEP_TIMEOUT:-$(( MAX_TIME / 3 ))}
# 11,000-20,000 echoes/s on this 2-core box when it is shared.
SWEEP_TIMEOUT=$(( MAX / 6000 > 60 ? MAX / 6000 : 60 ))
set +e
timeout --kill-after=15 "$MAX_TIME" "$LT_BIN" steps --target "ws://127.0.0.1:$PORT/echo" \
    --steps "$STEPS" --procs "$PROCS" --source-ips "$SRC" --server-pids "$PIDS" --size "$SIZE" --ramp "$RAMP" \
    --step-timeout "$STEP_TIMEOUT" --sweep-timeout "$SWEEP_TIMEOUT" --min-available-mib "$MIN_AVAIL" \
    --json-file "$OUT/c1m.json" >"$OUT/c1m.md" &
SWARM_PID=$!
wait "$SWARM_PID"
RC=$?
SWARM_PID=
set -e
cat "$OUT/c1m.md"
[ "$RC" = 124 ] && say "the swarm hit --max-time $MAX_TIME s and was stopped"

# ---- after: every server alive? kernel messages? ----
DEAD=0
for p in "${SERVER_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || DEAD=$((DEAD + 1)); done
grep -E '^(MemTotal|MemAvailable|Slab|SUnreclaim):' /proc/meminfo >"$OUT/meminfo-after.txt"
dmesg 2>/dev/null | tail -n +"$((DMESG_BEFORE + 1))" >"$OUT/dmesg.txt" || true
say "servers dead: $DEAD of $SERVERS"
if [ -s "$OUT/dmesg.txt" ]; then
    say "kernel messages during the run ($OUT/dmesg.txt):"
    sed 's/^/  /' "$OUT/dmesg.txt" | sort | uniq -c | sort -rn | head -10 >&2
fi
if grep -qiE 'panic|error' "$OUT"/server-*.log 2>/dev/null; then
    say "server logs mention errors:"; grep -hiE 'panic|error' "$OUT"/server-*.log | sort | uniq -c | head -5 >&2
fi
say "report: $OUT/c1m.md, $OUT/c1m.json ($(( $(date +%s) - START_TS )) s in all)"
[ "$RC" = 0 ] && [ "$DEAD" = 0 ]
