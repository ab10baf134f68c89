#!/usr/bin/env python3
"""Helpers for scripts/mpi_celldata_checks.sh (needs anndata + h5py; test-time only).

  celldata_fixtures.py bad DIR          write one small file per bad-input case into DIR
  celldata_fixtures.py check IN OUT     check OUT (written by `syncytium preprocess`) against IN with anndata
  celldata_fixtures.py simcheck FILE    check a `syncytium simulate` output with anndata
  celldata_fixtures.py graphclose A B TOL  obsp graphs of A and B agree
  celldata_fixtures.py close A B TOL    obsm['X_syncytium'] of A and B agree to TOL (relative)
"""
import shutil
import sys
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp


def small(n_obs=30, n_vars=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.poisson(1.0, size=(n_obs, n_vars)).astype(np.float32)
    x[x.sum(1) == 0, 0] = 1
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["a", "b", "c"], n_obs))},
                       index=[f"c{i}" for i in range(n_obs)])
    var = pd.DataFrame(index=[f"g{i}" for i in range(n_vars)])
    return ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var)


def bad(d):
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    good = d / "good.h5ad"
    small().write_h5ad(good)

    def variant(name, edit):
        p = d / f"{name}.h5ad"
        shutil.copy(good, p)
        with h5py.File(p, "r+") as f:
            edit(f)

    (d / "not_hdf5.h5ad").write_text("cell,gene,count\n1,2,3\n")
    (d / "empty_file.h5ad").write_bytes(b"")
    data = good.read_bytes()
    (d / "truncated.h5ad").write_bytes(data[: len(data) // 2])
    ad.AnnData(X=sp.csr_matrix((0, 5), dtype=np.float32)).write_h5ad(d / "zero_cells.h5ad")
    variant("missing_x", lambda f: f.__delitem__("X"))
    variant("unknown_encoding", lambda f: f["X"].attrs.__setitem__("encoding-type", "coo_matrix"))

    def setval(v):
        def e(f):
            a = f["X/data"][...]
            a[len(a) // 2] = v
            f["X/data"][...] = a
        return e
    variant("nan_counts", setval(np.nan))
    variant("inf_counts", setval(np.inf))
    variant("negative_counts", setval(-3))

    def nonmono(f):
        p = f["X/indptr"][...]
        p[len(p) // 2] = p[-1] + 5
        f["X/indptr"][...] = p
    variant("nonmonotone_indptr", nonmono)

    def oob(f):
        a = f["X/indices"][...]
        a[-2] = 1000
        f["X/indices"][...] = a
    variant("indices_out_of_range", oob)
    variant("shape_mismatch", lambda f: f["X"].attrs.__setitem__("shape", np.array([40, 12])))

    def strings(f):
        n = f["X/data"].shape[0]
        del f["X/data"]
        f["X"].create_dataset("data", data=np.array(["1"] * n, dtype=object), dtype=h5py.string_dtype())
    variant("string_values", strings)
    small(n_obs=2).write_h5ad(d / "two_cells.h5ad")
    # Not bad: the same matrix stored as CSR and as CSC (the CSC reader transposes across ranks).
    m = small(n_obs=300, n_vars=40, seed=5)
    m.write_h5ad(d / "layout_csr.h5ad")
    m.X = sp.csc_matrix(m.X)
    m.write_h5ad(d / "layout_csc.h5ad")
    z = small(n_obs=20)
    x = z.X.toarray()
    x[[3, 11]] = 0
    z.X = sp.csr_matrix(x)
    z.write_h5ad(d / "all_zero_cells.h5ad")
    print(f"wrote bad inputs to {d}")


def check(inp, out):
    a = ad.read_h5ad(inp)
    b = ad.read_h5ad(out)
    keep = np.asarray(a.X.sum(1)).ravel() > 0
    a = a[keep]
    assert list(b.obs_names) == list(a.obs_names), "obs names differ"
    for c in a.obs.columns:
        assert c in b.obs.columns, f"obs column {c} missing"
        assert (b.obs[c].astype(str).values == a.obs[c].astype(str).values).all(), f"obs column {c} differs"
    assert b.obs["syncytium_cluster"].dtype == "category"
    if "cell_type" in a.obs:
        assert (b.obs["syncytium_cluster"].cat.codes.values == a.obs["cell_type"].cat.codes.values).all()
    emb = b.obsm["X_syncytium"]
    assert emb.dtype == np.float32 and emb.shape[0] == a.n_obs, f"X_syncytium {emb.dtype} {emb.shape}"
    u = b.uns["syncytium"]
    assert np.isfinite(emb).all()
    if "pca_variance_ratio_sum" not in u["metrics"]:  # scaled genes are clipped at ±10
        assert np.abs(emb).max() <= 10
    assert "version" in u and "spec" in u and "metrics" in u, f"uns keys {list(u)}"
    assert int(u["metrics"]["cells_out"]) == a.n_obs
    assert set(b.var_names) <= set(a.var_names)
    print(f"ok {out}: {b.n_obs} cells, obs {list(b.obs.columns)}, X_syncytium {emb.shape}")


def close(a_path, b_path, tol):
    """obsm['X_syncytium'] of two outputs agree to tol relative to its largest magnitude."""
    a = ad.read_h5ad(a_path).obsm["X_syncytium"]
    b = ad.read_h5ad(b_path).obsm["X_syncytium"]
    assert a.shape == b.shape, f"{a.shape} vs {b.shape}"
    err = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
    assert err <= tol, f"max relative difference {err:.2e} > {tol}"
    print(f"ok: X_syncytium agrees to {err:.2e}")


def graphclose(a_path, b_path, tol):
    """obsp graphs of two outputs: same sparsity, values within tol; distances k per row."""
    a, b = ad.read_h5ad(a_path), ad.read_h5ad(b_path)
    for key in ("connectivities", "distances"):
        x, y = a.obsp[key].tocsr(), b.obsp[key].tocsr()
        assert (x != 0).astype(int).sum() == (y != 0).astype(int).sum(), f"{key}: nnz differ"
        assert abs((x != 0).astype(int) - (y != 0).astype(int)).sum() == 0, f"{key}: sparsity differs"
        err = abs(x - y).max()
        assert err <= tol, f"{key}: max difference {err:.2e} > {tol}"
    c = a.obsp["connectivities"]
    assert abs(c - c.T).max() == 0, "connectivities not symmetric"
    print(f"ok: obsp graphs agree ({a.obsp['distances'].nnz} distances)")


def readable(path, n_obs):
    """anndata reads an output written from a non-h5ad input."""
    b = ad.read_h5ad(path)
    assert b.n_obs == int(n_obs), f"{b.n_obs} cells, expected {n_obs}"
    assert b.obsm["X_syncytium"].shape[0] == b.n_obs and "syncytium" in b.uns
    print(f"ok {path}: {b.n_obs} cells, obs {list(b.obs.columns)}")


def simcheck(path):
    a = ad.read_h5ad(path)
    x = a.X
    assert sp.issparse(x) and x.dtype == np.float32
    assert (x.data > 0).all() and np.allclose(x.data, np.round(x.data))
    assert a.obs["cell_type"].dtype == "category" and a.obs["batch"].dtype == "category"
    counts = a.obs["cell_type"].value_counts()
    print(f"ok {path}: {a.n_obs} x {a.n_vars}, nnz {x.nnz}, types {dict(counts)}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "bad":
        bad(sys.argv[2])
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3])
    elif cmd == "close":
        close(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif cmd == "graphclose":
        graphclose(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif cmd == "readable":
        readable(sys.argv[2], sys.argv[3])
    elif cmd == "simcheck":
        simcheck(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
