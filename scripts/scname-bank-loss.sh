#!/usr/bin/env bash
# scNAME's neighbourhood loss, exact vs sampled bank (issue "atlas scale"): every shared dataset, K given,
# default schedule, 2 ranks, seeds given; prints one line per run (dataset, mode, seed, ARI, NMI, wall s)
# and the mean ARI per (dataset, mode). Labels only score the runs.
#   scripts/scname-bank-loss.sh [seeds] [modes]     e.g. "0 1" "exact sampled:4096 sampled:1024"
set -u
source "$(dirname "${BASH_SOURCE[0]}")/../launch/common.sh"
DATA="${SYNCYTIUM_DATA:-$ROOT/../shared/data}"; [ -d "$DATA" ] || DATA=/work/shared/data
SEEDS=${1:-"0 1"}; MODES=${2:-"exact sampled:4096 sampled:1024"}
OUT=${SYNCYTIUM_BANK_OUT:-$(mktemp -d /tmp/scname-bank.XXXXXX)}
declare -A TYPES=([pbmc_10x_4k_top2000]=8 [human_kidney_top2000]=11 [worm_neuron]=10 [cite_cbmc_top2000]=15 [baron_mouse]=13)
export OPENBLAS_NUM_THREADS=1
for seed in $SEEDS; do
  for name in pbmc_10x_4k_top2000 human_kidney_top2000 worm_neuron cite_cbmc_top2000 baron_mouse; do
    for mode in $MODES; do
      m=${mode%%:*}; neg=${mode#*:}; [ "$neg" = "$mode" ] && neg=4096
      start=$(date +%s.%N)
      "$ROOT/launch/run" 2 cluster "$DATA/$name.h5ad" --model scname --clusters "${TYPES[$name]}" --label-key cell_type \
        --seed "$seed" --bank-loss "$m" --bank-negatives "$neg" >"$OUT/$name.$mode.$seed.log" 2>&1
      secs=$(echo "$(date +%s.%N) - $start" | bc)
      line=$(grep -Eo "ARI [0-9.]+  NMI [0-9.]+" "$OUT/$name.$mode.$seed.log" | tail -1)
      printf "%-22s %-14s seed %s  %s  %.0f s\n" "$name" "$mode" "$seed" "${line:-FAILED}" "$secs"
    done
  done
done | tee "$OUT/table.txt"
awk '{k=$1" "$2; s[k]+=$6; n[k]++} END {for (k in s) printf "mean %-37s ARI %.3f over %d\n", k, s[k]/n[k], n[k]}' "$OUT/table.txt" | sort
