#!/usr/bin/env python3
"""Generate the notebooks of notebooks-export/ (standard library only: writes nbformat-4 JSON directly).

    python3 notebooks-export/make_notebooks.py [NAME…]      # rewrites the .ipynb files (or those named), outputs cleared
    python3 notebooks-export/make_notebooks.py --check      # exit 1 unless the committed notebooks (executed or
                                                            # not) have exactly the generated cells

The notebooks READ the toolkit's HDF5/CSV outputs (h5py, pandas, matplotlib); they never recompute CKA
(05_from_pytorch also runs a small PyTorch model through python/vitcka, then calls `cka`).
Each one starts with the `cka` commands that produce its inputs for the official ViT-B/16 checkpoints
(MoCo-v3, DINO, MAE) and defaults to the files of `make demo` (../demo-output/, see scripts/demo.sh and
scripts/notebook_inputs.sh). Set CKA_OUT=/path/to/your/results to point them elsewhere.
The committed copies are executed on the demo outputs (see notebooks-export/README.md, "Regenerate").
"""
import json
import os
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))


def md(*parts):
    """A Markdown cell; each part is dedented on its own (indented literals mixed with shared snippets)."""
    return {"cell_type": "markdown", "metadata": {}, "source": "".join(textwrap.dedent(p) for p in parts).strip("\n")}


def code(src):
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": textwrap.dedent(src).strip("\n")}


def notebook(cells, prefix):
    for i, c in enumerate(cells):   # stable cell ids (nbformat 4.5), so regenerating gives no spurious diff
        c["id"] = f"{prefix}-{i:02d}"
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


# Shared: where the official checkpoints are and how to extract them (the first cell of every notebook).
CHECKPOINTS = """
**Official ViT-B/16 checkpoints** (they load unchanged; `cka checkpoint FILE` shows what is inside):

| model | file | download |
|---|---|---|
| MoCo-v3 | `vit-b-300ep.pth.tar` | https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar |
| DINO | `dino_vitbase16_pretrain.pth` | https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth |
| MAE | `mae_pretrain_vit_base.pth` | https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth |

`val/` is an ImageFolder (`class/file.JPEG`), e.g. a class-balanced subset of the ImageNet validation set;
every model must be extracted over the same folder (CKA pairs examples by `/inputs/ids`).
"""

EXTRACT = """
```bash
LAYERS='blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*'
cka extract --checkpoint vit-b-300ep.pth.tar         --images val/ --out moco.h5 --model moco-v3 --layers "$LAYERS" --store grams,pooled --gram-batch-size 256
cka extract --checkpoint dino_vitbase16_pretrain.pth --images val/ --out dino.h5 --model dino    --layers "$LAYERS" --store grams,pooled --gram-batch-size 256
cka extract --checkpoint mae_pretrain_vit_base.pth   --images val/ --out mae.h5  --model mae     --layers "$LAYERS" --store grams,pooled --gram-batch-size 256
```
The stores keep per-minibatch Grams of 256 consecutive images (not the activations), so `cka compare` must use
`--batch-size 256` and file order; `--shuffle`/`--passes` need `--store activations` (0.6 MB per image and layer).
"""

CKPT_ARRAY = """declare -A CKPT=([moco]=vit-b-300ep.pth.tar [dino]=dino_vitbase16_pretrain.pth [mae]=mae_pretrain_vit_base.pth)"""

SETUP = """
import os
import h5py
import numpy as np
import pandas as pd
import matplotlib
import matplotlib.pyplot as plt

# Default: the outputs of `make demo` (DINOv2 ViT-S/14 "trained" and its random-init twin, 200 CIFAR-10 images).
OUT = os.environ.get("CKA_OUT", os.path.join("..", "demo-output"))
assert os.path.isdir(OUT), f"no {OUT}: run `make demo` (and scripts/notebook_inputs.sh) first, or set CKA_OUT"
plt.rcParams.update({"figure.dpi": 72, "savefig.dpi": 72})   # small embedded PNGs


def need(path):   # fail with a clear message when an input file is missing
    assert os.path.exists(path), f"missing {path}: see the commands at the top of this notebook"
    return path


print("reading", OUT)
"""

