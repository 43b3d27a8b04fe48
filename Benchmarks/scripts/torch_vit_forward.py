#!/usr/bin/env python3
"""PyTorch baseline for the CPU forward benchmark: timm `vit_base_patch16_224` at batch 32.

    python3 Benchmarks/scripts/torch_vit_forward.py THREADS [--batch 32] [--repeats 3] [--gram-dtype float32]

Random weights (timm's own init, `pretrained=False`: nothing is downloaded), `model.eval()`,
`torch.inference_mode()`, float32, `torch.set_num_threads(THREADS)` (and 1 inter-op thread). Two timings:

  no hooks   plain `model(x)`;
  hooks      forward hooks on every block's norm1, attn.qkv, mlp.fc1 and block output (48 hooks) that do what a
             CKA extractor does with each minibatch: X = out.flatten(1); X = X - X.mean(0); G = X @ X.T.

Each is warmed up once, then timed `--repeats` times; the best time is reported. Prints one JSON line:
{threads, batch, images_per_second_no_hooks, images_per_second_hooks, torch_version, timm_version, ...}.
timm's attention runs as shipped (fused scaled_dot_product_attention where timm enables it).
Needs: pip install torch timm (timm pulls torchvision).
"""
import argparse
import json
import os
import time

import torch
import timm


def best_time(fn, repeats):
    fn()                                      # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("threads", type=int)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gram-dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch16_224", pretrained=False).eval().float()
    x = torch.randn(args.batch, 3, 224, 224)
    gram_dtype = getattr(torch, args.gram_dtype)

    def forward():
        with torch.inference_mode():
            model(x)

    t_plain, plain_all = best_time(forward, args.repeats)

    grams = {}

    def gram_hook(name):
        def hook(module, inputs, output):
            z = output.flatten(1).to(gram_dtype)
            z = z - z.mean(dim=0, keepdim=True)
            grams[name] = z @ z.T
        return hook

    handles = []
    for i, blk in enumerate(model.blocks):
        for name, module in [(f"blocks.{i}.norm1", blk.norm1), (f"blocks.{i}.attn.qkv", blk.attn.qkv),
                             (f"blocks.{i}.mlp.fc1", blk.mlp.fc1), (f"blocks.{i}", blk)]:
            handles.append(module.register_forward_hook(gram_hook(name)))
    t_hooks, hooks_all = best_time(forward, args.repeats)
    for h in handles:
        h.remove()
    assert len(grams) == 4 * len(model.blocks) and grams["blocks.0"].shape == (args.batch, args.batch)

    print(json.dumps({
        "threads": args.threads,
        "batch": args.batch,
        "images_per_second_no_hooks": round(args.batch / t_plain, 3),
        "images_per_second_hooks": round(args.batch / t_hooks, 3),
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "seconds_per_batch_no_hooks": [round(t, 3) for t in plain_all],
        "seconds_per_batch_hooks": [round(t, 3) for t in hooks_all],
        "hooked_layers": len(handles),
        "gram_dtype": args.gram_dtype,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
