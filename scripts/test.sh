#!/usr/bin/env bash
# The whole test suite: installs missing system packages, checks that the
# analyze-only build compiles without clang/libbpf, then runs every test of
# every crate. Run as root so the real eBPF tests run; without root they skip
# with a reason, unless SNOOP_REQUIRE_BPF=1 (CI sets it) makes them fail.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== analyze-only build (no eBPF toolchain needed)" >&2
cargo build --no-default-features --features analyze
echo "== tests" >&2
cargo test --workspace --all-features