HELPERS_MATRIX = '''
def read_wide_csv(path):
    """`cka compare --csv`: header 'layer,<B layers>', one row per layer of A."""
    return pd.read_csv(path, index_col="layer")


def read_matrix_h5(path):
    """`cka compare --h5` (format cka-matrix): /cka [LA, LB], /layers_a, /layers_b, attributes."""
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "cka-matrix", f.attrs["format"]
        dec = lambda xs: [x.decode() if isinstance(x, bytes) else str(x) for x in xs]
        m = pd.DataFrame(f["cka"][...], index=dec(f["layers_a"][...]), columns=dec(f["layers_b"][...]))
        return m, dict(f.attrs)


def short(name):
    return name.replace("blocks.", "").replace(".attn", "").replace(".mlp", "")


def heatmap(ax, m, title, xlabel="", ylabel="", vmin=0.0, vmax=1.0):
    """Layer x layer CKA, layer 0 at the bottom left (as in Raghu et al. 2021 / the seed paper)."""
    im = ax.imshow(m.values, origin="lower", cmap="magma", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(m.shape[1]), [short(c) for c in m.columns], rotation=90, fontsize=7)
    ax.set_yticks(range(m.shape[0]), [short(r) for r in m.index], fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return im
'''

# ---------------------------------------------------------------------------------------------------------
nb1 = notebook([
    md("""
    # Figure 1 — layer × layer CKA heatmaps between models

    Reads the matrices written by `cka compare` (`--csv` wide CSV or `--h5` cka-matrix) and the long CSV of
    `cka compare-all` (`all.csv`); draws one heatmap per pair of models. No CKA is computed here.

    ## Producing the inputs for your own checkpoints
    """, CHECKPOINTS, EXTRACT, """
    ```bash
    # every pair at once: A__B.csv, A__B.png per pair, all.csv (long), overview.png
    cka compare-all moco.h5 dino.h5 mae.h5 --layers 'blocks.*' --batch-size 256 --out-dir results/
    # or one pair, as HDF5 and wide CSV
    cka compare dino.h5 mae.h5 --layers 'blocks.*' --batch-size 256 --csv results/dino_vs_mae.csv --h5 results/dino_vs_mae.h5
    ```
    Then set `CKA_OUT=results/` and `H5` below to `dino_vs_mae.h5`. By default the notebook reads the demo outputs:
    `demo-output/all/all.csv` (from `scripts/demo.sh`) and `demo-output/trained_vs_random.h5`
    (from `scripts/notebook_inputs.sh`).
    """),
    code(SETUP),
    code(HELPERS_MATRIX),
    md("## All pairs from `compare-all`'s long CSV"),
    code("""
    ALL_CSV = need(os.path.join(OUT, "all", "all.csv"))
    df = pd.read_csv(ALL_CSV)   # model_a, layer_a, model_b, layer_b, estimator, batch_size, cka
    print(df.head())
    pairs = df[["model_a", "model_b"]].drop_duplicates().values.tolist()
    print("pairs:", pairs)
    """),
    code("""
    def pair_matrix(df, a, b):
        sub = df[(df.model_a == a) & (df.model_b == b)]
        order_a = list(dict.fromkeys(sub.layer_a))      # keep the file's layer order (not alphabetical)
        order_b = list(dict.fromkeys(sub.layer_b))
        return sub.pivot(index="layer_a", columns="layer_b", values="cka").loc[order_a, order_b]

    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4), squeeze=False)
    for ax, (a, b) in zip(axes[0], pairs):
        im = heatmap(ax, pair_matrix(df, a, b), f"{a} vs {b}", xlabel=b, ylabel=a)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="CKA")
    plt.show()
    """),
    md("""
    ## One pair from `cka compare --h5` (with its provenance attributes)

    What to look for: the self-similarity matrix is block-diagonal; between two different models, a bright
    diagonal means the same depth computes similar representations, and where it fades tells where the models
    diverge.
    """),
    code("""
    H5 = os.path.join(OUT, "trained_vs_random.h5")
    if os.path.exists(H5):
        m, attrs = read_matrix_h5(H5)
        print({k: attrs[k] for k in ("model_a", "model_b", "estimator", "batch_size", "n_examples", "passes", "tokens")})
    else:  # fall back to the wide CSV written by `cka compare --csv`
        m, attrs = read_wide_csv(need(os.path.join(OUT, "trained_vs_random.csv"))), {"model_a": "A", "model_b": "B"}
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    im = heatmap(ax0, m, f"{attrs['model_a']} vs {attrs['model_b']}", xlabel=str(attrs["model_b"]), ylabel=str(attrs["model_a"]))
    fig.colorbar(im, ax=ax0, shrink=0.8)
    ax1.plot(range(len(m)), np.diag(m.values), "o-")
    ax1.set_xticks(range(len(m)), [short(x) for x in m.index], rotation=90, fontsize=7)
    ax1.set_ylim(0, 1.05); ax1.set_ylabel("CKA (same layer)"); ax1.set_title("diagonal")
    plt.tight_layout(); plt.show()
    """),
], "fig1")

