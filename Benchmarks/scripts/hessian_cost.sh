#!/usr/bin/env bash
# Issue 17 target: one Hessian-vector product costs ≤ 2.5× one forward + backward of the same batch.
#
#   Benchmarks/scripts/hessian_cost.sh [--width 192] [--depth 12] [--image 224] [--examples 16] [--threads 1]
#
# Writes a random ViT (timm names, patch 16, width/64 heads, a 10-class head; numpy, seeded) and 16 random
# normalised images, then
#   1. `cka hessian --loss ce` (release build): it times one Hessian-vector product (two gradients at θ ± εv)
#      and then one forward + backward (valueAndGradient) of the same batch before it starts (attributes
#      seconds_per_product, seconds_per_gradient); the best of --runs runs is taken;
#   2. PyTorch (CPU, float32, same threads) on the same weights and images (python/tests/plain_vit.py + a linear
#      head on the CLS token): one forward + backward, and one Hessian-vector product by double-backward
#      (autograd.grad with create_graph, then the gradient of gᵀv); best of --runs.
# Prints both ratios. Needs the release cka (swift build -c release --product cka), python3 with torch, h5py.
set -euo pipefail
cd "$(dirname "$0")/../.."
WIDTH=192 DEPTH=12 IMAGE=224 EXAMPLES=16 THREADS=1 RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --width) WIDTH=$2; shift 2 ;; --depth) DEPTH=$2; shift 2 ;; --image) IMAGE=$2; shift 2 ;;
    --examples) EXAMPLES=$2; shift 2 ;; --threads) THREADS=$2; shift 2 ;; --runs) RUNS=$2; shift 2 ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
  esac
done
CKA=$(realpath "${CKA:-.build/release/cka}")
[ -x "$CKA" ] || { echo "no $CKA (swift build -c release --product cka)"; exit 1; }
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cka-hessian-cost.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); ViT width $WIDTH, depth $DEPTH, ${IMAGE}px, $EXAMPLES images, $THREADS thread(s)"

python3 - "$WORK" "$WIDTH" "$DEPTH" "$IMAGE" "$EXAMPLES" << 'EOF'
import json, struct, sys
import h5py, numpy as np
work, W, D, I, N = sys.argv[1], *map(int, sys.argv[2:])
P, G = 16, int(sys.argv[4]) // 16
rng = np.random.default_rng(0)
def normal(*s, std=0.02): return (rng.standard_normal(s) * std).astype(np.float32)
t = {"cls_token": normal(1, 1, W), "pos_embed": normal(1, G * G + 1, W),
     "patch_embed.proj.weight": normal(W, 3, P, P), "patch_embed.proj.bias": normal(W)}
for i in range(D):
    b = f"blocks.{i}."
    for n in ("norm1", "norm2"):
        t[b + n + ".weight"] = 1 + normal(W, std=0.1); t[b + n + ".bias"] = normal(W)
    t[b + "attn.qkv.weight"], t[b + "attn.qkv.bias"] = normal(3 * W, W), normal(3 * W)
    t[b + "attn.proj.weight"], t[b + "attn.proj.bias"] = normal(W, W), normal(W)
    t[b + "mlp.fc1.weight"], t[b + "mlp.fc1.bias"] = normal(4 * W, W), normal(4 * W)
    t[b + "mlp.fc2.weight"], t[b + "mlp.fc2.bias"] = normal(W, 4 * W), normal(W)
t["norm.weight"], t["norm.bias"] = 1 + normal(W, std=0.1), normal(W)
t["head.weight"], t["head.bias"] = normal(10, W, std=0.2), normal(10)
header, off = {}, 0
for k, v in t.items():
    header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + v.nbytes]}; off += v.nbytes
h = json.dumps(header).encode(); h += b" " * (-len(h) % 8)
with open(f"{work}/vit.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for v in t.values(): f.write(v.tobytes())
with h5py.File(f"{work}/pixels.h5", "w") as f:
    f.attrs["format"] = "activations"; f.attrs["format_version"] = 1; f.attrs["model"] = "pixels"
    f["inputs/ids"] = np.array([f"img{i}" for i in range(N)], dtype=object).astype(h5py.string_dtype())
    f["inputs/labels"] = (np.arange(N) % 10).astype(np.int64)
    f["inputs/pixels"] = rng.standard_normal((N, 3, I, I)).astype(np.float32)
EOF

echo "(the cka line follows after all runs)"
best_g=1e9 best_h=1e9
for r in $(seq "$RUNS"); do
  "$CKA" hessian --checkpoint "$WORK/vit.safetensors" --loss ce --inputs "$WORK/pixels.h5" --examples "$EXAMPLES" \
    --batch-size "$EXAMPLES" --top-k 1 --lanczos-steps 1 --trace-samples 1 --density-runs 0 --threads "$THREADS" \
    --out "$WORK/h.h5" --quiet > /dev/null
  read -r g h < <(python3 -c "import h5py; a = h5py.File('$WORK/h.h5').attrs; print(a['seconds_per_gradient'], a['seconds_per_product'])")
  best_g=$(python3 -c "print(min($best_g, $g))"); best_h=$(python3 -c "print(min($best_h, $h))")
done
echo "cka (Swift):  forward+backward $(printf %.3f "$best_g") s, Hessian-vector product $(printf %.3f "$best_h") s: ratio $(python3 -c "print(f'{$best_h / $best_g:.2f}')")× (target ≤ 2.5×)"

python3 - "$WORK" "$THREADS" "$RUNS" << 'EOF'
import sys, time
import h5py, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, "python/tests")
from plain_vit import VisionTransformer, load_safetensors
work, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
w = load_safetensors(f"{work}/vit.safetensors")
W = w["cls_token"].shape[-1]
model = VisionTransformer(W, len({k.split(".")[1] for k in w if k.startswith("blocks.")}), heads=max(1, W // 64),
                          patch=16, tokens=w["pos_embed"].shape[1])
model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items() if not k.startswith("head.")})
head = torch.nn.Linear(w["head.weight"].shape[1], w["head.weight"].shape[0])
head.weight.data, head.bias.data = torch.from_numpy(w["head.weight"].copy()), torch.from_numpy(w["head.bias"].copy())
with h5py.File(f"{work}/pixels.h5") as f:
    x, y = torch.from_numpy(f["inputs/pixels"][:]), torch.from_numpy(f["inputs/labels"][:])
params = list(model.parameters()) + list(head.parameters())
loss = lambda: F.cross_entropy(head(model(x)[:, 0]), y)
v = [torch.randn_like(p) for p in params]
def grad():
    return torch.autograd.grad(loss(), params)
def hvp():
    g = torch.autograd.grad(loss(), params, create_graph=True)
    return torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), params)
def best(f):
    t = []
    for _ in range(runs):
        s = time.perf_counter(); f(); t.append(time.perf_counter() - s)
    return min(t)
g, h = best(grad), best(hvp)
print(f"PyTorch {torch.__version__}: forward+backward {g:.3f} s, Hessian-vector product (double-backward) {h:.3f} s: ratio {h / g:.2f}×")
EOF
