#!/bin/sh
# Regenerate bpf/vmlinux.h from the running kernel's BTF.
# The generated header is committed so that building snoop needs no BTF on
# the build machine; CO-RE relocations adapt the programs to the target kernel.
set -eu
BTF=${1:-/sys/kernel/btf/vmlinux}
OUT=$(dirname "$0")/vmlinux.h
bpftool btf dump file "$BTF" format c > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT from $BTF ($(wc -l < "$OUT") lines)"