# ---------------------------------------------------------------------------------------------------------
nb2 = notebook([
    md("""
    # Figure 2 — CKA by layer type (norm1 / attn.qkv / mlp.fc1)

    Reads `cka compare --csv` matrices between the three layer types of each block: the input of the block
    (`norm1`), the attention projection (`attn.qkv`) and the MLP expansion (`mlp.fc1`). Shows each matrix and,
    as the seed paper's Figure 2, the diagonal (same block) per block. No CKA is computed here.

    ## Producing the inputs for your own checkpoints
    """, CHECKPOINTS, EXTRACT, """
    ```bash
    for M in moco dino mae; do
      cka compare $M.h5 --layers 'blocks.*.norm1'    --layers-b 'blocks.*.attn.qkv' --batch-size 256 --csv ${M}_norm1_vs_qkv.csv
      cka compare $M.h5 --layers 'blocks.*.norm1'    --layers-b 'blocks.*.mlp.fc1'  --batch-size 256 --csv ${M}_norm1_vs_fc1.csv
      cka compare $M.h5 --layers 'blocks.*.attn.qkv' --layers-b 'blocks.*.mlp.fc1'  --batch-size 256 --csv ${M}_qkv_vs_fc1.csv
    done
    # the same layer type across two models, e.g. DINO vs MAE
    cka compare dino.h5 mae.h5 --layers 'blocks.*.mlp.fc1' --batch-size 256 --csv dino_vs_mae_fc1.csv
    ```
    Edit `FILES` below to point at them. By default: `demo-output/norm1_vs_qkv.csv` and `norm1_vs_fc1.csv`
    (from `scripts/demo.sh`, the trained DINOv2 ViT-S/14 against itself).
    """),
    code(SETUP),
    code(HELPERS_MATRIX),
    code("""
    # label -> wide CSV of `cka compare --csv` (rows: layers of A, columns: layers of B, one per block)
    FILES = {
        "norm1 vs attn.qkv": os.path.join(OUT, "norm1_vs_qkv.csv"),
        "norm1 vs mlp.fc1": os.path.join(OUT, "norm1_vs_fc1.csv"),
        "attn.qkv vs mlp.fc1": os.path.join(OUT, "qkv_vs_fc1.csv"),   # optional
    }
    mats = {k: read_wide_csv(p) for k, p in FILES.items() if os.path.exists(p)}
    assert mats, f"none of {list(FILES.values())}: see the commands at the top of this notebook"
    print({k: m.shape for k, m in mats.items()})
    """),
    code("""
    fig, axes = plt.subplots(1, len(mats), figsize=(4.5 * len(mats), 4), squeeze=False)
    for ax, (label, m) in zip(axes[0], mats.items()):
        a, b = label.split(" vs ")
        im = heatmap(ax, m, label, xlabel=b, ylabel=a)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="CKA")
    plt.show()
    """),
    md("""
    ## Diagonal per block (same block, different layer type)

    What to look for: how much each sub-layer changes the block's normalised input, and at which depth.
    """),
    code("""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, m in mats.items():
        d = np.diag(m.values)
        ax.plot(range(len(d)), d, "o-", label=label)
    ax.set_xlabel("block"); ax.set_ylabel("CKA (same block)"); ax.set_ylim(0, 1.05)
    ax.legend(); ax.grid(alpha=0.3); ax.set_title("CKA between layer types, per block")
    plt.tight_layout(); plt.show()
    pd.DataFrame({k: np.diag(m.values) for k, m in mats.items()}).round(3)
    """),
], "fig2")

