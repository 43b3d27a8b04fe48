#!/usr/bin/env bash
# The notebook test (run by `make test`, so by CI): builds a small output set in seconds — the demo pipeline
# (scripts/demo.sh, which also runs scripts/notebook_inputs.sh and scripts/demo_report.py) on a tiny seeded
# 12-block ViT over 4 bundled CIFAR-10 images per class — then executes every notebook of notebooks-export/
# headlessly on it (CKA_OUT) and fails if a cell fails, a notebook draws no figure, or the committed notebooks
# differ from notebooks-export/make_notebooks.py. Never skips: missing tools are a failure.
# Needs: the release `cka` (swift build -c release --product cka) and python3 with nbclient, nbformat, ipykernel,
# matplotlib, pandas, h5py, numpy, torch (make deps-test). Environment: CKA (binary), KEEP=1 keeps the work folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
CKA=${CKA:-.build/release/cka}
SECONDS=0

if ! python3 -c 'import nbclient, nbformat, ipykernel, matplotlib, pandas, h5py, numpy, torch' 2>/dev/null; then
  echo "FAIL: the notebook test needs python3 with nbclient nbformat ipykernel matplotlib pandas h5py numpy torch (make deps-test)"
  exit 1
fi
[ -x "$CKA" ] || { echo "FAIL: no $CKA (swift build -c release --product cka)"; exit 1; }

python3 notebooks-export/make_notebooks.py --check

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cka-notebooks.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "work folder: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi

# 4 images per class (40), the first of each class folder in name order.
for dir in demo/images/cifar10/*/; do
  files=("$dir"*)
  mkdir -p "$WORK/images/$(basename "$dir")"
  cp "${files[@]:0:4}" "$WORK/images/$(basename "$dir")/"
done
python3 Tests/Notebooks/make_tiny_vit.py "$WORK/tiny-vit.safetensors" > /dev/null

if ! MODEL="$WORK/tiny-vit.safetensors" OUT="$WORK/out" IMAGES="$WORK/images" CKA="$CKA" \
     bash scripts/demo.sh > "$WORK/demo.log" 2>&1; then
  cat "$WORK/demo.log"; echo "FAIL: scripts/demo.sh on the small set"; exit 1
fi
for f in all/all.csv trained_vs_random.h5 norm1_vs_qkv.csv knn_trained.csv report.md \
         agreement/blocks6_vs_blocks11.csv agreement/blocks6_logits.h5; do
  [ -s "$WORK/out/$f" ] || { cat "$WORK/demo.log" "$WORK/out/notebook_inputs.log" 2>/dev/null; echo "FAIL: no $f"; exit 1; }
done
echo "small output set: $(find "$WORK/out" -type f | wc -l) files in ${SECONDS} s"

# 05_from_pytorch runs a PyTorch model through python/vitcka over the same images (CKA_IMAGES) and calls $CKA.
CKA_OUT="$WORK/out" CKA_IMAGES="$WORK/images" CKA="$(cd "$(dirname "$CKA")" && pwd)/$(basename "$CKA")" \
  python3 Tests/Notebooks/execute_notebooks.py notebooks-export/0*.ipynb
echo "notebook test: ${SECONDS} s"
