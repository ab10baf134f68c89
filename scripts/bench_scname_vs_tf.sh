#!/usr/bin/env bash
# scNAME training throughput, one thread, batch 256: `syncytium bench model` next to TensorFlow
# (scNAME's framework) on the same file, interleaved in one run so both see the same machine.
#
#   scripts/bench_scname_vs_tf.sh [FILE] [ROUNDS]
#
# FILE defaults to the shared PBMC 4k file. Each round runs, one after another: ours (pre-train
# and fine-tune phases), TensorFlow's full pre-training step in graph mode and under XLA, and
# TensorFlow's network alone under XLA (MSE instead of ZINB, corruption outside the timed step —
# the figure the issue quotes). Medians over the rounds are printed at the end.
# TensorFlow lives in a throwaway venv ($SYNCYTIUM_TF_VENV, default /tmp/tfvenv; created with
# tensorflow-cpu and h5py from PyPI if missing). Needs a release build (launch/install).
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SYNCYTIUM_BIN:-$ROOT/.build/release/syncytium}"
FILE="${1:-$ROOT/../shared/data/pbmc_10x_4k_top2000.h5ad}"
ROUNDS="${2:-3}"
VENV="${SYNCYTIUM_TF_VENV:-/tmp/tfvenv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import tensorflow, h5py" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q tensorflow-cpu h5py
fi
export OPENBLAS_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2
OUT=$(mktemp -d)
for r in $(seq "$ROUNDS"); do
    "$BIN" bench model --input "$FILE" --phase pretrain --steps 60 | tee -a "$OUT/ours_pre"
    "$BIN" bench model --input "$FILE" --phase finetune --steps 60 | tee -a "$OUT/ours_fine"
    "$VENV/bin/python" "$ROOT/scripts/bench_scname_tf.py" --input "$FILE" 2>/dev/null | tee -a "$OUT/tf_graph"
    "$VENV/bin/python" "$ROOT/scripts/bench_scname_tf.py" --input "$FILE" --xla 2>/dev/null | tee -a "$OUT/tf_xla"
    "$VENV/bin/python" "$ROOT/scripts/bench_scname_tf.py" --input "$FILE" --xla --variant network 2>/dev/null | tee -a "$OUT/tf_net"
done
python3 - "$OUT" <<'PY'
import re, statistics, sys
d = sys.argv[1]
def cells(name):
    # ours: "step … ms  →  N cells/s per rank" (not the sgemm-bound line); tensorflow: "->  N cells/s"
    v = [int(m) for m in re.findall(r"(?:→|->)\s+(\d+) cells/s", open(f"{d}/{name}").read())]
    return statistics.median(v) if v else float("nan")
ours_pre, ours_fine = cells("ours_pre"), cells("ours_fine")
print("\nmedian cells/s per rank, 1 thread, batch 256:")
print(f"  syncytium scname pre-train   {ours_pre:8.0f}")
print(f"  syncytium scname fine-tune   {ours_fine:8.0f}")
for name, label in [("tf_graph", "tensorflow full step, graph"), ("tf_xla", "tensorflow full step, XLA"),
                    ("tf_net", "tensorflow network only, XLA")]:
    c = cells(name)
    print(f"  {label:29s}{c:8.0f}   syncytium pre-train / this = {ours_pre / c:.2f}")
PY
rm -rf "$OUT"
