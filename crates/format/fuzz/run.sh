#!/bin/sh
# Long fuzz run of the `trace` target on a stable toolchain: the same build
# cargo-fuzz does (sancov + libFuzzer + ASan), with RUSTC_BOOTSTRAP=1 so
# stable rustc accepts -Zsanitizer. With nightly + cargo-fuzz installed,
# `cargo fuzz run trace` from crates/format is equivalent.
#   crates/format/fuzz/run.sh [SECONDS] [extra libFuzzer flags]
set -eu
cd "$(dirname "$0")"
secs=${1:-3600}
if [ $# -gt 0 ]; then shift; fi
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-fuzz}
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address \
 -Cdebug-assertions -Coverflow-checks -Cforce-frame-pointers"
cargo build --release --target $target --bin trace --bin seeds
mkdir -p corpus/trace artifacts/trace
"$CARGO_TARGET_DIR/$target/release/seeds" corpus/trace
# The committed fixtures too (real recordings), behind mode byte 0.
for f in ../../../fixtures/*.snp; do
    { printf '\000'; cat "$f"; } > "corpus/trace/fixture-$(basename "$f")"
done
# rss_limit_mb: the documented per-chunk bound is far below 2 GiB for the
# inputs the fuzzer can build; an allocation beyond it is a finding.
exec "$CARGO_TARGET_DIR/$target/release/trace" corpus/trace \
  -artifact_prefix=artifacts/trace/ -max_total_time="$secs" \
  -rss_limit_mb=2560 -malloc_limit_mb=2560 -max_len=262144 -print_final_stats=1 "$@"
