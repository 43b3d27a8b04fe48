#!/usr/bin/env python3
"""Writes Tests/CKALandscapeTests/Fixtures/trajectory_small.h5: float64 references for `cka landscape --pca-of`
(trajectory planes) and `--curvature-map` (|λ_min/λ_max| of the Hessian at grid points), on the tiny timm ViT of
hessian_small.h5 (its weights, pixels and labels are read from there). Developer-run; needs torch, numpy, h5py (no
timm: the ViT's cross-entropy is reimplemented below as `vit_ce` and checked first against hessian_small.h5's loss
and its double-backward H·v, which timm produced). Not run by CI.

    python3 make_trajectory_fixtures.py [--out DIR]

/pca — a "training trajectory" of 5 checkpoints ending at the final one θ_f (hessian_small's weights):
  θ_i = θ_f + a_i·u + b_i·w + 0.01·n_i (u, w, n_i Gaussian, seeds 60–66; a_i, b_i below), rounded to float32.
  checkpoints/<i>/<name> float32 (i = 0…4, every tensor, head included), final/<name> float32.
  The reference follows tomgoldstein/loss-landscape's setup_PCA_directions / project_trajectory with
  `--ignore biasbn`: d_i = θ_i − θ_f over every tensor, 1-D tensors (biases, LayerNorm) set to zero; sklearn's
  PCA(n_components=2) on the rows d_i, i.e. the rows are centred (mean row subtracted) and the principal
  directions are the first two right singular vectors of the centred matrix (computed here by numpy's SVD in
  float64); explained_variance_ratio = s_k² / Σ s²; the trajectory coordinates are d_i · pc_k (not centred).
  reference/x/<name>, reference/y/<name> float64 (the two unit directions; their sign is arbitrary),
  reference attrs: explained_variance_ratio [2], explained_variance [2] (s_k²/(N−1)), coordinates [5·2]
  (row-major [5, 2]).

/curvature — directions dx/<name>, dy/<name> float32 (Gaussian, seeds 70/71, 1-D tensors zero, each other
  tensor rescaled to 0.3·‖w‖/‖d‖ of its weight), grid x = y = [-0.5, 0.5] (flat index iy·2 + ix); at every point
  θ_f + x·dx + y·dy the Hessian of the cross-entropy over all 1 683 parameters is formed in float64
  (row by row by double backward) and attrs lambda_min [4], lambda_max [4], ratio [4] = |λ_min/λ_max| are stored.

/slq — attrs probe_std [4]: the standard deviation of one Rademacher probe's vᵀHᵏv/vᵀv at θ_f, exactly
  √(2·(‖Hᵏ‖_F² − Σᵢ (Hᵏ)ᵢᵢ²))/n, k = 1…4 (the spread of the SLQ moment estimate per run).
"""
import argparse
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from make_hessian_fixtures import unflatten  # the same flattening as the Hessian fixtures

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "../../.."))
FIX = os.path.join(REPO, "Tests/CKALandscapeTests/Fixtures")


