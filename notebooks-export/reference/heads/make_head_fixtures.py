#!/usr/bin/env python3
"""Writes Tests/CKAViTTests/OfficialFixtures/heads/ from the OFFICIAL PyTorch code of DINO, MoCo-v3 and MAE
(developer-run; needs torch, timm, h5py, numpy; not run by CI).

Issue 6 (last item): our `ClassifierHead` must give the logits of the released linear heads exactly as the
official code computes them. The official code is NOT in this repository; point the script at checkouts of it:

    python3 make_head_fixtures.py --dino DINO_DIR --moco MOCO_V3_DIR --mae MAE_DIR [--out DIR]

    DINO_DIR    facebookresearch/dino    (vision_transformer.py, eval_linear.py, utils.py; read at 7c446df)
    MOCO_V3_DIR facebookresearch/moco-v3 (vits.py, main_lincls.py; read at c349e6e)
    MAE_DIR     facebookresearch/mae     (models_vit.py; read at efb2a80)

A tiny ViT keeps the committed files small: width 32, 4 heads (head dim 8), MLP ratio 2, patch 8, 16x16 input
(2x2 patches + CLS = 5 tokens), LayerNorm eps 1e-6, qkv bias, 10 classes; DINO has 5 blocks (so n_last_blocks=4
leaves one block out), MoCo-v3 and MAE 3. Every parameter is seeded random N(0,1) scaled to keep activations O(1)
(LayerNorm weights 1 + 0.2 N, biases 0.1 N), except MoCo-v3's pos_embed, the fixed sin-cos table vits.py builds
(it is stored in the file, as in the release). Inputs: 4 seeded N(0,1) images [4, 3, 16, 16] float32.

What each official model is, how it is fed, and the file it is saved as (the release layouts of
shared/docs/reference-models.md section 1; all torch.save zip files, float32):
  dino    vision_transformer.VisionTransformer(img_size=[16], patch_size=8, embed_dim=32, depth=5, num_heads=4,
          mlp_ratio=2, qkv_bias=True, norm_layer=LayerNorm(eps=1e-6), num_classes=0)          (as vit_base, smaller)
          -> dino_backbone.pth: bare state dict (dino_vitbase16_pretrain.pth layout)
          eval_linear.LinearClassifier(dim, num_labels=10), fed by eval_linear.py's OWN feature code: the lines of
          `validate_network` from `intermediate_output = model.get_intermediate_layers(inp, n)` to the reshape are
          read from eval_linear.py and executed as they stand (asserted present), for
            n_last_blocks=1, avgpool_patchtokens=True  (the ViT-B recipe; dim = 32*(1+1) = 64, interleaved CLS/GAP)
            n_last_blocks=4, avgpool_patchtokens=False (the ViT-S recipe; dim = 32*4 = 128)
          -> dino_linear_n1_avgpool.pth / dino_linear_n4.pth: {'state_dict': {'module.linear.weight', 'module.linear.bias'}}
             as utils.load_pretrained_linear_weights loads it (DDP prefix `module.`; loaded back strictly here)
  mocov3  vits.VisionTransformerMoCo(img_size=16, patch_size=8, embed_dim=32, depth=3, num_heads=4, mlp_ratio=2,
          qkv_bias=True, norm_layer=LayerNorm(eps=1e-6), num_classes=10)   (main_lincls.py: timm forward, `head`)
          logits = model(x): norm, CLS token, head
          -> mocov3_linear.pth.tar: main_lincls.py save_checkpoint layout {'epoch', 'arch', 'state_dict'
             (module.<backbone>, module.head.weight/bias), 'best_acc1', 'optimizer'}
  mae     models_vit.VisionTransformer(global_pool=True, img_size=16, patch_size=8, embed_dim=32, depth=3,
          num_heads=4, mlp_ratio=2, qkv_bias=True, norm_layer=LayerNorm(eps=1e-6), num_classes=10)
          logits = model.head(model.forward_features(x)): mean of the un-normed patch tokens, fc_norm, head
          -> mae_finetuned.pth: {'model': state dict without norm.*, with fc_norm.* and head.*, 'epoch', 'args'}

Shims for running the 2021-era official code on current timm (1.0.x), as in ../vit/make_official_fixtures.py:
  1. moco-v3 vits.py imports `timm.models.layers.helpers.to_2tuple` (gone): a stub module provides it.
  2. vits.py asserts `self.num_tokens == 1`; current timm calls it `num_prefix_tokens`: a read-only property.
  3. MAE's models_vit overrides `forward_features(self, x)`; timm 0.3.2's `forward` was
     `self.head(self.forward_features(x))`, which is what is computed here (current timm's `forward` would pool
     the already-pooled vector again).
  4. `timm.layers.set_fused_attn(False)`: timm's explicit attention path (no fused SDPA).
  DINO needs no shim; eval_linear.py is imported with DINO_DIR first on sys.path (it imports utils and
  vision_transformer from there; torchvision must be importable).

Written (Tests/CKAViTTests/OfficialFixtures/heads/): the four checkpoint files above and heads.h5, an activation
store of formats.md holding /inputs/ids, /inputs/labels, /inputs/classes and /inputs/pixels [4, 3, 16, 16] (so
`cka extract --inputs heads.h5` can run on it) and the official logits /official/<name> [4, 10] float32 for
dino_n1_avgpool, dino_n4, mocov3 and mae, plus each official feature vector /official/<name>_features.
"""
import argparse
import inspect
import os
import sys
import textwrap
from functools import partial

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from official_code import install_timm_shims, load_module  # noqa: E402
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "../../.."))
SMALL = dict(patch_size=8, embed_dim=32, num_heads=4, mlp_ratio=2, qkv_bias=True,
             norm_layer=partial(nn.LayerNorm, eps=1e-6))
