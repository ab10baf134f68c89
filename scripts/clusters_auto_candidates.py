#!/usr/bin/env python3
"""Issue 16's candidate study: label-free ways to choose K, scored on the pretrained embeddings that
`scripts/clusters_auto.sh B DIR` writes (obsm['X_syncytium'] and its kNN connectivities in obsp).

usage: clusters_auto_candidates.py B-*.h5ad   (venv: anndata, igraph, scikit-learn, scipy)

Per file: Leiden (igraph, modularity, n_iterations 2, beta 0.01, as sc.tl.leiden flavor='igraph') at
each resolution of a grid with 5 seeds — communities, mean pairwise ARI between the seeds (stability),
ARI against the labels; the K of the best mean silhouette and Calinski–Harabasz of k-means for K = 2…30;
the eigengap K of the normalised adjacency. One JSON line per file. Labels score the candidates only.
"""
import sys, json, numpy as np, anndata as ad, igraph as ig, warnings
from sklearn.metrics import adjusted_rand_score as ARI, silhouette_score, calinski_harabasz_score
from sklearn.cluster import KMeans
warnings.filterwarnings("ignore")
TRUE = dict(pbmc_10x_4k_top2000=8, human_kidney_top2000=11, worm_neuron=10, cite_cbmc_top2000=15, baron_mouse=13)

def graph(a):
    G = a.obsp["connectivities"].tocoo()
    m = G.row < G.col
    g = ig.Graph(n=a.n_obs, edges=list(zip(G.row[m].tolist(), G.col[m].tolist())), directed=False)
    g.es["weight"] = G.data[m].tolist()
    return g

def leiden(g, res, seed=0):
    import random; random.seed(seed); ig.set_random_number_generator(random)
    p = g.community_leiden(objective_function="modularity", weights="weight", resolution=res, n_iterations=2, beta=0.01)
    return np.array(p.membership)

def load(path):
    a = ad.read_h5ad(path)
    return a, np.asarray(a.obsm["X_syncytium"], dtype=np.float64), a.obs["cell_type"].astype(str).values

for path in sys.argv[1:]:
    a, Z, y = load(path)
    name = path.split("/")[-1].split("-", 1)[1].rsplit("-s", 1)[0]
    out = {"file": path.split("/")[-1], "true_k": TRUE[name]}
    g = graph(a)
    grid = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0]
    res = {}
    for r in grid:
        parts = [leiden(g, r, s) for s in range(5)]
        ks = [len(set(p)) for p in parts]
        stab = np.mean([ARI(parts[i], parts[j]) for i in range(5) for j in range(i + 1, 5)])
        res[r] = dict(k=int(np.median(ks)), stab=round(float(stab), 3), ari=round(float(ARI(y, parts[0])), 3),
                      q=round(g.modularity(parts[0], weights="weight", resolution=r), 3))
    out["leiden"] = res
    rng = np.random.default_rng(0); idx = rng.choice(len(Z), min(2000, len(Z)), replace=False)
    sil, ch = {}, {}
    for k in range(2, 31):
        lab = KMeans(k, n_init=3, random_state=0).fit_predict(Z)
        sil[k] = round(float(silhouette_score(Z[idx], lab[idx])), 3); ch[k] = round(float(calinski_harabasz_score(Z, lab)), 1)
    out["sil_k"] = max(sil, key=sil.get); out["ch_k"] = max(ch, key=ch.get)
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh
    A = a.obsp["connectivities"].tocsr().astype(np.float64) + sp.identity(a.n_obs)
    d = np.asarray(A.sum(1)).ravel() ** -0.5
    M = sp.diags(d) @ A @ sp.diags(d)
    ev = np.sort(eigsh(M, k=32, which="LA")[0])[::-1]
    gaps = ev[1:31] - ev[2:32]  # gap after the k-th eigenvalue, k = 2..31
    out["eig_k"] = int(np.argmax(gaps) + 2)
    print(json.dumps(out), flush=True)
