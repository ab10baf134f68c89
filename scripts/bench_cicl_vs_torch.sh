#!/usr/bin/env bash
# CICL training throughput, one thread, batch 256, 2,000 genes: `syncytium bench model --model cicl`
# next to PyTorch (CICL's framework) on the same file, interleaved in one run so that both see the
# same machine.
#
#   scripts/bench_cicl_vs_torch.sh [FILE] [ROUNDS]
#
# FILE defaults to the shared PBMC 4k file (2,000 genes). Each round runs, one after another: ours
# (full Trainer steps, next to the raw sgemm of the same GEMMs), then scripts/bench_cicl_torch.py
# with the reference's modules (W_Q/W_K computed, the Python loop over clusters) and with the lean
# rewrite (no W_Q/W_K, no_grad clean pass, masked pair loss). Medians over the rounds at the end.
# PyTorch lives in a throwaway venv ($SYNCYTIUM_TORCH_VENV, default /tmp/venv-cicl; created with
# the CPU wheel from /opt/wheels if present, else PyPI's torch, plus h5py). Needs a release build.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SYNCYTIUM_BIN:-$ROOT/.build/release/syncytium}"
FILE="${1:-$ROOT/../shared/data/pbmc_10x_4k_top2000.h5ad}"
ROUNDS="${2:-3}"
VENV="${SYNCYTIUM_TORCH_VENV:-/tmp/venv-cicl}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, h5py" 2>/dev/null; then
    python3 -m venv "$VENV"
    wheel=$(ls /opt/wheels/torch-*cpu*.whl 2>/dev/null | head -1 || true)
    "$VENV/bin/pip" install -q ${wheel:-torch} h5py numpy
fi
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
OUT=$(mktemp -d)
for r in $(seq "$ROUNDS"); do
    "$BIN" bench model --model cicl --input "$FILE" --steps 10 --warmup 2 | tee -a "$OUT/ours"
    "$VENV/bin/python" "$ROOT/scripts/bench_cicl_torch.py" --input "$FILE" --variant reference 2>/dev/null | tee -a "$OUT/torch_ref"
    "$VENV/bin/python" "$ROOT/scripts/bench_cicl_torch.py" --input "$FILE" --variant lean 2>/dev/null | tee -a "$OUT/torch_lean"
done
python3 - "$OUT" <<'PY'
import re, statistics, sys
d = sys.argv[1]
def med(name, pattern):
    v = [float(m) for m in re.findall(pattern, open(f"{d}/{name}").read())]
    return statistics.median(v) if v else float("nan")
ours = med("ours", r"→\s+(\d+) cells/s per rank")
ratio = med("ours", r"step / sgemm = ([0-9.]+)")
ref, lean = med("torch_ref", r"->\s+(\d+) cells/s"), med("torch_lean", r"->\s+(\d+) cells/s")
print("\nmedian cells/s, 1 thread, batch 256:")
print(f"  syncytium cicl                 {ours:8.0f}   (step / raw sgemm of its GEMMs = {ratio:.3f})")
print(f"  torch, reference modules       {ref:8.0f}   syncytium / this = {ours / ref:.2f}")
print(f"  torch, lean rewrite            {lean:8.0f}   syncytium / this = {ours / lean:.2f}")
PY
rm -rf "$OUT"
