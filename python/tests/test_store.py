"""StoreWriter / extract: the store layout of formats.md §1, Grams against the float64 reference, refusals,
atomic writes, appends, hooks."""
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import h5py
import numpy as np
import pytest
import torch

import vitcka
from conftest import ROOT, run_cka


def ids_of(n, prefix="img"):
    return [f"{prefix}/{i:04d}.png" for i in range(n)]


def leftovers(folder):
    return sorted(p for p in os.listdir(folder) if ".partial-" in p)


def test_layout_attributes_and_dtypes(tmp_path):
    torch.manual_seed(0)
    n = 20
    tokens, flat, fmap = torch.randn(n, 5, 6), torch.randn(n, 7), torch.randn(n, 3, 4, 4)
    path = tmp_path / "s.h5"
    with pytest.warns(UserWarning, match="the last 4 of 20 inputs do not fill a Gram batch of 8"), \
            vitcka.StoreWriter(path, model="m", store=("grams", "pooled", "activations"), gram_batch_size=8,
                               classes=["a", "b"], attributes={"seed": 3}, preprocessing="none") as w:
        for s in range(0, n, 10):
            w.add(ids_of(n)[s:s + 10], {"blocks.2": tokens[s:s + 10], "head": flat[s:s + 10],
                                         "layer1": fmap[s:s + 10]}, labels=[i % 2 for i in range(s, s + 10)])
    with h5py.File(path) as f:
        a = dict(f.attrs)
        assert a["format"] == "activations" and a["format_version"] == 1 and a["model"] == "m"
        assert a["created_by"].startswith("vitcka ") and a["seed"] == 3 and a["preprocessing"] == "none"
        assert {"checkpoint", "checkpoint_sha256", "architecture"} <= set(a)
        assert f["inputs/ids"].dtype == h5py.string_dtype("utf-8")
        assert [s.decode() for s in f["inputs/ids"][()]] == ids_of(n)
        assert f["inputs/labels"].dtype == np.int64 and list(f["inputs/labels"][()]) == [i % 2 for i in range(n)]
        assert [s.decode() for s in f["inputs/classes"][()]] == ["a", "b"]
        act = f["activations"]
        expected = {"blocks.2": (5, 6), "blocks.2:cls": (6,), "blocks.2:gap": (6,), "blocks.2:gap_nocls": (6,),
                    "head": (7,), "layer1": (48,), "layer1:gap": (3,)}
        assert {k: act[k].shape[1:] for k in act} == expected
        order = sorted(act, key=lambda k: act[k].attrs["order"])
        assert order == ["blocks.2", "blocks.2:cls", "blocks.2:gap", "blocks.2:gap_nocls", "head", "layer1",
                         "layer1:gap"]
        assert act["blocks.2"].attrs["kind"] == "block" and act["blocks.2"].attrs["block"] == 2
        assert act["blocks.2:cls"].attrs["kind"] == "pooled" and act["blocks.2:cls"].attrs["block"] == 2
        assert act["head"].attrs["block"] == -1
        for k in act:
            assert act[k].dtype == np.float32 and act[k].chunks[1:] == act[k].shape[1:] and act[k].maxshape[0] is None
        np.testing.assert_array_equal(act["blocks.2"][()], tokens.numpy())
        np.testing.assert_allclose(act["blocks.2:cls"][()], tokens[:, 0].numpy())
        np.testing.assert_allclose(act["blocks.2:gap"][()], tokens.mean(1).numpy(), rtol=1e-6)
        np.testing.assert_allclose(act["blocks.2:gap_nocls"][()], tokens[:, 1:].mean(1).numpy(), rtol=1e-6)
        np.testing.assert_array_equal(act["layer1"][()], fmap.reshape(n, -1).numpy())
        np.testing.assert_allclose(act["layer1:gap"][()], fmap.mean((2, 3)).numpy(), rtol=1e-6)
        for k in ("blocks.2", "head", "layer1"):
            g = f["grams/" + k]
            assert g.shape == (2, 8, 8) and g.dtype == np.float64       # 20 inputs: 2 batches of 8, 4 left over
            assert g.attrs["batch_size"] == 8 and g.attrs["tokens"] == "flatten"
            assert g.attrs["centered"] is np.True_ or g.attrs["centered"] == True  # noqa: E712 (h5py bool)
            assert isinstance(g.attrs["centered"], np.bool_)


