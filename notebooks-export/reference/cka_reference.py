#!/usr/bin/env python3
"""Independent float64 reference of every CKA estimator, and the writer of the test fixtures.

The functions follow Kornblith's reference notebook (google-research/representation_similarity,
Demo.ipynb: gram_linear, gram_rbf, center_gram, cka, feature_space_linear_cka) and the unbiased
HSIC₁ of Song et al. as used for minibatch CKA by Nguyen, Raghu & Kornblith (2021, Eq. 3).
They are written from the published formulas; nothing here shares code with the Swift engine.

    python3 cka_reference.py OUT_DIR      # writes cka_a.h5, cka_b.h5, cka_expected.json, kornblith_demo.json

Needs numpy and h5py (pip install numpy h5py). The outputs are committed under
Tests/CKASimilarityTests/Fixtures/; rerun only to change the cases.
"""
import json
import os
import sys

import h5py
import numpy as np


# ---- Kornblith's reference functions (float64) -------------------------------------------------
def gram_linear(x):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x @ x.T


def gram_rbf(x, threshold=1.0):
    g = gram_linear(x)
    norms = np.diag(g)
    sq = -2 * g + norms[:, None] + norms[None, :]
    median = np.median(sq)          # all n² entries, zero diagonal included
    return np.exp(-sq / (2 * threshold ** 2 * median))


def center_gram(gram, unbiased=False):
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0, dtype=np.float64)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def cka(gx, gy, debiased=False):
    gx = center_gram(gx, unbiased=debiased)
    gy = center_gram(gy, unbiased=debiased)
    s = gx.ravel().dot(gy.ravel())
    return s / (np.linalg.norm(gx) * np.linalg.norm(gy))


# ---- Unbiased HSIC₁ (Song et al.) and minibatch CKA (Nguyen et al.) -----------------------------
def hsic1(K, L):
    n = len(K)
    K = K.copy(); L = L.copy(); np.fill_diagonal(K, 0); np.fill_diagonal(L, 0); o = np.ones(n)
    return (np.trace(K @ L) + (o @ K @ o) * (o @ L @ o) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (o @ K @ L @ o)) / (n * (n - 3))


