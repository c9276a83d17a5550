#!/usr/bin/env bash
# Compare wsecho with small echo servers built on fastwebsockets,
# tokio-tungstenite and ws-rs, under the same wsecho-loadtest swarm.
#
#   loadtest/compare.sh            # 3 interleaved rounds, ~9 minutes
#   loadtest/compare.sh --quick    # 1 short round, ~2 minutes
#   loadtest/compare.sh --full     # idle RSS at 19,000 connections (2 swarm processes)
#   options: --rounds N  --duration S  --warmup S  --servers "wsecho fastwebsockets ..."
#            --nice N (run server and swarm at this nice level, e.g. -10 on a busy machine)
#            --rt (run server and swarm SCHED_FIFO 10 via chrt, so wakeups are not delayed by
#                  other load; the kernel's RT throttle still leaves others >= 5%)
#
# Server pinned to CPU 0, swarm to CPU 1 (taskset). Rounds are interleaved
# (A B C D A B C D ...) and each figure is the median over rounds. Server CPU
# is utime+stime from /proc/PID/stat, read by the swarm itself right after the
# warm-up and right at the end of the window (--server-pid). Idle RSS is VmRSS
# from /proc/PID/status before vs after opening the connections. Every server
# is started fresh for every scenario. All traffic stays on loopback; every run
# is bounded in time and stops by itself.
#
# Output: a table on stdout, loadtest/results.md with grouped bar charts beside it in
# loadtest/results-charts/ (msgs/s, server CPU µs per message, RSS per connection; SVG,
# drawn by `wsecho-loadtest chart` from the run's summary.json), raw JSON under target/peers/runs/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

ROUNDS=3 DUR=5 WARM=1 IDLE_N=10000 IDLE_PROCS=1 HS_CONC=32 QUICK=0 FULL=0 NICE=0 SCHED=""
SERVERS="wsecho fastwebsockets tokio-tungstenite ws-rs"
CMDLINE="loadtest/compare.sh $*"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; ROUNDS=1; DUR=3; WARM=1; IDLE_N=5000 ;;
        --full) FULL=1; IDLE_N=19000; IDLE_PROCS=2 ;;
        --rounds) ROUNDS=$2; shift ;;
        --duration) DUR=$2; shift ;;
        --warmup) WARM=$2; shift ;;
        --servers) SERVERS=$2; shift ;;
        --nice) NICE=$2; shift ;;
        --rt) SCHED="chrt -f 10" ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

ulimit -n "$(ulimit -Hn)"
echo "open-file limit: $(ulimit -n) (hard $(ulimit -Hn))"

# ---- build ----------------------------------------------------------------
echo "building wsecho and wsecho-loadtest (release)..."
cargo build --release -q -p wsecho -p wsecho-loadtest
PEERS_TARGET=$ROOT/target/peers
for s in $SERVERS; do
    [ "$s" = wsecho ] && continue
    echo "building peer $s (release)..."
    CARGO_TARGET_DIR=$PEERS_TARGET cargo build --release -q --manifest-path "loadtest/peers/$s/Cargo.toml"
done
LT=$ROOT/target/release/wsecho-loadtest
RUNS=$PEERS_TARGET/runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUNS"

server_cmd() { # name port
    case "$1" in
        wsecho) echo "env RUST_LOG=warn $ROOT/target/release/wsecho --addr 127.0.0.1:$2" ;;
        *) echo "$PEERS_TARGET/release/peer-$1 127.0.0.1:$2" ;;
    esac
}
server_path() { [ "$1" = wsecho ] && echo /echo || echo /; }

PORT=20000
SPID=""
start_server() { # name -> sets SPID, PORT
    PORT=$((PORT + 1))
    # shellcheck disable=SC2046
    $SCHED nice -n "$NICE" taskset -c 0 $(server_cmd "$1" "$PORT") >"$RUNS/server-$1.log" 2>&1 &
    SPID=$!
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "server $1 did not start" >&2
    return 1
}
stop_server() {
    if [ -n "$SPID" ]; then
        kill "$SPID" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
        SPID=""
    fi
}
trap stop_server EXIT

