"""Round trip: plain-torch models → vitcka stores → `cka compare` (and the other commands), checked against the
project's float64 minibatch-CKA reference (notebooks-export/reference/cka_reference.py) on float64 features."""
import copy
import csv
import subprocess

import h5py
import numpy as np
import pytest
import torch

import vitcka
from conftest import read_wide_csv, run_cka

N, GRAM_BATCH, LOADER_BATCH = 48, 8, 12        # 6 Grams per layer; loader and Gram batches not aligned


class TokenNet(torch.nn.Module):
    """A small ViT-like model: patch tokens [B, T, D] through residual MLP blocks."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Conv2d(3, 16, 4, 4)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 16))
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.LayerNorm(16), torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 16))
            for _ in range(3))

    def forward(self, x):
        h = self.embed(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(len(h), -1, -1), h], dim=1)
        for b in self.blocks:
            h = h + b(h)
        return h


class ConvNet(torch.nn.Module):
    """A small CNN: feature maps [B, C, H, W], then a linear layer [B, D]."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(6, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8 * 5 * 5, 10)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.flatten(1))


def features64(model, names, x):
    """The outputs of `names` in float64 (a float64 copy of the model), for the reference."""
    m = copy.deepcopy(model).double().eval()
    out, hooks = {}, []
    mods = dict(m.named_modules())
    for n in names:
        hooks.append(mods[n].register_forward_hook(lambda _m, _i, o, n=n: out.__setitem__(n, o.detach().numpy())))
    with torch.no_grad():
        m(x.double())
    for h in hooks:
        h.remove()
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, 12, 12, generator=g)
    labels = torch.arange(N) % 4
    ids = [f"class{int(labels[i])}/{i:03d}.png" for i in range(N)]
    loader = [(ids[s:s + LOADER_BATCH], x[s:s + LOADER_BATCH], labels[s:s + LOADER_BATCH]) for s in range(0, N, LOADER_BATCH)]
    a, b = TokenNet(1), ConvNet(2)
    sa = vitcka.extract(a, loader, tmp / "tokens.h5", "blocks.*", store=("grams", "pooled"), gram_batch_size=GRAM_BATCH,
                        model_name="tokens", classes=[f"class{i}" for i in range(4)], progress=False)
    sb = vitcka.extract(b, loader, tmp / "conv.h5", "conv*,fc", store=("grams", "pooled"), gram_batch_size=GRAM_BATCH,
                        model_name="conv", progress=False)
    return {"tmp": tmp, "x": x, "a": a, "b": b, "sa": sa, "sb": sb}


def reference_matrix(reference, fa, fb, la, lb, tokens="flatten"):
    return np.array([[reference.minibatch_cka(reference.reduce_tokens(fa[p], tokens),
                                              reference.reduce_tokens(fb[q], tokens), GRAM_BATCH)
                      for q in lb] for p in la])


def test_cka_compare_of_bridge_grams_equals_float64_reference(stores, cka_bin, reference):
    tmp, la, lb = stores["tmp"], ["blocks.0", "blocks.1", "blocks.2"], ["conv1", "conv2", "fc"]
    assert stores["sa"].gram_layers == la and stores["sb"].gram_layers == lb
    run_cka(cka_bin, "compare", tmp / "tokens.h5", tmp / "conv.h5", "--layers", "blocks.*", "--layers-b", "conv*,fc",
            "--batch-size", GRAM_BATCH, "--grams", "stored", "--csv", tmp / "ab.csv", "--quiet")
    rows, cols, m = read_wide_csv(tmp / "ab.csv")
    # cka lists layers with activations (here the pooled `fc`) before Grams-only layers.
    assert rows == la and sorted(cols) == sorted(lb)
    m = np.array(m)[:, [cols.index(n) for n in lb]]
    fa = features64(stores["a"], la, stores["x"])
    fb = features64(stores["b"], lb, stores["x"])
    want = reference_matrix(reference, fa, fb, la, lb)
    assert np.abs(want).max() > 0.15 and np.ptp(want) > 0.1     # non-trivial values
    np.testing.assert_allclose(np.array(m), want, rtol=0, atol=1e-5)

    # Pooled features (activations, read by cka compare): mean patch tokens against the CNN's pooled maps.
    run_cka(cka_bin, "compare", tmp / "tokens.h5", tmp / "conv.h5", "--layers", "blocks.*:gap_nocls",
            "--layers-b", "conv1:gap,conv2:gap,fc", "--batch-size", GRAM_BATCH, "--csv", tmp / "pooled.csv", "--quiet")
    rows, cols, m = read_wide_csv(tmp / "pooled.csv")
    assert rows == [f"{n}:gap_nocls" for n in la] and cols == ["conv1:gap", "conv2:gap", "fc"]
    pa = {n: fa[n][:, 1:].mean(1) for n in la}
    pb = {"conv1": gap(fb["conv1"]), "conv2": gap(fb["conv2"]), "fc": fb["fc"]}
    np.testing.assert_allclose(np.array(m), reference_matrix(reference, pa, pb, la, lb), rtol=0, atol=1e-5)


