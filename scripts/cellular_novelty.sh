#!/usr/bin/env bash
# Novel-type detection check (see scripts/cellular_novelty.py); uses the venv of cellular_cv.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV=${SYNCYTIUM_CELLULAR_VENV:-/tmp/venv-cellular}
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q anndata scikit-learn; }
export OPENBLAS_NUM_THREADS=1
exec "$VENV/bin/python" "$ROOT/scripts/cellular_novelty.py" "${1:?DATA.h5ad}" "${3:-/tmp/cellular-novelty}" "${2:?TYPE[,TYPE…]}"