# ---------------------------------------------------------------------------------------------------------
nb3 = notebook([
    md("""
    # Figure 3 — k-NN accuracy across depth

    Reads `cka knn --csv` (`layer,pooling,k,top1,top5`: leave-one-out weighted k-NN, DINO's `eval_knn.py`)
    for one or more models and plots top-1 per block, one line per model and pooling. No features are read.

    ## Producing the inputs for your own checkpoints
    """, CHECKPOINTS, """
    ```bash
    """, CKPT_ARRAY, """
    for M in moco dino mae; do   # pooled features only: blocks.{i}:cls|gap|gap_nocls and norm:…
      cka extract --checkpoint ${CKPT[$M]} --images val/ --out ${M}_feats.h5 --model $M --store pooled
      cka knn ${M}_feats.h5 --k 10,20,100 --csv knn_${M}.csv --plot knn_${M}.png
    done
    # DINO's protocol, neighbours from a training set (extracted the same way):
    # cka knn dino_feats.h5 --train dino_train_feats.h5 --layers 'blocks.*:cls,norm:cls' --csv knn_dino.csv
    ```
    (The stores of the CKA notebooks, extracted with `--store grams,pooled`, hold the same pooled features.)
    Edit `FILES` below. By default: `demo-output/knn_trained.csv`
    and `knn_random.csv` (from `scripts/demo.sh`, k = 20, 200 CIFAR-10 images).
    """),
    code(SETUP),
    code("""
    FILES = {   # model label -> `cka knn --csv`
        "trained": os.path.join(OUT, "knn_trained.csv"),
        "random-init": os.path.join(OUT, "knn_random.csv"),
    }
    knn = pd.concat([pd.read_csv(need(p)).assign(model=m) for m, p in FILES.items()], ignore_index=True)
    knn["block"] = knn.layer.str.extract(r"blocks\\.(\\d+)", expand=False).astype(float)
    print(knn.head())
    """),
    code("""
    ks = sorted(knn.k.unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(6 * len(ks), 4), squeeze=False)
    for ax, k in zip(axes[0], ks):
        colors = {m: f"C{i}" for i, m in enumerate(FILES)}          # one colour per model
        styles = {"cls": "o-", "gap": "s--", "gap_nocls": ".:"}      # one line style per pooling
        for (model, pooling), g in knn[knn.k == k].groupby(["model", "pooling"], sort=False):
            g = g.sort_values("block")
            ax.plot(g.block, g.top1, styles.get(pooling, "x-"), color=colors[model], label=f"{model} ({pooling})")
        ax.set_xlabel("block"); ax.set_ylabel("top-1 (%)"); ax.set_title(f"{k}-NN accuracy across depth")
        ax.grid(alpha=0.3); ax.legend(fontsize=8)
    plt.tight_layout(); plt.show()
    """),
    md("What to look for: the block where accuracy peaks (often before the last block) and the gap to the random-init twin."),
    code("""
    best = knn.loc[knn.groupby(["model", "pooling", "k"]).top1.idxmax(), ["model", "pooling", "k", "layer", "top1", "top5"]]
    best.reset_index(drop=True)
    """),
], "fig3")

