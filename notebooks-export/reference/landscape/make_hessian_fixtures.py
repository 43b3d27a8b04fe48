#!/usr/bin/env python3
"""Writes Tests/CKALandscapeTests/Fixtures/hessian_small.h5: exact Hessian quantities of a tiny timm ViT's
cross-entropy loss by PyTorch float64 double-backward (developer-run; needs torch, timm 1.0.x, numpy, h5py; not
run by CI). PyHessian is not used (not a dependency of this project); its formulas are reimplemented here in float64:

    Hutchinson (pyhessian.hessian.trace):   tr(H) ≈ mean_s vₛᵀ H vₛ, vₛ Rademacher (±1 entries)
    SLQ (pyhessian.hessian.density):         per run, Lanczos from v/‖v‖ (v Rademacher) with full
                                             re-orthogonalisation, m steps → T = tridiag(α, β); nodes θⱼ and
                                             weights τⱼ = (first component of T's eigenvector j)²; the density is
                                             Σⱼ τⱼ·N(t; θⱼ, σ²) averaged over runs, and its k-th moment (σ → 0) is
                                             mean_runs Σⱼ τⱼ θⱼᵏ = mean_runs vᵀHᵏv / vᵀv (exact for k < 2m).

    python3 make_hessian_fixtures.py [--out DIR]

Model (timm VisionTransformer, set_fused_attn(False)): img 8, patch 4 (4 patches), width 8, depth 2, 2 heads,
mlp_ratio 2, LayerNorm eps 1e-6, 3 classes, global_pool='token' — 1 683 parameters, so the full Hessian is formed
(torch.autograd.functional.hessian). Weights: timm's init with torch seed 41, then every tensor += 0.2·N(0,1)
(seed 42): LayerNorm weights and biases are not 1 and 0, biases are not 0. Weights are rounded to float32 (what
the Swift side reads) and all math is then float64. Images N(0,1) [6, 3, 8, 8] (seed 43), labels (seed 44).
Loss = F.cross_entropy(logits, labels) (mean over the 6 examples).

Layout (/ce):
  weights/<name>                 float32, PyTorch shapes (timm names, head included)
  pixels [6,3,8,8], labels [6]
  v/<name> [2, shape]            two Gaussian test vectors (seed 45)
  hv/<name> [2, shape]           H·v by double-backward
  rademacher/<name> [S, shape]   float16 (±1), S = 16 Rademacher probes (seed 46) for the Hutchinson traces
  slq_probes/<name> [R, shape]   float16 (±1), R = 64 Rademacher probes (seed 47) for the SLQ density
  attributes: loss, eigenvalues_top (the 5 largest, exact), trace_exact, hutchinson (mean vᵀHv over S, the
     whole model), hutchinson_stderr, moments_exact (mean of λᵏ over all eigenvalues, k = 1..4),
     moments_probes (mean over R of vᵀHᵏv/vᵀv: what SLQ with m ≥ 3 steps gives for these probes, exactly),
     scopes (the per-block scopes), trace_<scope>_exact, hutchinson_<scope> (mean over S of v_bᵀH_bb v_b,
     v_b = the probe restricted to the scope), trace_blockdiag_exact (Σ over scopes of tr H_bb = tr H).
Scopes: patch_embed (patch_embed.*, cls_token, pos_embed), blocks.0, blocks.1, norm, head.

Also writes Tests/CKALandscapeTests/Fixtures/path_small.h5 (`cka landscape --from A --to B`): the same
architecture; B = the model above, A = B's backbone + 0.3·N(0,1) (seed 48) WITHOUT a head (a "pre-trained"
backbone; B is its "fine-tuned" version with a head). The path θ(t) = (1 − t)·θ_A + t·θ_B over the shared
(backbone) parameters, the head held at B's value, evaluated in float64 for t in -0.25:1.25:7 under the
cross-entropy of B's head on the 6 examples. Layout: a/<name>, b/<name> (float32), pixels, labels, t, loss.

And the MAE group /mae of hessian_small.h5: the student of Tests/CKAViTTests/OfficialFixtures/
gradients_mae_small.h5 (official models_mae.py weights, images, noise → masks; norm_pix_loss) through a plain
float64 reimplementation of models_mae.py's forward_loss (mae_loss below), which is first checked against that
fixture's loss and autograd gradients (grad_normpix, written from the official code); then
  v/<name> [1, shape]   one Gaussian vector (seed 49), hv/<name> [1, shape] its H·v by double-backward.
"""
import argparse
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "../../.."))
OUT = os.path.join(REPO, "Tests/CKALandscapeTests/Fixtures")
N, S, R = 6, 16, 64


