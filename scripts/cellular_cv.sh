#!/usr/bin/env bash
# CELLULAR vs CELLULAR-CL (PyPI 0.0.4) vs logistic regression on the same 5 stratified folds:
#   scripts/cellular_cv.sh DATA.h5ad [FOLDS, e.g. 1 or 1,2,3,4,5] [OUT]
# The peer runs in a throwaway venv (never a dependency). As shipped, CELLULAR-CL 0.0.4 cannot train on
# a machine without an NVIDIA GPU, so three local patches are applied to the venv copy only:
#   1. functions/train.py: the loss module's default device "cuda" → "cpu" (otherwise a bare except
#      skips every mini-batch and training "finishes" after zero steps);
#   2. TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the current torch's torch.load default;
#   3. functions/predict.py: float(array) of a 1-element array → float(array[0]) (NumPy 2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA=${1:?usage: scripts/cellular_cv.sh DATA.h5ad [FOLDS] [OUT]}; FOLDS=${2:-1,2,3,4,5}; OUT=${3:-/tmp/cellular-cv}
VENV=${SYNCYTIUM_CELLULAR_VENV:-/tmp/venv-cellular}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import CELLULAR_CL" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch CELLULAR-CL
fi
PKG=$("$VENV/bin/python" -c "import CELLULAR_CL, os; print(os.path.dirname(CELLULAR_CL.__file__))")
sed -i 's/device: str="cuda"):/device: str="cpu"):/' "$PKG/functions/train.py"
sed -i 's/pred_prob.append(float(pred\[binary_pred==1\]))/pred_prob.append(float(pred[binary_pred==1][0]))/' "$PKG/functions/predict.py"
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 OPENBLAS_NUM_THREADS=1
exec "$VENV/bin/python" "$ROOT/scripts/cellular_cv.py" "$DATA" "$OUT" "$FOLDS"
