"""Reference kNN distances and connectivities from scanpy, for Tests/NeighborsTests.

Run in a throwaway venv with scanpy installed (never needed at run time):
    python scripts/reference_connectivities.py Tests/NeighborsTests/Fixtures/connectivities.json
Writes the points (float32), scanpy's `distances` and `connectivities` (umap and gauss) as COO triplets.
"""
import json
import sys

import anndata as ad
import numpy as np
import scanpy as sc

rng = np.random.default_rng(7)
centres = rng.normal(scale=4.0, size=(5, 6))
labels = rng.integers(0, 5, size=400)
x = (centres[labels] + rng.normal(size=(400, 6))).astype(np.float32)
out = {"points": x.tolist(), "rows": 400, "dim": 6, "n_neighbors": 11, "scanpy": sc.__version__}
for method in ["umap", "gauss"]:
    a = ad.AnnData(X=x)
    sc.pp.neighbors(a, n_neighbors=11, use_rep="X", method=method, knn=True)
    for key in ["distances", "connectivities"]:
        m = a.obsp[key].tocoo()
        out[f"{method}_{key}"] = {"row": m.row.tolist(), "col": m.col.tolist(), "val": m.data.astype(float).tolist()}
json.dump(out, open(sys.argv[1], "w"))
print("wrote", sys.argv[1])
