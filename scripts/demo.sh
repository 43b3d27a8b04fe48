#!/usr/bin/env bash
# The end-to-end demo on the bundled default (see README). Rerunning reuses what exists.
set -euo pipefail
cd "$(dirname "$0")/.."
CKA=.build/release/cka
OUT=demo-output
mkdir -p "$OUT"
FIX=Tests/CKASimilarityTests/Fixtures

echo "== 1. What is in an activation store"
$CKA inspect $FIX/cka_a.h5

echo "== 2. Layer×layer minibatch CKA between two models (batch 16), with a heatmap"
$CKA compare $FIX/cka_a.h5 $FIX/cka_b.h5 --batch-size 16 \
  --csv $OUT/a_vs_b.csv --long-csv $OUT/a_vs_b_long.csv --h5 $OUT/a_vs_b.h5 --heatmap $OUT/a_vs_b.png

echo "== 3. Every pair, one long CSV for pandas and an overview picture"
$CKA compare-all $FIX/cka_a.h5 $FIX/cka_b.h5 --batch-size 16 --out-dir $OUT/all --quiet

echo
echo "Results in $OUT/: a_vs_b.csv, a_vs_b.png, all/all.csv, all/overview.png"
