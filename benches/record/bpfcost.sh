#!/usr/bin/env bash
# Kernel-side cost of each of snoop's BPF programs under a workload: runs,
# total and mean run time (kernel.bpf_stats_enabled, set for the run and
# restored), read from the recorder's own program fds (/proc/PID/fdinfo),
# so other BPF users on the host do not count. Default workload: iperf3
# loopback TCP for SECS seconds; WORKLOAD=udp uses 64-byte datagrams;
# WORKLOAD=conn short TCP connections (connect, 64 B each way, close: the
# compare harness's conn-lo load generator), with the eBPF time per
# connection; WORKLOAD=tcp-veth iperf3 from one network namespace to
# another over a veth pair (made for the run, deleted at exit), as ab.sh
# tcp-veth runs it. SNOOP_ARGS: recorder flags (e.g. "--no-packets").
#
#   sudo benches/record/bpfcost.sh               # SECS=3 WORKLOAD=tcp|tcp-veth|udp|conn

source "$(dirname "$0")/common.sh"
need iperf3 "apt-get install iperf3"
need bpftool "apt-get install bpftool (or linux-tools)"
build
SECS=${SECS:-3}
PORT=${PORT:-5396}
WORKLOAD=${WORKLOAD:-tcp}

SRV=
LSRV_PID=
trap 'kill $SRV $LSRV_PID 2>/dev/null || true; rec_kill; bpf_stats_restore; [[ $WORKLOAD != tcp-veth ]] || veth_down; rm -rf "$BENCH_DIR"' EXIT
IPERF_IN=() IPERF_DST=127.0.0.1 IPERF_OPTS=()
if [[ $WORKLOAD == tcp-veth ]]; then
	veth_up
	iperf3_start "$PORT" "$NS_B"
	IPERF_IN=("${VETH_IN[@]}") IPERF_DST=10.214.0.2
	# as ab.sh tcp-veth: 128 KiB writes, client on CPU 0, server on CPU 1
	IPERF_OPTS=(-l 128K "${IPERF_PIN[@]}")
else
	iperf3_start "$PORT"
fi
if [[ $WORKLOAD == conn ]]; then
	loadgen_start conn
fi
bpf_stats_on

f=$BENCH_DIR/cost.snp
read -r -a rec_args <<<"${SNOOP_ARGS:-}"
rec_start "$f" "${rec_args[@]}"
per_prog() {
	local fd id
	for fd in /proc/"$REC_PID"/fdinfo/*; do
		id=$(awk '/^prog_id:/ {print $2}' "$fd")
		[[ -n $id ]] || continue
		# Link fds name a prog_id too, without counters: skip them.
		awk -v id="$id" '/^run_time_ns:/ {t = $2} /^run_cnt:/ {c = $2}
			END {if (c != "") print id, t, c}' "$fd"
	done | sort -u
}
before=$(per_prog)
conns=
if [[ $WORKLOAD == udp ]]; then
	"$SNOOP_PEER" udp-blast sbcost 0 "$((SECS * 1000))" 64 >/dev/null
elif [[ $WORKLOAD == conn ]]; then
	conns=$("$LOADGEN" client conn "127.0.0.1:$LPORT" "$SECS" 64 | jq .ops)
else
	"${IPERF_IN[@]}" iperf3 -c "$IPERF_DST" -p "$PORT" -t "$SECS" "${IPERF_OPTS[@]}" >/dev/null
fi
after=$(per_prog)
names=$(for id in $(echo "$after" | cut -d' ' -f1); do
	echo "$id $(bpftool prog show id "$id" --json | jq -r .name)"
done)
rec_stop
printf '%-24s %10s %12s %8s\n' PROGRAM RUNS TOTAL_MS NS/RUN
total_ns=$(join <(echo "$before") <(echo "$after") | awk '{t += $4 - $2} END {print t + 0}')
join <(echo "$before") <(echo "$after") | while read -r id t0 c0 t1 c1; do
	runs=$((c1 - c0))
	((runs > 0)) || continue
	name=$(echo "$names" | awk -v id="$id" '$1 == id {print $2}')
	printf '%-24s %10d %12.1f %8d\n' "$name" "$runs" "$(((t1 - t0) / 1000))e-3" "$(((t1 - t0) / runs))"
done | sort -k3 -g -r
echo "events: $(info "$f" .events)"
if [[ -n $conns ]]; then
	awk -v t="$total_ns" -v n="$conns" 'BEGIN {
		printf "connections: %d, eBPF per connection: %.1f us\n", n, (n ? t / n / 1000 : 0) }'
fi
