#!/usr/bin/env bash
# The measurements of issue 16 (clusters without the answer) on the five shared datasets, 2 ranks.
# usage: scripts/clusters_auto.sh SET OUTDIR [SEEDS]   SET: A (K given), B (pretraining only, K given for
# the k-means of the output), C (--clusters auto), E (K given, --ensemble 3); SEEDS default "0 1 2".
# Each run writes OUTDIR/SET-DATASET-sSEED.{h5ad,log}; scripts/clusters_auto_candidates.py scores the
# label-free candidates on the B outputs' embeddings. Labels are read only to print ARI/NMI.
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA="${SYNCYTIUM_DATA:-../shared/data}"
declare -A K=([pbmc_10x_4k_top2000]=8 [human_kidney_top2000]=11 [worm_neuron]=10 [cite_cbmc_top2000]=15 [baron_mouse]=13)
set=$1; out=$2; seeds=${3:-0 1 2}
mkdir -p "$out"
for s in $seeds; do for d in pbmc_10x_4k_top2000 human_kidney_top2000 worm_neuron cite_cbmc_top2000 baron_mouse; do
  f=$out/$set-$d-s$s.h5ad
  [ -f "$f" ] && continue
  case $set in
    A) extra=(--clusters "${K[$d]}") ;;
    B) extra=(--clusters "${K[$d]}" --epochs 0 --cluster-method kmeans) ;;
    C) extra=(--clusters auto) ;;
    E) extra=(--clusters "${K[$d]}" --ensemble 3) ;;
    *) echo "unknown set $set"; exit 2 ;;
  esac
  launch/run 2 cluster "$DATA/$d.h5ad" --model "${MODEL:-scname}" --seed "$s" --label-key cell_type --layout none "${extra[@]}" \
    --output "$f" > "$out/$set-$d-s$s.log" 2>&1
  echo "$set $d s$s rc=$? $(grep -E '^ARI' "$out/$set-$d-s$s.log" | tail -1)"
done; done