def vit_ce(p, imgs, labels, heads=2, patch=4):
    """timm 1.0 VisionTransformer (global_pool='token', pre-norm blocks, LayerNorm eps 1e-6, exact GELU, no fused
    attention) followed by F.cross_entropy, written out."""
    def ln(x, name):
        return F.layer_norm(x, x.shape[-1:], p[name + ".weight"], p[name + ".bias"], eps=1e-6)
    x = F.conv2d(imgs, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)
    n = x.shape[0]
    x = torch.cat([p["cls_token"].expand(n, -1, -1), x], 1) + p["pos_embed"]
    depth = len({k.split(".")[1] for k in p if k.startswith("blocks.")})
    for i in range(depth):
        pre = f"blocks.{i}."
        b, t, d = x.shape
        y = ln(x, pre + "norm1")
        q, k, v = F.linear(y, p[pre + "attn.qkv.weight"], p[pre + "attn.qkv.bias"]).reshape(
            b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        a = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        x = x + F.linear((a @ v).transpose(1, 2).reshape(b, t, d), p[pre + "attn.proj.weight"],
                         p[pre + "attn.proj.bias"])
        y = ln(x, pre + "norm2")
        x = x + F.linear(F.gelu(F.linear(y, p[pre + "mlp.fc1.weight"], p[pre + "mlp.fc1.bias"])),
                         p[pre + "mlp.fc2.weight"], p[pre + "mlp.fc2.bias"])
    x = ln(x, "norm")
    return F.cross_entropy(F.linear(x[:, 0], p["head.weight"], p["head.bias"]), labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=FIX)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    src = h5py.File(os.path.join(FIX, "hessian_small.h5"), "r")["ce"]
    names = sorted(src["weights"].keys())
    W = {n: torch.from_numpy(src["weights"][n][:]).double() for n in names}
    pixels = torch.from_numpy(src["pixels"][:]).double()
    labels = torch.from_numpy(src["labels"][:])
    shapes = {n: W[n].shape for n in names}
    sizes = [W[n].numel() for n in names]

    def unflat(x):
        return unflatten(x, names, shapes)

    def flat(p):
        return torch.cat([p[n].reshape(-1) for n in names])

    def loss_at(x):
        return vit_ce(unflat(x), pixels, labels)

    def hessian(p):
        """The Hessian at p, row by row: row j = ∂(∂L/∂θ_j)/∂θ by double backward. (torch 2.13's
        torch.func.hessian and torch.autograd.functional.hessian both return a wrong, asymmetric matrix for this
        model — off by 6 % in H·v —, so they are not used; the rows are checked for symmetry and against H·v.)"""
        x = p.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_at(x), x, create_graph=True)
        H = torch.stack([torch.autograd.grad(g[j], x, retain_graph=True)[0] for j in range(p.numel())])
        assert torch.max(torch.abs(H - H.T)) <= 1e-10 * torch.max(torch.abs(H)), float(torch.max(torch.abs(H - H.T)))
        v = torch.randn(p.numel(), generator=torch.Generator().manual_seed(7))
        (hv,) = torch.autograd.grad(g @ v, x, retain_graph=True)
        assert torch.linalg.norm(H @ v - hv) <= 1e-10 * torch.linalg.norm(hv)
        return 0.5 * (H + H.T)

    theta = flat(W)
    # The reimplementation against timm (hessian_small.h5): the loss and the double-backward H·v.
    assert abs(float(loss_at(theta)) - src.attrs["loss"]) <= 1e-12 * src.attrs["loss"]
    x = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_at(x), x, create_graph=True)
    for i in range(2):
        v = flat({n: torch.from_numpy(src[f"v/{n}"][i]).double() for n in names})
        ref = flat({n: torch.from_numpy(src[f"hv/{n}"][i]).double() for n in names})
        (hv,) = torch.autograd.grad(g @ v, x, retain_graph=True)
        assert torch.linalg.norm(hv - ref) <= 1e-6 * torch.linalg.norm(ref), float(torch.linalg.norm(hv - ref))

    def gauss(seed, shape):
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    out = os.path.join(args.out, "trajectory_small.h5")
    with h5py.File(out + ".tmp", "w") as f:
        f.attrs["generator"] = "notebooks-export/reference/landscape/make_trajectory_fixtures.py"
        f.attrs["torch"] = str(torch.__version__)
        # --- PCA of a trajectory
        P = theta.numel()
        u, w = gauss(60, (P,)), gauss(61, (P,))
        a = [1.0, 0.8, 0.5, 0.3, 0.1]
        b = [0.0, 0.3, 0.4, 0.2, 0.05]
        ckpts = []
        for i in range(5):
            t = (theta + 0.05 * (a[i] * u + b[i] * w) + 0.005 * gauss(62 + i, (P,))).float().double()
            ckpts.append(t)
            for n, v in unflat(t).items():
                f[f"pca/checkpoints/{i}/{n}"] = v.float().numpy()
        for n in names:
            f[f"pca/final/{n}"] = W[n].float().numpy()
        keep = torch.cat([torch.full((k,), float(len(shapes[n]) > 1)) for n, k in zip(names, sizes)])
        X = torch.stack([(c - theta) * keep for c in ckpts]).numpy()
        Xc = X - X.mean(axis=0)
        _, s, vt = np.linalg.svd(Xc, full_matrices=False)
        pcs = vt[:2]
        ratio = s[:2] ** 2 / np.sum(s ** 2)
        coords = X @ pcs.T
        for k, axis in enumerate(["x", "y"]):
            for n, v in unflat(torch.from_numpy(pcs[k])).items():
                f[f"pca/reference/{axis}/{n}"] = v.numpy()
        r = f["pca/reference"].attrs
        r["explained_variance_ratio"] = ratio
        r["explained_variance"] = s[:2] ** 2 / (len(ckpts) - 1)
        r["coordinates"] = coords.reshape(-1)
        print(f"pca: ratios {ratio}, coordinates {np.round(coords, 5).tolist()}")

        # --- curvature map
        def direction(seed):
            d = {}
            for n, k in zip(names, sizes):
                if len(shapes[n]) <= 1:
                    d[n] = torch.zeros(shapes[n])
                else:
                    r_ = gauss(seed * 100 + names.index(n), shapes[n])
                    d[n] = (r_ * 0.3 * torch.linalg.norm(W[n]) / torch.linalg.norm(r_)).float().double()
            return d
        dx, dy = direction(70), direction(71)
        for n in names:
            f[f"curvature/dx/{n}"] = dx[n].float().numpy()
            f[f"curvature/dy/{n}"] = dy[n].float().numpy()
        grid = [-0.5, 0.5]
        lmin, lmax = [], []
        for yv in grid:
            for xv in grid:
                # θ₀ + x·dx + y·dy in float32, as the Swift side forms it.
                p = flat({n: (W[n].float() + float(xv) * dx[n].float() + float(yv) * dy[n].float()).double()
                          for n in names})
                lam = torch.linalg.eigvalsh(hessian(p))
                lmin.append(float(lam[0]))
                lmax.append(float(lam[-1]))
        c = f["curvature"].attrs
        c["x"] = np.array(grid)
        c["lambda_min"] = np.array(lmin)
        c["lambda_max"] = np.array(lmax)
        c["ratio"] = np.abs(np.array(lmin) / np.array(lmax))
        print(f"curvature: λ_min {np.round(lmin, 5)}, λ_max {np.round(lmax, 5)}")

        # --- SLQ: the spread of one probe's moment estimate
        H = hessian(theta)
        lam = torch.linalg.eigvalsh(H).numpy()
        # The exact moments agree with hessian_small.h5's (formed by an older torch).
        assert np.allclose([np.mean(lam ** k) for k in range(1, 5)], src.attrs["moments_exact"], rtol=1e-9), (
            [np.mean(lam ** k) for k in range(1, 5)], src.attrs["moments_exact"])
        std = []
        for k in range(1, 5):
            A = torch.linalg.matrix_power(H, k).numpy()
            std.append(np.sqrt(2 * (np.sum(A * A) - np.sum(np.diag(A) ** 2))) / P)
        f.create_group("slq").attrs["probe_std"] = np.array(std)
        print(f"slq: per-probe std of the moments {np.round(std, 5)}")
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
