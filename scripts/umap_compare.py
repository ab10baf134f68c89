#!/usr/bin/env python3
"""Neighbourhood preservation of syncytium's obsm['X_umap'] vs umap-learn (sc.tl.umap) on the SAME graph.

usage: umap_compare.py OUT.h5ad [OUT2.h5ad ...] [--seeds 0,1,2]

For each `syncytium cluster` output (which holds obsp['connectivities'/'distances'] and
uns['neighbors'] as sc.pp.neighbors writes them, and obsm['X_umap']): the score of ours, then
sc.tl.umap on a copy (neighbors already present, nothing recomputed; spectral init, scanpy's defaults)
for each seed, with its wall time. Score = mean over cells of |graph neighbours ∩ k nearest in 2-D| / k,
graph neighbours = the row of obsp['distances'] (k = n_neighbors − 1 other cells), the same as
syncytium's NeighbourhoodPreservation. Prints one JSON line per file.
"""
import json, sys, time, warnings
import numpy as np

warnings.filterwarnings("ignore")


def per_cell_preservation(dist, y):
    """Per cell: |graph neighbours ∩ k nearest others in y| / |graph neighbours| (cells without neighbours left out)."""
    from sklearn.neighbors import NearestNeighbors
    dist = dist.tocsr()
    k = int(np.diff(dist.indptr).max())
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(y).kneighbors(y)
    out = []
    for i in range(dist.shape[0]):
        g = dist.indices[dist.indptr[i]:dist.indptr[i + 1]]
        if len(g) == 0:
            continue
        near = [j for j in idx[i] if j != i][:k]
        out.append(len(set(g.tolist()) & set(near)) / len(g))
    return np.array(out)


def preservation(dist, y):
    return float(per_cell_preservation(dist, y).mean())


def main():
    args = sys.argv[1:]
    seeds = [0]
    if "--seeds" in args:
        i = args.index("--seeds"); seeds = [int(s) for s in args[i + 1].split(",")]; del args[i:i + 2]
    import anndata as ad
    import scanpy as sc
    for path in args:
        a = ad.read_h5ad(path)
        m = a.uns.get("syncytium", {}).get("metrics", {})
        row = {"file": path, "cells": a.n_obs,
               "ours": preservation(a.obsp["distances"], np.asarray(a.obsm["X_umap"], dtype=np.float64)),
               "ours_seconds": float(m.get("layout_seconds", float("nan"))), "umap_learn": [], "umap_learn_seconds": []}
        for s in seeds:
            b = a.copy()
            t = time.time()
            sc.tl.umap(b, random_state=s)
            row["umap_learn_seconds"].append(time.time() - t)
            row["umap_learn"].append(preservation(b.obsp["distances"], np.asarray(b.obsm["X_umap"], dtype=np.float64)))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
