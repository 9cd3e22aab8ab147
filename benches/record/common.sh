# shellcheck shell=bash
# Shared helpers of the recorder benches (sourced, not run): build the
# release binaries without polars, start `snoop record` and wait for its
# "recording to" line on a pipe (no sleeps), stop it with SIGINT, read the
# trace's figures with `snoop info --json`, and read a process's CPU time.
#
# Environment: SNOOP / SNOOP_PEER to use prebuilt binaries; CARGO_TARGET_DIR
# as usual; BENCH_DIR for the traces (default: a temp dir, removed at exit).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

need() {
	command -v "$1" >/dev/null || { echo "bench: $1 not found ($2)" >&2; exit 2; }
}

build() {
	if [[ -z ${SNOOP:-} || -z ${SNOOP_PEER:-} ]]; then
		local target=${CARGO_TARGET_DIR:-$ROOT/target}
		echo "bench: building release binaries (no analyzer) in $target" >&2
		# A given SNOOP is not rebuilt (nor is target/release/snoop
		# overwritten by a recorder-only build behind its back).
		if [[ -z ${SNOOP:-} ]]; then
			(cd "$ROOT" && cargo build -q --release --no-default-features --features record) >&2
		fi
		(cd "$ROOT" && cargo build -q --release -p snoop-record --bin snoop-peer) >&2
		SNOOP=${SNOOP:-$target/release/snoop}
		SNOOP_PEER=${SNOOP_PEER:-$target/release/snoop-peer}
	fi
	[[ $(id -u) == 0 ]] || { echo "bench: run as root (eBPF)" >&2; exit 2; }
	need jq "apt-get install jq"
	BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/snoop-bench.XXXXXX)}
	trap 'rec_kill; rm -rf "$BENCH_DIR"' EXIT
}

REC_PID=
REC_FD=

# rec_start FILE ARGS...: start `snoop record -o FILE ARGS`, return once it
# printed "snoop: recording to FILE" (every probe attached).
rec_start() {
	local out=$1 line
	shift
	exec {REC_FD}< <(exec "$SNOOP" record -o "$out" --force "$@" 2>&1 >/dev/null)
	REC_PID=$!
	while IFS= read -r -u "$REC_FD" line; do
		[[ $line == *"recording to"* ]] && return 0
		echo "$line" >&2
	done
	echo "bench: snoop record did not start" >&2
	return 1
}

# rec_stop: SIGINT, then wait for the summary (EOF on the pipe = exited).
rec_stop() {
	kill -INT "$REC_PID"
	REC_LOG=$(cat <&"$REC_FD")
	exec {REC_FD}<&-
	while kill -0 "$REC_PID" 2>/dev/null; do sleep 0.01; done
	REC_PID=
}

rec_kill() {
	if [[ -n ${REC_PID:-} ]]; then kill -INT "$REC_PID" 2>/dev/null || true; fi
}

# cpu_ticks PID: user + system clock ticks of the whole process (all threads).
cpu_ticks() {
	awk '{print $14 + $15}' "/proc/$1/stat"
}

HZ=$(getconf CLK_TCK)

# info FILE FIELD: a figure from `snoop info --json` (dropped = all sources).
info() {
	"$SNOOP" info --json "$1" | jq -r "$2"
}

median() {
	sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'
}

# bpf_ns PID: "run_time_ns run_cnt" summed over the BPF programs the process
# holds (from /proc/PID/fdinfo; counted only while kernel.bpf_stats_enabled=1).
bpf_ns() {
	awk '/^prog_id:/ {id = $2} /^run_time_ns:/ {t[id] = $2} /^run_cnt:/ {c[id] = $2}
		END {for (i in t) {T += t[i]; C += c[i]}; printf "%d %d\n", T, C}' \
		/proc/"$1"/fdinfo/* 2>/dev/null
}

