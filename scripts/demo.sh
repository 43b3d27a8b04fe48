#!/usr/bin/env bash
# The end-to-end demo (make demo): extract a trained ViT and a random-init twin over the bundled images,
# compare them layer by layer, and write pictures and CSVs to demo-output/. Rerunning reuses what exists.
set -euo pipefail
cd "$(dirname "$0")/.."
CKA=.build/release/cka
OUT=demo-output
IMAGES=demo/images/cifar10
SHARED=${SHARED:-../shared}
MODEL=${MODEL:-$SHARED/data/models/vit-small-patch14-dinov2-imgfocus/model.safetensors}
mkdir -p "$OUT"

if [ ! -f "$MODEL" ]; then
  echo "No model at $MODEL (set MODEL=path/to/checkpoint.pth|.safetensors)."
  echo "Falling back to the small bundled stores: CKA between two synthetic models."
  FIX=Tests/CKASimilarityTests/Fixtures
  $CKA compare $FIX/cka_a.h5 $FIX/cka_b.h5 --batch-size 16 --csv $OUT/a_vs_b.csv --heatmap $OUT/a_vs_b.png
  exit 0
fi

LAYERS='blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*'
step() { echo; echo "== $*"; }

step "1/6 Extract the trained model over $(find $IMAGES -type f | wc -l) images (Grams of every paper layer + pooled features)"
[ -f $OUT/trained.h5 ] || $CKA extract --checkpoint "$MODEL" --images $IMAGES --out $OUT/trained.h5 \
  --layers "$LAYERS" --store grams,pooled --gram-batch-size 20 --batch-size 20 --model trained
step "2/6 Extract a random-init model of the same shape (seed 0; LayerScale 1 so every branch counts)"
[ -f $OUT/random.h5 ] || $CKA extract --checkpoint "$MODEL" --random-init 0 --random-layer-scale 1 --images $IMAGES --out $OUT/random.h5 \
  --layers "$LAYERS" --store grams,pooled --gram-batch-size 20 --batch-size 20 --model random-init
$CKA inspect $OUT/trained.h5 > $OUT/trained-inspect.txt && head -12 $OUT/trained-inspect.txt

step "3/6 Block outputs: trained vs itself, trained vs random"
$CKA compare $OUT/trained.h5 --layers 'blocks.*' --batch-size 20 --csv $OUT/trained_self.csv --heatmap $OUT/trained_self.png --quiet
$CKA compare $OUT/trained.h5 $OUT/random.h5 --layers 'blocks.*' --batch-size 20 --csv $OUT/trained_vs_random.csv \
  --heatmap $OUT/trained_vs_random.png --quiet

step "4/6 Layer types against each other (norm1 / attn.qkv / mlp.fc1, as the seed paper's Figure 2)"
$CKA compare $OUT/trained.h5 --layers 'blocks.*.norm1' --layers-b 'blocks.*.attn.qkv' --batch-size 20 \
  --csv $OUT/norm1_vs_qkv.csv --heatmap $OUT/norm1_vs_qkv.png --quiet
$CKA compare $OUT/trained.h5 --layers 'blocks.*.norm1' --layers-b 'blocks.*.mlp.fc1' --batch-size 20 \
  --csv $OUT/norm1_vs_fc1.csv --heatmap $OUT/norm1_vs_fc1.png --quiet

step "5/6 Class separability across depth: leave-one-out 20-NN per block (as the seed paper's Figure 3)"
$CKA knn $OUT/trained.h5 --k 20 --csv $OUT/knn_trained.csv --plot $OUT/knn_trained.png --quiet | tail -8
$CKA knn $OUT/random.h5 --k 20 --csv $OUT/knn_random.csv --plot $OUT/knn_random.png --quiet > /dev/null

step "6/6 Every pair at once, one long CSV for pandas"
$CKA compare-all $OUT/trained.h5 $OUT/random.h5 --layers 'blocks.*' --batch-size 20 --out-dir $OUT/all --quiet

echo
echo "Done. Pictures and CSVs in $OUT/: trained_self.png, trained_vs_random.png, norm1_vs_qkv.png, norm1_vs_fc1.png,"
echo "knn_trained.png, knn_random.png, all/overview.png, all/all.csv"