# ---------------------------------------------------------------------------------------------------------
nb4 = notebook([
    md("""
    # Figure 4 — Kendall-τ of predictions

    Reads `cka agreement --csv` (`metric,subset,k,value`): the mean Kendall τ-b between two models' class scores
    over their top-k classes, for all examples and for those both models get right (`both_correct`) or wrong
    (`both_wrong`), plus top-1 agreement and F1. The logits come from `cka probe --save` (a linear probe on a
    frozen layer). Nothing is recomputed here.

    ## Producing the inputs for your own checkpoints
    """, CHECKPOINTS, """
    ```bash
    """, CKPT_ARRAY, """
    mkdir -p agreement
    for M in moco dino mae; do   # train/: a class-balanced ImageNet training subset, val/ as above
      cka extract --checkpoint ${CKPT[$M]} --images train/ --out ${M}_train.h5 --model $M --store pooled --layers norm
      cka extract --checkpoint ${CKPT[$M]} --images val/   --out ${M}_val.h5   --model $M --store pooled --layers norm
      cka probe ${M}_val.h5 --train ${M}_train.h5 --layers 'norm:cls' --save agreement/${M}_logits.h5
    done
    cka agreement agreement/dino_logits.h5 agreement/mae_logits.h5  --top 5,10,100 --csv agreement/dino_vs_mae.csv
    cka agreement agreement/dino_logits.h5 agreement/moco_logits.h5 --top 5,10,100 --csv agreement/dino_vs_moco.csv
    cka agreement agreement/mae_logits.h5  agreement/moco_logits.h5 --top 5,10,100 --csv agreement/mae_vs_moco.csv
    ```
    Here each model gets the same kind of head, a probe trained on its frozen final CLS token. To compare the
    released classifiers instead (`linear-vit-b-300ep.pth.tar`, `dino_vitbase16_linearweights.pth`,
    `mae_finetuned_vit_base.pth`), write their logits with `cka extract --store logits` (see the README's
    agreement section). Then set `CKA_OUT` to the folder that holds `agreement/`.

    By default the notebook reads `demo-output/agreement/` written by `scripts/notebook_inputs.sh`: probes on
    the middle and the last block (`blocks.6:cls`, `blocks.11:cls`) of the demo's trained model and on the middle
    block of the random-init twin (10 CIFAR-10 classes, so k ≤ 10).
    """),
    code(SETUP),
    code("""
    import glob
    AG = need(os.path.join(OUT, "agreement"))
    # pair label -> `cka agreement --csv`: every agreement/<A>_vs_<B>.csv
    FILES = {os.path.basename(p)[:-4].replace("_vs_", " vs "): p for p in sorted(glob.glob(os.path.join(AG, "*_vs_*.csv")))}
    assert FILES, f"no {AG}/*_vs_*.csv: see the commands at the top of this notebook"
    ag = pd.concat([pd.read_csv(p).assign(pair=k) for k, p in FILES.items()], ignore_index=True)
    ag.pivot_table(index=["metric", "subset", "k"], columns="pair", values="value", sort=False).round(3)
    """),
    code("""
    tau = ag[ag.metric == "kendall_tau_b"].copy()
    tau["k"] = tau.k.astype(int)
    subsets = ["all", "both_correct", "both_wrong"]
    fig, axes = plt.subplots(1, len(subsets), figsize=(5 * len(subsets), 3.8), sharey=True)
    for ax, subset in zip(axes, subsets):
        for pair, g in tau[tau.subset == subset].groupby("pair", sort=False):
            ax.plot(g.k, g.value, "o-", label=pair)
        ax.set_xscale("log"); ax.set_xticks(sorted(tau.k.unique()), [str(k) for k in sorted(tau.k.unique())])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("top-k classes ranked"); ax.set_title(subset)
    axes[0].set_ylabel("mean Kendall τ-b"); axes[-1].legend(fontsize=8)
    plt.tight_layout(); plt.show()
    """),
    md("What to look for: τ rises as more classes are ranked; models that agree on correct examples may still rank classes differently when both are wrong."),
    code("""
    # The logits stores themselves (`cka probe --save`): /logits [N, C] and the probe's provenance attributes.
    rows = []
    for name in sorted(os.listdir(AG)):
        if name.endswith("_logits.h5"):
            with h5py.File(os.path.join(AG, name), "r") as f:
                a = dict(f.attrs)
                rows.append({"file": name, "logits": f["logits"].shape, "model": a.get("model"),
                             "probe layer": a.get("probe_layer"), "train top-1 (%)": a.get("probe_train_top1"),
                             "test top-1 (%)": a.get("probe_test_top1")})
    pd.DataFrame(rows)
    """),
], "fig4")

