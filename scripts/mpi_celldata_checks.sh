#!/usr/bin/env bash
# Multi-rank checks for cell data I/O (issue 4), run under real mpirun.
#
#   scripts/mpi_celldata_checks.sh [path/to/syncytium]
#
# - preprocess every dataset in $SYNCYTIUM_DATA (default /work/shared/data) on 1, 2 and 3 ranks:
#   outputs must be byte-identical; anndata must read the 3-rank output and find the input's obs
#   (scripts/celldata_fixtures.py check);
# - the same with a seeded row permutation (--permute-seed);
# - simulate on 1 and 3 ranks: byte-identical, anndata reads it;
# - every bad input (scripts/celldata_fixtures.py bad) on 1 and 3 ranks: non-zero exit within the
#   timeout, one "error:" line naming the file and the object, no output file;
# - all-zero cells: a warning and the cells are filtered (exit 0).
# Python (anndata, h5py) is only needed here: $SYNCYTIUM_VENV (default /tmp/venv) is created
# with pip if it lacks them. Prints "celldata-mpi: N passed, M failed"; exits 1 on any failure.
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-${SYNCYTIUM_BIN:-$ROOT/.build-data/debug/syncytium}}"
DATA="${SYNCYTIUM_DATA:-/work/shared/data}"
VENV="${SYNCYTIUM_VENV:-/tmp/venv}"
TIMEOUT="${CHECK_TIMEOUT:-120}"
WORK="$(mktemp -d /tmp/celldata-mpi.XXXXXX)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe --bind-to none)
passed=0; failed=0

ok()   { passed=$((passed + 1)); echo "PASS $*"; }
bad()  { failed=$((failed + 1)); echo "FAIL $*"; }
run()  { local n=$1; shift; timeout "$TIMEOUT" "${MPIRUN[@]}" -np "$n" "$BIN" "$@"; }
# The same output name in a folder per rank count (uns['syncytium'] records the output path, so
# byte-identical outputs need the same relative path): rundir N OUT-FOLDER syncytium-args…
rundir() { local n=$1 d=$2; shift 2; mkdir -p "$d"; (cd "$d" && run "$n" "$@"); }

if [ ! -x "$BIN" ]; then echo "no syncytium binary at $BIN"; echo "celldata-mpi: 0 passed, 1 failed"; exit 1; fi
if ! "$VENV/bin/python" -c "import anndata, h5py" 2>/dev/null; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q anndata h5py >/dev/null 2>&1
fi
PY=("$VENV/bin/python" -W ignore "$ROOT/scripts/celldata_fixtures.py")

