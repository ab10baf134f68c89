#!/usr/bin/env bash
# Issue 13's scale measurement: scDEFR on simulated data (1,000 genes, 20 types, simulation seed 1) at
# 25k, 100k and 400k cells, 2 ranks, one training epoch (no pretraining) in mini-batch steps, K = 20.
# The run's stage table gives the slowest rank's seconds and the largest rank's peak RSS per stage; the largest of
# those is the job's peak per rank. (/usr/bin/time's maximum RSS is not: each stage resets the kernel's high-water
# mark, which is all that ru_maxrss reports at exit, so it covers only the stages after the last reset.)
# usage: scripts/scdefr_scale.sh OUTDIR [CELLS ...]   (default 25000 100000 400000; ≈ 60 min on 2 cores)
set -eu
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SYNCYTIUM_BIN_DIR:-$root/.build/release}/syncytium"   # another build: SYNCYTIUM_BIN_DIR=.build-NAME/release
out=$1; shift
cells=("$@"); [ ${#cells[@]} -gt 0 ] || cells=(25000 100000 400000)
mkdir -p "$out"
for c in "${cells[@]}"; do
  [ -f "$out/sim_$c.h5ad" ] || mpirun -np 2 --bind-to none "$bin" simulate --cells "$c" --genes 1000 --types 20 --seed 1 \
    --output "$out/sim_$c.h5ad"
  mpirun -np 2 --bind-to none "$bin" cluster --model scdefr \
    --input "$out/sim_$c.h5ad" --output "$out/out_$c.h5ad" --clusters 20 --pretrain-epochs 0 --epochs 1 \
    --layout none --results-only --seed 0 > "$out/run_$c.log" 2>&1
  echo "== $c cells"; grep -E '^  [a-zA-Z+ ]+ [0-9.]+ s|cells/s  ETA 0s' "$out/run_$c.log" | tail -8
  grep -E '^  [a-zA-Z+ ]+ [0-9.]+ s .* peak ' "$out/run_$c.log" |
    awk '{ for (i = 1; i <= NF; i++) if ($i == "peak" && $(i + 1) > m) m = $(i + 1) } END { printf "peak RSS per rank (largest rank, largest stage): %.0f MiB\n", m }' 
done
