#!/usr/bin/env bash
# Chunk skipping on a big trace: time to the first output of `snoop analyze`
# and `snoop replay` when --since/--until select one minute of a ~10 GB
# synthetic trace, cold (page cache dropped, as root) and warm, next to a
# full `snoop analyze --by pid` of the same file.
#   bash benches/analyze/window.sh            # BIG_GB=10, /tmp/snoop-big.snp
# Knobs: SNOOP (binary, default target/release/snoop), BIG_TRACE, BIG_GB,
# FULL=0 to skip the full-file analysis. The trace is made once and kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
SNOOP=${SNOOP:-target/release/snoop}
F=${BIG_TRACE:-/tmp/snoop-big.snp}
GB=${BIG_GB:-10}
[ -x "$SNOOP" ] || cargo build --release
command -v bc >/dev/null && [ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq bc time >/dev/null; }
if [ ! -f "$F" ]; then
    # ~4.4 B per synthetic message event.
    n=$(( GB * 1000000000 / 44 * 10 ))
    echo "== making $F: $n events" >&2
    /usr/bin/time -f "synth: %e s wall, %M KiB peak" "$SNOOP" synth -o "$F" --events "$n"
fi
"$SNOOP" info "$F" | sed -n '1,12p'
cold() { if [ "$(id -u)" -eq 0 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi; }
first_line() { # wall seconds until the first line of output
    local t0 t1
    t0=$(date +%s.%N)
    "$@" | head -n 1 > /dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
for temp in cold warm; do
    [ "$temp" = cold ] && cold
    echo "$temp: analyze --since 600s --until 660s --by pid: first output after $(first_line "$SNOOP" analyze "$F" --since 600s --until 660s --by pid --top 0) s"
    [ "$temp" = cold ] && cold
    echo "$temp: replay --since 600s --until 660s: first line after $(first_line "$SNOOP" replay "$F" --since 600s --until 660s) s"
done
/usr/bin/time -f "window analyze: %e s wall, %M KiB peak RSS" "$SNOOP" analyze "$F" --since 600s --until 660s --by pid --format json -o /dev/null
if [ "${FULL:-1}" = 1 ]; then
    /usr/bin/time -f "full analyze --by pid: %e s wall, %M KiB peak RSS" "$SNOOP" analyze "$F" --by pid --format json -o /dev/null
fi
