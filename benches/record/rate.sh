#!/usr/bin/env bash
# Highest small-UDP-message rate `snoop record` keeps with zero drops, and
# the drops above it. For each target rate, one process (comm sbblast) sends
# 64-byte datagrams over loopback to its own reader thread for DUR_MS while
# `snoop record --comm sbblast` (messages + packets, default ring) records;
# every datagram is 4 events (send, receive, packet out, packet in). Rate 0
# is "as fast as the sender can". Prints one row per rate.
#
#   sudo benches/record/rate.sh                  # RATES="20000 50000 ..." DUR_MS=3000
#   sudo RING=8M benches/record/rate.sh          # smaller ring buffer

source "$(dirname "$0")/common.sh"
build
RATES=${RATES:-"25000 50000 100000 150000 200000 300000 0"}
DUR_MS=${DUR_MS:-3000}
SIZE=${SIZE:-64}
RING=${RING:-32M}

printf '%-9s %10s %10s %10s %11s %9s %9s %10s %8s\n' \
	TARGET/s SENT/s RECV/s EVENTS EVENTS/s DROPPED CPU_S CPU_S/MEV B/EVENT
for rate in $RATES; do
	f=$BENCH_DIR/rate-$rate.snp
	rec_start "$f" --comm sbblast --ring-size "$RING"
	t0=$(cpu_ticks "$REC_PID")
	read -r _ sent _ recv _ secs < <("$SNOOP_PEER" udp-blast sbblast "$rate" "$DUR_MS" "$SIZE")
	t1=$(cpu_ticks "$REC_PID")
	rec_stop
	events=$(info "$f" .events)
	dropped=$(info "$f" '[.dropped[]] | add // 0')
	bpe=$(info "$f" .bytes_per_event)
	awk -v r="$rate" -v s="$sent" -v v="$recv" -v t="$secs" -v e="$events" -v d="$dropped" \
		-v c="$(((t1 - t0)))" -v hz="$HZ" -v b="$bpe" 'BEGIN {
		cpu = c / hz
		printf "%-9s %10.0f %10.0f %10d %11.0f %9d %9.2f %10.2f %8.2f\n",
			(r == 0 ? "max" : r), s / t, v / t, e, e / t, d, cpu, (e ? cpu / (e / 1e6) : 0), b }'
done