# scenario name | swarm arguments (the target and --server-pid are added)
SCENARIOS=(
    "idle|idle --conns $IDLE_N --procs $IDLE_PROCS --source-ips 127.0.0.1,127.0.0.2 --duration 1 --settle 1"
    "echo_100x20B|echo --conns 100 --size 20 --depth 1 --binary --duration $DUR --warmup $WARM"
    "echo_1000x1KiB|echo --conns 1000 --size 1024 --depth 1 --binary --duration $DUR --warmup $WARM"
    "echo_10x64KiB|echo --conns 10 --size 65536 --depth 1 --binary --duration $DUR --warmup $WARM"
    "pipelined_100x20Bx8|echo --conns 100 --size 20 --depth 8 --binary --duration $DUR --warmup $WARM"
    "handshakes|handshakes --concurrency $HS_CONC --source-ips 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4 --duration $DUR --warmup $WARM"
)

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
    for s in $SERVERS; do
        for sc in "${SCENARIOS[@]}"; do
            name=${sc%%|*}
            args=${sc#*|}
            start_server "$s"
            out="$RUNS/$s.$name.$round.json"
            # shellcheck disable=SC2086
            if ! timeout 120 $SCHED nice -n "$NICE" taskset -c 1 "$LT" $args --target "ws://127.0.0.1:$PORT$(server_path "$s")" \
                --server-pid "$SPID" --json --quiet >"$out.raw" 2>"$RUNS/$s.$name.$round.err"; then
                echo "  ($s $name round $round: swarm exited non-zero, see $RUNS)" >&2
            fi
            grep '"mode"' "$out.raw" | tail -1 >"$out" || true
            stop_server
            printf '  round %s/%s %-18s %-22s %s\n' "$round" "$ROUNDS" "$s" "$name" \
                "$(python3 -c 'import json,sys
try: r=json.load(open(sys.argv[1]))
except Exception: print("no result"); sys.exit()
sv=r.get("server",{})
if r["mode"]=="idle": print("%.0f B/conn (%d open)"%(sv.get("rss_per_conn_bytes") or -1, r["conns_open_max"]))
elif r["mode"]=="handshakes": print("%.0f hs/s, %.2f us cpu/hs, errors %d"%(r["handshakes_per_s"], sv.get("cpu_us_per_handshake") or -1, sum(r["errors"].values())))
else: print("%.0f msgs/s, p99 %d us, %.3f us cpu/msg, errors %d"%(r["msgs_per_s"], r["latency_us"]["p99"], sv.get("cpu_us_per_msg") or -1, sum(r["errors"].values())))' "$out")"
        done
    done
done
T_END=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report -----------------------------------------------------------------
peer_version() { # crate name in a peer's Cargo.lock
    local lock=loadtest/peers/$1/Cargo.lock
    [ -f "$lock" ] && awk -v n="$2" '$0=="name = \""n"\"" {getline; gsub(/version = |"/,""); print; exit}' "$lock"
}
VERSIONS="fastwebsockets $(peer_version fastwebsockets fastwebsockets), hyper $(peer_version fastwebsockets hyper), tokio $(peer_version fastwebsockets tokio); tokio-tungstenite $(peer_version tokio-tungstenite tokio-tungstenite); ws $(peer_version ws-rs ws)"
WSECHO_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted src/ changes')"
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')

CHARTS=loadtest/results-charts
python3 - "$RUNS" "$ROOT/loadtest/results.md" <<PYEOF
import glob, json, os, statistics, sys
runs, md_path = sys.argv[1], sys.argv[2]
servers = "$SERVERS".split()
res = {}
for f in glob.glob(os.path.join(runs, "*.json")):
    s, sc, rnd, _ = os.path.basename(f).rsplit(".", 3)
    try:
        r = json.load(open(f))
    except Exception:
        continue
    res.setdefault((s, sc), []).append(r)

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def metric(s, sc, fn):
    return med([fn(r) for r in res.get((s, sc), [])])

sv = lambda r: r.get("server", {})
rows = []  # (label, scenario, fn, fmt, lower_is_better)
for sc, lab in [("echo_100x20B", "100 conns x 20 B"), ("echo_1000x1KiB", "1000 conns x 1 KiB"),
                ("echo_10x64KiB", "10 conns x 64 KiB"), ("pipelined_100x20Bx8", "100 x 20 B x depth 8")]:
    rows.append((lab + ": msgs/s", sc, lambda r: r["msgs_per_s"], "{:,.0f}", False))
    rows.append((lab + ": p99 µs", sc, lambda r: r["latency_us"]["p99"], "{:,.0f}", True))
    rows.append((lab + ": server CPU µs/msg", sc, lambda r: sv(r).get("cpu_us_per_msg"), "{:.3f}", True))
rows.append(("idle: server RSS B/conn", "idle", lambda r: sv(r).get("rss_per_conn_bytes"), "{:,.0f}", True))
rows.append(("idle: connections open", "idle", lambda r: r["conns_open_max"], "{:,.0f}", False))
rows.append(("handshakes/s", "handshakes", lambda r: r["handshakes_per_s"], "{:,.0f}", False))
rows.append(("handshakes: server CPU µs/handshake", "handshakes", lambda r: sv(r).get("cpu_us_per_handshake"), "{:.2f}", True))
rows.append(("handshakes: p99 µs (connect→101)", "handshakes", lambda r: r["latency_us"]["p99"], "{:,.0f}", True))

errs = {}
for (s, sc), rs in res.items():
    n = sum(sum(r.get("errors", {}).values()) for r in rs)
    if n:
        errs[(s, sc)] = n

header = ["figure (median of rounds)"] + servers
lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
vals = {}
for lab, sc, fn, fmt, _ in rows:
    cells = [lab]
    base = metric("wsecho", sc, fn)
    for s in servers:
        v = metric(s, sc, fn)
        vals[(lab, s)] = v
        if v is None:
            cells.append("–")
        elif s == "wsecho" or not base:
            cells.append(fmt.format(v))
        else:
            cells.append(fmt.format(v) + " (%.2f×)" % (v / base))
    lines.append("| " + " | ".join(cells) + " |")

def ratio(lab, a, b):
    va, vb = vals.get((lab, a)), vals.get((lab, b))
    return va / vb if va and vb else None

targets = []
def tgt(desc, r, ok):
    if r is None:
        targets.append("| %s | – | not measured |" % desc)
    else:
        targets.append("| %s | %.2f | %s |" % (desc, r, "met" if ok(r) else "**missed**"))
for lab in ["100 conns x 20 B", "1000 conns x 1 KiB", "10 conns x 64 KiB"]:
    tgt(lab + ": wsecho CPU/msg ÷ fastwebsockets ≤ 0.70", ratio(lab + ": server CPU µs/msg", "wsecho", "fastwebsockets"), lambda r: r <= 0.70)
    tgt(lab + ": wsecho msgs/s ÷ fastwebsockets ≥ 1.00", ratio(lab + ": msgs/s", "wsecho", "fastwebsockets"), lambda r: r >= 1.0)
tgt("pipelined: wsecho msgs/s ÷ ws-rs ≥ 2.00", ratio("100 x 20 B x depth 8: msgs/s", "wsecho", "ws-rs"), lambda r: r >= 2.0)
rss = vals.get(("idle: server RSS B/conn", "wsecho"))
n_idle = vals.get(("idle: connections open", "wsecho"))
targets.append("| idle: wsecho RSS per connection ≤ 256 B (at %s conns) | %s B | %s |" % (
    "{:,.0f}".format(n_idle) if n_idle else "–", "{:.0f}".format(rss) if rss else "–",
    ("met" if rss <= 256 else "**missed**") if rss else "not measured"))
tgt("handshakes: wsecho CPU/handshake ÷ fastwebsockets ≤ 0.70", ratio("handshakes: server CPU µs/handshake", "wsecho", "fastwebsockets"), lambda r: r <= 0.70)

# Grouped bar charts (groups = scenarios, bars = servers): summary.json for
# \`wsecho-loadtest chart\`, which draws them next to results.md.
echo_groups = [("echo_100x20B", "100 conns x 20 B"), ("echo_1000x1KiB", "1000 conns x 1 KiB"),
               ("echo_10x64KiB", "10 conns x 64 KiB"), ("pipelined_100x20Bx8", "100 x 20 B x depth 8")]
def bars(fname, title, y_desc, groups, fn):
    return {"file": fname, "title": title, "y_desc": y_desc, "groups": [g for _, g in groups],
            "values": [[metric(s, sc, fn) for s in servers] for sc, _ in groups]}
n_idle_open = metric("wsecho", "idle", lambda r: r["conns_open_max"])
summary = {"servers": servers, "charts": [
    bars("msgs_per_s.svg", "Echo throughput, median of rounds (higher is better)", "messages/s",
         echo_groups, lambda r: r["msgs_per_s"]),
    bars("cpu_us_per_msg.svg", "Server CPU per message, median of rounds (lower is better)", "µs of server CPU per message",
         echo_groups, lambda r: sv(r).get("cpu_us_per_msg")),
    bars("rss_per_conn.svg", "Idle server memory per connection (lower is better)", "bytes of VmRSS per connection",
         [("idle", "idle, %s connections" % ("{:,.0f}".format(n_idle_open) if n_idle_open else "$IDLE_N"))],
         lambda r: sv(r).get("rss_per_conn_bytes")),
]}
json.dump(summary, open(os.path.join(runs, "summary.json"), "w"), indent=1)

table = "\n".join(lines)
print()
print(table)
print()
print("| target | ratio | |\n|---|---|---|\n" + "\n".join(targets))
if errs:
    print("\nerrors (all rounds): " + ", ".join("%s/%s: %d" % (s, sc, n) for (s, sc), n in sorted(errs.items())))

md = []
md.append("# wsecho vs peers: loopback echo benchmark\n")
md.append("Produced by \`$CMDLINE\` on $(date -u '+%Y-%m-%d %H:%M UTC') in $((T_END - T_START)) s.\n")
md.append("- wsecho: git $WSECHO_REV")
md.append("- Machine: $(nproc) CPUs, $CPU_MODEL, Linux $(uname -r); load average before/after: $LOAD_BEFORE / $LOAD_AFTER")
md.append("- Server pinned to CPU 0, swarm (\`wsecho-loadtest\`) to CPU 1, both at nice $NICE${SCHED:+ under $SCHED (SCHED_FIFO)}; $ROUNDS round(s), interleaved; each figure is the median over rounds")
md.append("- Echo windows: ${WARM} s warm-up then ${DUR} s measured; binary frames; every echo verified byte for byte")
md.append("- Server CPU = utime+stime (/proc/PID/stat, 10 ms ticks) over the measured window ÷ messages (or handshakes) in it")
md.append("- Idle RSS = (VmRSS after $IDLE_N connections are open and 1 s settled − VmRSS before) ÷ connections")
md.append("- Handshakes: connect + upgrade + Close 1000 + server's FIN, $HS_CONC at a time; latency is connect→101")
md.append("- Peers (source in loadtest/peers/, echo on any path): $VERSIONS; tokio current_thread runtimes; ws-rs with max_connections raised and TCP_NODELAY like the others")
md.append("- Ratios in parentheses are peer ÷ wsecho\n")
md.append(table)
md.append("\n## Charts\n")
md.append("Medians of the table above (\`wsecho-loadtest chart --from %s/summary.json --out $CHARTS\`):\n" % os.path.relpath(runs, "$ROOT"))
for c in summary["charts"]:
    md.append("![%s](results-charts/%s)\n" % (c["title"], c["file"]))
md.append("\n## Targets\n")
md.append("| target | ratio | |\n|---|---|---|\n" + "\n".join(targets))
if errs:
    md.append("\nErrors seen by the swarm (all rounds): " + ", ".join("%s/%s: %d" % (s, sc, n) for (s, sc), n in sorted(errs.items())))
md.append("\nRaw per-run JSON: \`%s\` (not committed)." % os.path.relpath(runs, "$ROOT"))
open(md_path, "w").write("\n".join(md) + "\n")
print("\nwrote " + md_path)
PYEOF
"$LT" chart --from "$RUNS/summary.json" --out "$CHARTS"
