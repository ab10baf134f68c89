#!/usr/bin/env python3
"""scanpy's standard pipeline on an .h5ad, per stage: wall time and peak RSS (VmHWM reset per stage).

usage: scanpy_pipeline.py FILE.h5ad [--no-scale]   (throwaway venv: scanpy, anndata, igraph, leidenalg, scikit-learn)

normalize_total 1e4, log1p, 2,000 HVG (seurat), scale 10 (unless --no-scale: PCA on the sparse log data), PCA 50,
neighbors 15, Leiden (igraph, res 1.0); the last line is JSON with the stages and the ARI against obs["cell_type"].
The side-by-side of issue 15 (docs/SCALING.md): the same file as `syncytium cluster`, on the same machine.
"""
import sys, time, json, os, warnings
warnings.filterwarnings("ignore")
import numpy as np

def hwm():
    for l in open("/proc/self/status"):
        if l.startswith("VmHWM:"): return int(l.split()[1]) / 1024
def reset():
    try:
        with open("/proc/self/clear_refs", "w") as f: f.write("5")
    except OSError: pass
stages = []; t = time.time(); reset()
def mark(name):
    global t
    now = time.time(); stages.append((name, now - t, hwm())); print(f"{name}: {now - t:.1f} s, peak {stages[-1][2]:.0f} MiB", flush=True); reset(); t = time.time()

import scanpy as sc, anndata as ad
import scipy.sparse as sp
# scanpy 1.11.5 calls csr_array.getnnz(axis=1), which scipy 1.17 removed (sc.pp.neighbors' shortcut): shim it.
if not hasattr(sp.csr_array, "getnnz"):
    sp.csr_array.getnnz = lambda self, axis=None: (np.diff(self.indptr) if axis == 1 else self.nnz)
sc.settings.n_jobs = 1
a = ad.read_h5ad(sys.argv[1]); mark("read")
sc.pp.normalize_total(a, target_sum=1e4); sc.pp.log1p(a); mark("normalize_total + log1p")
sc.pp.highly_variable_genes(a, n_top_genes=2000, flavor="seurat"); a = a[:, a.var.highly_variable].copy(); mark("hvg")
if "--no-scale" not in sys.argv: sc.pp.scale(a, max_value=10); mark("scale")
sc.tl.pca(a, n_comps=50); mark("pca")
sc.pp.neighbors(a, n_neighbors=15); mark("neighbors")
sc.tl.leiden(a, flavor="igraph", n_iterations=2, random_state=0); mark("leiden")
from sklearn.metrics import adjusted_rand_score
ari = adjusted_rand_score(a.obs["cell_type"], a.obs["leiden"])
total = sum(s[1] for s in stages)
print(json.dumps({"cells": a.n_obs, "stages": stages, "total_seconds": total, "peak_mib": max(s[2] for s in stages),
                  "leiden_clusters": int(a.obs["leiden"].nunique()), "ari": ari}), flush=True)
