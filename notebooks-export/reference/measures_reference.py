#!/usr/bin/env python3
"""Reference values of the similarity measures beyond CKA, from their authors' code, for the Swift tests.

Writes Tests/CKASimilarityTests/Fixtures/measures_expected.json: the float64 features (two layers of 60
examples, 20 and 12 features, and an unrelated third) and, for each measure, the value computed by:

- mutual-knn, cknna: `metrics.py` of platonic-rep (Huh et al. 2024), github.com/minyoungg/platonic-rep at
  dcd76ba3c950c1b197a2ae8b1c6713535c94ecf9, `AlignmentMetrics.mutual_knn` / `.cknna` on
  `torch.nn.functional.normalize`d float64 rows (as their `measure_alignment.py`);
- svcca, pwcca: `cca_core.py` and `pwcca.py` of github.com/google/svcca at
  1f9f7ea4e5e7718c3d3ec3470d8d4a320e44642f (Raghu et al. 2017, Morcos et al. 2018), on the reduced sets
  (centred data projected on the fewest top singular directions reaching the variance fraction),
  `get_cca_similarity(..., epsilon=0)` (SVCCA: the plain mean of `cca_coef1`) and `compute_pwcca(..., epsilon=0)`.
  When A keeps more directions than B the released `compute_pwcca(A, B)` raises an IndexError (its second
  branch indexes acts1 with B's mask); the value recorded is then `compute_pwcca(B, A)`, the weighting on
  the side with fewer directions that the branch intends (the Swift contract, documented in the README);
- procrustes: netrep is not on this machine's package index, so a float64 SVD of X̃ᵀỸ (nuclear norm over
  the Frobenius norms), the formula netrep's `LinearMetric(alpha=1, center_columns=True)` scores;
- rsa: rsatoolbox (pip) `calc_rdm(method="correlation"|"euclidean")` and
  `compare(method="spearman"|"corr"|"kendall")`.

The authors' svcca and platonic-rep code is not on PyPI and is never copied into this repository: put
their files in directories and pass them as environment variables; a measure whose reference is absent is
skipped with a message (the previous values are kept):

    SVCCA_DIR=/tmp/svcca PLATONIC_DIR=/tmp/platonic python3 measures_reference.py OUT.json

Needs numpy, scipy, torch (platonic-rep), rsatoolbox, scikit-learn (imported by platonic-rep's metrics).
platonic-rep's `metrics.py` imports torchaudio (for an edit distance not used here): a stub is installed
when it is missing.
"""
import importlib
import json
import os
import sys
import types

import numpy as np

out_path = sys.argv[1] if len(sys.argv) > 1 else "measures_expected.json"
previous = json.load(open(out_path)) if os.path.exists(out_path) else {}

rng = np.random.default_rng(20261206)
n = 60
x = rng.standard_normal((n, 20)) * np.linspace(2.0, 0.2, 20)        # a decaying spectrum
w = rng.standard_normal((20, 12)) * 0.5
y = np.tanh(x @ w) + 0.3 * rng.standard_normal((n, 12))
z = rng.standard_normal((n, 16)) + 5.0                               # unrelated, with an offset
layers = {"x": x, "y": y, "z": z}
pairs = [("x", "y"), ("y", "x"), ("x", "z"), ("y", "z"), ("x", "x")]
expected = {"features": {k: v.tolist() for k, v in layers.items()}, "pairs": [list(p) for p in pairs],
            "values": previous.get("values", {}), "sources": previous.get("sources", {})}
values = expected["values"]


def centred(a):
    return a - a.mean(0, keepdims=True)


def reduced(a, variance):
    """The centred data projected on the fewest top singular directions reaching `variance` (N×k)."""
    u, s, _ = np.linalg.svd(centred(a), full_matrices=False)
    frac = np.cumsum(s ** 2) / np.sum(s ** 2)
    k = int(np.searchsorted(frac, variance - 1e-15) + 1)   # first k with frac[k-1] >= variance
    k = min(k, len(s))
    return u[:, :k] * s[:k], k


# ---- Procrustes: float64 SVD ------------------------------------------------------------------------
for a, b in pairs:
    xa, xb = centred(layers[a]), centred(layers[b])
    values[f"procrustes/{a}/{b}"] = float(np.linalg.svd(xa.T @ xb, compute_uv=False).sum()
                                          / (np.linalg.norm(xa) * np.linalg.norm(xb)))