# ---------------------------------------------------------------------------------------------------------
nb5 = notebook([
    md("""
    # From PyTorch — any model next to the ViT, with `vitcka`

    `python/` holds `vitcka` (`pip install ./python`; numpy, h5py, torch), which runs a PyTorch model — on your
    GPU if you have one — and writes the same activation store as `cka extract`: pooled features and
    per-minibatch Grams computed on the device. Every `cka` command then reads it. Here a small PyTorch CNN
    (plain torch, seeded random init) runs over the demo's images **in the order of `trained.h5`**, and
    `cka compare` and `cka knn` put it next to the ViT. Only this notebook runs a model; the CKA values still
    come from `cka`.

    With timm and a GPU, the same takes ten lines:
    ```python
    import os, timm, torch, vitcka
    from torchvision import datasets
    model = timm.create_model("vit_base_patch16_224.dino", pretrained=True).cuda()
    ds = datasets.ImageFolder("val/", timm.data.create_transform(**timm.data.resolve_data_config({}, model=model)))
    class WithIds(torch.utils.data.Dataset):     # (id, image, label): ids pair two stores input by input
        def __len__(self): return len(ds)
        def __getitem__(self, i): return (os.path.relpath(ds.samples[i][0], "val/"), *ds[i])
    loader = torch.utils.data.DataLoader(WithIds(), batch_size=256, num_workers=8)   # never shuffle
    vitcka.extract(model, loader, "dino_timm.h5", layers="blocks.*", gram_batch_size=256, model_name="dino-timm")
    # cka compare dino_timm.h5 mae.h5 --layers 'blocks.*' --batch-size 256 --heatmap dino_vs_mae.png
    ```
    A torchvision ResNet: `layers="layer1,layer2,layer3,layer4,avgpool"` (feature maps give Grams of the
    flattened map and pooled `layerK:gap` features). The ids must match the other store's, in the same order.
    """),
    code("""
    import os
    import subprocess
    import sys
    from collections import OrderedDict

    import h5py
    import numpy as np
    import pandas as pd
    import matplotlib.pyplot as plt
    import torch
    from PIL import Image

    OUT = os.environ.get("CKA_OUT", os.path.join("..", "demo-output"))
    IMAGES = os.environ.get("CKA_IMAGES", os.path.join("..", "demo", "images", "cifar10"))  # what trained.h5 read
    CKA = os.environ.get("CKA", os.path.join("..", ".build", "release", "cka"))
    assert os.path.isdir(OUT), f"no {OUT}: run `make demo` first, or set CKA_OUT"
    plt.rcParams.update({"figure.dpi": 72, "savefig.dpi": 72})
    try:
        import vitcka
    except ImportError:                     # not installed: the repository's copy
        sys.path.insert(0, os.path.join("..", "python"))
        import vitcka


    def cka(*args):
        r = subprocess.run([CKA, *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout


    # The ViT store's inputs: the PyTorch run must use the same ids in the same order.
    with h5py.File(os.path.join(OUT, "trained.h5"), "r") as f:
        ids = [s.decode() for s in f["inputs/ids"][()]]
        labels = f["inputs/labels"][()]
        classes = [s.decode() for s in f["inputs/classes"][()]]
        B = int(f["grams/blocks.0"].attrs["batch_size"])     # compare with the Grams' batch size
    print(f"{len(ids)} images of {len(classes)} classes, Gram batch {B}")
    """),
    code("""
    MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


    class Images(torch.utils.data.Dataset):    # yields (id, image, label), as vitcka.extract expects
        def __len__(self):
            return len(ids)

        def __getitem__(self, i):
            x = np.asarray(Image.open(os.path.join(IMAGES, ids[i])).convert("RGB").resize((32, 32)), np.float32) / 255
            return ids[i], torch.from_numpy(((x - MEAN) / STD).transpose(2, 0, 1)).float(), int(labels[i])


    def stage(cin, cout, stride):
        return torch.nn.Sequential(
            torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(),
            torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU())


    torch.manual_seed(0)
    model = torch.nn.Sequential(OrderedDict(
        stem=stage(3, 32, 1), layer1=stage(32, 32, 1), layer2=stage(32, 64, 2), layer3=stage(64, 128, 2),
        pool=torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())))
    loader = torch.utils.data.DataLoader(Images(), batch_size=B, shuffle=False)   # never shuffle: ids pair stores
    store = os.path.join(OUT, "pytorch_cnn.h5")
    summary = vitcka.extract(model, loader, store, layers="stem,layer*,pool", gram_batch_size=B,
                             model_name="small CNN (PyTorch)", classes=classes, progress=False)
    print(f"{summary.examples} images, {summary.seconds:.1f} s; Grams of {summary.gram_layers}")
    print(cka("inspect", store))
    """),
    code("""
    CNN = ["stem", "layer1", "layer2", "layer3", "pool"]
    csv = os.path.join(OUT, "vit_vs_pytorch_cnn.csv")
    cka("compare", os.path.join(OUT, "trained.h5"), store, "--layers", "blocks.*", "--layers-b", ",".join(CNN),
        "--batch-size", B, "--csv", csv, "--quiet")
    m = pd.read_csv(csv, index_col="layer")[CNN]      # cka lists layers with activations (pool) first
    fig, ax = plt.subplots(figsize=(4, 5))
    im = ax.imshow(m.values, origin="lower", cmap="magma", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(CNN)), CNN, rotation=90)
    ax.set_yticks(range(len(m)), [r.replace("blocks.", "") for r in m.index])
    ax.set_xlabel("small CNN (PyTorch, vitcka)"); ax.set_ylabel("ViT block (cka extract)")
    ax.set_title(f"minibatch CKA, b = {B}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.05); plt.tight_layout(); plt.show()
    """),
    code("""
    # The same store feeds cka knn: leave-one-out 20-NN on the CNN's pooled features.
    knn = os.path.join(OUT, "knn_pytorch_cnn.csv")
    cka("knn", store, "--k", "20", "--csv", knn, "--quiet")
    pd.read_csv(knn)
    """),
], "torch")

