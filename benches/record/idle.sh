#!/usr/bin/env bash
# The fixed cost of a recording: the whole machine's busy CPU (/proc/stat:
# user, nice, system, irq, softirq, steal) from the moment `snoop record`
# is ready until it has exited after SIGINT, with no traffic, next to the
# same time with no recorder. What is left after the difference is what
# start-up-to-stop costs regardless of the work, which a fixed-work
# measurement (benches/compare, BENCH_MODE=cpu) spreads over its units:
# divide by the work's connections or datagrams. Start-up (load and
# attach) is not counted, as in the compare harness.
#
#   sudo benches/record/idle.sh             # REPS (3), SECS (2.5) idle seconds
#   sudo SNOOP=path/to/snoop benches/record/idle.sh

source "$(dirname "$0")/common.sh"
build
REPS=${REPS:-3}
SECS=${SECS:-2.5}
trap 'rec_kill; rm -rf "$BENCH_DIR"' EXIT
busy() { awk 'NR == 1 {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
HZ=$(getconf CLK_TCK)
for r in $(seq "$REPS"); do
	t0=$(busy)
	sleep "$SECS"
	none=$(($(busy) - t0))
	rec_start "$BENCH_DIR/idle.snp"
	t0=$(busy)
	sleep "$SECS"
	rec_stop
	rec=$(($(busy) - t0))
	awk -v n="$none" -v s="$rec" -v hz="$HZ" -v r="$r" 'BEGIN {
		printf "rep %d: no recorder %.0f ms, snoop record %.0f ms, difference %.0f ms\n",
			r, 1000 * n / hz, 1000 * s / hz, 1000 * (s - n) / hz }'
done
