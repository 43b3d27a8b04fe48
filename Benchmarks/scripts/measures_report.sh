#!/bin/bash
# Issue 15's performance targets, timed in one run with the release `cka` (build it first:
# `swift build -c release --product cka` at the repository root):
#   1. from stored Grams, minibatch 12×12 (ViT-B-like: 12 block outputs per model, batch size B):
#      plain compare vs --permutations 1000 (target ≤ 10×) and --bootstrap 1000 (target ≤ 2×);
#   2. N pooled features ([N, 768], like --tokens cls): each measure beyond CKA vs --estimator debiased
#      on the same layers (target ≤ 5×).
# Synthetic stores (h5py) under a temporary folder; prints one table. The stored-Grams timings are the median
# of REPEATS (default 3) interleaved runs, with `--threads 1` and `--threads 2`, as wall time and as CPU time
# (user + sys, less sensitive to other load on the machine; needs GNU time, /usr/bin/time). POOLED=0 skips part 2. Usage:
#   [REPEATS=3] [POOLED=1] Benchmarks/scripts/measures_report.sh [N_GRAMS=5120] [BATCH=256] [N_POOLED=5000] [LAYERS_POOLED=2]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CKA="$ROOT/.build/release/cka"
[ -x "$CKA" ] || { echo "build $CKA first (swift build -c release --product cka)"; exit 1; }
N_GRAMS=${1:-5120}; BATCH=${2:-256}; N_POOLED=${3:-5000}; LAYERS_POOLED=${4:-2}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT
python3 - "$DIR" "$N_GRAMS" "$BATCH" "$N_POOLED" "$LAYERS_POOLED" <<'PY'
import sys, h5py, numpy as np
d, n, b, np_, lp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(0)
def store(path, model, n, grams=None, pooled=None):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "activations"; f.attrs["format_version"] = 1; f.attrs["model"] = model
        f.create_dataset("inputs/ids", data=[f"img{i}" for i in range(n)], dtype=h5py.string_dtype())
        if grams is not None:
            for l, g in enumerate(grams):
                ds = f.create_dataset(f"grams/blocks.{l}", data=g)
                ds.attrs["batch_size"] = b; ds.attrs["tokens"] = "flatten"; ds.attrs["centered"] = True
        if pooled is not None:
            for l, x in enumerate(pooled):
                ds = f.create_dataset(f"activations/blocks.{l}:cls", data=x.astype(np.float32), chunks=(min(256, n), x.shape[1]))
                ds.attrs["order"] = l; ds.attrs["kind"] = "pooled"; ds.attrs["block"] = l
k = n // b
base = rng.standard_normal((n, 64))
for name in ("a", "b"):
    grams = []
    for l in range(12):
        x = base @ rng.standard_normal((64, 96)) + rng.standard_normal((n, 96)) * (1 + l / 4)
        x = x.reshape(k, b, 96); x = x - x.mean(1, keepdims=True)
        grams.append(np.einsum("kid,kjd->kij", x, x))
    store(f"{d}/grams_{name}.h5", f"grams_{name}", n, grams=grams)
pb = rng.standard_normal((np_, 128))
for name in ("a", "b"):
    pooled = [pb @ rng.standard_normal((128, 768)) + rng.standard_normal((np_, 768)) for _ in range(lp)]
    store(f"{d}/pooled_{name}.h5", f"pooled_{name}", np_, pooled=pooled)
PY
t() { local s=$(date +%s.%N); "$@" > /dev/null; echo "$(date +%s.%N) - $s" | bc; }
echo "commit $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) cores, OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS, load $(cut -d' ' -f1-3 /proc/loadavg)"
G="$DIR/grams_a.h5 $DIR/grams_b.h5 --batch-size $BATCH --grams stored --quiet"
# "wall cpu" of one run (cpu = user + sys, from GNU time).
tc() { /usr/bin/time -o "$DIR/time" -f "%e %U %S" "$@" > /dev/null; awk '{ print $1, $2 + $3 }' "$DIR/time"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
REPEATS=${REPEATS:-3}
for th in 1 2; do
  : > "$DIR/plain.w"; : > "$DIR/plain.c"; : > "$DIR/perm.w"; : > "$DIR/perm.c"
  for r in $(seq "$REPEATS"); do
    read w c < <(tc $CKA compare $G --threads $th); echo "$w" >> "$DIR/plain.w"; echo "$c" >> "$DIR/plain.c"
    read w c < <(tc $CKA compare $G --threads $th --permutations 1000); echo "$w" >> "$DIR/perm.w"; echo "$c" >> "$DIR/perm.c"
  done
  pw=$(median < "$DIR/plain.w"); pc=$(median < "$DIR/plain.c"); qw=$(median < "$DIR/perm.w"); qc=$(median < "$DIR/perm.c")
  printf "stored Grams, 12×12, N=%d, b=%d, --threads %d, median of %d: plain %.2f s (CPU %.2f s) | --permutations 1000 %.2f s (CPU %.2f s): %.1f× wall, %.1f× CPU (target ≤ 10×)\n" \
    "$N_GRAMS" "$BATCH" "$th" "$REPEATS" "$pw" "$pc" "$qw" "$qc" "$(echo "$qw / $pw" | bc -l)" "$(echo "$qc / $pc" | bc -l)"
done
plain=$(t $CKA compare $G)
boot=$(t $CKA compare $G --bootstrap 1000)
printf "stored Grams, 12×12, N=%d, b=%d: plain %.2f s | --bootstrap 1000 %.2f s (%.2f×, target ≤ 2×)\n" \
  "$N_GRAMS" "$BATCH" "$plain" "$boot" "$(echo "$boot / $plain" | bc -l)"
[ "${POOLED:-1}" = 0 ] && exit 0
P="$DIR/pooled_a.h5 $DIR/pooled_b.h5 --quiet"
deb=$(t $CKA compare $P --estimator debiased)
printf "pooled [N=%d, 768], %d×%d layers: debiased CKA %.2f s\n" "$N_POOLED" "$LAYERS_POOLED" "$LAYERS_POOLED" "$deb"
for m in procrustes mutual-knn cknna svcca pwcca rsa; do
  s=$(t $CKA compare $P --measure $m)
  printf "  %-10s %.2f s (%.2f× debiased CKA, target ≤ 5×)\n" "$m" "$s" "$(echo "$s / $deb" | bc -l)"
done
