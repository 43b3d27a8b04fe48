#!/usr/bin/env python3
"""Writes Tests/CKAViTTests/OfficialFixtures/gradients_{mae,ce}_small.h5: losses and the gradient of EVERY
parameter by PyTorch autograd on the official code (developer-run; needs torch, timm, numpy, h5py; not run by CI).

Issue 8 (Hessian power iteration): `MaskedAutoencoder.lossAndGradient`, `rcmaeLossAndGradient` and
`ClassifierHead.lossAndGradient` must give ∇L of the landscape losses exactly as autograd does on the reference
models. Run with a checkout of facebookresearch/mae (models_mae.py + util/pos_embed.py; read at efb2a80):

    python3 make_gradient_fixtures.py --mae MAE_DIR [--out DIR]

Everything is computed in float64 (model.double(), inputs cast) so the reference is exact to ~1e-15; weights,
inputs and gradients are stored as float32. Every parameter gets requires_grad=True, including the fixed sin-cos
tables pos_embed/decoder_pos_embed (requires_grad=False in models_mae.py): their gradients are reported too.

MAE (models_mae.MaskedAutoencoderViT, shims as in make_mae_fixtures.py): img 16, patch 4 (16 patches of 48 values),
encoder width 24, depth 2, 4 heads (head dim 6), decoder width 20, depth 2, 4 heads (head dim 5), mlp_ratio 4,
LayerNorm eps 1e-6; weights as make_mae_fixtures.py (official init then perturb()), student seed 21, teacher 22.
Images N(0,1) [3,3,16,16] (seed 23), noise U[0,1) [3,16] (seed 24), mask_ratio 0.75 -> 4 visible patches.
  grad_raw      ∇ of forward(imgs, 0.75)[0] with norm_pix_loss False
  grad_normpix  the same with norm_pix_loss True
  grad_rcmae    ∇ of s_loss + GAMMA·rc with norm_pix_loss True, where the teacher's pred (official forward_encoder
                with the same noise, then forward_decoder, detached) is a constant and the consistency lines of
                RC-MAE's engine_pretrain.py are reimplemented as in make_mae_fixtures.py; GAMMA = 0.7 (not 1, so
                that the weighting is tested).
CE (timm 1.0.x VisionTransformer, set_fused_attn(False)): img 16, patch 4, width 24, depth 3, 4 heads, mlp_ratio 4,
eps 1e-6, 5 classes; weights from timm's init with seed 31/32, then LayerNorm weights 1 + 0.2 N, biases 0.1 N,
cls_token 0.5 N, pos_embed 0.1 N, head weight 0.3 N. Images N(0,1) [4,3,16,16] (seed 33), labels [4] (seed 34).
Loss = F.cross_entropy(logits, labels) (mean). Readouts:
  token      timm global_pool='token' (norm, CLS, head)                           backbone `tok`
  avg        timm global_pool='avg', fc_norm=True (mean of patch tokens, fc_norm, head)  backbone `avg`
  dino_n1    DINO eval_linear.py features on backbone `tok` (n_last_blocks=1, avgpool_patchtokens=True):
             get_intermediate_layers = every block output through model.norm; the feature lines reimplemented:
                 output = torch.cat([x[:, 0] for x in intermediate_output], dim=-1)
                 output = torch.cat((output.unsqueeze(-1), torch.mean(intermediate_output[-1][:, 1:], dim=1).unsqueeze(-1)), dim=-1)
                 output = output.reshape(output.shape[0], -1)
  dino_n2    the same with n_last_blocks=2, avgpool_patchtokens=False
Layout: /<group>/weights/<name>, /<group>/<gradient set>/<name> (PyTorch shapes), inputs, attributes with the losses.
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "../../.."))
OUT = os.path.join(REPO, "Tests/CKAViTTests/OfficialFixtures")
sys.path.insert(0, HERE)
from make_mae_fixtures import fixed_rand, install_shims, load_module, perturb  # noqa: E402

MAE_SIZES = dict(img_size=16, patch_size=4, in_chans=3, embed_dim=24, depth=2, num_heads=4,
                 decoder_embed_dim=20, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4)
CE_SIZES = dict(img_size=16, patch_size=4, in_chans=3, embed_dim=24, depth=3, num_heads=4, mlp_ratio=4, num_classes=5)
MAE_BATCH, CE_BATCH, MASK_RATIO, GAMMA = 3, 4, 0.75, 0.7
SEEDS = dict(student=21, teacher=22, images=23, noise=24, tok=31, avg=32, ce_images=33, labels=34, heads=35, ls=36)
SOURCE_MAE = "facebookresearch/mae@efb2a80:models_mae.py MaskedAutoencoderViT"


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def write_tensors(f, group, tensors):
    for n, t in tensors.items():
        f[f"{group}/{n}"] = t.detach().float().numpy()


def mae(args, out):
    from functools import partial
    models_mae = load_module("official_models_mae", os.path.join(args.mae, "models_mae.py"), args.mae)

    def build(seed):
        torch.manual_seed(seed)
        m = models_mae.MaskedAutoencoderViT(**MAE_SIZES, norm_layer=partial(nn.LayerNorm, eps=1e-6))
        perturb(m, seed)
        # round to float32 first: the stored weights are what the Swift side reads
        m = m.float().double().eval()
        for p in m.parameters():
            p.requires_grad_(True)
        return m

    student, teacher = build(SEEDS["student"]), build(SEEDS["teacher"])
    n = MAE_SIZES["img_size"]
    imgs = torch.randn(MAE_BATCH, 3, n, n, generator=torch.Generator().manual_seed(SEEDS["images"]))
    patches = (n // MAE_SIZES["patch_size"]) ** 2
    noise = torch.rand(MAE_BATCH, patches, generator=torch.Generator().manual_seed(SEEDS["noise"]))
    for row in noise:
        assert len(set(row.tolist())) == patches
    x = imgs.double()
    res = {}
    for flag, key in ((False, "grad_raw"), (True, "grad_normpix")):
        student.norm_pix_loss = flag
        with fixed_rand(noise):
            loss, pred, mask = student(x, mask_ratio=MASK_RATIO)
        res[key] = (loss.item(), grads(student, loss))
    with torch.no_grad(), fixed_rand(noise):
        latent, t_mask, ids_restore = teacher.forward_encoder(x, MASK_RATIO)
        t_pred = teacher.forward_decoder(latent, ids_restore)
    student.norm_pix_loss = True
    with fixed_rand(noise):
        s_loss, s_pred, s_mask = student(x, mask_ratio=MASK_RATIO)
    assert torch.equal(s_mask, t_mask)
    rec_cons_loss = (s_pred - t_pred.detach()) ** 2          # engine_pretrain.py, reimplemented
    rec_cons_loss = rec_cons_loss.mean(dim=-1)
    rec_cons_loss = (rec_cons_loss * s_mask).sum() / s_mask.sum()
    total = s_loss + GAMMA * rec_cons_loss
    res["grad_rcmae"] = (total.item(), grads(student, total))

    path = os.path.join(out, "gradients_mae_small.h5")
    with h5py.File(path, "w") as f:
        write_tensors(f, "student", dict(student.named_parameters()))
        write_tensors(f, "teacher", dict(teacher.named_parameters()))
        for key, (loss, g) in res.items():
            write_tensors(f, key, g)
            f[key].attrs["loss"] = loss
        f["images"] = imgs.numpy().astype(np.float32)
        f["noise"] = noise.numpy().astype(np.float32)
        f["mask"] = s_mask.float().numpy()
        f.attrs["rcmae_reconstruction"] = s_loss.item()
        f.attrs["rcmae_consistency"] = rec_cons_loss.item()
        f.attrs["gamma"] = GAMMA
        f.attrs["mask_ratio"] = MASK_RATIO
        f.attrs["sizes"] = json.dumps(MAE_SIZES)
        f.attrs["seeds"] = json.dumps(SEEDS)
        f.attrs["source"] = SOURCE_MAE
        common_attrs(f)
    print(f"wrote {path} ({os.path.getsize(path)} bytes): " + ", ".join(f"{k} {v[0]:.6f}" for k, v in res.items()))


def common_attrs(f):
    import timm
    f.attrs["generator"] = "notebooks-export/reference/landscape/make_gradient_fixtures.py"
    f.attrs["torch"] = str(torch.__version__)
    f.attrs["timm"] = str(timm.__version__)
    f.attrs["dtype"] = "float64 autograd, stored float32"


def ce(out):
    from timm.models.vision_transformer import VisionTransformer

    def build(seed, **kw):
        torch.manual_seed(seed)
        m = VisionTransformer(**{**CE_SIZES, **kw})
        g = torch.Generator().manual_seed(seed + 1000)
        with torch.no_grad():
            for name, p in m.named_parameters():
                leaf = name.split(".")[-2] if "." in name else name
                if name.endswith(".gamma"):
                    p.copy_(0.5 + 0.3 * torch.randn(p.shape, generator=g))
                elif name == "cls_token":
                    p.copy_(0.5 * torch.randn(p.shape, generator=g))
                elif name == "pos_embed":
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
                elif name == "head.weight":
                    p.copy_(0.3 * torch.randn(p.shape, generator=g))
                elif name.endswith(".weight") and "norm" in leaf:
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
                elif name.endswith(".bias"):
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
        return m.float().double().eval()

    tok = build(SEEDS["tok"], global_pool="token", qkv_bias=True)
    avg = build(SEEDS["avg"], global_pool="avg", fc_norm=True, qkv_bias=True)
    ls = build(SEEDS["ls"], global_pool="token", qkv_bias=True, init_values=0.1, depth=2)
    assert isinstance(avg.norm, nn.Identity) and not isinstance(avg.fc_norm, nn.Identity)
    n = CE_SIZES["img_size"]
    imgs = torch.randn(CE_BATCH, 3, n, n, generator=torch.Generator().manual_seed(SEEDS["ce_images"]))
    labels = torch.randint(0, CE_SIZES["num_classes"], (CE_BATCH,), generator=torch.Generator().manual_seed(SEEDS["labels"]))
    x = imgs.double()
    d, c = CE_SIZES["embed_dim"], CE_SIZES["num_classes"]
    hg = torch.Generator().manual_seed(SEEDS["heads"])
    results = {}

    def run(name, model, logits_fn, extra):
        params = dict(model.named_parameters())
        params.update(extra)
        for p in params.values():
            p.grad = None
        logits = logits_fn()
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        results[name] = (loss.item(), {k: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                                       for k, p in params.items()},
                         {k: p.detach().clone() for k, p in params.items()}, logits.detach())

    run("token", tok, lambda: tok(x), {})
    run("avg", avg, lambda: avg(x), {})
    run("ls", ls, lambda: ls(x), {})

    def intermediate(model, nlast):
        # timm's forward_features path, keeping the last nlast block outputs, each through the final norm
        # (DINO get_intermediate_layers).
        h = model.patch_embed(x)
        h = model._pos_embed(h)
        outs = []
        for i, blk in enumerate(model.blocks):
            h = blk(h)
            if len(model.blocks) - i <= nlast:
                outs.append(model.norm(h))
        return outs

    for name, nlast, avgpool in (("dino_n1", 1, True), ("dino_n2", 2, False)):
        fdim = d * (nlast + (1 if avgpool else 0))
        w = nn.Parameter((0.3 * torch.randn(c, fdim, generator=hg)).float().double())
        b = nn.Parameter((0.1 * torch.randn(c, generator=hg)).float().double())

        def logits_fn(nlast=nlast, avgpool=avgpool, w=w, b=b):
            intermediate_output = intermediate(tok, nlast)
            output = torch.cat([x[:, 0] for x in intermediate_output], dim=-1)
            if avgpool:
                output = torch.cat((output.unsqueeze(-1), torch.mean(intermediate_output[-1][:, 1:], dim=1).unsqueeze(-1)), dim=-1)
                output = output.reshape(output.shape[0], -1)
            return F.linear(output, w, b)
        run(name, tok, logits_fn, {"head.weight": w, "head.bias": b})

    path = os.path.join(out, "gradients_ce_small.h5")
    with h5py.File(path, "w") as f:
        write_tensors(f, "tok/weights", {k: v for k, v in tok.named_parameters() if not k.startswith("head.")})
        write_tensors(f, "avg/weights", {k: v for k, v in avg.named_parameters() if not k.startswith("head.")})
        for name, (loss, g, params, logits) in results.items():
            if name == "ls":
                continue
            write_tensors(f, f"{name}/grad", g)
            write_tensors(f, f"{name}/head", {k: params[k] for k in ("head.weight", "head.bias")})
            f[f"{name}/logits"] = logits.float().numpy()
            f[name].attrs["loss"] = loss
        f["images"] = imgs.numpy().astype(np.float32)
        f["labels"] = labels.numpy().astype(np.int64)
        f.attrs["sizes"] = json.dumps(CE_SIZES)
        f.attrs["seeds"] = json.dumps(SEEDS)
        common_attrs(f)
    print(f"wrote {path} ({os.path.getsize(path)} bytes): " + ", ".join(f"{k} {v[0]:.6f}" for k, v in results.items()))
    path = os.path.join(out, "gradients_ls_small.h5")
    with h5py.File(path, "w") as f:
        loss, g, params, logits = results["ls"]
        write_tensors(f, "ls/weights", {k: v for k, v in params.items()})
        write_tensors(f, "ls/grad", g)
        f["ls"].attrs["loss"] = loss
        f["images"] = imgs.numpy().astype(np.float32)
        f["labels"] = labels.numpy().astype(np.int64)
        f.attrs["sizes"] = json.dumps({**CE_SIZES, "depth": 2, "init_values": 0.1})
        f.attrs["seeds"] = json.dumps(SEEDS)
        common_attrs(f)
    print(f"wrote {path} ({os.path.getsize(path)} bytes): ls {loss:.6f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mae", required=True, help="checkout of facebookresearch/mae")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    install_shims()
    os.makedirs(args.out, exist_ok=True)
    mae(args, args.out)
    ce(args.out)


if __name__ == "__main__":
    main()
