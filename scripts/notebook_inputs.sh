#!/usr/bin/env bash
# Inputs of the notebooks in notebooks-export/ that `make demo` does not write: the CKA matrices as HDF5
# (cka-matrix), linear probes on the middle and the last block saved as logits stores (blocks.6 and blocks.11 of
# a 12-block ViT), and their Kendall-τ agreement. Needs $OUT/trained.h5 and random.h5 (run scripts/demo.sh
# first). Seconds; rerunning overwrites.
set -euo pipefail
cd "$(dirname "$0")/.."
CKA=${CKA:-.build/release/cka}
OUT=${OUT:-demo-output}
[ -f $OUT/trained.h5 ] && [ -f $OUT/random.h5 ] || { echo "run scripts/demo.sh first (no $OUT/trained.h5)"; exit 1; }

echo "== CKA matrices as HDF5 (figure 1 notebook)"
$CKA compare $OUT/trained.h5 $OUT/random.h5 --layers 'blocks.*' --batch-size 20 --h5 $OUT/trained_vs_random.h5 --quiet
$CKA compare $OUT/trained.h5 --layers 'blocks.*' --batch-size 20 --h5 $OUT/trained_self.h5 --quiet

DEPTH=$($CKA inspect $OUT/trained.h5 | grep -c '^blocks\.[0-9]*:cls ' || true)
[ "$DEPTH" -gt 1 ] || { echo "no pooled blocks.{i}:cls features in $OUT/trained.h5"; exit 1; }
MID=$((DEPTH / 2)) LAST=$((DEPTH - 1))

echo "== Linear probes on every block (CSV) and on blocks $MID and $LAST saved as logits stores (figure 4 notebook)"
mkdir -p $OUT/agreement
$CKA probe $OUT/trained.h5 --layers 'blocks.*:cls' --csv $OUT/agreement/probe_trained.csv --quiet > /dev/null
$CKA probe $OUT/trained.h5 --layers "blocks.$MID:cls" --save $OUT/agreement/blocks${MID}_logits.h5 --quiet
$CKA probe $OUT/trained.h5 --layers "blocks.$LAST:cls" --save $OUT/agreement/blocks${LAST}_logits.h5 --quiet
$CKA probe $OUT/random.h5 --layers "blocks.$MID:cls" --save $OUT/agreement/random${MID}_logits.h5 --quiet

echo "== Kendall-τ agreement (10 classes, so top-k up to 10)"
$CKA agreement $OUT/agreement/blocks${MID}_logits.h5 $OUT/agreement/blocks${LAST}_logits.h5 --top 3,5,10 \
  --csv $OUT/agreement/blocks${MID}_vs_blocks${LAST}.csv
$CKA agreement $OUT/agreement/blocks${MID}_logits.h5 $OUT/agreement/random${MID}_logits.h5 --top 3,5,10 \
  --csv $OUT/agreement/blocks${MID}_vs_random${MID}.csv
echo "Done: $OUT/trained_vs_random.h5, $OUT/trained_self.h5, $OUT/agreement/"