NOTEBOOKS = {
    "01_cka_heatmaps.ipynb": nb1,
    "02_cka_layer_types.ipynb": nb2,
    "03_knn_across_depth.ipynb": nb3,
    "04_kendall_tau.ipynb": nb4,
    "05_from_pytorch.ipynb": nb5,
}

def cells_of(nb):
    return [(c["id"], c["cell_type"], c["source"] if isinstance(c["source"], str) else "".join(c["source"]))
            for c in nb["cells"]]


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:   # the committed notebooks hold exactly the generated cells (outputs aside)
        stale = []
        for name, nb in NOTEBOOKS.items():
            with open(os.path.join(HERE, name)) as f:
                if cells_of(json.load(f)) != cells_of(nb):
                    stale.append(name)
        if stale:
            sys.exit(f"out of date with make_notebooks.py: {', '.join(stale)} (regenerate and re-execute them)")
        print(f"{len(NOTEBOOKS)} notebooks match make_notebooks.py")
        sys.exit(0)
    only = [a for a in sys.argv[1:] if not a.startswith("-")]   # e.g. 05_from_pytorch.ipynb: only those
    for name, nb in NOTEBOOKS.items():
        if only and name not in only:
            continue
        with open(os.path.join(HERE, name), "w") as f:
            json.dump(nb, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print("wrote", os.path.join(HERE, name))
