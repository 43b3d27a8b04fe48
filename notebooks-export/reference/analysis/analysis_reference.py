#!/usr/bin/env python3
"""Independent float64 references of the analyses of CKAAnalysis, and the writer of its test fixtures.

Nothing here shares code with the Swift engine; the procedures are written from their published
descriptions:

* DINO's weighted k-NN (facebookresearch/dino eval_knn.py, reference-models.md §5): L2-normalised
  features, cosine similarity, top-k neighbours, votes exp(sim / T) summed per class, top-1 and
  top-min(5, k) accuracy in percent. Tie rule shared with the Swift code: neighbours by similarity
  descending, equal similarities by lower train index; classes by score descending, equal scores by
  lower class index. Leave-one-out excludes the query by index.
* Kendall tau-b: scipy.stats.kendalltau (the default variant 'b').
* Prediction agreement: tau-b over the union of both models' top-k classes (or A's top-k only),
  top-1 agreement, sklearn.metrics.f1_score(A_top1, B_top1, average='macro').
* Linear probe: sklearn.linear_model.LogisticRegression(C = 1 / (lambda * N)) on features
  standardised with sklearn.preprocessing.StandardScaler fitted on the training set.

Usage:

    python3 analysis_reference.py fixtures OUT_DIR     # writes the fixtures of Tests/CKAAnalysisTests/Fixtures
    python3 analysis_reference.py knn STORE.h5 [--train TRAIN.h5] [--k 20] [--layers norm:cls,blocks.7:cls]

The fixtures need numpy, h5py, scipy and scikit-learn (developer side: pip install numpy h5py scipy
scikit-learn); the Swift tests read only the committed outputs. Rerun only to change the cases.
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np


# ---- DINO weighted k-NN (float64) -----------------------------------------------------------------
def l2_normalize(x):
    x = np.asarray(x, np.float64)
    n = np.sqrt((x * x).sum(1, keepdims=True))
    return x / np.maximum(n, 1e-12)          # torch.nn.functional.normalize(p=2, eps=1e-12)


def knn_dino(train, train_labels, test, test_labels, ks, temperature=0.07, leave_one_out=False, num_classes=None,
             dtype=np.float64):
    """Top-1 and top-5 accuracy (percent) per k; leave_one_out: test is train, self excluded by index.
    dtype: the precision of the normalised features and similarities (float64 for the reference)."""
    train = l2_normalize(train).astype(dtype)
    test = train if leave_one_out else l2_normalize(test).astype(dtype)
    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    c = num_classes if num_classes is not None else int(max(train_labels.max(), test_labels.max())) + 1
    sims = test @ train.T
    n_train = len(train)
    top1 = {k: 0 for k in ks}
    top5 = {k: 0 for k in ks}
    kmax = max(ks)
    for i in range(len(test)):
        idx = np.arange(n_train)
        s = sims[i]
        if leave_one_out:
            keep = idx != i
            idx, s = idx[keep], s[keep]
        order = np.lexsort((idx, -s))[:kmax]          # similarity desc, then index asc
        nb_idx, nb_sim = idx[order], s[order]
        for k in ks:
            scores = np.zeros(c)
            for j in range(k):                          # votes summed in neighbour order
                scores[train_labels[nb_idx[j]]] += np.exp(np.float64(nb_sim[j]) / temperature)
            ranking = np.lexsort((np.arange(c), -scores))   # score desc, then class asc
            y = test_labels[i]
            top1[k] += int(ranking[0] == y)
            top5[k] += int(y in ranking[:min(5, k, c)])
    n = len(test)
    return {k: (100.0 * top1[k] / n, 100.0 * top5[k] / n) for k in ks}


# ---- Kendall tau-b and prediction agreement ---------------------------------------------------------
def kendall_tau_b(x, y):
    from scipy.stats import kendalltau
    return float(kendalltau(x, y).statistic)


def top_k_classes(scores, k):
    c = len(scores)
    return np.lexsort((np.arange(c), -np.asarray(scores, np.float64)))[:min(k, c)]


def agreement(logits_a, logits_b, labels, ks, classes="union"):
    from sklearn.metrics import f1_score
    a = np.asarray(logits_a, np.float64)
    b = np.asarray(logits_b, np.float64)
    pred_a, pred_b = a.argmax(1), b.argmax(1)           # first maximum = lower index on ties
    n = len(a)
    subsets = {"all": np.ones(n, bool)}
    if labels is not None:
        labels = np.asarray(labels)
        known = labels >= 0
        subsets["both_correct"] = known & (pred_a == labels) & (pred_b == labels)
        subsets["both_wrong"] = known & (pred_a != labels) & (pred_b != labels)
    taus = {}
    for k in ks:
        t = np.full(n, np.nan)
        for i in range(n):
            sel = list(top_k_classes(a[i], k))
            if classes == "union":
                sel += [j for j in top_k_classes(b[i], k) if j not in sel]
            t[i] = kendall_tau_b(a[i, sel], b[i, sel])
        taus[k] = t
    rows = []
    for name, mask in subsets.items():
        for k in ks:
            v = taus[k][mask]
            v = v[~np.isnan(v)]
            rows.append(("kendall_tau_b", name, k, float(v.mean()) if len(v) else float("nan")))
    for name, mask in subsets.items():
        rows.append(("top1_agreement", name, None, float((pred_a[mask] == pred_b[mask]).mean()) if mask.any() else float("nan")))
    for name, mask in subsets.items():
        rows.append(("top1_f1", name, None,
                     float(f1_score(pred_a[mask], pred_b[mask], average="macro")) if mask.any() else float("nan")))
    return rows


# ---- linear probe (scikit-learn) ---------------------------------------------------------------------
def probe_sklearn(x_train, y_train, x_test, y_test, l2):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    scaler = StandardScaler().fit(np.asarray(x_train, np.float64))
    xs, xt = scaler.transform(x_train), scaler.transform(x_test)
    n = len(xs)
    clf = LogisticRegression(C=1.0 / (l2 * n), tol=1e-12, max_iter=100000)
    clf.fit(xs, y_train)
    z = xs @ clf.coef_.T + clf.intercept_
    z -= z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    loss = -logp[np.arange(n), y_train].mean() + 0.5 * l2 * (clf.coef_ ** 2).sum()
    return {
        "l2": l2,
        "sklearn_C": 1.0 / (l2 * n),
        "loss": float(loss),
        "train_accuracy": 100.0 * float((clf.predict(xs) == y_train).mean()),
        "test_accuracy": 100.0 * float((clf.predict(xt) == y_test).mean()),
        "test_probabilities": clf.predict_proba(xt).tolist(),
    }


# ---- fixtures ------------------------------------------------------------------------------------------
def write_store(path, ids, labels, classes, layers, model, logits=None):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "activations"
        f.attrs["format_version"] = 1
        f.attrs["model"] = model
        f.create_dataset("inputs/ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        if labels is not None:
            f.create_dataset("inputs/labels", data=np.asarray(labels, np.int64))
        if classes is not None:
            f.create_dataset("inputs/classes", data=np.array(classes, dtype=object), dtype=h5py.string_dtype())
        for order, (name, x) in enumerate(layers):
            d = f.create_dataset(f"activations/{name}", data=np.asarray(x, np.float32))
            d.attrs["order"] = order
        if logits is not None:
            f.create_dataset("logits", data=np.asarray(logits, np.float32))


def tie_features(rng, n, d=16, nonzero=4):
    """Vectors with `nonzero` entries of ±1: norm 2, so normalised entries are ±0.5 and every cosine
    similarity is a multiple of 1/4, exact in float32 and float64 (exact ties)."""
    x = np.zeros((n, d))
    for i in range(n):
        pos = rng.choice(d, nonzero, replace=False)
        x[i, pos] = rng.choice([-1.0, 1.0], nonzero)
    return x


def clustered(rng, labels, d, spread, scale=1.0):
    means = rng.normal(size=(int(labels.max()) + 1, d)) * spread
    return (means[labels] + rng.normal(size=(len(labels), d))) * scale


def knn_robust(train, ytr, test, yte, ks, loo, c):
    """Results in float64 and with float32 similarities must agree (no near-ties that rounding could flip)."""
    a = knn_dino(train, ytr, test, yte, ks, leave_one_out=loo, num_classes=c)
    b = knn_dino(np.float32(train), ytr, np.float32(test), yte, ks, leave_one_out=loo, num_classes=c, dtype=np.float32)
    return a, a == b


def make_knn_fixtures(out, rng):
    c = 5
    classes = ["apple", "bee", "cloud", "dune", "elm"]
    n_train, n_test, d = 120, 40, 16
    ytr = np.repeat(np.arange(c), n_train // c)
    yte = np.repeat(np.arange(c), n_test // c)
    ks = [1, 3, 5, 10, 20, 50]
    for attempt in range(100):
        layers_tr, layers_te = [], []
        for name, spread in [("blocks.0:cls", 0.35), ("blocks.0:gap", 0.6), ("norm:cls", 0.9), ("pre_logits", 0.5)]:
            both = clustered(rng, np.concatenate([ytr, yte]), d, spread, scale=rng.uniform(0.5, 20))
            layers_tr.append((name, both[:n_train]))
            layers_te.append((name, both[n_train:]))
        # exact ties: ±1 vectors with 4 non-zeros; duplicated train rows with different labels
        tr = tie_features(rng, n_train)
        tr[60:80] = tr[0:20]                              # same vectors, classes 0 vs 2
        te = tie_features(rng, n_test)
        te[:8] = tr[:8]                                    # queries identical to train rows
        layers_tr.append(("blocks.1:cls", tr))
        layers_te.append(("blocks.1:cls", te))
        ok = True
        for (name, a), (_, b) in zip(layers_tr, layers_te):
            for loo, test, ytest in [(False, b, yte), (True, a, ytr)]:
                _, same = knn_robust(a, ytr, test, ytest, ks, loo, c)
                ok = ok and same
        if ok:
            break
    else:
        raise RuntimeError("could not draw fixtures robust to float32 rounding")
    # a token layer in the test store, which k-NN must skip
    tokens = rng.normal(size=(n_test, 3, d))
    write_store(os.path.join(out, "knn_train.h5"), [f"train/{i:03d}" for i in range(n_train)], ytr, classes,
                layers_tr, "knn_fixture")
    write_store(os.path.join(out, "knn_test.h5"), [f"test/{i:03d}" for i in range(n_test)], yte, classes,
                [("blocks.0", tokens)] + layers_te, "knn_fixture")
    expected = {"ks": ks, "temperature": 0.07, "train_test": {}, "leave_one_out_train": {}, "leave_one_out_test": {},
                "neighbours": {}}
    for (name, a), (_, b) in zip(layers_tr, layers_te):
        r = knn_dino(a, ytr, b, yte, ks, num_classes=c)
        expected["train_test"][name] = {str(k): list(v) for k, v in r.items()}
        r = knn_dino(a, ytr, a, ytr, ks, leave_one_out=True, num_classes=c)
        expected["leave_one_out_train"][name] = {str(k): list(v) for k, v in r.items()}
        r = knn_dino(b, yte, b, yte, [1, 5, 10], leave_one_out=True, num_classes=c)
        expected["leave_one_out_test"][name] = {str(k): list(v) for k, v in r.items()}
    # neighbour lists of the tie layer (similarity desc, index asc), for the first 10 queries, k = 12
    a, b = l2_normalize(layers_tr[-1][1]), l2_normalize(layers_te[-1][1])
    sims = b @ a.T
    expected["neighbours"]["blocks.1:cls"] = [np.lexsort((np.arange(n_train), -sims[i]))[:12].tolist() for i in range(10)]
    sims = a @ a.T
    loo = []
    for i in range(10):
        idx = np.array([j for j in range(n_train) if j != i])
        loo.append(idx[np.lexsort((idx, -sims[i, idx]))][:12].tolist())
    expected["neighbours"]["blocks.1:cls loo"] = loo
    return expected


def make_kendall_cases(rng):
    cases = []
    def add(name, x, y):
        x = [float(v) for v in x]
        y = [float(v) for v in y]
        t = kendall_tau_b(x, y) if len(x) > 0 else float("nan")
        cases.append({"name": name, "x": x, "y": y, "tau": None if np.isnan(t) else t})
    add("no ties", [1, 2, 3, 4, 5, 6, 7], [3, 1, 2, 7, 5, 4, 6])
    add("perfect", [0.1, 0.5, 0.9, 2.0], [1, 2, 3, 4])
    add("reversed", [1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    add("ties in x", [1, 1, 2, 2, 3, 3, 4], [1, 2, 3, 4, 5, 6, 0])
    add("ties in y", [1, 2, 3, 4, 5, 6], [2, 2, 1, 1, 3, 3])
    add("joint ties", [1, 1, 1, 2, 2, 3, 3, 3], [5, 5, 4, 4, 4, 1, 2, 2])
    add("two elements", [1, 2], [2, 1])
    add("all x tied", [3, 3, 3, 3], [1, 2, 3, 4])
    add("all y tied", [1, 2, 3], [7, 7, 7])
    add("one element", [1], [2])
    add("empty", [], [])
    add("negative zero ties zero", [0.0, -0.0, 1.0, 2.0], [1, 2, 2, 3])
    add("random 40", rng.normal(size=40), rng.normal(size=40))
    x = rng.integers(0, 12, size=300)
    add("random 300 heavy ties", x, x + rng.integers(-4, 5, size=300))
    add("random 1000 rounded", np.round(rng.normal(size=1000), 1), np.round(rng.normal(size=1000), 1))
    return cases


def make_agreement_fixtures(out, rng):
    n, c = 60, 12
    base = rng.normal(size=(n, c)) * 2
    labels = rng.integers(0, c, size=n)
    base[np.arange(n), labels] += 2.5                    # mostly right
    a = np.round(base + rng.normal(size=(n, c)) * 0.8, 1).astype(np.float32)   # rounding → ties
    b = np.round(base + rng.normal(size=(n, c)) * 1.2, 1).astype(np.float32)
    b[5] = 1.0                                            # all tied in B: tau-b undefined for this example
    b[6, :] = a[6, :]
    labels[[2, 9]] = -1                                   # unknown labels: only in 'all'
    ids = [f"img/{i:03d}.png" for i in range(n)]
    classes = [f"class{j}" for j in range(c)]
    write_store(os.path.join(out, "agreement_a.h5"), ids, labels, classes, [], "model_a", logits=a)
    write_store(os.path.join(out, "agreement_b.h5"), ids, labels, classes, [], "model_b", logits=b)
    ks = [1, 3, 5, 20]
    la, lb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return {"ks": ks,
            "union": [list(r) for r in agreement(la, lb, labels, ks, "union")],
            "a": [list(r) for r in agreement(la, lb, labels, ks, "a")]}


def make_probe_fixtures(out, rng):
    c, d = 4, 10
    ytr = np.repeat(np.arange(c), 50)
    yte = np.repeat(np.arange(c), 25)
    both = clustered(rng, np.concatenate([ytr, yte]), d, 0.45)
    both *= rng.uniform(0.2, 30, size=d)                  # features on very different scales
    both += rng.uniform(-50, 50, size=d)
    both[:, 3] = 7.25                                     # a constant feature (scale 1)
    both = both.astype(np.float32)
    tr, te = both[:len(ytr)], both[len(ytr):]
    classes = ["w", "x", "y", "z"]
    write_store(os.path.join(out, "probe_train.h5"), [f"tr{i}" for i in range(len(ytr))], ytr, classes,
                [("blocks.3:cls", tr), ("blocks.3:gap", tr[:, ::-1] * 2)], "probe_fixture")
    write_store(os.path.join(out, "probe_test.h5"), [f"te{i}" for i in range(len(yte))], yte, classes,
                [("blocks.3:cls", te), ("blocks.3:gap", te[:, ::-1] * 2)], "probe_fixture")
    x64, t64 = np.asarray(tr, np.float64), np.asarray(te, np.float64)
    return {"cases": [probe_sklearn(x64, ytr, t64, yte, l2) for l2 in (1e-1, 1e-2, 1e-3)]}


def json_safe(obj):
    """NaN → null (JSON has no NaN)."""
    if isinstance(obj, float) and np.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def fixtures(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240611)
    expected = {"knn": make_knn_fixtures(out, rng),
                "kendall": make_kendall_cases(rng),
                "agreement": make_agreement_fixtures(out, rng),
                "probe": make_probe_fixtures(out, rng)}
    with open(os.path.join(out, "analysis_expected.json"), "w") as f:
        json.dump(json_safe(expected), f, separators=(",", ":"), allow_nan=False)
        f.write("\n")


def knn_store(args):
    def read(path):
        f = h5py.File(path, "r")
        labels = f["inputs/labels"][:]
        names = sorted(f["activations"].keys(), key=lambda n: int(f[f"activations/{n}"].attrs.get("order", 0)))
        return f, labels, [n for n in names if f[f"activations/{n}"].ndim == 2]
    test, yte, names = read(args.store)
    if args.layers:
        names = [n for n in names if n in args.layers.split(",")]
    train, ytr = (test, yte) if args.train is None else read(args.train)[:2]
    ks = [int(k) for k in args.k.split(",")]
    c = int(max(ytr.max(), yte.max())) + 1
    print("layer,k,top1,top5")
    for n in names:
        xte = test[f"activations/{n}"][:].astype(np.float64)
        xtr = xte if args.train is None else train[f"activations/{n}"][:].astype(np.float64)
        r = knn_dino(xtr, ytr, xte, yte, ks, args.temperature, leave_one_out=args.train is None, num_classes=c)
        for k in ks:
            print(f"{n},{k},{r[k][0]!r},{r[k][1]!r}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("out")
    k = sub.add_parser("knn")
    k.add_argument("store")
    k.add_argument("--train")
    k.add_argument("--k", default="20")
    k.add_argument("--temperature", type=float, default=0.07)
    k.add_argument("--layers")
    a = p.parse_args()
    if a.cmd == "fixtures":
        fixtures(a.out)
    else:
        knn_store(a)


if __name__ == "__main__":
    sys.exit(main())