CLASSES = 10
SOURCES = {
    "dino": "facebookresearch/dino@7c446df: vision_transformer.VisionTransformer + eval_linear.LinearClassifier, "
            "features by eval_linear.validate_network's own lines",
    "mocov3": "facebookresearch/moco-v3@c349e6e: vits.VisionTransformerMoCo with a linear head (main_lincls.py)",
    "mae": "facebookresearch/mae@efb2a80: models_vit.VisionTransformer(global_pool=True), head(forward_features(x))",
}


def randomize(model, seed, skip=()):
    """Seeded non-trivial values for every parameter (in state_dict order)."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    new = {}
    for k, v in sd.items():
        if k in skip:
            new[k] = v.clone()
            continue
        z = torch.randn(v.shape, generator=g, dtype=torch.float64)
        leaf = k.rsplit(".", 1)[-1]
        is_norm = any(p in k for p in ("norm1.", "norm2.", "norm.", "fc_norm."))
        if is_norm and leaf == "weight":
            t = 1 + 0.2 * z
        elif leaf == "bias":
            t = 0.1 * z
        elif k in ("cls_token", "pos_embed"):
            t = 0.5 * z
        else:  # Linear / conv weights [out, in...]: unit-variance outputs
            fan_in = int(np.prod(v.shape[1:]))
            t = z / np.sqrt(fan_in)
        new[k] = t.to(torch.float32)
    model.load_state_dict(new, strict=True)
    return model


def eval_linear_feature_code(eval_linear):
    """The feature lines of eval_linear.validate_network, verbatim (dedented), as a code object."""
    src = inspect.getsource(eval_linear.validate_network).splitlines()
    start = next(i for i, l in enumerate(src) if "intermediate_output = model.get_intermediate_layers(inp, n)" in l)
    end = next(i for i, l in enumerate(src) if "output = output.reshape(output.shape[0], -1)" in l)
    block = textwrap.dedent("\n".join(src[start:end + 1]))
    assert "torch.cat([x[:, 0] for x in intermediate_output], dim=-1)" in block, block
    assert "torch.mean(intermediate_output[-1][:, 1:], dim=1)" in block, block
    return block, compile(block, "eval_linear.py:validate_network", "exec")


def dino(paths, pixels, out):
    vt = load_module("vision_transformer", os.path.join(paths.dino, "vision_transformer.py"), paths.dino)
    sys.modules.setdefault("utils", load_module("utils", os.path.join(paths.dino, "utils.py"), paths.dino))
    eval_linear = load_module("dino_eval_linear", os.path.join(paths.dino, "eval_linear.py"), paths.dino)
    block, code = eval_linear_feature_code(eval_linear)
    print("  eval_linear.py feature lines executed:\n" + textwrap.indent(block, "    | "))
    model = vt.VisionTransformer(img_size=[16], depth=5, num_classes=0, **SMALL)
    randomize(model, seed=11).eval()
    torch.save(model.state_dict(), os.path.join(out, "dino_backbone.pth"))
    results = {}
    for name, n, avgpool, seed in [("dino_n1_avgpool", 1, True, 12), ("dino_n4", 4, False, 13)]:
        dim = model.embed_dim * (n + int(avgpool))                  # eval_linear.py's embed_dim
        clf = eval_linear.LinearClassifier(dim, num_labels=CLASSES)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            clf.linear.weight.copy_(torch.randn(clf.linear.weight.shape, generator=g) / np.sqrt(dim))
            clf.linear.bias.copy_(0.1 * torch.randn(clf.linear.bias.shape, generator=g))
        ddp_state = {"module." + k: v for k, v in clf.state_dict().items()}      # DDP-wrapped, as released
        path = os.path.join(out, f"dino_linear_{'n1_avgpool' if avgpool else 'n4'}.pth")
        torch.save({"state_dict": ddp_state}, path)
        # Load it back the way utils.load_pretrained_linear_weights does (strict, into the DDP module's keys).
        wrapper = nn.Module()
        wrapper.module = eval_linear.LinearClassifier(dim, num_labels=CLASSES)
        wrapper.load_state_dict(torch.load(path)["state_dict"], strict=True)
        wrapper.eval()
        scope = {"model": model, "inp": torch.from_numpy(pixels), "n": n, "avgpool": avgpool, "torch": torch}
        with torch.no_grad():
            exec(code, scope)                                       # eval_linear.py's own lines
            features = scope["output"]
            logits = wrapper.module(features)
        assert features.shape == (pixels.shape[0], dim)
        results[name] = (logits.numpy(), features.numpy(), dict(n_last_blocks=n, avgpool_patchtokens=avgpool,
                                                                 file=os.path.basename(path)))
    return results


def mocov3(paths, pixels, out):
    vits = load_module("mocov3_vits", os.path.join(paths.moco, "vits.py"))
    model = vits.VisionTransformerMoCo(img_size=16, depth=3, num_classes=CLASSES, **SMALL)
    randomize(model, seed=21, skip=("pos_embed",)).eval()
    with torch.no_grad():
        x = torch.from_numpy(pixels)
        logits = model(x)
        feats = model.forward_features(x)[:, 0]
    state = {"module." + k: v for k, v in model.state_dict().items()}       # DDP prefix, as main_lincls saves
    head = [p for n, p in model.named_parameters() if n.startswith("head.")]
    optimizer = torch.optim.SGD(head, lr=0.1, momentum=0.9, weight_decay=0.0)
    path = os.path.join(out, "mocov3_linear.pth.tar")
    torch.save({"epoch": 90, "arch": "vit_base", "state_dict": state, "best_acc1": torch.tensor(12.5),
                "optimizer": optimizer.state_dict()}, path)
    return {"mocov3": (logits.numpy(), feats.numpy(), dict(file=os.path.basename(path)))}


def mae(paths, pixels, out):
    mv = load_module("mae_models_vit", os.path.join(paths.mae, "models_vit.py"))
    model = mv.VisionTransformer(global_pool=True, img_size=16, depth=3, num_classes=CLASSES, **SMALL)
    randomize(model, seed=31).eval()
    assert not hasattr(model, "norm") and "fc_norm.weight" in model.state_dict()
    with torch.no_grad():
        feats = model.forward_features(torch.from_numpy(pixels))          # shim 3
        logits = model.head(feats)
    path = os.path.join(out, "mae_finetuned.pth")
    torch.save({"model": model.state_dict(), "epoch": 99,
                "args": argparse.Namespace(model="vit_tiny_test", global_pool=True, nb_classes=CLASSES)}, path)
    return {"mae": (logits.numpy(), feats.numpy(), dict(file=os.path.basename(path)))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dino", required=True)
    ap.add_argument("--moco", required=True)
    ap.add_argument("--mae", required=True)
    ap.add_argument("--out", default=os.path.join(REPO, "Tests/CKAViTTests/OfficialFixtures/heads"))
    args = ap.parse_args()
    install_timm_shims()
    import timm
    versions = f"torch {torch.__version__} timm {timm.__version__}"
    os.makedirs(args.out, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn((4, 3, 16, 16), generator=g).numpy()
    results = {}
    for kind, fn in [("dino", dino), ("mocov3", mocov3), ("mae", mae)]:
        print(f"{kind}: {SOURCES[kind]}")
        results.update(fn(args, pixels, args.out))
    with h5py.File(os.path.join(args.out, "heads.h5"), "w") as f:
        f.attrs["format"] = "activations"
        f.attrs["format_version"] = 1
        f.attrs["model"] = "official-heads-fixture"
        f.attrs["created_by"] = versions
        f.attrs["preprocessing"] = "seeded N(0,1) pixels (torch.Generator seed 1)"
        f.create_dataset("inputs/ids", data=np.array([f"img{i}" for i in range(4)], dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("inputs/labels", data=np.array([3, 1, 4, 1], dtype=np.int64))
        f.create_dataset("inputs/classes", data=np.array([f"c{i}" for i in range(CLASSES)], dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("inputs/pixels", data=pixels)
        for name, (logits, feats, attrs) in results.items():
            d = f.create_dataset(f"official/{name}", data=logits.astype(np.float32))
            f.create_dataset(f"official/{name}_features", data=feats.astype(np.float32))
            d.attrs["source"] = SOURCES[name.split("_")[0]]
            for k, v in attrs.items():
                d.attrs[k] = v
            print(f"  {name:16s} logits {logits.shape} max|x| {np.abs(logits).max():.4f} std {logits.std():.4f} "
                  f"argmax {logits.argmax(1).tolist()}")
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"fixtures in {args.out}: {total / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
