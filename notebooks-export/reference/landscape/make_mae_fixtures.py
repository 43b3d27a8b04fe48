#!/usr/bin/env python3
"""Writes Tests/CKAViTTests/OfficialFixtures/mae_loss_small.* from the OFFICIAL MAE and RC-MAE code
(developer-run; needs torch, timm, numpy, h5py, safetensors; not run by CI).

Issue 8 (part 1): our `MaskedAutoencoder` must reproduce the MAE pre-training forward pass and loss
(models_mae.py) and the RC-MAE loss (student + EMA teacher on the same masks). The official code is NOT in this
repository; point the script at checkouts of it:

    python3 make_mae_fixtures.py --mae MAE_DIR --rcmae RCMAE_DIR [--out DIR]

    MAE_DIR    facebookresearch/mae   (models_mae.py + util/pos_embed.py; read at efb2a80)
    RCMAE_DIR  youngwanLEE/rc-mae     (models_rc.py + util/pos_embed.py; read at cf39823)

The model: a SMALL MaskedAutoencoderViT built by the official constructor (models_mae.MaskedAutoencoderViT and
models_rc.MaskedAutoencoderViT take every size as an argument): img 32, patch 8 (16 patches of 192 values),
encoder width 48, depth 2, 4 heads (head dim 12: the attention scale is not a power of two), decoder width 32,
depth 2, 4 heads, mlp_ratio 4, LayerNorm eps 1e-6 (the norm_layer of every released model). Width 48 rather than
64 keeps the two weight files and the data under 1 MB together.
Weights: the official initialize_weights() under torch.manual_seed(seed) (xavier Linear / patch embedding, fixed
2-D sin-cos pos_embed and decoder_pos_embed), then perturbed so that nothing is identity or zero: LayerNorm
weights 1 + 0.2·N(0,1), every bias (LayerNorm and Linear) 0.1·N(0,1), cls_token and mask_token 0.5·N(0,1); the
sin-cos tables are kept. Student seed 11, teacher seed 12 (an independent model: the consistency term is then
far from zero).
Inputs: 3 "normalised" images N(0,1) [3,3,32,32] float32 (seed 13); noise U[0,1) [3,16] float32 (seed 14), no ties
within a row (asserted). mask_ratio 0.75 -> len_keep = int(16·0.25) = 4.

How the official code is run (float32, eval mode, torch.no_grad):
  * MAE: models_mae.MaskedAutoencoderViT.forward(imgs, 0.75) with `torch.rand` monkeypatched to return the stored
    noise (random_masking draws `torch.rand(N, L)`; nothing else draws from it), once with norm_pix_loss False and
    once True -> loss, pred, mask; ids_restore from forward_encoder with the same noise.
  * RC-MAE: models_rc.MaskedAutoencoderViT student (compute_loss=True, student weights loaded strictly) with the
    same patched noise -> s_loss, s_pred, s_mask, ids_shuffle; teacher (compute_loss=False, teacher weights) called
    with ids_shuffle=ids_shuffle, exactly as engine_pretrain.train_one_epoch does; norm_pix_loss True (the ViT-B
    recipe). The consistency/total combination lives inside RC-MAE's training loop (engine_pretrain.py, which cannot
    be imported without its data loader/optimizer machinery), so its three lines are REIMPLEMENTED here verbatim:
        rec_cons_loss = ((s_pred - t_pred) ** 2).mean(dim=-1)
        rec_cons_loss = (rec_cons_loss * s_mask).sum() / s_mask.sum()
        loss = s_loss + gamma * rec_cons_loss          (gamma = 1, RC-MAE's default --gamma)
    The script asserts that RC-MAE's student reproduces MAE's pred, mask and loss bit for bit.

Shims for running the 2021/2022 code on current timm (1.0.x; both pin timm 0.3.2) and numpy 2:
  1. Both construct `Block(dim, heads, mlp_ratio, qkv_bias=True, qk_scale=None, norm_layer=...)`; current timm's
     Block has no qk_scale. timm.models.vision_transformer.Block is replaced, before the official files are
     imported, by a subclass that drops qk_scale (asserting it is None, i.e. the default scale head_dim^-0.5).
  2. util/pos_embed.py uses `np.float`, removed in numpy 1.24; it is set to the builtin float it aliased.
  3. timm.layers.set_fused_attn(False): timm's explicit attention path softmax((q·scale)·kᵀ)·v instead of fused SDPA.
  The two repositories both have a top-level `util` package; it is dropped from sys.modules between the imports so
  each file gets its own util/pos_embed.py.

Written (Tests/CKAViTTests/OfficialFixtures/):
  mae_loss_small.student.safetensors, mae_loss_small.teacher.safetensors   state_dict() under the official names
  mae_loss_small.h5: images [3,3,32,32] f32, noise [3,16] f32, ids_shuffle / ids_restore [3,16] int64,
    mask [3,16] f32 (1 = removed), student_pred / teacher_pred [3,16,192] f32, and root attributes loss_raw,
    loss_norm_pix (MAE), rcmae_reconstruction, rcmae_consistency, rcmae_total, gamma, mask_ratio, sizes, seeds,
    sources.
"""
import argparse
import contextlib
import json
import os
import sys
from functools import partial