# bpf_stats_on: count BPF run time (host-wide knob; restored by bpf_stats_restore).
BPF_STATS_WAS=
bpf_stats_on() {
	BPF_STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
	sysctl -q -w kernel.bpf_stats_enabled=1
}
bpf_stats_restore() {
	[[ -z $BPF_STATS_WAS ]] || sysctl -q -w kernel.bpf_stats_enabled="$BPF_STATS_WAS"
}

# Bulk clients pin themselves to CPU 0 and their server to CPU 1 (iperf3
# -A): left to the scheduler, the placement moved loopback throughput
# between 19 and 25 Gbit/s from run to run, more than a recorder costs.
IPERF_PIN=()
(($(nproc) >= 2)) && IPERF_PIN=(-A 0,1)

# iperf3_start PORT [NETNS]: start an iperf3 server on PORT (in network
# namespace NETNS if given; its pid in SRV) and return once it listens. It
# polls the socket table rather than connecting: iperf3 would count a
# probe connection as a failed test.
iperf3_start() {
	local in=()
	[[ -z ${2:-} ]] || in=(ip netns exec "$2")
	"${in[@]}" iperf3 -s -p "$1" >/dev/null 2>&1 &
	SRV=$!
	for _ in $(seq 200); do
		"${in[@]}" ss -Hltn "sport = :$1" | grep -q . && return 0
		sleep 0.02
	done
	echo "bench: iperf3 does not listen on port $1" >&2
	return 1
}

# veth_up: two network namespaces (snab-a, snab-b) joined by a veth pair,
# 10.214.0.1 in snab-a and 10.214.0.2 in snab-b; veth_down deletes them.
# Sets NS_A, NS_B, and VETH_IN (the command prefix that runs in snab-a).
NS_A=snab-a NS_B=snab-b
VETH_IN=(ip netns exec "$NS_A")
veth_down() { ip netns del "$NS_A" 2>/dev/null || true; ip netns del "$NS_B" 2>/dev/null || true; }
veth_up() {
	need ip "apt-get install iproute2"
	veth_down
	ip netns add "$NS_A"
	ip netns add "$NS_B"
	ip link add snab-va netns "$NS_A" type veth peer name snab-vb netns "$NS_B"
	ip -n "$NS_A" addr add 10.214.0.1/24 dev snab-va
	ip -n "$NS_B" addr add 10.214.0.2/24 dev snab-vb
	ip -n "$NS_A" link set snab-va up
	ip -n "$NS_B" link set snab-vb up
	# With the iperf3 ends pinned (IPERF_PIN), process both ends' received
	# packets on CPU 1: left on the sending CPU, the data from CPU 0 and
	# the sends its ACKs trigger on CPU 1 arrive out of order, and spurious
	# retransmits (11-40 thousand per 2 GB) swing the throughput 2x.
	if ((${#IPERF_PIN[@]})); then
		ip netns exec "$NS_A" sh -c 'echo 2 > /sys/class/net/snab-va/queues/rx-0/rps_cpus'
		ip netns exec "$NS_B" sh -c 'echo 2 > /sys/class/net/snab-vb/queues/rx-0/rps_cpus'
	fi
}

# loadgen_start conn|rr: build the compare harness's load generator when
# missing or stale, start its server on a free loopback port, and set
# LOADGEN, LSRV_PID and LPORT. It serves until its stdin closes (or it is
# killed).
loadgen_start() {
	LOADGEN=${LOADGEN:-${CARGO_TARGET_DIR:-$ROOT/target}/compare/snb-loadgen}
	if [[ ! -x $LOADGEN || $ROOT/benches/compare/loadgen.rs -nt $LOADGEN ]]; then
		mkdir -p "$(dirname "$LOADGEN")"
		rustc -O --edition 2021 "$ROOT/benches/compare/loadgen.rs" -o "$LOADGEN"
	fi
	# It prints "ready PORT" once listening.
	coproc LSRV { exec "$LOADGEN" server "$1" 127.0.0.1:0 64; }
	LSRV_PID=$LSRV_PID
	read -r _ LPORT <&"${LSRV[0]}"
}
