#!/usr/bin/env bash
# Issue 13's scale measurement: scDEFR on simulated data (1,000 genes, 20 types, simulation seed 1) at
# 25k, 100k and 400k cells, 2 ranks, one training epoch (no pretraining) in mini-batch steps, K = 20.
# Every rank runs under /usr/bin/time, so each writes its own peak RSS (OUTDIR/rss_N.txt); the run's stage table gives the
# slowest rank's seconds and the largest rank's peak per stage.
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
  rm -f "$out/rss_$c.txt"   # one line per rank, appended (their stderr would interleave)
  mpirun -np 2 --bind-to none /usr/bin/time -a -o "$out/rss_$c.txt" -f "rank peak RSS %M KB, %e s" "$bin" cluster --model scdefr \
    --input "$out/sim_$c.h5ad" --output "$out/out_$c.h5ad" --clusters 20 --pretrain-epochs 0 --epochs 1 \
    --layout none --results-only --seed 0 > "$out/run_$c.log" 2>&1
  echo "== $c cells"; grep -E '^  [a-zA-Z+ ]+ [0-9.]+ s|cells/s  ETA 0s' "$out/run_$c.log" | tail -8; cat "$out/rss_$c.txt"
done