import h5py
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import official_code  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "../../.."))
OUT = os.path.join(REPO, "Tests/CKAViTTests/OfficialFixtures")

SIZES = dict(img_size=32, patch_size=8, in_chans=3, embed_dim=48, depth=2, num_heads=4,
             decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4)
BATCH, MASK_RATIO, GAMMA = 3, 0.75, 1.0
SEEDS = dict(student=11, teacher=12, images=13, noise=14)
SOURCES = {"mae": "facebookresearch/mae@efb2a80:models_mae.py MaskedAutoencoderViT",
           "rcmae": "youngwanLEE/rc-mae@cf39823:models_rc.py MaskedAutoencoderViT + engine_pretrain.py loss lines"}


def install_shims():
    import timm.layers
    import timm.models.vision_transformer as tvt
    base = tvt.Block
    if not getattr(base, "_accepts_qk_scale", False):
        class Block(base):                                                     # shim 1
            _accepts_qk_scale = True

            def __init__(self, *args, qk_scale=None, **kwargs):
                assert qk_scale is None, "only the default attention scale is supported"
                super().__init__(*args, **kwargs)
        tvt.Block = Block
    if not hasattr(np, "float"):
        np.float = float                                                       # shim 2
    timm.layers.set_fused_attn(False)                                          # shim 3


def load_module(name, path, repo_dir):
    """The official file `path` with its checkout first on sys.path; a previous checkout's `util` is forgotten."""
    return official_code.load_module(name, path, repo_dir, purge=("util",))


