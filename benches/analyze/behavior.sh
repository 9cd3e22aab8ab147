#!/usr/bin/env bash
# `snoop analyze --report behavior` next to
# `snoop analyze --by pid` on the same large synthetic trace (the reference
# workload of `snoop synth`, 20 million message events by default), run
# alternately REPS times (order swapped every rep), JSON to /dev/null, warm
# page cache. Prints each run's wall time and peak RSS, then the medians
# and their ratio (the issue asks for behavior within 2x of by-pid).
#   bash benches/analyze/behavior.sh
# Knobs: SNOOP (binary, default target/release/snoop), EVENTS (20000000),
# REPS (5), TRACE (default /tmp/snoop-behavior-$EVENTS.snp; made once, kept),
# BEFORE (another snoop binary, e.g. one built from an older commit: its
# `--report behavior` runs in the same alternation, as `before`).
set -euo pipefail
cd "$(dirname "$0")/../.."
SNOOP=${SNOOP:-target/release/snoop}
EVENTS=${EVENTS:-20000000}
REPS=${REPS:-5}
F=${TRACE:-/tmp/snoop-behavior-$EVENTS.snp}
[ -x "$SNOOP" ] || cargo build --release --no-default-features --features analyze
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
if [ ! -f "$F" ]; then
    echo "== making $F: $EVENTS events" >&2
    "$SNOOP" synth -o "$F" --events "$EVENTS"
fi
"$SNOOP" info "$F" | sed -n '1,8p'
echo "cpus: $(nproc)"

run() { # name, args...: prints "seconds kib"
    local name=$1 bin=$SNOOP
    shift
    [ "$name" = before ] && bin=$BEFORE
    /usr/bin/time -f "%e %M" -o /tmp/snoop-bench-time.$$ "$bin" analyze "$F" "$@" --format json -o /dev/null
    read -r secs kib < /tmp/snoop-bench-time.$$
    echo "$name $secs $kib"
}

# One untimed run of each warms the page cache.
"$SNOOP" analyze "$F" --by pid --format json -o /dev/null
"$SNOOP" analyze "$F" --report behavior --format json -o /dev/null

BEFORE=${BEFORE:-}
[ -n "$BEFORE" ] && "$BEFORE" analyze "$F" --report behavior --format json -o /dev/null
results=()
for rep in $(seq 1 "$REPS"); do
    echo "rep $rep: load average $(cut -d' ' -f1 /proc/loadavg)" >&2
    before=()
    [ -n "$BEFORE" ] && before=("$(run before --report behavior)")
    if [ $((rep % 2)) -eq 1 ]; then
        results+=("$(run by_pid --by pid)" "$(run behavior --report behavior)" "${before[@]}")
    else
        results+=("${before[@]}" "$(run behavior --report behavior)" "$(run by_pid --by pid)")
    fi
done
printf '%s\n' "${results[@]}" | awk '{ printf "%-9s %6.2f s  %8.0f MiB peak RSS\n", $1, $2, $3 / 1024 }'
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
t = {}
m = {}
for line in sys.stdin:
    name, secs, kib = line.split()
    t.setdefault(name, []).append(float(secs))
    m.setdefault(name, []).append(int(kib))
b, p = statistics.median(t["behavior"]), statistics.median(t["by_pid"])
mb, mp = max(m["behavior"]) / 1024, max(m["by_pid"]) / 1024
n = len(t["by_pid"])
print(f"median over {n} reps: --by pid {p:.2f} s ({mp:.0f} MiB), --report behavior {b:.2f} s ({mb:.0f} MiB): {b / p:.2f}x")
if "before" in t:
    o = statistics.median(t["before"])
    mo = max(m["before"]) / 1024
    print(f"before (BEFORE binary): --report behavior {o:.2f} s ({mo:.0f} MiB): {o / p:.2f}x --by pid; now {b / o:.2f}x of before")
'
