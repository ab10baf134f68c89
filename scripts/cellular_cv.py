"""CELLULAR side by side with its reference implementation and a simple baseline, on the same folds.

    scripts/cellular_cv.sh DATA.h5ad [FOLDS]      (creates the venv; see there)

For each of the 5 stratified folds (scikit-learn StratifiedKFold(5, shuffle=True, random_state=42) on
obs['cell_type'], as CELLULAR's reproducibility code): the training cells and the held-out cells are
written as two .h5ad files (raw counts), then
  - syncytium: `embed TRAIN --save-model M` (2 ranks) and `annotate TEST --load-model M`, timed;
  - CELLULAR-CL 0.0.4 (PyPI) on the same cells, log1p-normalised as its tutorial, 2 torch threads:
    `train(..., train_classifier=True, optimize_classifier=False)` then `predict(use_classifier=True)`;
    as shipped it cannot train without an NVIDIA GPU, see cellular_cv.sh for the three patches;
  - scikit-learn LogisticRegression on 50 PCs of log1p(normalize_total 1e4) of the training cells.
Reported per fold and as means: accuracy, balanced accuracy, weighted F1, training seconds, and the
batch mixing of the held-out cells' embedding (scIB's batch ASW: per type, 1 − |silhouette of the batch
labels|, averaged over the type's cells, then over types; 1 = fully mixed).
"""
import json, os, subprocess, sys, time, warnings

import anndata
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, silhouette_samples
from sklearn.model_selection import StratifiedKFold

warnings.filterwarnings("ignore")
data, out = sys.argv[1], sys.argv[2]
folds = [int(f) for f in sys.argv[3].split(",")] if len(sys.argv) > 3 else [1, 2, 3, 4, 5]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
label, batch = "cell_type", "batch"
os.makedirs(out, exist_ok=True)
a = anndata.read_h5ad(data)
y = a.obs[label].astype(str).values


def dense(m):
    return np.asarray(m.todense() if hasattr(m, "todense") else m, dtype=np.float32)


def lognorm(x):
    return np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4)


def scores(truth, pred):
    return dict(accuracy=accuracy_score(truth, pred), balanced=balanced_accuracy_score(truth, pred),
                f1=f1_score(truth, pred, average="weighted"))


def batch_asw(emb, types, batches):
    vals = []
    for t in np.unique(types):
        m = types == t
        if len(np.unique(batches[m])) < 2 or m.sum() < 3:
            continue
        s = silhouette_samples(emb[m], batches[m])
        vals.append(np.mean(1 - np.abs(s)))
    return float(np.mean(vals)) if vals else float("nan")


rows = []
for k, (tr, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=42).split(np.zeros(len(y)), y), start=1):
    if k not in folds:
        continue
    ftr, fte = f"{out}/fold{k}_train.h5ad", f"{out}/fold{k}_test.h5ad"
    a[tr].copy().write_h5ad(ftr); a[te].copy().write_h5ad(fte)
    truth = y[te]
    res = {"fold": k}
    # syncytium
    model = f"{out}/fold{k}_model"
    subprocess.run(["rm", "-rf", model], check=True)
    t0 = time.time()
    subprocess.run([f"{root}/launch/run", "2", "embed", ftr, "--label-key", label, "--batch-key", batch, "--save-model", model],
                   check=True, capture_output=True)
    t1 = time.time()
    r = subprocess.run([f"{root}/launch/run", "2", "annotate", fte, "--load-model", model, "--label-key", label,
                        "--output", f"{out}/fold{k}_ours.h5ad"], check=True, capture_output=True, text=True)
    t2 = time.time()
    q = anndata.read_h5ad(f"{out}/fold{k}_ours.h5ad")
    res["ours"] = scores(truth, q.obs["predicted_cell_type"].astype(str).values)
    # The classifier is trained inside the first annotate: count that part as training time.
    res["ours"]["train_s"] = (t1 - t0) + (t2 - t1)
    res["ours"]["batch_asw"] = batch_asw(q.obsm["X_cellular"], truth, a.obs[batch].astype(str).values[te])
    # logistic regression on 50 PCs
    xtr, xte = lognorm(dense(a.X[tr])), lognorm(dense(a.X[te]))
    t0 = time.time()
    pca = PCA(50, random_state=0).fit(xtr)
    lr = LogisticRegression(max_iter=3000).fit(pca.transform(xtr), y[tr])
    res["logreg"] = scores(truth, lr.predict(pca.transform(xte)))
    res["logreg"]["train_s"] = time.time() - t0
    res["logreg"]["batch_asw"] = batch_asw(pca.transform(xte), truth, a.obs[batch].astype(str).values[te])
    # CELLULAR-CL
    try:
        import torch
        import CELLULAR_CL
        torch.set_num_threads(2)
        btr, bte = a[tr].copy(), a[te].copy()
        for b in (btr, bte):
            b.X = lognorm(dense(b.X))
        path = f"{out}/fold{k}_cellular_cl/"
        subprocess.run(["rm", "-rf", path], check=True)
        t0 = time.time()
        CELLULAR_CL.train(adata=btr, target_key=label, batch_key=batch, model_path=path, train_classifier=True,
                          optimize_classifier=False, device="cpu", seed=42)
        tt = time.time() - t0
        pred = CELLULAR_CL.predict(adata=bte, model_path=path, use_classifier=True, device="cpu")
        emb = CELLULAR_CL.predict(adata=bte, model_path=path, use_classifier=False, device="cpu")
        res["cellular_cl"] = scores(truth, np.asarray(pred).astype(str))
        res["cellular_cl"]["train_s"] = tt
        res["cellular_cl"]["batch_asw"] = batch_asw(np.asarray(emb), truth, a.obs[batch].astype(str).values[te])
    except Exception as e:  # reported, never hidden
        res["cellular_cl"] = {"error": repr(e)[:200]}
    rows.append(res)
    print(json.dumps(res), flush=True)

print("\nmeans over folds " + ",".join(str(r["fold"]) for r in rows))
for who in ("ours", "cellular_cl", "logreg"):
    ok = [r[who] for r in rows if "error" not in r[who]]
    if not ok:
        print(f"{who:12s} failed: {rows[0][who].get('error')}")
        continue
    m = {key: float(np.mean([o[key] for o in ok])) for key in ("accuracy", "balanced", "f1", "train_s", "batch_asw")}
    print(f"{who:12s} accuracy {m['accuracy']:.4f}  balanced {m['balanced']:.4f}  weighted F1 {m['f1']:.4f}  "
          f"batch ASW {m['batch_asw']:.4f}  training {m['train_s']:.1f} s")
