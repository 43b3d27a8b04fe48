#!/usr/bin/env bash
# Peak memory of `cka extract` on large ViTs (issue 16): writes a random-weight timm-layout safetensors file of
# ViT-L/16 (304 M parameters) or ViT-H/14 (632 M) with numpy, then extracts the 48/64 paper layers (norm1, qkv,
# fc1, block output of every block) as Grams over N images and prints the peak resident set (GNU time).
# Memory is bounded by one batch, not by N, so a short run shows the peak of a long one.
#   bash Benchmarks/scripts/memory_report.sh [large|huge] [N_IMAGES=64] [BATCH=32]
set -euo pipefail
cd "$(dirname "$0")/../.."
CKA=$(realpath "${CKA:-.build/release/cka}")
SHARED=$(realpath "${SHARED:-../shared}")
SIZE=${1:-large} N=${2:-64} B=${3:-32}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cka-memory.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
python3 - "$SIZE" "$WORK/model.safetensors" << 'PY'
import json, struct, sys
import numpy as np
size, out = sys.argv[1], sys.argv[2]
width, depth, patch, mlp = {"large": (1024, 24, 16, 4096), "huge": (1280, 32, 14, 5120)}[size]
tokens = 1 + (224 // patch) ** 2
shapes = {"cls_token": [1, 1, width], "pos_embed": [1, tokens, width],
          "patch_embed.proj.weight": [width, 3, patch, patch], "patch_embed.proj.bias": [width]}
for i in range(depth):
    p = f"blocks.{i}."
    shapes.update({p + "norm1.weight": [width], p + "norm1.bias": [width],
                   p + "attn.qkv.weight": [3 * width, width], p + "attn.qkv.bias": [3 * width],
                   p + "attn.proj.weight": [width, width], p + "attn.proj.bias": [width],
                   p + "norm2.weight": [width], p + "norm2.bias": [width],
                   p + "mlp.fc1.weight": [mlp, width], p + "mlp.fc1.bias": [mlp],
                   p + "mlp.fc2.weight": [width, mlp], p + "mlp.fc2.bias": [width]})
shapes.update({"norm.weight": [width], "norm.bias": [width]})
header, offset = {}, 0
for k, s in shapes.items():
    n = int(np.prod(s)) * 4
    header[k] = {"dtype": "F32", "shape": s, "data_offsets": [offset, offset + n]}
    offset += n
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
rng = np.random.default_rng(0)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for k, s in shapes.items():
        x = np.ones(s, np.float32) if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight" \
            else (rng.standard_normal(s, dtype=np.float32) * 0.02)
        f.write(x.tobytes())
print(f"{size}: {sum(int(np.prod(s)) for s in shapes.values()) / 1e6:.0f} M parameters, {offset / 1e9:.2f} GB")
PY
mkdir -p "$WORK/images"
per=$(( (N + 9) / 10 ))
for d in "$SHARED"/data/images/cifar10-test-1000/*/; do
  mkdir -p "$WORK/images/$(basename "$d")"; files=("$d"*); cp "${files[@]:0:$per}" "$WORK/images/$(basename "$d")/"
done
L='blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*'
/usr/bin/time -f "peak RSS %M KB, %e s wall" "$CKA" extract --checkpoint "$WORK/model.safetensors" --images "$WORK/images" \
  --layers "$L" --store grams --batch-size "$B" --gram-batch-size "$B" --out "$WORK/out.h5" --quiet 2>&1 | tail -1
echo "model file $(du -h "$WORK/model.safetensors" | cut -f1), $(find "$WORK/images" -type f | wc -l) images, batch $B"
