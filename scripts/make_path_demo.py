#!/usr/bin/env python3
"""The README's "MAE → fine-tuned path" on a small stand-in model (numpy + h5py; the official MAE files are not
bundled). Writes into OUT_DIR:

  a.safetensors  "pre-trained": a seeded tiny ViT (Tests/Notebooks/make_tiny_vit.py, depth 4, width 64, seed 0),
                 no classification head — the role of mae_pretrain_vit_base.pth;
  b.safetensors  "fine-tuned": A's encoder moved by a seeded Gaussian step (0.05 × each tensor's RMS), plus a
                 10-class head: the linear probe that `cka probe --save` fitted on B's final CLS features (the
                 probe's standardisation folded into the weights: W' = W / scale, b' = b − W'·mean) — the role of
                 mae_finetuned_vit_base.pth. Not a trained model: only the mechanics of the path are shown.

    python3 scripts/make_path_demo.py a OUT_DIR            # writes a.safetensors and b-encoder.safetensors
    cka extract --checkpoint OUT_DIR/b-encoder.safetensors --images demo/images/cifar10 --layers norm \\
        --store pooled --out OUT_DIR/b-feats.h5
    cka probe OUT_DIR/b-feats.h5 --layers norm:cls --save OUT_DIR/probe.h5
    python3 scripts/make_path_demo.py b OUT_DIR            # b.safetensors = b-encoder + the probe as head
"""
import json
import os
import struct
import subprocess
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype=np.float32).reshape(v["shape"])
            for k, v in header.items() if k != "__metadata__"}


def write(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, x in tensors.items():
        raw = np.ascontiguousarray(x, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(x.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(path + ".tmp", path)


def main():
    step, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    if step == "a":
        a = os.path.join(out, "a.safetensors")
        subprocess.run([sys.executable, os.path.join(HERE, "../Tests/Notebooks/make_tiny_vit.py"), a,
                        "--depth", "4", "--seed", "0"], check=True, stdout=subprocess.DEVNULL)
        t = {k: v for k, v in read(a).items() if not k.startswith("head.")}
        write(a, t)
        rng = np.random.default_rng(1)
        b = {k: v + 0.05 * np.sqrt(np.mean(v * v)) * rng.standard_normal(v.shape).astype(np.float32)
             for k, v in t.items()}
        write(os.path.join(out, "b-encoder.safetensors"), b)
    else:
        b = read(os.path.join(out, "b-encoder.safetensors"))
        with h5py.File(os.path.join(out, "probe.h5"), "r") as p:
            w, bias = p["probe/weight"][:].astype(np.float64), p["probe/bias"][:].astype(np.float64)
            mean, scale = p["probe/mean"][:].astype(np.float64), p["probe/scale"][:].astype(np.float64)
        head_w = w / scale
        b["head.weight"] = head_w.astype(np.float32)
        b["head.bias"] = (bias - head_w @ mean).astype(np.float32)
        write(os.path.join(out, "b.safetensors"), b)


if __name__ == "__main__":
    main()
