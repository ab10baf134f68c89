// Every cell keeps its input-file row (CellShard.sourceRows) through filterCells (which renumbers
// rowIds) and Redistribute (which moves rows between ranks): each row's only entry holds its input
// row + 1, so after both steps the entry, the obs name and sourceRows must still agree, the rowIds
// must be the renumbering of the kept rows, and the kept rows must be covered exactly once.
import CellData
import Collectives

func sourceRowChecks(comm: Communicator, expect: (Bool, String) -> Void) throws {
    let n = 103
    let removed: Set<Int> = [0, 7, 8, 50, 51, 52, 101]   // zero-count cells, incl. the first
    // An uneven contiguous split: rank r gets a share proportional to r + 1.
    let weights = (0..<comm.size).map { $0 + 1 }, total = weights.reduce(0, +)
    var bounds = [0]
    for w in weights { bounds.append(min(n, bounds.last! + n * w / total)) }
    bounds[comm.size] = n
    let rows = bounds[comm.rank]..<bounds[comm.rank + 1]
    var rowPtr: [Int64] = [0], cols: [Int32] = [], vals: [Float] = []
    for i in rows {
        if !removed.contains(i) { cols.append(Int32(i % 4)); vals.append(Float(i + 1)) }
        rowPtr.append(Int64(vals.count))
    }
    var obs = Frame(index: rows.map { "cell\($0)" })
    obs.set("code", .categorical(codes: rows.map { Int32($0 % 5) }, categories: ["a", "b", "c", "d", "e"], ordered: false))
    let info = SourceInfo(file: "synthetic", format: "anndata", matrixPath: "X", layout: "csr", dtype: "float32", nnz: 0)
    var s = CellShard(nObs: n, nVars: 4, rowIds: rows.map { Int64($0) }, rowPtr: rowPtr, colIdx: cols, values: vals,
                      obs: obs, vars: Frame(index: ["g0", "g1", "g2", "g3"]), source: info)
    expect(s.sourceRows == s.rowIds && s.sourceObs == n, "sourceRows start as the read rows")
    let dropped = try Preprocess.filterCells(&s, minCounts: 1, comm: comm)
    expect(dropped == removed.count, "filterCells removed \(dropped), want \(removed.count)")
    let kept = (0..<n).filter { !removed.contains($0) }
    func consistent(_ s: CellShard, _ stage: String) {
        for j in 0..<s.localRows {
            let src = Int(s.sourceRows[j])
            let entry = s.rowPtr[j + 1] - s.rowPtr[j] == 1 ? Int(s.values[Int(s.rowPtr[j])]) - 1 : -1
            if entry != src || s.obs.index[j] != "cell\(src)" || kept[Int(s.rowIds[j])] != src {
                expect(false, "\(stage): row \(j) has source row \(src), entry \(entry), name \(s.obs.index[j]), id \(s.rowIds[j])")
                return
            }
            if case .categorical(let c, _, _)? = s.obs["code"], c[j] != Int32(src % 5) {
                expect(false, "\(stage): obs code of source row \(src) is \(c[j])"); return
            }
        }
        expect(s.sourceObs == n && s.nObs == kept.count, "\(stage): sourceObs \(s.sourceObs), nObs \(s.nObs)")
        expect(s.sourceRows == s.sourceRows.sorted(), "\(stage): sourceRows ascending")
    }
    consistent(s, "after filterCells")
    // Equal row counts (Dataset.load after filterCells): from the uneven placement, rank r holds the
    // kept rows [n·r/P, n·(r+1)/P) in ascending order; an equal placement or a permuted one stays as it is.
    let even = try Redistribute.equalRows(s, comm: comm)
    consistent(even, "after Redistribute.equalRows")
    let want = RowPartition.equalRows(kept.count, parts: comm.size)
    expect(even.rowIds == (want[comm.rank]..<want[comm.rank + 1]).map { Int64($0) },
           "equalRows: rank \(comm.rank) holds ids \(even.rowIds.first ?? -1)…\(even.rowIds.last ?? -1) (\(even.localRows)), want \(want[comm.rank])..<\(want[comm.rank + 1])")
    let again = try Redistribute.equalRows(even, comm: comm)
    expect(again.rowIds == even.rowIds && again.values == even.values && again.sourceRows == even.sourceRows, "equalRows of an equal placement moved rows")
    let shuffled = try Redistribute.permuted(s, seed: 9, comm: comm)
    let kept2 = try Redistribute.equalRows(shuffled, comm: comm)
    expect(kept2.rowIds == shuffled.rowIds && kept2.sourceRows == shuffled.sourceRows, "equalRows moved a permuted placement")
    let moved = try Redistribute.permuted(s, seed: 5, comm: comm)
    consistent(moved, "after Redistribute.permuted")
    // Every kept row on exactly one rank.
    let all = try comm.allgatherv(moved.sourceRows).values.sorted()
    expect(all == kept.map { Int64($0) }, "kept rows covered once after redistribution (\(all.count) of \(kept.count))")
    if comm.size > 1 {
        let stayed = try comm.allreduce(value: Int64(moved.sourceRows == s.sourceRows ? 1 : 0), op: .sum)
        expect(stayed < Int64(comm.size), "redistribution moved rows between ranks")
    }
}
