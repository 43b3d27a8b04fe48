#!/usr/bin/env bash
# Inputs of the notebooks in notebooks-export/ that `make demo` does not write: the CKA matrices as HDF5
# (cka-matrix), linear probes on two blocks saved as logits stores, and their Kendall-τ agreement.
# Needs demo-output/trained.h5 and random.h5 (run scripts/demo.sh first). Seconds; rerunning overwrites.
set -euo pipefail
cd "$(dirname "$0")/.."
CKA=${CKA:-.build/release/cka}
OUT=${OUT:-demo-output}
[ -f $OUT/trained.h5 ] && [ -f $OUT/random.h5 ] || { echo "run scripts/demo.sh first (no $OUT/trained.h5)"; exit 1; }

echo "== CKA matrices as HDF5 (figure 1 notebook)"
$CKA compare $OUT/trained.h5 $OUT/random.h5 --layers 'blocks.*' --batch-size 20 --h5 $OUT/trained_vs_random.h5 --quiet
$CKA compare $OUT/trained.h5 --layers 'blocks.*' --batch-size 20 --h5 $OUT/trained_self.h5 --quiet

echo "== Linear probes on every block (CSV) and on two blocks saved as logits stores (figure 4 notebook)"
mkdir -p $OUT/agreement
$CKA probe $OUT/trained.h5 --layers 'blocks.*:cls' --csv $OUT/agreement/probe_trained.csv --quiet > /dev/null
$CKA probe $OUT/trained.h5 --layers 'blocks.6:cls' --save $OUT/agreement/blocks6_logits.h5 --quiet
$CKA probe $OUT/trained.h5 --layers 'blocks.11:cls' --save $OUT/agreement/blocks11_logits.h5 --quiet
$CKA probe $OUT/random.h5 --layers 'blocks.6:cls' --save $OUT/agreement/random6_logits.h5 --quiet

echo "== Kendall-τ agreement (10 classes, so top-k up to 10)"
$CKA agreement $OUT/agreement/blocks6_logits.h5 $OUT/agreement/blocks11_logits.h5 --top 3,5,10 \
  --csv $OUT/agreement/blocks6_vs_blocks11.csv
$CKA agreement $OUT/agreement/blocks6_logits.h5 $OUT/agreement/random6_logits.h5 --top 3,5,10 \
  --csv $OUT/agreement/blocks6_vs_random6.csv
echo "Done: $OUT/trained_vs_random.h5, $OUT/trained_self.h5, $OUT/agreement/"
