#!/usr/bin/env bash
# Recorder cost on three kinds of real traffic, each recorded on its own
# (all processes, messages + packets + lifecycle, like a plain
# `snoop record`): a UDP message stream (RATE/s 64-byte datagrams), an
# iperf3 loopback TCP bulk transfer, and N short TCP connections (connect,
# 2 KB each way, close). Prints events, the recorder's CPU (utime + stime
# of the snoop process between "recording to" and SIGINT, all threads),
# CPU seconds per million events, and bytes per event on disk.
#
#   sudo benches/record/cpu.sh                   # RATE=100000 SECS=5 N=300

source "$(dirname "$0")/common.sh"
need iperf3 "apt-get install iperf3"
build
RATE=${RATE:-100000}
SECS=${SECS:-5}
N=${N:-300}
PORT=${PORT:-5398}

SRV=
trap 'kill $SRV 2>/dev/null || true; rec_kill; rm -rf "$BENCH_DIR"' EXIT
iperf3_start "$PORT"

udp() { "$SNOOP_PEER" udp-blast sbcpu "$RATE" "$((SECS * 1000))" 64 >/dev/null; }
bulk() { iperf3 -c 127.0.0.1 -p "$PORT" -t "$SECS" >/dev/null; }
short() {
	local i port pid
	for i in $(seq "$N"); do
		# The server prints "ready PORT" once listening; bash drops the
		# coproc variables when it exits, so take the pid first.
		coproc SRVP { exec "$SNOOP_PEER" tcp-server sbsrv 127.0.0.1:0 2000 2000; }
		pid=$SRVP_PID
		read -r _ port <&"${SRVP[0]}"
		"$SNOOP_PEER" tcp-client sbcli "127.0.0.1:$port" 2000 2000
		wait "$pid"
	done
}

printf '%-8s %10s %9s %10s %8s %9s\n' WORKLOAD EVENTS CPU_S CPU_S/MEV B/EVENT DROPPED
for w in udp bulk short; do
	f=$BENCH_DIR/cpu-$w.snp
	rec_start "$f"
	t0=$(cpu_ticks "$REC_PID")
	$w
	t1=$(cpu_ticks "$REC_PID")
	rec_stop
	events=$(info "$f" .events)
	awk -v w="$w" -v e="$events" -v c="$((t1 - t0))" -v hz="$HZ" \
		-v b="$(info "$f" .bytes_per_event)" -v d="$(info "$f" '[.dropped[]] | add // 0')" 'BEGIN {
		cpu = c / hz
		printf "%-8s %10d %9.2f %10.2f %8.2f %9d\n", w, e, cpu, (e ? cpu / (e / 1e6) : 0), b, d }'
done
