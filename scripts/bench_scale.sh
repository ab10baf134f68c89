#!/usr/bin/env bash
# Issue 15's scale table: `cluster --model scname` on simulated data (2,000 genes, 20 types, 4 rare, 2 batches,
# simulation seed 1) at several cell counts on 1 and 2 ranks, with per-stage seconds and peak RSS (the run's own
# stage table; its largest peak is the job's peak per rank), the step throughput of both training phases from the
# metrics log, the training time outside the steps (K choice, bank graphs, embedding passes), and ARI against
# the simulated types. The last columns check docs/SCALING.md's cost model: its per-step cost does not depend on N,
# so a step measured at one size predicts every other size on the same P; the layout is linear in cells per rank
# (E_l = 200 epochs above 10,000 cells), predicted here from the first size measured on the same P.
#
# usage: scripts/bench_scale.sh OUTDIR [CELLS ...]       (default 100000 300000; ≈ 15 min on 2 cores)
#   RANKS="1 2"   rank counts (default "1 2")
#   EPOCHS=N      epochs per phase (default 1: enough for per-step costs; EPOCHS=default keeps the size rule)
#   REUSE=1       read runs an earlier invocation finished in OUTDIR instead of rerunning them
#   SYNCYTIUM_BIN_DIR=.build-NAME/release  another build
# Prints one markdown table on stdout; logs and metrics stay in OUTDIR.
set -eu
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One BLAS thread per rank, so that P ranks use P cores and the constants are per core (OPENBLAS_NUM_THREADS=T
# from the caller is kept). mpirun passes the environment to its local ranks.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SYNCYTIUM_BIN_DIR:-$root/.build/release}/syncytium"
[ -x "$bin" ] || { echo "bench_scale: no binary at $bin (run launch/install)" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: scripts/bench_scale.sh OUTDIR [CELLS ...]" >&2; exit 2; }
out=$1; shift
cells=("$@"); [ ${#cells[@]} -gt 0 ] || cells=(100000 300000)
ranks=(${RANKS:-1 2})
epochs=${EPOCHS:-1}
mkdir -p "$out"
schedule=(); [ "$epochs" = default ] || schedule=(--pretrain-epochs "$epochs" --epochs "$epochs")

# Median of the numbers on stdin (empty input: "nan").
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# One field of a stage line of the run's stage table: stage_field LOG "train" 1 → seconds, 2 → peak MiB.
stage_field() { grep -E "^  $2 +[0-9.]+ s" "$1" | tail -1 | awk -v f="$3" '{ for (i = 1; i <= NF; i++) if ($i == "s") { s = $(i - 1) } else if ($i == "peak") { p = $(i + 1) } } END { print (f == 1 ? s : p) }'; }

rows=()
declare -A firstStep firstLayout firstCells
for c in "${cells[@]}"; do
  sim="$out/sim_$c.h5ad"
  [ -f "$sim" ] || mpirun -np 2 --bind-to none "$bin" simulate --cells "$c" --genes 2000 --types 20 --rare-types 4 \
    --batches 2 --seed 1 --output "$sim" > "$out/simulate_$c.log" 2>&1
  for p in "${ranks[@]}"; do
    tag="${c}_p$p"
    log="$out/run_$tag.log"
    if [ -n "${REUSE:-}" ] && [ -s "$out/wall_$tag.txt" ] && grep -q '^ARI ' "$log"; then
      wall=$(cat "$out/wall_$tag.txt")   # REUSE=1: a finished run of an earlier invocation is read, not rerun
    else
      rm -f "$out/metrics_$tag.jsonl" "$out/wall_$tag.txt"
      start=$(date +%s.%N)
      mpirun -np "$p" --bind-to none "$bin" cluster --model scname \
        --input "$sim" --output "$out/out_$tag.h5ad" --results-only --clusters 20 --label-key cell_type \
        --seed 0 --metrics "$out/metrics_$tag.jsonl" "${schedule[@]}" > "$log" 2>&1 \
        || { echo "bench_scale: the $c-cell run on $p ranks failed; see $log" >&2; exit 1; }
      wall=$(echo "$(date +%s.%N) - $start" | bc)
      echo "$wall" > "$out/wall_$tag.txt"
    fi
    # Phase of each step: epochs below the pretraining count are pretraining. With EPOCHS=default both phases
    # take the same size rule, so the count is half the total of the progress lines ("epoch i/T").
    if [ "$epochs" = default ]; then
      pre=$(( $(grep -oE 'epoch [0-9]+/[0-9]+' "$log" | tail -1 | cut -d/ -f2) / 2 ))
    else pre=$epochs; fi
    tp=$(grep -oE '"epoch":[0-9]+|"seconds":[0-9.e+-]+' "$out/metrics_$tag.jsonl" | paste -d' ' - - |
      awk -v pre="$pre" '{ split($1, e, ":"); split($2, s, ":"); print (e[2] < pre ? "p" : "f"), s[2] }')
    stepPre=$(echo "$tp" | awk '$1 == "p" { print $2 }' | median)
    stepFine=$(echo "$tp" | awk '$1 == "f" { print $2 }' | median)
    stepSum=$(echo "$tp" | awk '{ s += $2 } END { printf "%.1f", s }')
    steps=$(echo "$tp" | grep -c . || true)
    train=$(stage_field "$log" "train" 1); layout=$(stage_field "$log" "layout" 1); knn=$(stage_field "$log" "kNN graph" 1)
    read=$(stage_field "$log" "read \+ preprocess" 1); peakRead=$(stage_field "$log" "read \+ preprocess" 2)
    # The stage table's largest peak (each stage resets the kernel's high-water mark, so /usr/bin/time's
    # maximum RSS would only cover the stages after the last reset).
    peak=$(grep -E '^  [a-zA-Z+ ]+ [0-9.]+ s .* peak ' "$log" | awk '{ for (i = 1; i <= NF; i++) if ($i == "peak" && $(i + 1) > m) m = $(i + 1) } END { printf "%.0f", m }')
    ari=$(grep -E '^ARI ' "$log" | tail -1 | awk '{ print $2 }')
    # Global cells per second of one step (batch 256 over all ranks).
    cps() { awk -v t="$1" 'BEGIN { if (t == "nan" || t == 0) print "—"; else printf "%.0f", 256 / t }'; }
    ratio=$(awk -v a="$stepPre" -v b="$stepFine" 'BEGIN { if (a == "nan" || b == "nan") print "—"; else printf "%.2f", b / a }')
    # Cost-model checks against the first size measured on this rank count.
    if [ -z "${firstCells[$p]:-}" ]; then firstCells[$p]=$c; firstStep[$p]=$stepPre; firstLayout[$p]=$layout; predStep="(calibration)"; predLayout="(calibration)"
    else
      predStep=$(awk -v m="$stepPre" -v r="${firstStep[$p]}" 'BEGIN { printf "%.1f ms pred, %.2f×", r * 1000, m / r }')
      predLayout=$(awk -v m="$layout" -v r="${firstLayout[$p]}" -v c="$c" -v c0="${firstCells[$p]}" 'BEGIN { p = r * c / c0; printf "%.0f s pred, %.2f×", p, m / p }')
    fi
    rows+=("| $c | $p | $(printf %.0f "$wall") | $read / $peakRead | $train (steps $stepSum, $steps) | $knn | $layout | $peak | $(awk -v t="$stepPre" 'BEGIN { printf "%.1f", t * 1000 }') / $(cps "$stepPre") | $(awk -v t="$stepFine" 'BEGIN { printf "%.1f", t * 1000 }') / $(cps "$stepFine") | $ratio | $predStep | $predLayout | $ari |")
    echo "bench_scale: $c cells on $p ranks done (${wall%.*} s)" >&2
  done
done
echo "| cells | P | wall s | read + preprocess s / peak MiB | train s (of it in steps, steps) | kNN s | layout s | peak RSS/rank MiB | pretrain step ms / cells/s | fine-tune step ms / cells/s | fine ÷ pre | pretrain step vs the first size | layout vs linear in N | ARI |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