@pytest.mark.parametrize("precision,tolerance", [("float32", 1e-6), ("float64", 1e-12)])
def test_grams_match_float64_reference_across_unaligned_batches(tmp_path, reference, precision, tolerance):
    # Loader batches of 7 and Gram batches of 8: Gram batches straddle loader batches (the buffered path).
    torch.manual_seed(1)
    n = 40
    x = torch.randn(n, 9, 1000) * 3 + 100        # a large offset: centring must happen before the product
    worst = 0.0
    for tokens in ("flatten", "cls", "gap", "gap_nocls"):
        path = tmp_path / f"g_{tokens}.h5"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with vitcka.StoreWriter(path, store=("grams",), gram_batch_size=8, gram_tokens=tokens,
                                    gram_precision=precision) as w:
                for s in range(0, 35, 7):
                    w.add(ids_of(n)[s:s + 7], {"t": x[s:s + 7]})
        assert any("do not fill a Gram batch" in str(c.message) for c in caught)   # 35 = 4·8 + 3
        with h5py.File(path) as f:
            grams = f["grams/t"][()]
            assert f["grams/t"].attrs["tokens"] == tokens
        assert grams.shape == (4, 8, 8)
        rows = reference.reduce_tokens(x.numpy().astype(np.float64), tokens)
        for k in range(4):
            want = reference.batch_gram(rows[8 * k:8 * k + 8])
            worst = max(worst, np.abs(grams[k] - want).max() / np.abs(want).max())
    print(f"gram_precision={precision}: largest difference {worst:.1e} of the largest entry")
    assert worst <= tolerance


def test_centered_gram_column_blocks_half_inputs_and_tf32_off():
    torch.manual_seed(2)
    x = torch.randn(6, 10000) + 5
    xd = x.double() - x.double().mean(0)
    want = (xd @ xd.T).numpy()
    scale = np.abs(want).max()
    for chunk in (37, 4096, 10 ** 6):        # blocks of columns (a ragged last one) or none
        got = vitcka.centered_gram(x, chunk_columns=chunk)
        assert got.dtype == torch.float64 and np.abs(got.numpy() - want).max() <= 1e-6 * scale
    assert np.abs(vitcka.centered_gram(x, "float64").numpy() - want).max() <= 1e-12 * scale
    h = x.half()
    hd = h.double() - h.double().mean(0)
    assert np.abs(vitcka.centered_gram(h).numpy() - (hd @ hd.T).numpy()).max() <= 1e-6 * scale
    torch.set_float32_matmul_precision("medium")       # a user's setting: restored, not used for Grams
    try:
        assert np.abs(vitcka.centered_gram(x).numpy() - want).max() <= 1e-6 * scale
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision("highest")


def test_duplicate_ids_nan_and_mismatched_layers_leave_nothing(tmp_path):
    x = torch.randn(8, 4)
    path = tmp_path / "bad.h5"
    w = vitcka.StoreWriter(path, store=("pooled",))
    w.add(ids_of(4), {"f": x[:4]})
    with pytest.raises(vitcka.DuplicateIdError, match=r"duplicate input id 'img/0002.png' \(inputs 2 and 6\)"):
        w.add(["x", "y", "img/0002.png", "z"], {"f": x[4:]})
    assert not path.exists() and leftovers(tmp_path) == []

    w = vitcka.StoreWriter(path, store=("pooled", "grams"), gram_batch_size=4)
    y = x.clone()
    y[6, 1] = float("nan")
    w.add(ids_of(4), {"f": y[:4]})
    with pytest.raises(vitcka.NonFiniteError, match=r"layer 'f' holds NaN for input 'img/0006.png'"):
        w.add(ids_of(8)[4:], {"f": y[4:]})
    assert not path.exists() and leftovers(tmp_path) == []

    w = vitcka.StoreWriter(path, store=("pooled",))
    w.add(ids_of(4), {"f": x[:4], "g": x[:4]})
    with pytest.raises(vitcka.StoreError, match="layer 'g' was not given"):
        w.add(ids_of(8)[4:], {"f": x[4:]})
    with pytest.raises(RuntimeError, match="already closed or abandoned"):
        w.close()
    assert not path.exists() and leftovers(tmp_path) == []

    with pytest.raises(vitcka.StoreError, match=r"shape \[3, 4\]; expected \[4, …\]"):
        vitcka.StoreWriter(path).add(ids_of(4), {"f": x[:3]})
    with pytest.raises(ValueError, match="gram_batch_size must be at least 4"):
        vitcka.StoreWriter(path, gram_batch_size=3)
    assert not path.exists() and leftovers(tmp_path) == []


