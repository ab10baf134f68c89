#!/usr/bin/env python3
"""The schedule study behind Sources/Neighbors/Layout.swift: the same synchronous colour-class UMAP
epochs in numba (its own RNG, so not bit-equal to the Swift layout), on the graph and embedding of a
`syncytium cluster` output, for a number of colour classes S and pulls per sampled edge P; prints the
neighbourhood preservation (scripts/umap_compare.py's) per file.

usage: umap_schedule.py S P SEED OUT.h5ad [...]   (run in a venv with anndata, numba, scikit-learn)
"""
import sys, json, time, numpy as np, anndata as ad, numba
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from umap_compare import preservation

@numba.njit(fastmath=False)
def optimise(indptr, tail, period, y, n_epochs, S, pull, colour, a, b, seed):
    n = y.shape[0]
    negp = period / 5.0
    nxt = period.copy(); nneg = negp.copy()
    np.random.seed(seed)
    for ep in range(n_epochs):
        alpha = 1.0 - ep / n_epochs
        for s in range(S):
            new = y.copy()
            for i in range(n):
                if colour[i] != s: continue
                y0 = y[i, 0]; y1 = y[i, 1]
                for e in range(indptr[i], indptr[i + 1]):
                    if nxt[e] > ep: continue
                    t = tail[e]; o0 = y[t, 0]; o1 = y[t, 1]
                    for _ in range(pull):
                        d0 = y0 - o0; d1 = y1 - o1; d2 = d0 * d0 + d1 * d1
                        if d2 > 0:
                            c = -2 * a * b * d2 ** (b - 1) / (a * d2 ** b + 1)
                            y0 += min(4.0, max(-4.0, c * d0)) * alpha; y1 += min(4.0, max(-4.0, c * d1)) * alpha
                    nxt[e] += period[e]
                    k = int((ep - nneg[e]) / negp[e])
                    for _ in range(k):
                        j = np.random.randint(n)
                        if j == i: continue
                        d0 = y0 - y[j, 0]; d1 = y1 - y[j, 1]; d2 = d0 * d0 + d1 * d1
                        if d2 > 0:
                            c = 2 * b / ((0.001 + d2) * (a * d2 ** b + 1))
                            y0 += min(4.0, max(-4.0, c * d0)) * alpha; y1 += min(4.0, max(-4.0, c * d1)) * alpha
                        else:
                            y0 += 4 * alpha; y1 += 4 * alpha
                    if k > 0: nneg[e] += k * negp[e]
                new[i, 0] = y0; new[i, 1] = y1
            y[:] = new
    return y

def run(path, S, pull, seed=0):
    A = ad.read_h5ad(path)
    g = A.obsp["connectivities"].tocsr(); g.sort_indices()
    n = A.n_obs; ne = 500 if n <= 10000 else 200
    w = g.data.copy(); wmax = w.max()
    keep = w >= wmax / ne
    rows = np.repeat(np.arange(n), np.diff(g.indptr))
    rows, cols, w = rows[keep], g.indices[keep], w[keep]
    indptr = np.zeros(n + 1, np.int64); np.add.at(indptr, rows + 1, 1); indptr = np.cumsum(indptr)
    z = np.asarray(A.obsm["X_syncytium"], np.float64); z = z - z.mean(0)
    u, s, vt = np.linalg.svd(z, full_matrices=False); y = z @ vt[:2].T
    y = 10 * (y - y.min(0)) / (y.max(0) - y.min(0))
    rng = np.random.default_rng(seed); colour = rng.integers(0, S, n)
    t = time.time()
    y = optimise(indptr, cols.astype(np.int64), (wmax / w).astype(np.float64), y, ne, S, pull, colour, 0.5830300203414425, 1.3341669924314914, seed)
    return preservation(A.obsp["distances"], y), time.time() - t

if __name__ == "__main__":
    S, pull, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    for p in sys.argv[4:]:
        sc, t = run(p, S, pull, seed)
        print(json.dumps({"S": S, "pull": pull, "seed": seed, "file": p, "score": round(sc, 4), "sec": round(t, 1)}), flush=True)
