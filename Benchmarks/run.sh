#!/usr/bin/env bash
# Runs the tensor-core benchmarks in release mode and records what was measured:
#   1. gflops-report (one process: GFLOP/s and % of the sgemm 2048³ peak), once with
#      OPENBLAS_NUM_THREADS=1 and once with 2 threads;
#   2. the package-benchmark suite (Benchmarks/TensorCore), with OpenBLAS's default thread count
#      (or OPENBLAS_NUM_THREADS if you set it).
#
# usage: Benchmarks/run.sh [all|report|suite] [extra arguments for `swift package benchmark`]
#
# The whole output is also written to .build/benchmark-runs/<UTC time>-<commit>.txt (ignored by git).
# Timings are only meaningful on an otherwise idle machine: the script prints the load average
# first, and gflops-report prints how busy the other CPUs were while it measured.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

what="${1:-all}"
case "$what" in
    all|report|suite) [[ $# -gt 0 ]] && shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) what=all ;;
esac

commit="$(git -C .. rev-parse HEAD 2>/dev/null || echo unknown)"
dirty=""
if [[ "$commit" != unknown && -n "$(git -C .. status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    dirty=" (+ uncommitted changes to tracked files)"
fi
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p .build/benchmark-runs
log=".build/benchmark-runs/${stamp}-${commit:0:12}.txt"

{
    echo "== ViTCKA tensor-core benchmarks"
    echo "commit:   ${commit}${dirty}"
    echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "host:     $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//') ×$(nproc)"
    echo "openblas: $(dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n' 'libopenblas0*' 2>/dev/null \
        | awk '$1 == "ii" { printf "%s %s  ", $2, $3 }' || echo unknown)"
    echo "swift:    $(swift --version 2>/dev/null | head -1)"
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (1/5/15 min; measure on an idle machine)"
    echo
} | tee "$log"

if [[ "$what" == all || "$what" == report ]]; then
    if ! swift build -c release --product gflops-report >>"$log" 2>&1; then
        tail -30 "$log"; echo "run.sh: the release build of gflops-report failed" >&2; exit 1
    fi
    bin="$(swift build -c release --show-bin-path)"
    for threads in 1 2; do
        echo | tee -a "$log"
        echo "== gflops-report, OPENBLAS_NUM_THREADS=${threads}" | tee -a "$log"
        OPENBLAS_NUM_THREADS="$threads" "$bin/gflops-report" 2>&1 | tee -a "$log"
    done
fi

if [[ "$what" == all || "$what" == suite ]]; then
    echo | tee -a "$log"
    echo "== package-benchmark suite (OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-default})" | tee -a "$log"
    swift package --disable-sandbox benchmark --no-progress "$@" 2>&1 | tee -a "$log"
fi

echo | tee -a "$log"
echo "Log written to Benchmarks/$log"
