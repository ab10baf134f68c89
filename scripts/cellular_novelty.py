"""Novel types with a saved CELLULAR model: hold one type out of training, annotate the held-out fold.

    scripts/cellular_novelty.sh DATA.h5ad TYPE[,TYPE…]        (in the venv of cellular_cv.sh)

Fold 1 of StratifiedKFold(5, shuffle=True, random_state=42) on obs['cell_type']; the model is trained
on the fold's training cells minus TYPE and applied to all of the fold's test cells. Reports the AUROC
of obs['novelty_score'] for the held-out type's cells against the rest, how many of them are called
novel (obs['novel_cell']) and how many known cells are, and whether the dataset-level flag fires; and
for comparison the same with nothing held out (the flag should not fire)."""
import json, os, subprocess, sys, warnings
import anndata, numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
warnings.filterwarnings("ignore")
data, out, held = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.makedirs(out, exist_ok=True)
a = anndata.read_h5ad(data)
y = a.obs["cell_type"].astype(str).values
tr, te = next(StratifiedKFold(5, shuffle=True, random_state=42).split(np.zeros(len(y)), y))
a[te].copy().write_h5ad(f"{out}/test.h5ad")
for t in ["(none)"] + held:
    keep = tr if t == "(none)" else tr[y[tr] != t]
    tag = "none" if t == "(none)" else t.replace("/", "_")
    a[keep].copy().write_h5ad(f"{out}/train_{tag}.h5ad")
    model = f"{out}/model_{tag}"
    subprocess.run(["rm", "-rf", model], check=True)
    subprocess.run([f"{root}/launch/run", "2", "embed", f"{out}/train_{tag}.h5ad", "--label-key", "cell_type", "--batch-key", "batch",
                    "--save-model", model], check=True, capture_output=True)
    r = subprocess.run([f"{root}/launch/run", "2", "annotate", f"{out}/test.h5ad", "--load-model", model, "--output",
                        f"{out}/ann_{tag}.h5ad"], check=True, capture_output=True, text=True)
    q = anndata.read_h5ad(f"{out}/ann_{tag}.h5ad")
    m = q.uns["syncytium"]["metrics"]
    res = {"held_out": t, "flag": str(m["novel_type_flag"]), "min_rescaled_confidence": float(m["min_rescaled_confidence"]),
           "novel_called": int(q.obs["novel_cell"].sum())}
    if t != "(none)":
        is_new = (q.obs["cell_type"].astype(str).values == t)
        res["held_out_cells"] = int(is_new.sum())
        res["auroc"] = float(roc_auc_score(is_new, q.obs["novelty_score"].values))
        res["held_out_called_novel"] = int((q.obs["novel_cell"].values & is_new).sum())
        res["known_called_novel"] = int((q.obs["novel_cell"].values & ~is_new).sum())
    print(json.dumps(res), flush=True)
