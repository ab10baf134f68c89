#!/usr/bin/env bash
# `syncytium bench io` on N ranks next to anndata.read_h5ad of the same file.
#
#   scripts/bench_io_vs_anndata.sh [FILE] [RANKS]
#
# FILE defaults to /tmp/bench200k.h5ad, simulated first if missing (200,000 × 20,000,
# ~6% non-zero). Needs a release build in .build-data (swift build --scratch-path .build-data -c release)
# and anndata in $SYNCYTIUM_VENV (default /tmp/venv).
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SYNCYTIUM_BIN:-$ROOT/.build-data/release/syncytium}"
FILE="${1:-/tmp/bench200k.h5ad}"
RANKS="${2:-2}"
VENV="${SYNCYTIUM_VENV:-/tmp/venv}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --oversubscribe --bind-to none -np "$RANKS")
if [ ! -e "$FILE" ]; then
    "${MPI[@]}" "$BIN" simulate "$FILE" --cells 200000 --genes 20000 --mean-expression 0.05 --types 8 --rare-types 2 --batches 3
fi
"${MPI[@]}" "$BIN" bench io "$FILE" --json > /tmp/bench_io.json
cat /tmp/bench_io.json
"$VENV/bin/python" -W ignore - "$FILE" /tmp/bench_io.json <<'PY'
import json, resource, sys, time
import anndata as ad
path, ours = sys.argv[1], json.load(open(sys.argv[2]))
with open(path, "rb") as f:           # same warm page cache as the Swift run
    while f.read(16 << 20):
        pass
times = []
for _ in range(3):
    t = time.perf_counter(); a = ad.read_h5ad(path); times.append(time.perf_counter() - t); del a
t = sorted(times)[1]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"anndata.read_h5ad: median {t:.3f} s, peak RSS {rss / 2**20:.0f} MiB")
print(f"syncytium {ours['ranks']} ranks: {ours['parallelSeconds']:.3f} s  ->  {t / ours['parallelSeconds']:.2f}x faster than anndata")
print(f"max peak RSS / shard bytes over ranks: {ours['maxRSSOverShard']:.3f}")
PY
