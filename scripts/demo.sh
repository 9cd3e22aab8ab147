#!/usr/bin/env bash
# The main job: build snoop, record a few seconds of real traffic (this
# host's own, plus a small bundled loopback workload so an idle host still
# shows something), then analyze the trace without root.
#
#   bash scripts/demo.sh [SECONDS]      (default 5; needs root for recording)
#
# SNOOP_DEMO_BIN / SNOOP_DEMO_PEER: use these binaries instead of building
# (the demo's own test runs it with stand-ins that fail on purpose).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
if [ -n "${SNOOP_DEMO_BIN:-}" ]; then
    snoop=$SNOOP_DEMO_BIN
    peer=${SNOOP_DEMO_PEER:?SNOOP_DEMO_PEER must be set with SNOOP_DEMO_BIN}
else
    bash scripts/setup.sh
    cargo build --release --workspace --bins
    snoop=target/release/snoop
    peer=target/release/snoop-peer
fi
out=${SNOOP_DEMO_OUT:-/tmp/snoop-demo.snp}
log=$(mktemp)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo "$snoop" record -o "$out" --force --duration "${secs}s" 2>"$log" &
rec=$!
trap 'kill -INT $rec 2>/dev/null || true' EXIT
# The recorder's log (status lines, any hook-group warning) is shown
# whether it succeeded or not, with its exit status when it failed.
finish_recorder() {
    local status=0
    wait $rec || status=$?
    trap - EXIT
    cat "$log" >&2
    rm -f "$log"
    if [ "$status" -ne 0 ]; then
        echo "demo: snoop record exited with status $status" >&2
        exit "$status"
    fi
}
until grep -q 'snoop: recording to' "$log"; do
    if ! kill -0 $rec 2>/dev/null; then
        # Ended before (or just after) saying it was recording.
        finish_recorder
        echo "demo: snoop record ended before it was recording" >&2
        exit 1
    fi
    sleep 0.1
done
# Bundled workload: a TCP exchange (IPv4) and UDP datagrams (IPv6) on loopback.
# Each server names its port on its first line; read through a file
# descriptor of our own, which stays readable however soon it exits (a
# coproc's is gone once bash reaps it).
exec {srv}< <("$peer" tcp-server demo-server 127.0.0.1:0 4000000 100000)
srv_pid=$!
read -r _ port <&"$srv"
"$peer" tcp-client demo-client "127.0.0.1:$port" 4000000 100000 >/dev/null
wait "$srv_pid" || true
exec {srv}<&-
exec {srv}< <("$peer" udp-server demo-udp-srv '[::1]:0' 200 1200)
srv_pid=$!
read -r _ uport <&"$srv"
"$peer" udp-client demo-udp-cli "[::1]:$uport" 200 1200 unconnected >/dev/null
wait "$srv_pid" || true
exec {srv}<&-
finish_recorder
echo
"$snoop" info "$out"
echo
"$snoop" analyze "$out"
echo
"$snoop" analyze "$out" --by pid --top 10