def test_append_adds_layers_in_the_stores_order_and_refuses_reordered_ids(tmp_path, cka_bin):
    torch.manual_seed(3)
    x, y = torch.randn(12, 5), torch.randn(12, 3, 4)
    path = tmp_path / "a.h5"
    with vitcka.StoreWriter(path, model="m", store=("pooled",)) as w:
        w.add(ids_of(12), {"f": x})
    before = path.read_bytes()

    w = vitcka.StoreWriter(path, store=("pooled", "grams"), gram_batch_size=4, append=True)
    with pytest.raises(vitcka.IdOrderError, match=r"input 1 is 'img/0002.png' but the store has 'img/0001.png' "
                                                  r"\(it is input 2 there"):
        w.add([ids_of(12)[0], ids_of(12)[2], ids_of(12)[1]], {"t": y[:3]})
    assert path.read_bytes() == before and leftovers(tmp_path) == []

    w = vitcka.StoreWriter(path, store=("pooled",), append=True)
    w.add(ids_of(12)[:6], {"t": y[:6]})
    with pytest.raises(vitcka.IdOrderError, match="6 inputs given, the store has 12"):
        w.close()
    assert path.read_bytes() == before and leftovers(tmp_path) == []

    with pytest.raises(vitcka.StoreError, match="/activations/f exists already"):
        vitcka.StoreWriter(path, store=("pooled",), append=True).add(ids_of(12), {"f": x})
    assert path.read_bytes() == before

    with vitcka.StoreWriter(path, store=("pooled", "grams"), gram_batch_size=4, append=True) as w:
        for s in range(0, 12, 4):
            w.add(ids_of(12)[s:s + 4], {"t": y[s:s + 4]})
    with h5py.File(path) as f:
        assert f.attrs["model"] == "m"
        np.testing.assert_array_equal(f["activations/f"][()], x.numpy())
        assert f["activations/f"].attrs["order"] == 0 and f["activations/t:cls"].attrs["order"] == 1
        assert f["grams/t"].shape == (3, 4, 4)
    out = run_cka(cka_bin, "inspect", path)
    assert "1 with Grams" in out and "t:gap_nocls" in out


