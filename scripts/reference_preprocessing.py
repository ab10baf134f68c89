#!/usr/bin/env python3
"""Reference values from scanpy for CellData's preprocessing tests.

Run in a throwaway venv (never needed at run time):
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install -q scanpy anndata scikit-misc
    /tmp/venv/bin/python scripts/reference_preprocessing.py /work/shared/data Tests/CellDataTests/Fixtures

For every .h5ad in DATA_DIR it writes FIXTURES/<name>.reference.json with:
  - hvg_seurat_v3: the same with flavor="seurat_v3" on the raw counts (needs scikit-misc)
  - hvg500_seurat / hvg500_cell_ranger: the same with n_top_genes=500
  - hvg_seurat / hvg_cell_ranger: indices of the 2,000 highly variable genes (scanpy 1.11,
    normalize_total(target_sum=1e4) -> log1p -> highly_variable_genes(n_top_genes=2000, flavor=...))
  - median_target: the target scanpy uses when target_sum=None (median of cell counts)
  - samples: [row, col, value] of log1p(normalize_total(target_sum=1e4)) at fixed stored entries
  - samples_median: the same with target_sum=None
  - scale_samples: [row, col, value] of scale(max_value=10) on the log data (dense), fixed positions
"""
import json
import sys
from pathlib import Path

import numpy as np
import scanpy as sc
import scipy.sparse as sp


def entries(x, k, seed):
    """k fixed stored entries (row, col) of CSR x, chosen with a seeded generator."""
    x = sp.csr_matrix(x)
    rng = np.random.default_rng(seed)
    picks = rng.choice(x.nnz, size=min(k, x.nnz), replace=False)
    rows = np.searchsorted(x.indptr, picks, side="right") - 1
    return [(int(r), int(x.indices[p])) for r, p in zip(rows, picks)]


def main(data_dir, out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(Path(data_dir).glob("*.h5ad")):
        raw = sc.read_h5ad(f)
        raw.X = sp.csr_matrix(raw.X, dtype=np.float32)
        ref = {"file": f.name, "n_obs": raw.n_obs, "n_vars": raw.n_vars, "scanpy": sc.__version__}
        pos = entries(raw.X, 200, 0)

        a = raw.copy()
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
        ref["samples"] = [[r, c, float(a.X[r, c])] for r, c in pos]
        for flavor in ["seurat", "cell_ranger"]:
            h = sc.pp.highly_variable_genes(a, n_top_genes=2000, flavor=flavor, inplace=False)
            ref[f"hvg_{flavor}"] = [int(i) for i in np.flatnonzero(h["highly_variable"].to_numpy())]
            # 500 of the top-2000 files too, where 2,000 would select every gene.
            h = sc.pp.highly_variable_genes(a, n_top_genes=500, flavor=flavor, inplace=False)
            ref[f"hvg500_{flavor}"] = [int(i) for i in np.flatnonzero(h["highly_variable"].to_numpy())]
        scaled = sc.pp.scale(a.copy(), max_value=10, copy=True).X
        rng = np.random.default_rng(1)
        sp_pos = [(int(rng.integers(a.n_obs)), int(rng.integers(a.n_vars))) for _ in range(100)]
        ref["scale_samples"] = [[r, c, float(scaled[r, c])] for r, c in sp_pos]

        try:
            h3 = sc.pp.highly_variable_genes(raw.copy(), n_top_genes=2000, flavor="seurat_v3", inplace=False)
            ref["hvg_seurat_v3"] = [int(i) for i in np.flatnonzero(h3["highly_variable"].to_numpy())]
            h3 = sc.pp.highly_variable_genes(raw.copy(), n_top_genes=500, flavor="seurat_v3", inplace=False)
            ref["hvg500_seurat_v3"] = [int(i) for i in np.flatnonzero(h3["highly_variable"].to_numpy())]
        except ValueError as e:  # skmisc's loess can fail ("reciprocal condition number") on some data
            ref["hvg_seurat_v3_error"] = str(e)

        b = raw.copy()
        counts = np.asarray(b.X.sum(axis=1)).ravel()
        ref["median_target"] = float(np.median(counts.astype(np.float32)))
        sc.pp.normalize_total(b)
        sc.pp.log1p(b)
        ref["samples_median"] = [[r, c, float(b.X[r, c])] for r, c in pos]

        path = out_dir / (f.stem + ".reference.json")
        path.write_text(json.dumps(ref, separators=(",", ":")) + "\n")
        print(f"{f.name}: {raw.n_obs} x {raw.n_vars} -> {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data",
         sys.argv[2] if len(sys.argv) > 2 else "Tests/CellDataTests/Fixtures")
