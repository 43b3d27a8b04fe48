#!/usr/bin/env bash
# MPI scale-out report: the same cka job with 1 rank × 1 thread and with 2 ranks × 1 thread, one after the other
# in one run, on the DINOv2 ViT-S/14 of ../shared/data (real weights) over real CIFAR-10 images:
#   extract  — N images → pooled features and Grams of norm1/qkv/fc1/block outputs (--store pooled,grams)
#   compare  — two stores of token activations of the 12 block outputs (memory-mapped path)
#   landscape — a 2-D cross-entropy grid of a linear probe head on norm:cls (no Hessian)
#   Hessian   — λ_max by power iteration (a 2-point line); with HESSIAN_SPECTRUM=1 also cka hessian
# Each pair also checks that the outputs are identical. Prints a Markdown table; bytes sent come from rank 0's
# view of the protocol (see README "Many machines").
#   bash Benchmarks/scripts/mpi_report.sh [N_IMAGES=64] [GRID=-0.5:0.5:3] [LANDSCAPE_EXAMPLES=16]
set -euo pipefail
cd "$(dirname "$0")/../.."
CKA=$(realpath "${CKA:-.build/release/cka}")
SHARED=$(realpath "${SHARED:-../shared}")
MODEL=$SHARED/data/models/vit-small-patch14-dinov2-imgfocus/model.safetensors
N=${1:-64} GRID=${2:--0.5:0.5:3} LEX=${3:-16}
export OPENBLAS_NUM_THREADS=1 CKA_MPI_STATS=1
MPIRUN=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cka-mpi-report.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/images"
per=$(( (N + 9) / 10 ))
for d in "$SHARED"/data/images/cifar10-test-1000/*/; do
  mkdir -p "$WORK/images/$(basename "$d")"; files=("$d"*); cp "${files[@]:0:$per}" "$WORK/images/$(basename "$d")/"
done
cd "$WORK"
echo "commit $(git -C "$OLDPWD" rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"

t() {
  local s=$(date +%s.%N) n=1 prev=
  for a in "$@"; do [ "$prev" = -n ] && n=$a; prev=$a; done
  "$@" > /dev/null 2> last.log || { cat last.log; exit 1; }
  cp last.log "last-$n.log"; echo "$(date +%s.%N) - $s" | bc
}
# The speed-up the split allows on free cores: CPU seconds of one rank alone / CPU of the busier of two ranks.
ideal() { python3 - << 'EOF'
import re
def cpu(n):
    return {int(m[0]): float(m[1]) for m in re.findall(r"cka-mpi-stats: rank (\d+) of \d+ sent \d+ bytes cpu ([\d.]+)", open(f"last-{n}.log").read())}
one, two = cpu(1), cpu(2)
print(f"{one[0] / max(two.values()):.2f}× ({one[0]:.1f} s; {two[0]:.1f} + {two[1]:.1f} s)")
EOF
}
row() { printf '| %s | %.1f s | %.1f s | **%.2f×** | %s | %s | %s |\n' "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)" "$4" "$5" "$(ideal)"; }
# Bytes rank 1 sent in the last run (CKA_MPI_STATS), divided by $1 units.
sent() { awk -v u="$1" '/cka-mpi-stats: rank 1 / {b = $7} END {printf "%.0f", b / u}' last.log; }
same() { python3 - "$@" << 'EOF'
import sys, h5py
def d(p):
    o = {}
    with h5py.File(p, "r") as f:
        f.visititems(lambda n, x: o.__setitem__(n, x[()]) if isinstance(x, h5py.Dataset) else None)
    return o
a, b = d(sys.argv[1]), d(sys.argv[2])
ok = a.keys() == b.keys() and all((a[k].tolist() == b[k].tolist()) if a[k].dtype == object else a[k].tobytes() == b[k].tobytes() for k in a)
print("identical" if ok else "DIFFERENT")
EOF
}

L='blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*'
EX=(extract --checkpoint "$MODEL" --images images --store pooled,grams --layers "$L,norm" --batch-size 16 --gram-batch-size 16 --threads 1 --quiet)
e1=$(t "${MPIRUN[@]}" -n 1 "$CKA" "${EX[@]}" --out x1.h5)
e2=$(t "${MPIRUN[@]}" -n 2 "$CKA" "${EX[@]}" --out x2.h5)
echo
b=$(sent $((N / 2)))
echo "| job (ViT-S/14, $(nproc) cores) | 1 rank × 1 thread | 2 ranks × 1 thread | speed-up (wall) | outputs | rank 1 sent | split allows (CPU: 1 rank; rank 0 + rank 1) |"
echo "|---|---|---|---|---|---|---|"
row "extract $N images (pooled + Grams of 48 layers)" "$e1" "$e2" "$(same x1.h5 x2.h5)" "$b B per image"

AC=(extract --checkpoint "$MODEL" --images images --store activations --layers 'blocks.*' --batch-size 16 --threads 1 --quiet)
"$CKA" "${AC[@]}" --out a.h5 > /dev/null 2>&1
"$CKA" "${AC[@]}" --out b.h5 --random-init 1 > /dev/null 2>&1
cat a.h5 b.h5 > /dev/null                                   # warm page cache, as a second compare would see it
c1=$(t "${MPIRUN[@]}" -n 1 "$CKA" compare a.h5 b.h5 --batch-size 16 --csv c1.csv --threads 1 --quiet)
c2=$(t "${MPIRUN[@]}" -n 2 "$CKA" compare a.h5 b.h5 --batch-size 16 --csv c2.csv --threads 1 --quiet)
b=$(sent $((N / 16 / 2)))
row "compare 12×12 block outputs, $((2 * $(stat -c %s a.h5) / 1000000)) MB (page cache warm)" "$c1" "$c2" "$(cmp -s c1.csv c2.csv && echo identical || echo DIFFERENT)" "$b B per batch"
# The same from disk: the page cache is dropped before each run (needs root; a store larger than memory would
# see this on every run).
if sync && echo 1 > /proc/sys/vm/drop_caches 2> /dev/null; then
  c1=$(t "${MPIRUN[@]}" -n 1 "$CKA" compare a.h5 b.h5 --batch-size 16 --csv c1.csv --threads 1 --quiet)
  sync; echo 1 > /proc/sys/vm/drop_caches
  c2=$(t "${MPIRUN[@]}" -n 2 "$CKA" compare a.h5 b.h5 --batch-size 16 --csv c2.csv --threads 1 --quiet)
  row "same, page cache dropped before each run (read from disk)" "$c1" "$c2" "$(cmp -s c1.csv c2.csv && echo identical || echo DIFFERENT)" "$b B per batch"
fi

"$CKA" probe x1.h5 --layers "norm:cls" --save head.h5 --quiet > probe.log 2>&1 || { cat probe.log; exit 1; }
LS=(landscape --checkpoint "$MODEL" --loss ce --head head.h5 --images images --examples "$LEX" --batch-size 16 --grid "$GRID" --hessian-iterations 0 --threads 1 --quiet)
l1=$(t "${MPIRUN[@]}" -n 1 "$CKA" "${LS[@]}" --out l1.h5)
l2=$(t "${MPIRUN[@]}" -n 2 "$CKA" "${LS[@]}" --out l2.h5)
pts=$(python3 -c "import h5py; print(h5py.File('l1.h5','r')['done'][()].size)")
b=$(python3 -c "import h5py, sys; print(int(sys.argv[1]) // max(1, int(h5py.File('l2.h5','r')['done'][()].size) // 2))" "$(awk '/cka-mpi-stats: rank 1 / {print $7}' last.log)")
row "landscape $pts points × $LEX examples (cross-entropy)" "$l1" "$l2" "$(same l1.h5 l2.h5)" "≈ $b B per point"
HS=(landscape --checkpoint "$MODEL" --loss ce --head head.h5 --images images --examples "$LEX" --batch-size 16 --grid -0.01:0.01:2 --dims 1
    --hessian-iterations 3 --threads 1 --quiet)
h1=$(t "${MPIRUN[@]}" -n 1 "$CKA" "${HS[@]}" --out h1.h5)
h2=$(t "${MPIRUN[@]}" -n 2 "$CKA" "${HS[@]}" --out h2.h5)
hv=$(python3 -c "import h5py; a = h5py.File('h2.h5','r').attrs; print(int(a['hessian_iterations']) + 1 + int(a['hessian_step_refinements']))")
lam=$(python3 -c "import h5py; a, b = (h5py.File(p,'r').attrs['hessian_max_eigenvalue'] for p in ('h1.h5','h2.h5')); print('identical λ_max' if a == b else f'DIFFERENT {a} {b}')")
row "Hessian λ_max, 3 power iterations (two gradients per product)" "$h1" "$h2" "$lam" "$(sent "$hv") B per product"
# cka hessian (opt-in, HESSIAN_SPECTRUM=1; a few minutes): Lanczos + Hutchinson over LANDSCAPE_EXAMPLES examples in
# two batches, so each of the 2 ranks computes one whole batch of every Hessian-vector product.
if [ "${HESSIAN_SPECTRUM:-0}" = 1 ]; then
  HX=(hessian --checkpoint "$MODEL" --loss ce --head head.h5 --images images --examples "$LEX" --batch-size $(( (LEX + 1) / 2 ))
      --top-k 1 --lanczos-steps 2 --trace-samples 1 --density-runs 0 --threads 1 --quiet)
  s1=$(t "${MPIRUN[@]}" -n 1 "$CKA" "${HX[@]}" --out s1.h5 --csv s1.csv)
  s2=$(t "${MPIRUN[@]}" -n 2 "$CKA" "${HX[@]}" --out s2.h5 --csv s2.csv)
  row "cka hessian: Lanczos 2 steps + 1 Hutchinson probe (4 products + 1 timed)" "$s1" "$s2" "$(cmp -s s1.csv s2.csv && echo identical CSV || echo DIFFERENT)" "$(sent 5) B per product"
fi
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