# 1. Real datasets: identical outputs on 1, 2, 3 ranks; anndata round trip.
for f in "$DATA"/*.h5ad "$DATA"/*.h5; do
    [ -e "$f" ] || continue
    name="$(basename "$f")"
    extra=()
    case "$name" in *.h5ad) extra=(--clusters-from cell_type) ;; esac
    sums=()
    for n in 1 2 3; do
        out="$WORK/np$n/${name%.*}.h5ad"
        if rundir "$n" "$WORK/np$n" preprocess "$f" "${name%.*}.h5ad" "${extra[@]}" >/dev/null 2>"$WORK/err"; then
            sums+=("$(md5sum < "$out" | cut -d' ' -f1)")
        else
            bad "preprocess $name on $n rank(s): $(head -1 "$WORK/err")"; sums+=("missing-$n")
        fi
    done
    if [ "${sums[0]}" = "${sums[1]}" ] && [ "${sums[1]}" = "${sums[2]}" ]; then
        ok "preprocess $name: byte-identical on 1, 2, 3 ranks"
    else
        bad "preprocess $name: outputs differ across rank counts (${sums[*]})"
    fi
    if [ ! -e "$WORK/np3/${name%.*}.h5ad" ]; then
        bad "anndata check of $name output: no output on 3 ranks"
    else
        if [ "${name##*.}" = "h5ad" ]; then
            if "${PY[@]}" check "$f" "$WORK/np3/${name%.*}.h5ad" > "$WORK/py" 2>&1; then ok "anndata reads $name output"
            else bad "anndata check of $name output: $(tail -1 "$WORK/py")"; fi
        else
            cells=$(run 1 inspect "$f" --json 2>/dev/null | grep '"cells"' | tr -dc '0-9')
            if "${PY[@]}" readable "$WORK/np3/${name%.*}.h5ad" "$cells" > "$WORK/py" 2>&1; then ok "anndata reads $name output"
            else bad "anndata read of $name output: $(tail -1 "$WORK/py")"; fi
        fi
    fi
    if run 1 inspect "$f" >/dev/null 2>"$WORK/err"; then ok "inspect $name"; else bad "inspect $name: $(head -1 "$WORK/err")"; fi
done

# 2. Permuted shards: still identical across rank counts.
f="$DATA/pbmc_10x_4k_top2000.h5ad"
if [ -e "$f" ]; then
    rundir 1 "$WORK/np1" preprocess "$f" perm.h5ad --permute-seed 7 >/dev/null 2>&1
    rundir 3 "$WORK/np3" preprocess "$f" perm.h5ad --permute-seed 7 >/dev/null 2>&1
    if [ -e "$WORK/np1/perm.h5ad" ] && cmp -s "$WORK/np1/perm.h5ad" "$WORK/np3/perm.h5ad"; then
        ok "preprocess --permute-seed: byte-identical on 1 and 3 ranks"
    else bad "preprocess --permute-seed: outputs differ or missing"; fi
fi

# 2b. Distributed PCA: the same components on 1 and 3 ranks up to reassociation (not bitwise).
f="$DATA/worm_neuron.h5ad"
if [ -e "$f" ]; then
    run 1 preprocess "$f" "$WORK/pca1.h5ad" --pca 30 >/dev/null 2>&1
    run 3 preprocess "$f" "$WORK/pca3.h5ad" --pca 30 >/dev/null 2>&1
    if "${PY[@]}" close "$WORK/pca1.h5ad" "$WORK/pca3.h5ad" 1e-4 > "$WORK/py" 2>&1; then ok "pca on 1 vs 3 ranks: $(tail -1 "$WORK/py")"
    else bad "pca on 1 vs 3 ranks: $(tail -1 "$WORK/py")"; fi
fi

# 2c. kNN graph in obsp (collective writes of rows with different lengths): same graph on 1 and 3 ranks.
# On PCA coordinates: on raw scaled genes many cells tie (identical rows) and tie-breaking is blocking-dependent.
f="$DATA/pbmc_10x_4k_top2000.h5ad"
if [ -e "$f" ]; then
    run 1 preprocess "$f" "$WORK/nn1.h5ad" --pca 30 --neighbors 15 --clusters-from cell_type >/dev/null 2>&1
    run 3 preprocess "$f" "$WORK/nn3.h5ad" --pca 30 --neighbors 15 --clusters-from cell_type >/dev/null 2>&1
    if "${PY[@]}" graphclose "$WORK/nn1.h5ad" "$WORK/nn3.h5ad" 1e-3 > "$WORK/py" 2>&1 \
        && "${PY[@]}" check "$f" "$WORK/nn3.h5ad" >> "$WORK/py" 2>&1; then ok "neighbors graph on 1 vs 3 ranks: $(head -1 "$WORK/py")"
    else bad "neighbors graph on 1 vs 3 ranks: $(tail -1 "$WORK/py")"; fi
fi

# 3. Simulation: identical on 1 and 3 ranks, readable by anndata.
run 1 simulate "$WORK/sim1.h5ad" --cells 3000 --genes 400 --types 6 --rare-types 1 --batches 3 >/dev/null 2>&1
run 3 simulate "$WORK/sim3.h5ad" --cells 3000 --genes 400 --types 6 --rare-types 1 --batches 3 >/dev/null 2>&1
if [ -e "$WORK/sim1.h5ad" ] && cmp -s "$WORK/sim1.h5ad" "$WORK/sim3.h5ad"; then ok "simulate: byte-identical on 1 and 3 ranks"
else bad "simulate: outputs differ or missing"; fi
if "${PY[@]}" simcheck "$WORK/sim3.h5ad" > "$WORK/py" 2>&1; then ok "anndata reads simulate output"
else bad "anndata simcheck: $(tail -1 "$WORK/py")"; fi

# 4. Bad inputs: clear one-line error, non-zero exit, no hang, no output file.
"${PY[@]}" bad "$WORK/bad" >/dev/null 2>&1
expect() { # file, expected text, extra args...
    local file=$1 text=$2; shift 2
    for n in 1 3; do
        local out="$WORK/bad-out.h5ad"; rm -f "$out"
        run "$n" preprocess "$WORK/bad/$file" "$out" --top-genes 5 "$@" >/dev/null 2>"$WORK/err"
        local rc=$?
        local lines; lines=$(grep -c '^error:' "$WORK/err")
        if [ "$rc" = 124 ]; then bad "$file on $n rank(s): hung (timeout ${TIMEOUT}s)"
        elif [ "$rc" = 0 ]; then bad "$file on $n rank(s): exit 0, expected an error"
        elif [ "$lines" != 1 ]; then bad "$file on $n rank(s): $lines error lines"
        elif ! grep '^error:' "$WORK/err" | grep -q "$WORK/bad/$file"; then bad "$file on $n rank(s): message does not name the file"
        elif ! grep '^error:' "$WORK/err" | grep -qi -- "$text"; then bad "$file on $n rank(s): expected '$text' in: $(grep '^error:' "$WORK/err")"
        elif [ -e "$out" ] || [ -e "$WORK/.bad-out.h5ad.partial" ]; then bad "$file on $n rank(s): output file left behind"
        else ok "$file on $n rank(s): $(grep '^error:' "$WORK/err" | cut -c1-110)"; fi
    done
}
expect not_hdf5.h5ad "not an HDF5 file"
expect empty_file.h5ad "empty"
expect truncated.h5ad "truncated"
expect zero_cells.h5ad "empty matrix"
expect missing_x.h5ad "X: absent (the file stores X = None)"
expect unknown_encoding.h5ad "unknown encoding"
expect nan_counts.h5ad "NaN"
expect inf_counts.h5ad "Inf"
expect negative_counts.h5ad "negative count"
expect nonmonotone_indptr.h5ad "non-monotone indptr"
expect indices_out_of_range.h5ad "out of range"
expect shape_mismatch.h5ad "shape mismatch"
expect string_values.h5ad "not numbers"
expect good.h5ad "missing obs key" --clusters-from donor
# CSC input (distributed transpose): identical output on 1 and 3 ranks, same embedding as from CSR.
for n in 1 3; do rundir "$n" "$WORK/np$n" preprocess "$WORK/bad/layout_csc.h5ad" csc.h5ad --top-genes 20 >/dev/null 2>"$WORK/err"; done
run 1 preprocess "$WORK/bad/layout_csr.h5ad" "$WORK/csr1.h5ad" --top-genes 20 >/dev/null 2>&1
if [ -e "$WORK/np1/csc.h5ad" ] && cmp -s "$WORK/np1/csc.h5ad" "$WORK/np3/csc.h5ad" \
    && "${PY[@]}" close "$WORK/csr1.h5ad" "$WORK/np3/csc.h5ad" 0 > "$WORK/py" 2>&1; then
    ok "CSC input: byte-identical on 1 and 3 ranks, same X_syncytium as the CSR copy"
else bad "CSC input: $(head -1 "$WORK/err") $(tail -1 "$WORK/py" 2>/dev/null)"; fi
# Every rank (not just the one that found the problem) exits non-zero.
rm -f "$WORK/rcs"
timeout "$TIMEOUT" "${MPIRUN[@]}" -np 3 sh -c "\"$BIN\" preprocess \"$WORK/bad/nan_counts.h5ad\" \"$WORK/x.h5ad\" 2>/dev/null; echo \$? >> \"$WORK/rcs\"" >/dev/null 2>&1
if [ "$(grep -c '^1$' "$WORK/rcs" 2>/dev/null)" = 3 ]; then ok "nan_counts.h5ad on 3 ranks: every rank exits 1"
else bad "nan_counts.h5ad on 3 ranks: per-rank exit codes $(tr '\n' ' ' < "$WORK/rcs" 2>/dev/null)"; fi
# More ranks than cells: an error on 3 ranks (1 rank is fine).
rm -f "$WORK/two.h5ad"
run 3 preprocess "$WORK/bad/two_cells.h5ad" "$WORK/two.h5ad" --top-genes 5 >/dev/null 2>"$WORK/err"; rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q "more ranks (3) than cells (2)" "$WORK/err" && [ ! -e "$WORK/two.h5ad" ]; then
    ok "two_cells.h5ad on 3 ranks: more ranks than cells"
else bad "two_cells.h5ad on 3 ranks: rc $rc, $(grep '^error:' "$WORK/err")"; fi
# All-zero cells: warning and filter.
for n in 1 3; do
    rm -f "$WORK/z.h5ad"
    if run "$n" preprocess "$WORK/bad/all_zero_cells.h5ad" "$WORK/z.h5ad" --top-genes 5 --clusters-from cell_type >/dev/null 2>"$WORK/err" \
        && grep -q "2 all-zero cells dropped" "$WORK/err" \
        && "${PY[@]}" check "$WORK/bad/all_zero_cells.h5ad" "$WORK/z.h5ad" >/dev/null 2>&1; then
        ok "all_zero_cells.h5ad on $n rank(s): warning, 2 cells filtered"
    else bad "all_zero_cells.h5ad on $n rank(s): $(head -1 "$WORK/err")"; fi
done

rm -rf "$WORK"
echo "celldata-mpi: $passed passed, $failed failed"
[ "$failed" = 0 ]
