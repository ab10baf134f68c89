#!/usr/bin/env bash
# `bench gemm` (one MLP training step's GEMMs) through every entry path, interleaved R times:
# the bare binary (as `swift run` starts it), `launch/run 1`, a bare `mpirun -np 1`, and, as the
# baseline, the bare binary with OpenBLAS's own kernel choice (SYNCYTIUM_BLAS_AUTOSELECT=0).
# Prints the median step GFLOP/s of each and its ratio to launch/run.   scripts/bench_blas_entry_paths.sh [R]
set -u
source "$(dirname "${BASH_SOURCE[0]}")/../launch/common.sh"
BIN="$BIN_DIR/syncytium"; R=${1:-9}
export OPENBLAS_NUM_THREADS=1
out=$(mktemp); trap 'rm -f "$out"' EXIT
for i in $(seq 1 "$R"); do
  for path in bare launch mpirun own; do
    case $path in
      bare) j=$("$BIN" bench gemm --json) ;;
      launch) j=$("$ROOT/launch/run" 1 bench gemm --json) ;;
      mpirun) j=$(mpirun -np 1 -x OPENBLAS_NUM_THREADS "$BIN" bench gemm --json) ;;
      own) j=$(SYNCYTIUM_BLAS_AUTOSELECT=0 "$BIN" bench gemm --json) ;;
    esac
    echo "$path $(echo "$j" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["blasCore"], d["stepGflops"])')" >> "$out"
  done
done
python3 - "$out" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
med = {p: statistics.median(float(g) for q, c, g in rows if q == p) for p in ("bare", "launch", "mpirun", "own")}
core = {p: sorted({c for q, c, g in rows if q == p}) for p in med}
for p in med:
    print(f"{p:7s} {','.join(core[p]):12s} median {med[p]:7.1f} GFLOP/s   / launch/run {med[p] / med['launch']:.3f}")
PY
