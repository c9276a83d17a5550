#!/usr/bin/env bash
# The whole test suite, set-up included, on a fresh Debian 12 machine:
#   bash tests/run.sh
# Installs what the end-to-end suites need (Debian's chromium and prometheus, the npm
# modules, the Autobahn TestSuite in a cached Python 2.7 virtualenv), builds
# the release binaries, then runs every test — unit, integration over real
# sockets, headless-browser and Autobahn — with cargo-nextest. The last line
# is nextest's summary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "tests/run.sh: $*" >&2; }

if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# The real programs the end-to-end suites drive: Chromium (the page),
# HAProxy and nginx (tests/balancer.rs), systemd-analyze (the unit file),
# Prometheus and promtool (tests/metrics.rs).
NEED=""
command -v chromium >/dev/null 2>&1 || NEED="$NEED chromium"
command -v haproxy >/dev/null 2>&1 || NEED="$NEED haproxy"
command -v nginx >/dev/null 2>&1 || NEED="$NEED nginx-light"
command -v systemd-analyze >/dev/null 2>&1 || NEED="$NEED systemd"
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || NEED="$NEED prometheus"
if [ -n "$NEED" ]; then
  log "installing Debian's$NEED"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q $NEED >/dev/null
fi

log "setting up the Autobahn TestSuite"
bash autobahn/setup.sh >/dev/null

log "building"
cargo build --release --workspace --bins

log "socket suites with two reactors per test server (WSECHO_TEST_THREADS=2)"
WSECHO_TEST_THREADS=2 cargo nextest run --release --no-fail-fast \
  --test rfc6455_4_handshake --test rfc6455_5_framing --test rfc6455_7_close \
  --test backpressure --test hostile_clients --test fragment_flood

log "running the tests"
exec cargo nextest run --release --workspace --run-ignored all --no-fail-fast "$@"
