#!/usr/bin/env bash
# Installs what building and testing snoop needs on Debian/Ubuntu, only when
# missing: clang + llvm (compile bpf/), libelf + zlib + pkg-config (libbpf),
# bpftool (regenerate bpf/vmlinux.h), iproute2 (netns/veth test hosts),
# iperf3 (test and bench traffic), man-db, zsh and fish (the man page and
# completion tests), util-linux (setpriv), tmux (the test of top's terminal
# view). Needs root (or sudo) when something is missing.
set -euo pipefail
pkgs=(clang llvm libelf-dev zlib1g-dev pkg-config bpftool iproute2 iperf3 make man-db zsh fish util-linux tmux)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
