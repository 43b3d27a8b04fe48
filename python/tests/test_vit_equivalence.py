"""The bridge on a PyTorch ViT and `cka extract` on the same checkpoint and pixels write interchangeable stores.

The checkpoint is the notebook test's tiny seeded ViT (Tests/Notebooks/make_tiny_vit.py: timm names, 12 blocks,
width 64, patch 8, 32-pixel input). The PyTorch model (plain_vit.py) is a plain-torch re-implementation of timm's
VisionTransformer forward with timm's module names, so that the same `--layers` globs select the same hooks.
"""
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import vitcka
from conftest import ROOT, read_wide_csv, run_cka
from plain_vit import VisionTransformer

N, BATCH = 40, 8
LAYERS = "blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*.mlp.act,blocks.*,norm,patch_embed"
POOLED = "blocks.*,norm"                     # `cka extract` pools block outputs and the final norm


@pytest.fixture(scope="module")
def pair(tmp_path_factory, cka_bin):
    tmp = tmp_path_factory.mktemp("vit")
    ckpt = tmp / "tiny-vit.safetensors"
    subprocess.run([sys.executable, str(ROOT / "Tests/Notebooks/make_tiny_vit.py"), str(ckpt)], check=True,
                   capture_output=True)
    pixels = np.random.default_rng(0).standard_normal((N, 3, 32, 32)).astype(np.float32)
    ids = [f"img/{i:03d}.png" for i in range(N)]
    with h5py.File(tmp / "pixels.h5", "w") as f:
        f.create_dataset("inputs/ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("inputs/pixels", data=pixels)
    run_cka(cka_bin, "extract", "--checkpoint", ckpt, "--inputs", tmp / "pixels.h5", "--out", tmp / "cka.h5",
            "--layers", LAYERS, "--store", "grams,pooled", "--gram-batch-size", BATCH, "--batch-size", BATCH,
            "--model", "tiny", "--quiet")
    model = VisionTransformer.from_safetensors(ckpt)
    x = torch.from_numpy(pixels)
    loader = [(ids[s:s + 2 * BATCH], x[s:s + 2 * BATCH]) for s in range(0, N, 2 * BATCH)]   # 16, 16, 8
    s = vitcka.extract(model, loader, tmp / "torch.h5", LAYERS, store=("grams", "pooled"), gram_batch_size=BATCH,
                       model_name="tiny-torch", pooled_layers=POOLED, progress=False)
    assert s.examples == N
    return tmp


def test_same_layout_as_cka_extract(pair):
    with h5py.File(pair / "cka.h5") as a, h5py.File(pair / "torch.h5") as b:
        assert list(a["inputs/ids"][()]) == list(b["inputs/ids"][()])
        assert sorted(a["activations"]) == sorted(b["activations"]) and len(a["activations"]) == 13 * 3
        assert sorted(a["grams"]) == sorted(b["grams"]) and len(a["grams"]) == 12 * 5 + 2
        for k in a["activations"]:
            da, db = a["activations"][k], b["activations"][k]
            assert (da.shape, da.dtype, da.chunks, da.maxshape) == (db.shape, db.dtype, db.chunks, db.maxshape), k
            assert {n: da.attrs[n] for n in ("order", "kind", "block")} == \
                   {n: db.attrs[n] for n in ("order", "kind", "block")}, k
        for k in a["grams"]:
            ga, gb = a["grams"][k], b["grams"][k]
            assert (ga.shape, ga.dtype, ga.chunks, ga.maxshape) == (gb.shape, gb.dtype, gb.chunks, gb.maxshape), k
            assert dict(ga.attrs) == dict(gb.attrs), k
        assert set(a.attrs) <= set(b.attrs) | {"source"}
        assert b.attrs["format"] == "activations" and b.attrs["format_version"] == 1


def test_pooled_features_and_grams_equal_cka_extract(pair):
    worst = {}
    with h5py.File(pair / "cka.h5") as a, h5py.File(pair / "torch.h5") as b:
        for group in ("activations", "grams"):
            for k in a[group]:
                x, y = a[group][k][()].astype(np.float64), b[group][k][()].astype(np.float64)
                worst[f"{group}/{k}"] = np.abs(x - y).max() / np.abs(x).max()
    name = max(worst, key=worst.get)
    print(f"largest relative difference: {worst[name]:.2e} ({name})")
    assert worst[name] <= 1e-5, name


def test_cka_matrices_equal_cka_extract(pair, cka_bin):
    mats = {}
    for label, files in {"cka": ["cka.h5"], "torch": ["torch.h5"], "cross": ["cka.h5", "torch.h5"]}.items():
        out = pair / f"{label}.csv"
        run_cka(cka_bin, "compare", *[pair / f for f in files], "--batch-size", BATCH, "--csv", out, "--quiet",
                "--layers", "blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*.mlp.act,blocks.*,norm,patch_embed")
        rows, cols, m = read_wide_csv(out)
        mats[label] = (rows, cols, np.array(m))
    rows, cols, ref = mats["cka"]
    assert ref.shape == (62, 62) and rows == cols
    for label in ("torch", "cross"):
        assert mats[label][0] == rows and mats[label][1] == cols
        diff = np.abs(mats[label][2] - ref).max()
        print(f"{label} vs cka extract: max |ΔCKA| = {diff:.2e}")
        assert diff <= 1e-5, label
    assert np.abs(np.diag(mats["cross"][2]) - 1).max() <= 1e-5
