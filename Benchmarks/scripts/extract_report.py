#!/usr/bin/env python3
"""What `cka extract` costs beyond the bare forward loop, measured as ratios within one run (issue 18).

    python3 Benchmarks/scripts/extract_report.py --cka .build/release/cka --checkpoint vitb16.pth \\
        --inputs pixels.h5 [--images DIR] [--cka-before OLD_CKA] [--threads 1] [--rounds 5] [--torch]

Every variant runs once per round, in turn (interleaved, so a burst of outside load hits all of them alike), and
the median over the rounds is reported. Wall time of the whole command, its CPU time (user + system of the child,
from getrusage), and the loop time `cka extract` prints (first batch to last, without start-up):

  forward       --inputs, one pooled hook (blocks.<last>:cls…): the bare forward loop plus a few kB of output;
  pooled48      --inputs, the same 48 layers stored pooled only (hooks and pooling, no Gram): with `forward` and
                `grams48` it splits the overhead into hooks + pooling, and the Grams;
  grams48       --inputs, the 48 paper layers (norm1, attn.qkv, mlp.fc1, block output) stored as Grams;
  images48      the same from --images (JPEG decoding and preprocessing, overlapped with the forward);
  before:…      the same two with --cka-before (an older build), for before/after ratios in one run;
  raw read      `cat CHECKPOINT > /dev/null` (page cache warm), the floor of the start-up.
  torch         (--torch) plain-torch ViT (python/tests/plain_vit.py: timm's module names) on the same batches,
                bare forward, and with 48 forward hooks computing the same centred float32 Grams.

Start-up = whole command − printed loop time. Prints one table and the ratios of the issue.
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

LAYERS = "blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*"


def run(cmd, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    m = re.search(r", ([0-9.]+) s, [0-9.]+ img/s\)", p.stdout)
    return wall, cpu, float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cka", required=True)
    ap.add_argument("--cka-before")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--images")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--last-block", default="blocks.11")
    ap.add_argument("--torch", action="store_true")
    a = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads))
    tmp = tempfile.mkdtemp()
    common = ["--checkpoint", a.checkpoint, "--batch-size", str(a.batch), "--gram-batch-size", str(a.batch),
              "--threads", str(a.threads), "--quiet"]

    def extract(cka, source, store, layers, out):
        return [cka, "extract", *source, "--out", os.path.join(tmp, out), "--store", store, "--layers", layers, *common]

    variants = {}
    for tag, cka in [("", a.cka)] + ([("before: ", a.cka_before)] if a.cka_before else []):
        variants[tag + "forward"] = extract(cka, ["--inputs", a.inputs], "pooled", a.last_block, "f.h5")
        if not tag:
            variants["pooled48"] = extract(cka, ["--inputs", a.inputs], "pooled", LAYERS, "p.h5")
        variants[tag + "grams48"] = extract(cka, ["--inputs", a.inputs], "grams", LAYERS, "g.h5")
        if a.images:
            variants[tag + "images48"] = extract(cka, ["--images", a.images], "grams", LAYERS, "i.h5")
    variants["raw read"] = ["cat", a.checkpoint]
    torch_times = []
    results = {k: [] for k in variants}
    for r in range(a.rounds):
        for name, cmd in variants.items():
            if name == "raw read":
                t0 = time.perf_counter()
                subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
                t = time.perf_counter() - t0
                results[name].append((t, t, None))
            else:
                results[name].append(run(cmd, env))
        if a.torch:
            p = subprocess.run([sys.executable, __file__, "--torch-child", str(a.threads), a.inputs, str(a.batch)],
                               capture_output=True, text=True, env=env)
            if p.returncode == 0:
                torch_times.append(tuple(float(x) for x in p.stdout.split()))
            else:
                print("torch run failed:", p.stderr.strip().splitlines()[-1:], file=sys.stderr)
        print(f"round {r + 1}/{a.rounds} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr)

    def med(name, i):
        xs = [x[i] for x in results[name] if x[i] is not None]
        return statistics.median(xs) if xs else float("nan")

    print(f"extract_report: threads {a.threads}, batch {a.batch}, {a.rounds} rounds interleaved, medians; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<22} {'whole wall s':>12} {'whole CPU s':>12} {'loop s':>8} {'start-up s':>11}")
    for name in variants:
        w, c, l = med(name, 0), med(name, 1), med(name, 2)
        print(f"{name:<22} {w:12.2f} {c:12.2f} {l:8.2f} {w - l if l == l else float('nan'):11.2f}")
    if torch_times:
        tf = statistics.median(t[0] for t in torch_times)
        th = statistics.median(t[1] for t in torch_times)
        print(f"{'torch forward':<22} {tf:12.2f} {'':>12} {tf:8.2f}")
        print(f"{'torch 48 hooks→Grams':<22} {th:12.2f} {'':>12} {th:8.2f}")

    def ratios(tag):
        fl = med(tag + "forward", 2)
        g, gl = med(tag + "grams48", 0), med(tag + "grams48", 2)
        print(f"{tag or 'now: '}grams48 whole command / bare forward loop = {g / fl:.3f}  "
              f"(loop alone {gl / fl:.3f}; start-up {g - gl:.2f} s over a raw read of {med('raw read', 0):.2f} s; "
              f"CPU grams48 / CPU forward = {med(tag + 'grams48', 1) / med(tag + 'forward', 1):.3f})")
        if a.images:
            print(f"{tag or 'now: '}--images / --inputs, whole command = {med(tag + 'images48', 0) / g:.3f} "
                  f"(CPU {med(tag + 'images48', 1) / med(tag + 'grams48', 1):.3f})")
        if torch_times:
            print(f"{tag or 'now: '}torch 48 hooks→Grams loop / ours grams48 whole command = {th / g:.3f}; "
                  f"torch bare forward / ours bare forward loop = {tf / fl:.3f}")

    ratios("")
    fl, pl, gl = med("forward", 2), med("pooled48", 2), med("grams48", 2)
    print(f"overhead breakdown (loop times over the bare forward loop): hooks + pooling of 48 layers "
          f"{(pl - fl) / fl * 100:+.1f} %, their Grams {(gl - pl) / fl * 100:+.1f} %; start-up "
          f"{(med('grams48', 0) - gl) / fl * 100:+.1f} %")
    if a.cka_before:
        ratios("before: ")


def torch_child(threads, inputs, batch):
    """Times plain-torch forward and forward with 48 Gram hooks over the pixels of `inputs`; prints two seconds."""
    import h5py
    import torch
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path[:0] = [os.path.join(root, "python"), os.path.join(root, "python", "tests")]
    import vitcka
    from plain_vit import VisionTransformer
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    model = VisionTransformer(width=768, depth=12, heads=12, patch=16, tokens=197).eval()
    with h5py.File(inputs, "r") as f:
        pixels = torch.from_numpy(f["inputs/pixels"][:])
    xs = list(torch.split(pixels, batch))

    def forward():
        with torch.inference_mode():
            for x in xs:
                model(x)

    grams = []

    def gram(_m, _i, out):
        x = out.flatten(1)
        x = x - x.mean(0)
        grams.append(x @ x.T)

    forward()  # warm-up
    t0 = time.perf_counter()
    forward()
    tf = time.perf_counter() - t0
    mods = dict(model.named_modules())
    names = [m for m in mods if any(vitcka._layers.matches(p, m) for p in LAYERS.split(","))]
    assert len(names) == 48, names
    handles = [mods[m].register_forward_hook(gram) for m in names]
    t0 = time.perf_counter()
    forward()
    th = time.perf_counter() - t0
    for h in handles:
        h.remove()
    print(tf, th)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--torch-child":
        torch_child(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        main()
