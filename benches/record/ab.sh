#!/usr/bin/env bash
# Two or more recorders side by side on one workload, alternated rep by rep
# with a run without any recorder: the workload's throughput (median and
# ratio to no recorder) and the recorder's CPU (user-space process, all
# threads, % of one core; the eBPF programs' time is not in it, see
# bpfcost.sh). Use it to judge a change to the recorder: build the old and
# the new binary, then compare them in one run (these machines are too
# noisy for comparisons across runs).
#
#   sudo benches/record/ab.sh WORKLOAD OLD_SNOOP NEW_SNOOP [MORE...]
#
# WORKLOAD: udp (64-B datagrams as fast as one sender goes), conn (short TCP
# connections, 64 B each way: the compare harness's conn-lo load
# generator), rr (64-B TCP request/response), tcp (iperf3 bulk, 128 KiB
# writes, client on CPU 0 and server on CPU 1), tcp-veth (the same from one
# network namespace to another over a veth pair, created for the run and
# deleted at exit). A binary may carry recorder flags after a colon:
# "target/release/snoop:--no-packets". REPS (5) alternations, SECS (2)
# seconds per run.

source "$(dirname "$0")/common.sh"
WORKLOAD=${1:?usage: ab.sh udp|conn|rr|tcp|tcp-veth SNOOP [SNOOP...]}
shift
(($# >= 1)) || { echo "usage: ab.sh udp|conn|rr|tcp|tcp-veth SNOOP [SNOOP...]" >&2; exit 2; }
[[ $WORKLOAD =~ ^(udp|conn|rr|tcp|tcp-veth)$ ]] ||
	{ echo "ab.sh: unknown workload '$WORKLOAD' (udp, conn, rr, tcp, tcp-veth)" >&2; exit 2; }
SNOOP=${1%%:*} # so that build() builds only snoop-peer
build
REPS=${REPS:-5}
SECS=${SECS:-2}
PORT=${PORT:-5397}

LSRV_PID=
SRV=
trap 'kill $SRV $LSRV_PID 2>/dev/null || true; rec_kill; [[ $WORKLOAD != tcp-veth ]] || veth_down; rm -rf "$BENCH_DIR"' EXIT
# Where the iperf3 client runs and what it connects to.
IPERF_IN=() IPERF_DST=127.0.0.1
case $WORKLOAD in
udp) ;;
tcp)
	need iperf3 "apt-get install iperf3"
	iperf3_start "$PORT"
	;;
tcp-veth)
	need iperf3 "apt-get install iperf3"
	veth_up
	iperf3_start "$PORT" "$NS_B"
	IPERF_IN=("${VETH_IN[@]}") IPERF_DST=10.214.0.2
	;;
conn | rr) loadgen_start "$WORKLOAD" ;;
esac

# One workload run; prints its throughput in the unit below.
UNIT=("k datagrams/s" "k connections/s" "k requests/s" "Gbit/s")
case $WORKLOAD in udp) U=0 ;; conn) U=1 ;; rr) U=2 ;; tcp | tcp-veth) U=3 ;; esac
load() {
	case $WORKLOAD in
	udp)
		local sent
		read -r _ sent _ < <("$SNOOP_PEER" udp-blast sbab 0 "$((SECS * 1000))" 64)
		awk -v n="$sent" -v s="$SECS" 'BEGIN {printf "%.3f\n", n / s / 1000}'
		;;
	conn | rr)
		"$LOADGEN" client "$WORKLOAD" "127.0.0.1:$LPORT" "$SECS" 64 | jq '.ops / .secs / 1000'
		;;
	tcp | tcp-veth)
		"${IPERF_IN[@]}" iperf3 -c "$IPERF_DST" -p "$PORT" -t "$SECS" -l 128K "${IPERF_PIN[@]}" -J |
			jq '.end.sum_received.bits_per_second / 1e9'
		;;
	esac
}

declare -A THR CPU
variants=(none "$@")
for r in $(seq "$REPS"); do
	for i in "${!variants[@]}"; do
		v=${variants[$i]}
		if [[ $v == none ]]; then
			THR[$i]+="$(load) "
			continue
		fi
		SNOOP=${v%%:*}
		args=()
		[[ $v == *:* ]] && read -r -a args <<<"${v#*:}"
		rec_start "$BENCH_DIR/ab.snp" "${args[@]}"
		t0=$(cpu_ticks "$REC_PID")
		s0=$(date +%s.%N)
		THR[$i]+="$(load) "
		t1=$(cpu_ticks "$REC_PID")
		s1=$(date +%s.%N)
		rec_stop
		CPU[$i]+="$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v a="$s0" -v b="$s1" \
			'BEGIN {printf "%.2f\n", 100 * t / hz / (b - a)}') "
		grep -q ', 0 dropped in kernel, 0 in userspace' <<<"$REC_LOG" ||
			echo "ab.sh: $v lost events in rep $r: ${REC_LOG##*$'\n'}" >&2
	done
	echo "ab.sh: rep $r of $REPS done" >&2
done

# ÷ none: the median over reps of (this run ÷ the run without a recorder
# just before it), so a slow spell of the host cancels out within a rep.
printf '%-48s %14s %10s %16s  %s\n' "recorder ($WORKLOAD, $REPS reps x ${SECS}s)" \
	"${UNIT[$U]}" "÷ none" "CPU % of a core" "runs (throughput)"
for i in "${!variants[@]}"; do
	thr=$(tr ' ' '\n' <<<"${THR[$i]}" | grep . | median)
	ratio=$(paste <(tr ' ' '\n' <<<"${THR[$i]}" | grep .) <(tr ' ' '\n' <<<"${THR[0]}" | grep .) |
		awk '{print $1 / $2}' | median)
	cpu=—
	[[ -n ${CPU[$i]:-} ]] && cpu=$(tr ' ' '\n' <<<"${CPU[$i]}" | grep . | median)
	printf '%-48s %14.2f %10.3f %16s  %s\n' "${variants[$i]}" "$thr" "$ratio" "$cpu" "${THR[$i]}"
done