expected["sources"]["procrustes"] = "float64 numpy SVD of the centred cross-product (netrep unavailable)"

# ---- SVCCA / PWCCA: google/svcca -------------------------------------------------------------------
svcca_dir = os.environ.get("SVCCA_DIR")
if svcca_dir and os.path.exists(os.path.join(svcca_dir, "cca_core.py")):
    sys.path.insert(0, svcca_dir)
    cca_core = importlib.import_module("cca_core")
    pwcca = importlib.import_module("pwcca")
    for variance in (0.99, 0.9):
        for a, b in pairs:
            ra, ka = reduced(layers[a], variance)
            rb, kb = reduced(layers[b], variance)
            res = cca_core.get_cca_similarity(ra.T, rb.T, epsilon=0.0, verbose=False)
            values[f"svcca@{variance}/{a}/{b}"] = float(np.mean(res["cca_coef1"]))
            try:
                v = pwcca.compute_pwcca(ra.T, rb.T, epsilon=0.0)[0]
                how = "compute_pwcca(A, B)"
            except IndexError:
                v = pwcca.compute_pwcca(rb.T, ra.T, epsilon=0.0)[0]
                how = "compute_pwcca(B, A): A keeps more directions"
            values[f"pwcca@{variance}/{a}/{b}"] = float(v)
            values[f"kept@{variance}/{a}"] = ka
            expected["sources"][f"pwcca@{variance}/{a}/{b}"] = how
    expected["sources"]["svcca"] = "google/svcca 1f9f7ea4e5e7718c3d3ec3470d8d4a320e44642f"
else:
    print("SVCCA_DIR not set or without cca_core.py: svcca/pwcca values not recomputed", file=sys.stderr)

# ---- mutual-knn / CKNNA: platonic-rep --------------------------------------------------------------
platonic_dir = os.environ.get("PLATONIC_DIR")
if platonic_dir and os.path.exists(os.path.join(platonic_dir, "metrics.py")):
    import torch
    import torch.nn.functional as F
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        stub = types.ModuleType("torchaudio")
        stub.functional = types.ModuleType("torchaudio.functional")
        sys.modules["torchaudio"] = stub
        sys.modules["torchaudio.functional"] = stub.functional
    sys.path.insert(0, platonic_dir)
    metrics = importlib.import_module("metrics")
    for k in (5, 10):
        for a, b in pairs:
            fa = F.normalize(torch.tensor(layers[a], dtype=torch.float64), dim=-1)
            fb = F.normalize(torch.tensor(layers[b], dtype=torch.float64), dim=-1)
            v = float(metrics.AlignmentMetrics.mutual_knn(fa, fb, topk=k))
            values[f"mutual-knn@{k}/{a}/{b}"] = v
            # The reference averages in float32; the exact value is a count of shared neighbours / (N·k).
            values[f"mutual-knn-count@{k}/{a}/{b}"] = int(round(v * n * k))
            values[f"cknna@{k}/{a}/{b}"] = float(metrics.AlignmentMetrics.cknna(fa, fb, topk=k))
    expected["sources"]["platonic"] = "minyoungg/platonic-rep dcd76ba3c950c1b197a2ae8b1c6713535c94ecf9"
else:
    print("PLATONIC_DIR not set or without metrics.py: mutual-knn/cknna values not recomputed", file=sys.stderr)

# ---- RSA: rsatoolbox -------------------------------------------------------------------------------
try:
    import rsatoolbox
    for rdm in ("correlation", "euclidean"):
        for cmp, method in (("spearman", "spearman"), ("pearson", "corr"), ("kendall", "kendall")):
            for a, b in pairs:
                ra = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(layers[a]), method=rdm)
                rb = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(layers[b]), method=rdm)
                values[f"rsa-{rdm}-{cmp}/{a}/{b}"] = float(rsatoolbox.rdm.compare(ra, rb, method=method)[0, 0])
    from importlib.metadata import version
    expected["sources"]["rsa"] = f"rsatoolbox {version('rsatoolbox')}"
except ImportError:
    print("rsatoolbox not installed: rsa values not recomputed", file=sys.stderr)

with open(out_path, "w") as f:
    json.dump(expected, f, indent=1)
print(f"wrote {out_path}: {len(values)} values")