def batch_gram(x):
    """Gram of one minibatch. Columns are centred first: HSIC₁ is invariant to it, and without it
    Song's formula loses ~1e-4 even in float64 when a layer carries a +1000 offset (the self-HSIC
    terms are ~1e12 times larger than their difference)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return gram_linear(x - x.mean(0))


def minibatch_cka(x, y, bs, order=None):
    n = len(x); k = n // bs; s = np.zeros(3)
    idx = np.arange(n) if order is None else np.asarray(order)
    for i in range(k):
        rows = idx[i * bs:(i + 1) * bs]
        K, L = batch_gram(x[rows]), batch_gram(y[rows])
        s += [hsic1(K, L), hsic1(K, K), hsic1(L, L)]
    return s[0] / np.sqrt(s[1] * s[2])


def reduce_tokens(x, mode):
    x = np.asarray(x, np.float64)
    if x.ndim != 3 or mode == 'flatten':
        return x.reshape(len(x), -1)
    return {'cls': x[:, 0], 'gap': x.mean(1), 'gap_nocls': x[:, 1:].mean(1)}[mode]


def splitmix_permutation(n, seed):
    """The toolkit's documented shuffle: Fisher–Yates driven by SplitMix64."""
    mask = (1 << 64) - 1
    state = seed & mask
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z = z ^ (z >> 31)
        j = z % (i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def main(out):
    os.makedirs(out, exist_ok=True)
    # Kornblith's demo data (numpy legacy seed 1337) and its published values.
    np.random.seed(1337)
    X = np.random.randn(100, 10)
    Y = np.random.randn(100, 10) + X
    demo = {'x': X.tolist(), 'y': Y.tolist(), 'linear': cka(gram_linear(X), gram_linear(Y)),
            'debiased': cka(gram_linear(X), gram_linear(Y), debiased=True),
            'rbf_0.5': cka(gram_rbf(X, 0.5), gram_rbf(Y, 0.5))}
    assert abs(demo['linear'] - 0.55761) < 1e-5 and abs(demo['debiased'] - 0.51346) < 1e-5
    assert abs(demo['rbf_0.5'] - 0.65483) < 1e-5
    json.dump(demo, open(os.path.join(out, 'kornblith_demo.json'), 'w'))

    # Two small activation stores with token layers, an offset layer, float16 storage.
    rng = np.random.default_rng(2024)
    N = 96
    Z = rng.standard_normal((N, 6))

    def layer(shape, noise, offset=0.0):
        d = int(np.prod(shape))
        W = rng.standard_normal((6, d)) / 2
        return (np.tanh(Z @ W) + noise * rng.standard_normal((N, d)) + offset).reshape((N,) + shape)

    A = {'blocks.0': (layer((5, 6), 0.3), 'float32'), 'blocks.1': (layer((20,), 0.8, offset=1000.0), 'float32'),
         'blocks.1:cls': (layer((7,), 0.5), 'float64')}
    B = {'blocks.0': (layer((12,), 0.6), 'float32'), 'blocks.1': (layer((3, 4), 1.0), 'float16')}
    ids = np.array([f'cls{i % 4}/img_{i:03d}.png' for i in range(N)], dtype=object)
    stored = {}
    for name, layers in (('a', A), ('b', B)):
        with h5py.File(os.path.join(out, f'cka_{name}.h5'), 'w') as f:
            f.attrs.update(format='activations', format_version=1, model=f'ref_{name}')
            f.create_dataset('inputs/ids', data=ids, dtype=h5py.string_dtype())
            for k, (n, (x, dt)) in enumerate(layers.items()):
                d = f.create_dataset(f'activations/{n}', data=x.astype(dt))
                d.attrs.update(order=k, kind='pooled' if ':' in n else 'block', block=int(n.split('.')[1][0]))
        with h5py.File(os.path.join(out, f'cka_{name}.h5'), 'r') as f:
            stored[name] = [(n, f['activations'][n][...].astype(np.float64)) for n in layers]

    def matrix(fn, tokens='flatten'):
        return [[fn(reduce_tokens(x, tokens), reduce_tokens(y, tokens)) for _, y in stored['b']] for _, x in stored['a']]

    exp = {'layers_a': [n for n, _ in stored['a']], 'layers_b': [n for n, _ in stored['b']], 'n': N, 'cases': {}}
    c = exp['cases']
    for bs in (16, 32):
        c[f'minibatch_bs{bs}'] = matrix(lambda x, y: minibatch_cka(x, y, bs))
    for t in ('cls', 'gap', 'gap_nocls'):
        c[f'minibatch_bs16_{t}'] = matrix(lambda x, y: minibatch_cka(x, y, 16), t)
    c['minibatch_bs16_shuffle7'] = matrix(lambda x, y: minibatch_cka(x, y, 16, splitmix_permutation(N, 7)))
    c['minibatch_bs16_shuffle7_passes2'] = matrix(lambda x, y: (lambda s: s)(
        _passes(x, y, 16, [splitmix_permutation(N, 7), splitmix_permutation(N, 8)])))
    c['debiased'] = matrix(lambda x, y: cka(gram_linear(x), gram_linear(y), debiased=True))
    c['linear'] = matrix(lambda x, y: cka(gram_linear(x), gram_linear(y)))
    c['rbf'] = matrix(lambda x, y: cka(gram_rbf(x, 0.5), gram_rbf(y, 0.5)))
    c['rbf_debiased_0.8'] = matrix(lambda x, y: cka(gram_rbf(x, 0.8), gram_rbf(y, 0.8), debiased=True))
    c['self_a_minibatch_bs16'] = [[minibatch_cka(reduce_tokens(x, 'flatten'), reduce_tokens(y, 'flatten'), 16)
                                   for _, y in stored['a']] for _, x in stored['a']]
    json.dump(exp, open(os.path.join(out, 'cka_expected.json'), 'w'), indent=1)


def _passes(x, y, bs, orders):
    """Minibatch CKA over several passes: HSIC sums over every batch of every pass."""
    n = len(x); k = n // bs; s = np.zeros(3)
    for order in orders:
        for i in range(k):
            rows = np.asarray(order)[i * bs:(i + 1) * bs]
            K, L = batch_gram(x[rows]), batch_gram(y[rows])
            s += [hsic1(K, L), hsic1(K, K), hsic1(L, L)]
    return s[0] / np.sqrt(s[1] * s[2])


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else '.')
