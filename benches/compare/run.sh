#!/usr/bin/env bash
# snoop vs tcpdump / tshark / bpftrace / nethogs on the same traffic.
# One command, as root:   bash benches/compare/run.sh
# Installs the peers (Debian packages) and polars for Python, builds snoop
# (or reuses the build in $CARGO_TARGET_DIR), runs every workload with every
# tool, prints the markdown table and writes it to benches/compare/results.md.
#
# Knobs (environment): BENCH_SECS (2) seconds per run, BENCH_REPS (5) paired
# reps, BENCH_WORKLOADS (all: bulk-lo,rr-lo,udp-lo,conn-lo,proc-lo,bulk-veth,
# udp-veth), BENCH_TOOLS (all: snoop,tcpdump,bpftrace,nethogs), SNOOP (use this
# snoop binary, skip the build), BENCH_DIR (scratch, /tmp/snoop-compare),
# BENCH_ANALYSIS_RUNS (3) timed runs of each analysis (median wall time),
# CARGO_TARGET_DIR (default: <repo>/target).
# BENCH_MODE=cpu runs the fixed-work CPU comparison instead (cpuwork.py: N
# short connections, fixed bytes of bulk TCP over loopback and veth, small
# UDP datagrams; whole-machine extra CPU per unit of work, snoop vs tcpdump;
# knobs CPU_REPS, CPU_WORKLOADS, CPU_TOOLS, CPU_CONNS, CPU_BULK_LO,
# CPU_BULK_VETH, CPU_DGRAMS, CPU_ATTRIB=1 for each tool's own CPU from perf
# samples; about 6 minutes).
# Traffic stays on loopback and on a veth pair between two namespaces this
# script creates (snbA 10.213.0.1 <-> snbB 10.213.0.2) and removes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[ "$(id -u)" = 0 ] || { echo "run as root (eBPF, tcpdump, namespaces)" >&2; exit 1; }

# --- peers
need=()
peers="tcpdump:tcpdump tshark:tshark bpftrace:bpftrace iperf3:iperf3 nethogs:nethogs time:/usr/bin/time ss:iproute2 ip:iproute2"
# The fixed-work CPU mode compares with tcpdump only.
[ "${BENCH_MODE:-}" = cpu ] && peers="tcpdump:tcpdump ss:iproute2 ip:iproute2"
# ... and samples with perf for each tool's own CPU (CPU_ATTRIB=1).
[ "${BENCH_MODE:-}" = cpu ] && [ "${CPU_ATTRIB:-}" = 1 ] && peers="$peers perf:linux-perf"
for p in $peers; do
  command -v "${p%%:*}" >/dev/null 2>&1 || need+=("${p#*:}")
done
[ "${BENCH_MODE:-}" = cpu ] || [ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ "${BENCH_MODE:-}" = cpu ] || python3 -c 'import polars' 2>/dev/null || pip install -q polars
# bpftrace's classic tracepoints need tracefs
if [ "${BENCH_MODE:-}" != cpu ] && { [ ! -d /sys/kernel/tracing/events ] || [ -z "$(ls /sys/kernel/tracing/events 2>/dev/null)" ]; }; then
  mount -t tracefs nodev /sys/kernel/tracing
fi
ulimit -l unlimited 2>/dev/null || true

# --- builds
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
if [ -z "${SNOOP:-}" ]; then
  ( cd "$repo"
    # the full binary (recorder + analyzer); fall back to the recorder only
    cargo build --release -q 2>/dev/null || {
      echo "full build failed; using the recorder-only build (no analysis columns)" >&2
      cargo build --release -q --no-default-features --features record; } )
  SNOOP="$CARGO_TARGET_DIR/release/snoop"
fi
mkdir -p "$CARGO_TARGET_DIR/compare"
LOADGEN="$CARGO_TARGET_DIR/compare/snb-loadgen"
if [ ! -x "$LOADGEN" ] || [ "$here/loadgen.rs" -nt "$LOADGEN" ]; then
  rustc -O --edition 2021 "$here/loadgen.rs" -o "$LOADGEN"
fi
export SNOOP LOADGEN
export BENCH_OUT="${BENCH_OUT:-$here/results.md}"
# Higher priority than background jobs (builds) so the paired runs compare
# the tools, not the scheduler; workload and tools get the same priority.
if [ "${BENCH_MODE:-}" = cpu ]; then
  exec nice -n -19 python3 "$here/cpuwork.py"
fi
exec nice -n -19 python3 "$here/bench.py"
