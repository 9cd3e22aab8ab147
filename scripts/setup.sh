#!/usr/bin/env bash
# Installs what building and testing snoop needs on Debian/Ubuntu, only when
# missing: clang + llvm (compile bpf/), libelf + zlib + pkg-config (libbpf),
# bpftool (regenerate bpf/vmlinux.h), iproute2 (netns/veth test hosts),
# iperf3 (test and bench traffic), man-db, zsh and fish (the man page and
# completion tests), util-linux (setpriv), tmux (the test of top's terminal
# view), tshark (reads the pcapng export back), chromium (the HTML report's
# browser test, headless), and DuckDB for Python from PyPI (queries the
# Parquet dataset). Needs root (or sudo) when something is missing.
set -euo pipefail
pkgs=(clang llvm libelf-dev zlib1g-dev pkg-config bpftool iproute2 iperf3 make man-db zsh fish util-linux tmux tshark python3-pip chromium)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    # tshark asks whether non-root users may capture: keep the default (no).
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c "import duckdb" 2>/dev/null; then
    echo "setup: installing duckdb (PyPI)" >&2
    # Debian's Python refuses pip installs outside a venv unless told.
    $([ "$(id -u)" -eq 0 ] || echo sudo) python3 -m pip install -q duckdb 2>/dev/null \
        || $([ "$(id -u)" -eq 0 ] || echo sudo) python3 -m pip install -q --break-system-packages duckdb
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