def test_a_killed_writer_leaves_no_file(tmp_path):
    out = tmp_path / "killed.h5"
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        sys.path.insert(0, {str(ROOT / 'python')!r})
        import vitcka
        w = vitcka.StoreWriter({str(out)!r}, store=("pooled", "grams"), gram_batch_size=4)
        w.add([f"i{{k}}" for k in range(8)], {{"f": torch.randn(8, 16)}})
        assert os.path.exists({str(tmp_path / ('.killed.h5.partial-'))!r} + str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not out.exists()


class Net(torch.nn.Module):
    """Tokens [B, T, D], a module run twice, a tuple output, a feature map."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(4, 8)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(3)])
        self.shared = torch.nn.ReLU()
        self.gru = torch.nn.GRU(8, 8, batch_first=True)
        self.conv = torch.nn.Conv2d(1, 2, 3)

    def forward(self, x):                     # x [B, 6, 4]
        h = self.embed(x)
        for b in self.blocks:
            h = self.shared(b(h))
        h = self.shared(h)
        h, _ = self.gru(h)
        return self.conv(h[:, None])


def test_extract_globs_hooks_and_model_state(tmp_path):
    torch.manual_seed(4)
    net = Net().train()
    data = torch.randn(16, 6, 4)
    loader = [(ids_of(16)[s:s + 8], data[s:s + 8], torch.arange(s, s + 8) % 3) for s in (0, 8)]
    assert "blocks.1" in vitcka.hookable_layers(net)
    s = vitcka.extract(net, loader, tmp_path / "e.h5", "blocks.*,gru,conv,embed:cls", gram_batch_size=4,
                       store=("pooled", "grams"), progress=False)
    assert net.training and all(not m._forward_hooks for m in net.modules())
    assert s.examples == 16 and s.gram_layers == ["blocks.0", "blocks.1", "blocks.2", "gru", "conv"]
    with h5py.File(s.path) as f:
        names = sorted(f["activations"], key=lambda k: f["activations"][k].attrs["order"])
        assert names == ["embed:cls"] + [f"blocks.{i}:{p}" for i in range(3) for p in ("cls", "gap", "gap_nocls")] \
            + ["gru:cls", "gru:gap", "gru:gap_nocls", "conv:gap"]
        assert sorted(f["grams"]) == ["blocks.0", "blocks.1", "blocks.2", "conv", "gru"]
        assert list(f["inputs/labels"][()]) == [i % 3 for i in range(16)]
        with torch.no_grad():
            h = net.embed(data)
            outs = []
            for b in net.blocks:
                outs.append(b(h))
                h = torch.relu(outs[-1])
            conv = net.conv(net.gru(torch.relu(h))[0][:, None])
        np.testing.assert_allclose(f["activations/embed:cls"][()], net.embed(data)[:, 0].detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(f["activations/blocks.2:gap"][()], outs[2].mean(1).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(f["activations/conv:gap"][()], conv.mean((2, 3)).numpy(), rtol=1e-5, atol=1e-6)

    with pytest.raises(vitcka.StoreError, match="layer 'shared' given twice for one minibatch"):
        vitcka.extract(net, loader, tmp_path / "x.h5", "shared", progress=False)
    with pytest.raises(ValueError, match="no module matches nothing"):
        vitcka.extract(net, loader, tmp_path / "x.h5", "nothing", progress=False)
    assert net.training and all(not m._forward_hooks for m in net.modules())
    assert not (tmp_path / "x.h5").exists() and leftovers(tmp_path) == []


def test_float16_activations_and_a_plain_progress_line(tmp_path, capsys):
    net = torch.nn.Sequential(torch.nn.Linear(3, 5))
    loader = [(ids_of(8), torch.randn(8, 3))]
    s = vitcka.extract(net, loader, tmp_path / "h.h5", "0", store=("activations",), dtype="float16")
    with h5py.File(s.path) as f:
        assert f["activations/0"].dtype == np.float16 and "grams" not in f
    err = capsys.readouterr().err
    try:
        import tqdm  # noqa: F401
    except ImportError:
        assert "h.h5: 8/8 inputs" in err


def test_pip_installs_the_package(tmp_path):
    # `pip install ./python` (from a copy, so that setuptools' build/ stays out of the source tree); no network:
    # the local setuptools, no dependencies.
    import shutil
    src = tmp_path / "src"
    shutil.copytree(ROOT / "python", src, ignore=shutil.ignore_patterns("tests", "__pycache__", "build", "*.egg-info"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(tmp_path / "site"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", "import vitcka; print(vitcka.__version__, vitcka.__file__)"],
                       capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    version, path = r.stdout.split()
    assert version == vitcka.__version__ and path.startswith(str(tmp_path / "site"))


def test_gap_nocls_leaves_out_the_models_prefix_tokens(tmp_path):
    class WithRegisters(torch.nn.Module):      # timm's attribute: CLS + 2 registers lead each sequence
        num_prefix_tokens = 3

        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4)])

        def forward(self, x):
            return self.blocks[0](x)
    net = WithRegisters()
    x = torch.randn(8, 7, 4)
    s = vitcka.extract(net, [(ids_of(8), x)], tmp_path / "r.h5", "blocks.*", store=("pooled",), progress=False)
    with h5py.File(s.path) as f, torch.no_grad():
        y = net(x)
        np.testing.assert_allclose(f["activations/blocks.0:gap_nocls"][()], y[:, 3:].mean(1).numpy(), rtol=1e-6)
        np.testing.assert_allclose(f["activations/blocks.0:gap"][()], y.mean(1).numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(f["activations/blocks.0:cls"][()], y[:, 0].numpy())


def test_devices_without_float64_sum_float32_products_on_the_cpu(monkeypatch):
    # Apple's MPS has no float64: the products stay float32 on the device and are summed in float64 on the CPU.
    # Simulated on the CPU by declaring its float64 missing.
    torch.manual_seed(5)
    x = torch.randn(8, 9000) * 2 + 50
    xd = x.double() - x.double().mean(0)
    want = (xd @ xd.T).numpy()
    monkeypatch.setattr(vitcka.store, "_float64_on", lambda device: False)
    for precision in ("float32", "float64"):
        got = vitcka.centered_gram(x, precision)
        assert got.dtype == torch.float64 and np.abs(got.numpy() - want).max() <= 1e-6 * np.abs(want).max()


def test_dict_and_tuple_inputs_and_an_explicit_device(tmp_path):
    class TwoInputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(3, 4), torch.nn.Linear(2, 4)

        def forward(self, left, right):
            return self.a(left) + self.b(right)
    net = TwoInputs()
    left, right = torch.randn(8, 3), torch.randn(8, 2)
    for i, inputs in enumerate([{"left": left, "right": right}, (left, right)]):
        s = vitcka.extract(net, [(ids_of(8), inputs)], tmp_path / f"in{i}.h5", "a,b", store=("pooled",),
                           device="cpu", progress=False)
        with h5py.File(s.path) as f, torch.no_grad():
            np.testing.assert_allclose(f["activations/b"][()], net.b(right).numpy(), rtol=1e-6)
