#!/usr/bin/env python3
"""What the PyTorch bridge (python/vitcka) costs on top of the forward pass, on the CPU.

    python3 Benchmarks/scripts/vitcka_overhead.py THREADS [--batch 32] [--batches 2] [--repeats 2]

A plain-torch ViT-B/16 (python/tests/plain_vit.py: timm's forward and module names; torch's default random
init, nothing downloaded), float32, eval, `torch.inference_mode()`, `torch.set_num_threads(THREADS)`. Three
timings over the same `--batches` minibatches of `--batch` random 224-pixel images, each warmed up once and
timed `--repeats` times (best kept):

  forward   plain `model(x)`;
  hooks     48 forward hooks (norm1, attn.qkv, mlp.fc1, block output of the 12 blocks) doing the bare
            float32 Gram: X = out.flatten(1); X = X - X.mean(0); G = X @ X.T (Benchmarks/scripts/torch_vit_forward.py);
  vitcka    `vitcka.extract(..., layers=those 48, store=("grams", "pooled"), pooled_layers="blocks.*",
            gram_batch_size=batch)` into a temporary file, as `cka extract --store grams,pooled` (Grams of the
            48 layers, pooled CLS/GAP features of the 12 block outputs): Grams of column-centred features
            accumulated in float64, the NaN check, pooled features, HDF5 writes.

Prints one JSON line with images/s of each and the ratios.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "python", "tests")]
import vitcka  # noqa: E402
from plain_vit import VisionTransformer  # noqa: E402

LAYERS = "blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*"


def best(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("threads", type=int)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    model = VisionTransformer(width=768, depth=12, heads=12, patch=16, tokens=197).eval()
    xs = [torch.randn(a.batch, 3, 224, 224) for _ in range(a.batches)]
    n = a.batch * a.batches

    def forward():
        with torch.inference_mode():
            for x in xs:
                model(x)

    def hooks():
        grams = []

        def gram(_m, _i, out):                # returns None: the module's output is unchanged
            x = out.flatten(1)
            x = x - x.mean(0)
            grams.append(x @ x.T)
        mods = dict(model.named_modules())
        names = [m for m in mods if any(vitcka._layers.matches(p, m) for p in LAYERS.split(","))]
        handles = [mods[m].register_forward_hook(gram) for m in names]
        try:
            forward()
        finally:
            for h in handles:
                h.remove()

    tmp = tempfile.mkdtemp()

    def bridge():
        loader = [([f"{b}/{i}" for i in range(a.batch)], x) for b, x in enumerate(xs)]
        vitcka.extract(model, loader, os.path.join(tmp, "vitb.h5"), LAYERS, store=("grams", "pooled"),
                       pooled_layers="blocks.*", gram_batch_size=a.batch, progress=False)

    t_forward, t_hooks, t_bridge = best(forward, a.repeats), best(hooks, a.repeats), best(bridge, a.repeats)
    print(json.dumps({
        "threads": a.threads, "batch": a.batch, "images": n, "torch_version": torch.__version__,
        "images_per_second_forward": round(n / t_forward, 3), "images_per_second_hooks": round(n / t_hooks, 3),
        "images_per_second_vitcka": round(n / t_bridge, 3),
        "vitcka_over_forward": round(t_bridge / t_forward, 3), "vitcka_over_hooks": round(t_bridge / t_hooks, 3),
        "store_mb": round(os.path.getsize(os.path.join(tmp, "vitb.h5")) / 1e6, 2),
        "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
