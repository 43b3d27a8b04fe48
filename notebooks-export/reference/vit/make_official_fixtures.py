#!/usr/bin/env python3
"""Writes Tests/CKAViTTests/OfficialFixtures/ from the OFFICIAL PyTorch model code of DINO, MoCo-v3 and MAE
(developer-run; needs torch, timm, torchvision, h5py, numpy, pillow; not run by CI).

Issue 5's exactness requirement: our `VisionTransformer` must reproduce the official forward passes at ViT-B/16
shape. No weight file is committed: every parameter comes from the integer-hash formula of official_weights.py,
which the Swift test re-implements bit for bit. The official code itself is NOT in this repository; point the
script at checkouts of it:

    python3 make_official_fixtures.py --dino DINO_DIR --moco MOCO_V3_DIR --mae MAE_DIR [--out DIR]

    DINO_DIR   facebookresearch/dino    (vision_transformer.py + utils.py; read at 7c446df)
    MOCO_V3_DIR facebookresearch/moco-v3 (vits.py; read at c349e6e)
    MAE_DIR    facebookresearch/mae     (models_vit.py; read at efb2a80)

What each official model is, and how it is fed:
  dino    vision_transformer.vit_base(patch_size=16, num_classes=0)          (hubconf.dino_vitb16), seed 1
  mocov3  vits.vit_base(num_classes=0)                                       (main_lincls.py without its head), seed 2
          pos_embed is NOT taken from the formula: it is the fixed 2-D sin-cos table vits.py builds itself
          (build_2d_sincos_position_embedding), exactly what the released checkpoints hold; the Swift test
          recomputes it the way vits.py does (float32 omega, 'ij' meshgrid: first half encodes the patch row).
  mae     models_vit.vit_base_patch16(global_pool=True, num_classes=0)     (main_finetune.py eval model), seed 3
          no `norm`; `fc_norm` after the mean of the 196 patch tokens.
All three in float32, eval mode, torch.inference_mode(); every weight (except MoCo's pos_embed) is loaded with
load_state_dict(strict=True) under the official model's own key names (for these three backbones they are the timm
names, asserted below).

Shims for running the 2021-era official code on current timm (1.0.x; the code pins timm 0.3.2 / 0.4.9):
  1. moco-v3 vits.py imports `timm.models.layers.helpers.to_2tuple`; that module no longer exists. A stub module
     `timm.models.layers.helpers` exposing timm.layers.to_2tuple is put in sys.modules (to_2tuple is only used by
     vits.ConvStem, not by vit_base).
  2. vits.py asserts `self.num_tokens == 1`; current timm calls it `num_prefix_tokens`. A read-only property
     `VisionTransformer.num_tokens -> num_prefix_tokens` is added to timm's class before vits.py is imported.
  3. MAE's models_vit overrides `forward_features(self, x)`, but current timm's `forward` calls
     `forward_features(x, attn_mask=..., is_causal=...)` and then a pooling head that would pool the already-pooled
     vector again. The official feature is therefore taken from `model.forward_features(x)` (the fc_norm output),
     which is what timm 0.3.2's `forward` fed to its (here absent) head.
  4. Current timm's Attention would use fused scaled_dot_product_attention. `timm.layers.set_fused_attn(False)`
     selects its explicit path `softmax((q*scale) @ k^T) @ v`, which for scale = 64^-0.5 = 2^-3 is bitwise the
     same arithmetic as timm 0.3.2/0.4.9's `softmax((q @ k^T) * scale) @ v`. (DINO has its own Attention.)
  DINO needs no shim: its vision_transformer.py imports `trunc_normal_` from DINO's own utils.py (DINO_DIR is put
  first on sys.path while importing it).

Inputs: astronaut.png and chelsea.png from shared/data/images/photos, DINO's eval transform (reference-models.md
section 4): Resize(256, bicubic) -> CenterCrop(224) via torchvision; the uint8 crops are stored ([2,3,224,224],
gzip) and the network input is ToTensor+Normalize(ImageNet) in float32, i.e. (u8/255 - mean)/std in IEEE float32,
which the Swift test recomputes bitwise (checked here against torchvision). The same pixels feed all three models
(the forward pass is under test, not MoCo's bilinear preprocessing).

Stored per model (<model>_vitb16.h5, an activation store of formats.md: inputs/ids, activations/<hook>):
  token layers, float32, only the tokens TOKENS (attribute `tokens`: CLS, patches (0,0), (0,13), (6,7), (13,0),
  (13,13)): blocks.0.norm1, blocks.0.attn.qkv, blocks.5.mlp.fc1, blocks.11, norm (dino, mocov3);
  pooled, float32, full width: norm:cls (dino: model(x); mocov3: model(x), Identity head),
  blocks.11:gap_nocls and fc_norm (mae: fc_norm's input and output = forward_features(x)).
The attention inside every stored block still mixes all 197 tokens, so the subset checks the whole computation.
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from official_code import install_timm_shims, load_module  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from official_weights import formula_tensor, probe_values, timm_parameter_shapes  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "../../.."))
PHOTOS = os.path.abspath(os.path.join(REPO, "../shared/data/images/photos"))
IMAGES = ["astronaut.png", "chelsea.png"]
TOKENS = [0, 1, 14, 92, 183, 196]
TOKEN_LAYERS = ["blocks.0.norm1", "blocks.0.attn.qkv", "blocks.5.mlp.fc1", "blocks.11"]
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
SEEDS = {"dino": 1, "mocov3": 2, "mae": 3}
SOURCES = {"dino": "facebookresearch/dino@7c446df:vision_transformer.py vit_base(patch_size=16, num_classes=0)",
           "mocov3": "facebookresearch/moco-v3@c349e6e:vits.py vit_base(num_classes=0)",
           "mae": "facebookresearch/mae@efb2a80:models_vit.py vit_base_patch16(global_pool=True, num_classes=0)"}


def images():
    from PIL import Image
    from torchvision import transforms as T
    crop = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224)])
    to_input = T.Compose([T.ToTensor(), T.Normalize(*IMAGENET)])
    u8, ref = [], []
    for name in IMAGES:
        im = crop(Image.open(os.path.join(PHOTOS, name)).convert("RGB"))
        u8.append(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
        ref.append(to_input(im).numpy())
    u8, ref = np.stack(u8), np.stack(ref)
    mean = np.array(IMAGENET[0], dtype=np.float32)[None, :, None, None]
    std = np.array(IMAGENET[1], dtype=np.float32)[None, :, None, None]
    pixels = (u8.astype(np.float32) / np.float32(255) - mean) / std
    assert pixels.dtype == np.float32 and np.array_equal(pixels.view(np.uint32), ref.view(np.uint32)), \
        "float32 (u8/255 - mean)/std differs from torchvision's ToTensor+Normalize"
    return u8, pixels


def formula_state(seed, final_norm, fc_norm, skip=()):
    shapes = timm_parameter_shapes(final_norm=final_norm, fc_norm=fc_norm)
    return {k: torch.from_numpy(formula_tensor(k, s, seed)) for k, s in shapes.items() if k not in skip}


def mocov3_sincos_float64(grid=14, dim=768, temperature=10000.0):
    """vits.py's table evaluated in float64 (to report how far torch's float32 evaluation is from exact)."""
    pos_dim = dim // 4
    omega = 1.0 / temperature ** (np.arange(pos_dim) / pos_dim)
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    out_w, out_h = np.outer(rows.ravel(), omega), np.outer(cols.ravel(), omega)
    pe = np.concatenate([np.sin(out_w), np.cos(out_w), np.sin(out_h), np.cos(out_h)], axis=1)
    return np.concatenate([np.zeros((1, dim)), pe])[None]


def build(kind, paths):
    if kind == "dino":
        vt = load_module("dino_vision_transformer", os.path.join(paths.dino, "vision_transformer.py"), paths.dino)
        model = vt.vit_base(patch_size=16, num_classes=0)
        state = formula_state(SEEDS[kind], final_norm=True, fc_norm=False)
        model.load_state_dict(state, strict=True)
    elif kind == "mocov3":
        vits = load_module("mocov3_vits", os.path.join(paths.moco, "vits.py"))
        model = vits.vit_base(num_classes=0)
        state = formula_state(SEEDS[kind], final_norm=True, fc_norm=False, skip=("pos_embed",))
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert missing == ["pos_embed"] and not unexpected, (missing, unexpected)
        got = model.pos_embed.detach().double().numpy()
        print(f"  mocov3: vits.py sin-cos pos_embed (float32) vs float64 evaluation: max |diff| "
              f"{np.abs(got - mocov3_sincos_float64()).max():.3g}")
    elif kind == "mae":
        mv = load_module("mae_models_vit", os.path.join(paths.mae, "models_vit.py"))
        model = mv.vit_base_patch16(global_pool=True, num_classes=0)
        state = formula_state(SEEDS[kind], final_norm=False, fc_norm=True)
        model.load_state_dict(state, strict=True)
    else:
        raise ValueError(kind)
    return model.eval()


def run(kind, model, pixels):
    captured = {}
    modules = dict(model.named_modules())
    hooks = []
    names = TOKEN_LAYERS + (["norm"] if kind != "mae" else [])
    for n in names:
        hooks.append(modules[n].register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(n, o.detach().clone())))
    if kind == "mae":
        hooks.append(modules["fc_norm"].register_forward_hook(
            lambda m, i, o: captured.update({"blocks.11:gap_nocls": i[0].detach().clone(), "fc_norm": o.detach().clone()})))
    x = torch.from_numpy(pixels)
    with torch.inference_mode():
        out = model.forward_features(x) if kind == "mae" else model(x)   # shim 3 for mae
    for h in hooks:
        h.remove()
    if kind == "mae":
        assert torch.equal(out, captured["fc_norm"])
    else:
        captured["norm:cls"] = out.clone()
        assert torch.equal(out, captured["norm"][:, 0])
    return {k: v.float().numpy() for k, v in captured.items()}


def timm_crosscheck(kind, model, pixels, outputs):
    """The same weights in plain current-timm `VisionTransformer` (not the reference; a sanity check only)."""
    import timm
    from functools import partial
    t = timm.models.vision_transformer.VisionTransformer(
        num_classes=0, global_pool="avg" if kind == "mae" else "token", fc_norm=kind == "mae",
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)).eval()
    sd = {k: v for k, v in model.state_dict().items()}
    t.load_state_dict(sd, strict=True)
    with torch.inference_mode():
        y = t(torch.from_numpy(pixels)).numpy()
    ref = outputs["fc_norm" if kind == "mae" else "norm:cls"]
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def write_store(path, kind, outputs, u8_ids, versions):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "activations"
        f.attrs["format_version"] = 1
        f.attrs["model"] = f"{kind}-official-formula-seed{SEEDS[kind]}"
        f.attrs["architecture"] = "vit_base_patch16_224"
        f.attrs["official_source"] = SOURCES[kind]
        f.attrs["created_by"] = versions
        f.attrs["weights"] = "official_weights.py formula"
        f.attrs["seed"] = SEEDS[kind]
        f.attrs["pos_embed"] = "mocov3-sincos" if kind == "mocov3" else "formula"
        f.attrs["final_norm"] = kind != "mae"
        f.attrs["fc_norm"] = kind == "mae"
        f.attrs["tokens"] = np.array(TOKENS, dtype=np.int64)
        f.attrs["inputs_file"] = "images.h5"
        f.attrs["preprocessing"] = "resize256-bicubic-antialias-crop224-imagenet"
        f.attrs["weight_probes"] = json.dumps(probe_values(SEEDS[kind]))
        f.create_dataset("inputs/ids", data=np.array(IMAGES, dtype=object), dtype=h5py.string_dtype())
        order = 0
        for name in TOKEN_LAYERS + ["norm", "norm:cls", "blocks.11:gap_nocls", "fc_norm"]:
            if name not in outputs:
                continue
            v = outputs[name]
            if v.ndim == 3:
                v = v[:, TOKENS, :]
            d = f.create_dataset(f"activations/{name}", data=np.ascontiguousarray(v, dtype=np.float32),
                                 compression="gzip", compression_opts=9, shuffle=True)
            d.attrs["order"] = order
            if v.ndim == 3:
                d.attrs["tokens"] = np.array(TOKENS, dtype=np.int64)
            order += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dino", required=True)
    ap.add_argument("--moco", required=True)
    ap.add_argument("--mae", required=True)
    ap.add_argument("--out", default=os.path.join(REPO, "Tests/CKAViTTests/OfficialFixtures"))
    ap.add_argument("--models", default="dino,mocov3,mae")
    args = ap.parse_args()
    torch.manual_seed(0)
    install_timm_shims()
    import timm
    import torchvision
    versions = f"torch {torch.__version__} timm {timm.__version__} torchvision {torchvision.__version__}"
    os.makedirs(args.out, exist_ok=True)

    u8, pixels = images()
    with h5py.File(os.path.join(args.out, "images.h5"), "w") as f:
        f.attrs["preprocessing"] = ("torchvision Resize(256, bicubic) -> CenterCrop(224); network input = "
                                    "(float32(u8)/255 - mean)/std in float32, ImageNet mean/std")
        f.attrs["mean"] = np.array(IMAGENET[0])
        f.attrs["std"] = np.array(IMAGENET[1])
        f.create_dataset("inputs/ids", data=np.array(IMAGES, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("inputs/rgb_u8", data=u8, compression="gzip", compression_opts=9)

    report = {}
    for kind in args.models.split(","):
        print(f"{kind}: {SOURCES[kind]}")
        model = build(kind, args)
        outputs = run(kind, model, pixels)
        for k, v in outputs.items():
            print(f"  {k:22s} {str(v.shape):18s} max|x| {np.abs(v).max():8.4f}  std {v.std():.4f}")
        report[kind] = timm_crosscheck(kind, model, pixels, outputs)
        print(f"  plain timm VisionTransformer, same weights: relative max diff of the feature {report[kind]:.3g}")
        write_store(os.path.join(args.out, f"{kind}_vitb16.h5"), kind, outputs, IMAGES, versions)
        del model
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"fixtures in {args.out}: {total / 1e6:.3f} MB")


if __name__ == "__main__":
    main()
