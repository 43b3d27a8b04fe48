#!/usr/bin/env python3
"""Write a tiny, seeded ViT checkpoint with timm's names (safetensors, numpy only) for the notebook test.

    python3 Tests/Notebooks/make_tiny_vit.py OUT.safetensors [--depth 12] [--width 64] [--seed 0]

12 blocks like ViT-B (so the demo's probe on the middle and last block and every figure keep their shape),
width 64 (one head of 64: a width `cka` knows), patch 8 on a 32-pixel input (4 x 4 patches + CLS = 17 tokens).
Weights are Gaussian (std 0.2, LayerNorm scales 1): not a trained model, only a fast stand-in.
"""
import argparse
import json
import struct

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--depth", type=int, default=12)
p.add_argument("--width", type=int, default=64)
p.add_argument("--patch", type=int, default=8)
p.add_argument("--image", type=int, default=32)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

rng = np.random.default_rng(a.seed)
W, P, G = a.width, a.patch, a.image // a.patch
H = 4 * W


def normal(*shape, std=0.2):
    return (rng.standard_normal(shape) * std).astype(np.float32)


t = {
    "cls_token": normal(1, 1, W),
    "pos_embed": normal(1, G * G + 1, W),
    "patch_embed.proj.weight": normal(W, 3, P, P, std=0.05),
    "patch_embed.proj.bias": normal(W),
}
for i in range(a.depth):
    b = f"blocks.{i}."
    t |= {
        b + "norm1.weight": np.ones(W, np.float32), b + "norm1.bias": normal(W),
        b + "attn.qkv.weight": normal(3 * W, W), b + "attn.qkv.bias": normal(3 * W),
        b + "attn.proj.weight": normal(W, W), b + "attn.proj.bias": normal(W),
        b + "norm2.weight": np.ones(W, np.float32), b + "norm2.bias": normal(W),
        b + "mlp.fc1.weight": normal(H, W), b + "mlp.fc1.bias": normal(H),
        b + "mlp.fc2.weight": normal(W, H, std=0.1), b + "mlp.fc2.bias": normal(W),
    }
t |= {"norm.weight": np.ones(W, np.float32), "norm.bias": np.zeros(W, np.float32)}

# safetensors: u64 little-endian header length, JSON header (dtype, shape, byte offsets), raw little-endian data.
header, blobs, offset = {}, [], 0
for name, x in t.items():
    raw = np.ascontiguousarray(x, dtype="<f4").tobytes()
    header[name] = {"dtype": "F32", "shape": list(x.shape), "data_offsets": [offset, offset + len(raw)]}
    blobs.append(raw)
    offset += len(raw)
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(a.out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print(f"{a.out}: {len(t)} tensors, {offset / 1e6:.1f} MB")