def unflatten(x, names, shapes):
    """The flat vector x as a dict of the named tensors, in the order of names, with the given shapes."""
    out, o = {}, 0
    for n in names:
        k = int(np.prod(shapes[n]))
        out[n] = x[o:o + k].reshape(shapes[n])
        o += k
    return out


def scope_of(name):
    if name.startswith(("patch_embed.", "cls_token", "pos_embed")):
        return "patch_embed"
    if name.startswith("blocks."):
        return ".".join(name.split(".")[:2])
    if name.startswith(("norm.", "fc_norm.")):
        return "norm"
    return "head"


def mae_loss(p, imgs, noise, ratio=0.75, patch=4, heads=4, dec_heads=4, norm_pix=True):
    """models_mae.py (facebookresearch/mae@efb2a80) MaskedAutoencoderViT.forward with the noise given: patchify,
    random_masking, forward_encoder, forward_decoder, forward_loss; timm blocks (pre-norm, eps 1e-6, exact GELU)."""
    n, c, hh, ww = imgs.shape
    h, w = hh // patch, ww // patch

    def block(x, pre, nh):
        def ln(x, name):
            return F.layer_norm(x, x.shape[-1:], p[name + ".weight"], p[name + ".bias"], eps=1e-6)
        b, t, d = x.shape
        y = ln(x, pre + "norm1")
        q, k, v = F.linear(y, p[pre + "attn.qkv.weight"], p[pre + "attn.qkv.bias"]).reshape(
            b, t, 3, nh, d // nh).permute(2, 0, 3, 1, 4)
        a = ((q * (d // nh) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        x = x + F.linear((a @ v).transpose(1, 2).reshape(b, t, d), p[pre + "attn.proj.weight"], p[pre + "attn.proj.bias"])
        y = ln(x, pre + "norm2")
        y = F.linear(F.gelu(F.linear(y, p[pre + "mlp.fc1.weight"], p[pre + "mlp.fc1.bias"])),
                     p[pre + "mlp.fc2.weight"], p[pre + "mlp.fc2.bias"])
        return x + y

    x = F.conv2d(imgs, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2) + p["pos_embed"][:, 1:, :]
    L = x.shape[1]
    keep = int(L * (1 - ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).repeat(1, 1, x.shape[-1]))
    mask = torch.ones(n, L, dtype=x.dtype)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    cls = (p["cls_token"] + p["pos_embed"][:, :1, :]).expand(n, -1, -1)
    x = torch.cat([cls, x], 1)
    depth = len({k.split(".")[1] for k in p if k.startswith("blocks.")})
    for i in range(depth):
        x = block(x, f"blocks.{i}.", heads)
    x = F.layer_norm(x, x.shape[-1:], p["norm.weight"], p["norm.bias"], eps=1e-6)
    x = F.linear(x, p["decoder_embed.weight"], p["decoder_embed.bias"])
    tokens = p["mask_token"].repeat(n, L + 1 - x.shape[1], 1)
    x_ = torch.cat([x[:, 1:, :], tokens], 1)
    x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
    x = torch.cat([x[:, :1, :], x_], 1) + p["decoder_pos_embed"]
    ddepth = len({k.split(".")[1] for k in p if k.startswith("decoder_blocks.")})
    for i in range(ddepth):
        x = block(x, f"decoder_blocks.{i}.", dec_heads)
    x = F.layer_norm(x, x.shape[-1:], p["decoder_norm.weight"], p["decoder_norm.bias"], eps=1e-6)
    pred = F.linear(x, p["decoder_pred.weight"], p["decoder_pred.bias"])[:, 1:, :]
    target = torch.einsum("nchpwq->nhwpqc", imgs.reshape(n, c, h, patch, w, patch)).reshape(n, h * w, patch * patch * c)
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


def mae_group(f):
    src = h5py.File(os.path.join(REPO, "Tests/CKAViTTests/OfficialFixtures/gradients_mae_small.h5"), "r")
    names = sorted(src["student"].keys())
    weights = {n: torch.from_numpy(src["student"][n][:]).double() for n in names}
    imgs = torch.from_numpy(src["images"][:]).double()
    noise = torch.from_numpy(src["noise"][:]).double()
    shapes = {n: weights[n].shape for n in names}
    sizes = [weights[n].numel() for n in names]

    def unflat(x):
        return unflatten(x, names, shapes)

    theta = torch.cat([weights[n].reshape(-1) for n in names]).requires_grad_(True)
    loss = mae_loss(unflat(theta), imgs, noise)
    (g,) = torch.autograd.grad(loss, theta, create_graph=True)
    ref = src["grad_normpix"]
    assert abs(float(loss) - ref.attrs["loss"]) <= 1e-6 * abs(ref.attrs["loss"]), (float(loss), ref.attrs["loss"])
    gd = unflat(g.detach())
    worst = max(float(torch.linalg.norm(gd[n] - torch.from_numpy(ref[n][:]).double()) /
                      max(float(torch.linalg.norm(torch.from_numpy(ref[n][:]).double())), 1e-30)) for n in names)
    assert worst <= 1e-5, worst
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(49), dtype=torch.float64)
    (hv,) = torch.autograd.grad(g @ v, theta)
    grp = f.create_group("mae")
    o = 0
    for n, k in zip(names, sizes):
        grp[f"v/{n}"] = v[o:o + k].reshape((1,) + tuple(shapes[n])).float().numpy()
        grp[f"hv/{n}"] = hv[o:o + k].reshape((1,) + tuple(shapes[n])).float().numpy()
        o += k
    grp.attrs["loss"] = float(loss)
    grp.attrs["gradient_check_worst_relative"] = worst
    print(f"mae: {theta.numel()} parameters, loss {float(loss):.10g} (fixture {ref.attrs['loss']:.10g}), "
          f"gradients within {worst:.2g} of grad_normpix")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    import timm
    from timm.models.vision_transformer import VisionTransformer
    timm.layers.set_fused_attn(False)
    torch.manual_seed(41)
    model = VisionTransformer(img_size=8, patch_size=4, in_chans=3, embed_dim=8, depth=2, num_heads=2, mlp_ratio=2,
                              num_classes=3, global_pool="token")
    g = torch.Generator().manual_seed(42)
    with torch.no_grad():
        for p in model.parameters():
            p += 0.2 * torch.randn(p.shape, generator=g)
            p.copy_(p.float())
    model = model.double().eval()
    names = [n for n, _ in model.named_parameters()]
    shapes = {n: p.shape for n, p in model.named_parameters()}
    sizes = [shapes[n].numel() for n in names]
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    pixels = torch.randn((N, 3, 8, 8), generator=torch.Generator().manual_seed(43)).float().double()
    labels = torch.randint(0, 3, (N,), generator=torch.Generator().manual_seed(44))

    def unflat(x):
        return unflatten(x, names, shapes)

    def loss_of(flat):
        return F.cross_entropy(functional_call(model, unflat(flat), (pixels,)), labels)

    theta = torch.cat([weights[n].reshape(-1) for n in names])
    n_params = theta.numel()

    def hvp(v):
        x = theta.clone().requires_grad_(True)
        (gr,) = torch.autograd.grad(loss_of(x), x, create_graph=True)
        (hv,) = torch.autograd.grad(gr @ v, x)
        return hv

    H = torch.autograd.functional.hessian(loss_of, theta).detach()
    H = 0.5 * (H + H.T)
    # The double-backward HVP and the formed Hessian agree (a check of this script).
    vt = torch.randn(n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    assert torch.linalg.norm(hvp(vt) - H @ vt) <= 1e-10 * torch.linalg.norm(H @ vt)
    lam = torch.linalg.eigvalsh(H).numpy()

    def rademacher(count, seed):
        gen = torch.Generator().manual_seed(seed)
        return (torch.randint(0, 2, (count, n_params), generator=gen) * 2 - 1).double()

    vs = torch.randn((2, n_params), generator=torch.Generator().manual_seed(45), dtype=torch.float64)
    hvs = torch.stack([hvp(v) for v in vs])
    rad = rademacher(S, 46)
    quad = torch.stack([v @ (H @ v) for v in rad]).numpy()
    probes = rad
    slq = rademacher(R, 47)
    moments_probes = []
    for k in range(1, 5):
        Hk = torch.linalg.matrix_power(H, k)
        moments_probes.append(float(torch.mean(torch.stack([v @ (Hk @ v) / (v @ v) for v in slq]))))
    scope_names = []
    for n in names:
        if scope_of(n) not in scope_names:
            scope_names.append(scope_of(n))
    index = np.concatenate([[scope_of(n)] * k for n, k in zip(names, sizes)])

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "hessian_small.h5")
    with h5py.File(path + ".tmp", "w") as f:
        grp = f.create_group("ce")

        def write(group, batch, dtype=np.float32):
            for n in names:
                o = sum(sizes[:names.index(n)])
                grp[f"{group}/{n}"] = batch[:, o:o + sizes[names.index(n)]].reshape(
                    (batch.shape[0],) + tuple(shapes[n])).numpy().astype(dtype)

        for n in names:
            grp[f"weights/{n}"] = weights[n].float().numpy()
        grp["pixels"] = pixels.float().numpy()
        grp["labels"] = labels.numpy().astype(np.int64)
        write("v", vs)
        write("hv", hvs)
        write("rademacher", probes, np.float16)
        write("slq_probes", slq, np.float16)
        a = grp.attrs
        a["loss"] = float(loss_of(theta))
        a["n_parameters"] = n_params
        a["eigenvalues_top"] = np.sort(lam)[::-1][:5]
        a["trace_exact"] = float(np.sum(lam))
        a["hutchinson"] = float(np.mean(quad))
        a["hutchinson_stderr"] = float(np.std(quad, ddof=1) / np.sqrt(S))
        a["moments_exact"] = np.array([np.mean(lam ** k) for k in range(1, 5)])
        a["moments_probes"] = np.array(moments_probes)
        a.create("scopes", data=np.array(scope_names, dtype=object), dtype=h5py.string_dtype())
        blockdiag = 0.0
        for s in scope_names:
            m = torch.tensor(index == s)
            Hb = H[m][:, m]
            a[f"trace_{s}_exact"] = float(torch.trace(Hb))
            blockdiag += float(torch.trace(Hb))
            a[f"hutchinson_{s}"] = float(torch.mean(torch.stack([v[m] @ (Hb @ v[m]) for v in probes])))
            a[f"eigenvalue_top_{s}"] = float(torch.linalg.eigvalsh(Hb)[-1])
        a["trace_blockdiag_exact"] = blockdiag
        mae_group(f)
        a["timm"] = str(timm.__version__)
        a["torch"] = str(torch.__version__)
        a["generator"] = "notebooks-export/reference/landscape/make_hessian_fixtures.py"
    os.replace(path + ".tmp", path)

    # The path fixture.
    gen = torch.Generator().manual_seed(48)
    wa = {n: (w + 0.3 * torch.randn(w.shape, generator=gen, dtype=torch.float64)).float().double()
          for n, w in weights.items() if not n.startswith("head.")}
    ts = np.linspace(-0.25, 1.25, 7)
    losses = []
    for t in ts:
        p = {n: ((1 - t) * wa[n] + t * weights[n]) if n in wa else weights[n] for n in names}
        losses.append(float(F.cross_entropy(functional_call(model, p, (pixels,)), labels)))
    ppath = os.path.join(args.out, "path_small.h5")
    with h5py.File(ppath + ".tmp", "w") as f:
        for n in names:
            f[f"b/{n}"] = weights[n].float().numpy()
            if n in wa:
                f[f"a/{n}"] = wa[n].float().numpy()
        f["pixels"] = pixels.float().numpy()
        f["labels"] = labels.numpy().astype(np.int64)
        f["t"] = ts
        f["loss"] = np.array(losses)
        f.attrs["generator"] = "notebooks-export/reference/landscape/make_hessian_fixtures.py"
    os.replace(ppath + ".tmp", ppath)
    print(f"{ppath}: losses {np.round(losses, 6)}")
    print(f"{path}: {n_params} parameters, λ_top {np.sort(lam)[::-1][:3]}, tr {np.sum(lam):.6g}, "
          f"Hutchinson {np.mean(quad):.6g}, moments {[f'{np.mean(lam ** k):.4g}' for k in range(1, 5)]} "
          f"(probes {[f'{x:.4g}' for x in moments_probes]})")


if __name__ == "__main__":
    main()
