#!/usr/bin/env bash
# Workload overhead of recording: iperf3 loopback TCP throughput without
# and with `snoop record` (all processes, messages + packets + lifecycle),
# in PAIRS paired runs of SECS seconds (the order alternates per pair to
# cancel drift). Prints each pair, the median with/without throughput
# ratio, the median ratio of the workload's own CPU per GB moved (iperf3
# client + server utime + stime, which includes the BPF programs run in
# their context; less sensitive to other load on the host than throughput),
# the run time of snoop's BPF programs (kernel.bpf_stats_enabled, set for
# the run and restored) per GB as a share of the workload's CPU per GB, and
# the recorder's CPU per million events and bytes per event.
#
#   sudo benches/record/overhead.sh              # PAIRS=7 SECS=3
#   sudo nice -n -19 benches/record/overhead.sh  # on a busy host
#   sudo EXTRA="--no-packets" benches/record/overhead.sh

source "$(dirname "$0")/common.sh"
need iperf3 "apt-get install iperf3"
build
PAIRS=${PAIRS:-7}
SECS=${SECS:-3}
PORT=${PORT:-5399}
EXTRA=${EXTRA:-}

SRV=
trap 'kill $SRV 2>/dev/null || true; rec_kill; bpf_stats_restore; rm -rf "$BENCH_DIR"' EXIT
iperf3_start "$PORT"
bpf_stats_on

gbps() { # one iperf3 run -> "Gbit/s CPU-seconds-per-GB" (client + server)
	iperf3 -c 127.0.0.1 -p "$PORT" -t "$SECS" "${IPERF_PIN[@]}" -J | jq -r '.end as $e
		| ($e.sum_received.seconds) as $s
		| "\($e.sum_received.bits_per_second / 1e9) \(($e.cpu_utilization_percent.host_total
			+ $e.cpu_utilization_percent.remote_total) / 100 * $s / ($e.sum_received.bytes / 1e9))"'
}

with() { # one recorded iperf3 run -> "gbps cpu/GB events cpu_ticks file bpf_ns bpf_runs"
	local f=$BENCH_DIR/ovh-$1.snp t0 t1 g c b0 n0 b1 n1
	# shellcheck disable=SC2086
	rec_start "$f" $EXTRA
	t0=$(cpu_ticks "$REC_PID")
	read -r b0 n0 < <(bpf_ns "$REC_PID")
	read -r g c < <(gbps)
	read -r b1 n1 < <(bpf_ns "$REC_PID")
	t1=$(cpu_ticks "$REC_PID")
	rec_stop
	echo "$g $c $(info "$f" .events) $((t1 - t0)) $f $((b1 - b0)) $((n1 - n0))"
}

printf '%-5s %12s %12s %8s %13s %13s %8s %10s %9s\n' PAIR BASE_GBIT/S REC_GBIT/S RATIO \
	BASE_CPU_S/GB REC_CPU_S/GB RATIO EVENTS DROPPED
ratios=()
cratios=()
bshares=()
tot_bns=0 tot_bruns=0
tot_events=0 tot_ticks=0 tot_bytes=0
for i in $(seq "$PAIRS"); do
	if ((i % 2)); then
		read -r base bcpu < <(gbps)
		read -r rec rcpu events ticks f bns bruns < <(with "$i")
	else
		read -r rec rcpu events ticks f bns bruns < <(with "$i")
		read -r base bcpu < <(gbps)
	fi
	ratio=$(awk -v a="$rec" -v b="$base" 'BEGIN {printf "%.4f", a / b}')
	cratio=$(awk -v a="$rcpu" -v b="$bcpu" 'BEGIN {printf "%.4f", a / b}')
	ratios+=("$ratio")
	cratios+=("$cratio")
	# Kernel-side cost: BPF run time per GB moved, as a share of the
	# workload's own CPU per GB without recording.
	bshare=$(awk -v n="$bns" -v g="$rec" -v s="$SECS" -v c="$bcpu" \
		'BEGIN {printf "%.4f", (n / 1e9) / (g * s / 8) / c}')
	bshares+=("$bshare")
	tot_bns=$((tot_bns + bns)) tot_bruns=$((tot_bruns + bruns))
	dropped=$(info "$f" '[.dropped[]] | add // 0')
	tot_events=$((tot_events + events))
	tot_ticks=$((tot_ticks + ticks))
	tot_bytes=$((tot_bytes + $(info "$f" .file_bytes)))
	printf '%-5s %12.2f %12.2f %8s %13.3f %13.3f %8s %10d %9d\n' "$i" "$base" "$rec" "$ratio" \
		"$bcpu" "$rcpu" "$cratio" "$events" "$dropped"
done
med=$(printf '%s\n' "${ratios[@]}" | median)
cmed=$(printf '%s\n' "${cratios[@]}" | median)
bmed=$(printf '%s\n' "${bshares[@]}" | median)
awk -v m="$med" -v cm="$cmed" -v bm="$bmed" -v bn="$tot_bns" -v br="$tot_bruns" -v e="$tot_events" -v t="$tot_ticks" -v hz="$HZ" -v b="$tot_bytes" 'BEGIN {
	printf "median throughput ratio %.4f (overhead %.1f%%)\n", m, (1 - m) * 100
	printf "median workload CPU/GB ratio %.4f (overhead %.1f%%)\n", cm, (cm - 1) * 100
	printf "BPF programs: %.0f ns per run (%d runs), %.0f ns per event; median %.1f%% of the workload CPU\n",
		bn / br, br, bn / e, bm * 100
	printf "recorder CPU %.2f s per million events; %.2f bytes per event on disk\n",
		(t / hz) / (e / 1e6), b / e }'