def gap(fmap):
    return fmap.mean(axis=(2, 3))


def test_other_commands_accept_bridge_stores(stores, cka_bin):
    tmp = stores["tmp"]
    out = run_cka(cka_bin, "inspect", tmp / "tokens.h5")
    assert "blocks.2:gap_nocls" in out and "tokens" in out
    run_cka(cka_bin, "compare-all", tmp / "tokens.h5", tmp / "conv.h5", "--layers", "*:gap,*.*:gap", "--batch-size", GRAM_BATCH,
            "--out-dir", tmp / "all", "--quiet")
    with open(tmp / "all" / "all.csv") as f:
        assert f.readline().strip() == "model_a,layer_a,model_b,layer_b,estimator,batch_size,cka"
        assert sum(1 for _ in f) > 0
    # (The toy token model's class token is the same for every input at some depths, and cka knn refuses a
    # constant layer, so the mean-pooled features are scored.)
    run_cka(cka_bin, "knn", tmp / "tokens.h5", "--k", "5", "--layers", "blocks.*:gap", "--csv", tmp / "knn.csv", "--quiet")
    run_cka(cka_bin, "probe", tmp / "tokens.h5", "--split", "0.5", "--layers", "blocks.2:gap", "--csv",
            tmp / "probe.csv", "--quiet")
    for name, header in (("knn.csv", "layer,pooling,k,top1,top5"),
                         ("probe.csv", "layer,pooling,train_top1,test_top1,loss,iterations,stop")):
        with open(tmp / name) as f:
            assert f.readline().strip() == header and f.readline().strip()


def test_bridge_store_with_swapped_inputs_is_refused_by_cka(stores, cka_bin, tmp_path):
    # The format's contract: two stores are compared input by input; our writer records the loader's order.
    with h5py.File(stores["tmp"] / "conv.h5") as f:
        ids = [s.decode() for s in f["inputs/ids"][()]]
    with vitcka.StoreWriter(tmp_path / "swapped.h5", store=("pooled",)) as w:
        w.add([ids[1], ids[0]] + ids[2:], {"f": torch.randn(N, 4)})
    r = subprocess.run([cka_bin, "compare", str(stores["tmp"] / "conv.h5"), str(tmp_path / "swapped.h5"),
                        "--batch-size", str(GRAM_BATCH)], capture_output=True, text=True)
    assert r.returncode == 1 and "another order" in r.stderr


def test_logits_for_cka_agreement(stores, cka_bin, tmp_path):
    x = stores["x"]
    labels = torch.arange(N) % 4
    ids = [f"class{int(labels[i])}/{i:03d}.png" for i in range(N)]
    loader = [(ids[s:s + LOADER_BATCH], x[s:s + LOADER_BATCH], labels[s:s + LOADER_BATCH]) for s in range(0, N, LOADER_BATCH)]
    outs = {}
    for seed in (3, 4):
        net = ConvNet(seed)
        s = vitcka.extract(net, loader, tmp_path / f"logits{seed}.h5", None, store=("logits",), progress=False)
        with h5py.File(s.path) as f:
            assert f["logits"].shape == (N, 10) and f["logits"].dtype == np.float32
            with torch.no_grad():
                np.testing.assert_allclose(f["logits"][()], net.eval()(x).numpy(), rtol=1e-6, atol=1e-6)
            outs[seed] = f["logits"][()]
    run_cka(cka_bin, "agreement", tmp_path / "logits3.h5", tmp_path / "logits4.h5", "--top", "3,5",
            "--csv", tmp_path / "agreement.csv")
    with open(tmp_path / "agreement.csv") as f:
        rows = [line.strip().split(",") for line in f][1:]
    top1 = [float(r[3]) for r in rows if r[0] == "top1_agreement" and r[1] == "all"]
    assert top1 == [pytest.approx(np.mean(outs[3].argmax(1) == outs[4].argmax(1)), abs=1e-12)]


def test_measures_accept_bridge_stores(stores, cka_bin):
    # The new measures read the bridge's pooled features like cka's own: Procrustes against a float64 numpy SVD.
    tmp = stores["tmp"]
    out = tmp / "measures.csv"
    run_cka(cka_bin, "compare", tmp / "tokens.h5", tmp / "conv.h5", "--layers", "blocks.2:gap", "--layers-b", "fc",
            "--measure", "procrustes,mutual-knn", "--long-csv", out, "--quiet")
    with h5py.File(tmp / "tokens.h5") as fa, h5py.File(tmp / "conv.h5") as fb:
        x = fa["activations/blocks.2:gap"][()].astype(np.float64)
        y = fb["activations/fc"][()].astype(np.float64)
    x -= x.mean(0)
    y -= y.mean(0)
    expected = np.linalg.svd(x.T @ y, compute_uv=False).sum() / (np.linalg.norm(x) * np.linalg.norm(y))
    with open(out) as f:
        rows = {r["measure"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"procrustes", "mutual-knn"}
    assert abs(float(rows["procrustes"]["value"]) - expected) <= 1e-6 * abs(expected)
    assert 0 <= float(rows["mutual-knn"]["value"]) <= 1
