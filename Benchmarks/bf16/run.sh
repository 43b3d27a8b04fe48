#!/usr/bin/env bash
# Builds and runs bf16_matmul.c: oneDNN bf16 matmul against OpenBLAS sgemm on the ViT-B/16 GEMM shapes.
#   bash Benchmarks/bf16/run.sh [THREADS] [ROUNDS] [M]
# Needs libdnnl-dev (Debian 12: oneDNN 2.6.3), which the project itself does not use (see README there).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
threads="${1:-1}"; rounds="${2:-5}"; m="${3:-6304}"
bin="$(mktemp -d)/bf16_matmul"
trap 'rm -rf "$(dirname "$bin")"' EXIT
gcc -O2 -o "$bin" "$here/bf16_matmul.c" -ldnnl -lopenblas
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); bf16 flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E 'avx512_bf16|amx_bf16' | tr '\n' ' ' || true)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS="$threads" "$bin" "$threads" "$rounds" "$m"