def perturb(model, seed):
    """Makes every LayerNorm and bias non-trivial (keeps xavier weights and the sin-cos tables)."""
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.split(".")[-2] if "." in name else name
            if name in ("pos_embed", "decoder_pos_embed"):
                continue
            if name in ("cls_token", "mask_token"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith(".weight") and "norm" in leaf:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def build(cls, seed, **extra):
    torch.manual_seed(seed)
    model = cls(**SIZES, norm_layer=partial(nn.LayerNorm, eps=1e-6), **extra)
    perturb(model, seed)
    return model.eval()


@contextlib.contextmanager
def fixed_rand(noise):
    """torch.rand(N, L, ...) returns `noise` (the only draw random_masking makes)."""
    original = torch.rand

    def rand(*size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)
        assert shape == tuple(noise.shape), f"unexpected torch.rand{shape}"
        return noise.clone().to(kwargs.get("device") or "cpu")
    torch.rand = rand
    try:
        yield
    finally:
        torch.rand = original


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mae", required=True, help="checkout of facebookresearch/mae")
    ap.add_argument("--rcmae", required=True, help="checkout of youngwanLEE/rc-mae")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    install_shims()
    models_mae = load_module("official_models_mae", os.path.join(args.mae, "models_mae.py"), args.mae)
    models_rc = load_module("official_models_rc", os.path.join(args.rcmae, "models_rc.py"), args.rcmae)

    student = build(models_mae.MaskedAutoencoderViT, SEEDS["student"])
    teacher = build(models_mae.MaskedAutoencoderViT, SEEDS["teacher"])
    imgs = torch.randn(BATCH, 3, SIZES["img_size"], SIZES["img_size"], generator=torch.Generator().manual_seed(SEEDS["images"]))
    patches = (SIZES["img_size"] // SIZES["patch_size"]) ** 2
    noise = torch.rand(BATCH, patches, generator=torch.Generator().manual_seed(SEEDS["noise"]))
    for row in noise:
        assert len(set(row.tolist())) == patches, "ties in the noise: argsort order would be ambiguous"

    with torch.no_grad():
        losses = {}
        for flag in (False, True):
            student.norm_pix_loss = flag
            with fixed_rand(noise):
                loss, pred, mask = student(imgs, mask_ratio=MASK_RATIO)
            losses[flag] = (loss, pred, mask)
        assert torch.equal(losses[False][1], losses[True][1]) and torch.equal(losses[False][2], losses[True][2])
        pred, mask = losses[False][1], losses[False][2]
        with fixed_rand(noise):
            _, mask_enc, ids_restore = student.forward_encoder(imgs, MASK_RATIO)
        assert torch.equal(mask_enc, mask)

        # RC-MAE: the official student/teacher modules with the same weights and the engine's call pattern.
        rc_student = build(models_rc.MaskedAutoencoderViT, SEEDS["student"], norm_pix_loss=True, compute_loss=True)
        rc_teacher = build(models_rc.MaskedAutoencoderViT, SEEDS["teacher"], norm_pix_loss=True, compute_loss=False)
        rc_student.load_state_dict(student.state_dict(), strict=True)
        rc_teacher.load_state_dict(teacher.state_dict(), strict=True)
        with fixed_rand(noise):
            s_loss, s_pred, s_mask, ids_shuffle = rc_student(imgs, mask_ratio=MASK_RATIO)
        rc_teacher.eval()
        t_pred = rc_teacher(imgs, mask_ratio=MASK_RATIO, ids_shuffle=ids_shuffle)
        # engine_pretrain.py train_one_epoch, reimplemented verbatim (see the docstring):
        rec_cons_loss = (s_pred - t_pred.detach()) ** 2
        rec_cons_loss = rec_cons_loss.mean(dim=-1)
        rec_cons_loss = (rec_cons_loss * s_mask).sum() / s_mask.sum()
        total = s_loss + GAMMA * rec_cons_loss

        assert torch.equal(s_pred, pred) and torch.equal(s_mask, mask) and torch.equal(s_loss, losses[True][0]), \
            "RC-MAE's student differs from MAE's model with the same weights and noise"
        assert torch.equal(ids_shuffle, torch.argsort(noise, dim=1))

    os.makedirs(args.out, exist_ok=True)
    from safetensors.torch import save_file
    for name, model in (("student", student), ("teacher", teacher)):
        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        out = os.path.join(args.out, f"mae_loss_small.{name}.safetensors")
        # The tensors are reproducible bit for bit; the header's metadata order is not (safetensors hashes it).
        save_file(sd, out, metadata={"source": SOURCES["mae"], "seed": str(SEEDS[name]), "sizes": json.dumps(SIZES)})
        os.chmod(out, 0o644)
    path = os.path.join(args.out, "mae_loss_small.h5")
    with h5py.File(path, "w") as f:
        f["images"] = imgs.numpy().astype(np.float32)
        f["noise"] = noise.numpy().astype(np.float32)
        f["ids_shuffle"] = ids_shuffle.numpy().astype(np.int64)
        f["ids_restore"] = ids_restore.numpy().astype(np.int64)
        f["mask"] = mask.numpy().astype(np.float32)
        f["student_pred"] = pred.numpy().astype(np.float32)
        f["teacher_pred"] = t_pred.numpy().astype(np.float32)
        f.attrs["loss_raw"] = float(losses[False][0])
        f.attrs["loss_norm_pix"] = float(losses[True][0])
        f.attrs["rcmae_reconstruction"] = float(s_loss)
        f.attrs["rcmae_consistency"] = float(rec_cons_loss)
        f.attrs["rcmae_total"] = float(total)
        f.attrs["gamma"] = GAMMA
        f.attrs["mask_ratio"] = MASK_RATIO
        f.attrs["sizes"] = json.dumps(SIZES)
        f.attrs["seeds"] = json.dumps(SEEDS)
        f.attrs["sources"] = json.dumps(SOURCES)
        f.attrs["generator"] = "notebooks-export/reference/landscape/make_mae_fixtures.py"
        f.attrs["torch"] = str(torch.__version__)
        import timm
        f.attrs["timm"] = str(timm.__version__)
    print(f"wrote {path}: loss raw {float(losses[False][0]):.6f}, norm_pix {float(losses[True][0]):.6f}, "
          f"rcmae rec {float(s_loss):.6f} + cons {float(rec_cons_loss):.6f} = {float(total):.6f}")


if __name__ == "__main__":
    main()
