import Collectives

/// Moving rows between ranks (all-to-all), e.g. to give ranks random rather than contiguous subsets.
public enum Redistribute {

    /// Owner rank of every global row under a seeded permutation: the permuted order is cut into
    /// equal blocks and each rank owns the rows of its block.
    public static func permutedOwners(nObs: Int, ranks: Int, seed: UInt64) -> [Int32] {
        let perm = RowPartition.permutation(nObs, seed: seed)
        let bounds = RowPartition.equalRows(nObs, parts: ranks)
        var owner = [Int32](repeating: 0, count: nObs)
        for r in 0..<ranks {
            for i in bounds[r]..<bounds[r + 1] { owner[Int(perm[i])] = Int32(r) }
        }
        return owner
    }

    /// Sends every local row to the rank `owner[globalRow]` names; received rows stay in
    /// ascending global order (rows arrive in rank order and every slab is ascending).
    public static func permuted(_ s: CellShard, seed: UInt64, comm: Communicator) throws -> CellShard {
        let owner = permutedOwners(nObs: s.nObs, ranks: comm.size, seed: seed)
        return try byOwner(s, owners: s.rowIds.map { Int(owner[Int($0)]) }, comm: comm)
    }

    /// Collective. Rows placed by the reader (ascending blocks in rank order, cut so every rank holds
    /// about the same number of stored entries) moved to equal row counts, still ascending blocks:
    /// rank r holds global rows [N·r/P, N·(r+1)/P). Everything after preprocessing (training, the
    /// embedding, kNN, layout) costs per cell, dense, whatever a cell's stored entries: with the
    /// reader's cuts cite_cbmc put 2.0× the cells of rank 0 on rank 1, and its steps took rank 1 twice
    /// as long and twice the memory. Another placement (`permuted`, equal counts already) is returned
    /// as it is, and so is one already equal (no data moves). O(shard) memory: one allgather of P
    /// records decides it.
    public static func equalRows(_ s: CellShard, comm: Communicator) throws -> CellShard {
        let blocks = try RowBlocks(ids: s.rowIds, value: Int64(s.localRows), comm: comm)
        guard blocks.ordered, comm.size > 1 else { return s }
        let p = comm.size, n = s.nObs
        let bounds = RowPartition.equalRows(n, parts: p)
        var already = true
        for r in 0..<p where Int(blocks.before(r)) != bounds[r] || Int(blocks.values[r]) != bounds[r + 1] - bounds[r] { already = false }
        if already { return s }
        var owners = [Int](repeating: 0, count: s.localRows)
        var r = 0
        for i in 0..<s.localRows {
            let q = Int(s.rowIds[i])
            while r + 1 < p && q >= bounds[r + 1] { r += 1 }
            owners[i] = r
        }
        return try byOwner(s, owners: owners, comm: comm)
    }

    /// Sends local row i to rank owners[i]. Every rank calls this together.
    public static func byOwner(_ s: CellShard, owners: [Int], comm: Communicator) throws -> CellShard {
        let p = comm.size
        // Stable order of local rows by destination.
        var order: [Int] = []
        order.reserveCapacity(s.localRows)
        var rowsPer = [Int](repeating: 0, count: p)
        for o in owners { rowsPer[o] += 1 }
        var buckets = [[Int]](repeating: [], count: p)
        for (i, o) in owners.enumerated() { buckets[o].append(i) }
        for b in buckets { order.append(contentsOf: b) }

        func rowCounts() -> [Int] { rowsPer }
        // Per-row scalars.
        let ids = try comm.alltoallv(order.map { s.rowIds[$0] }, sendCounts: rowsPer).values
        let lens = try comm.alltoallv(order.map { s.rowPtr[$0 + 1] - s.rowPtr[$0] }, sendCounts: rowsPer).values
        let sources = try comm.alltoallv(order.map { s.sourceRows[$0] }, sendCounts: rowsPer).values
        // Entries.
        var entryCounts = [Int](repeating: 0, count: p)
        var cols: [Int32] = [], vals: [Float] = []
        cols.reserveCapacity(s.localNNZ); vals.reserveCapacity(s.localNNZ)
        for (k, i) in order.enumerated() {
            _ = k
            let a = Int(s.rowPtr[i]), b = Int(s.rowPtr[i + 1])
            entryCounts[owners[i]] += b - a
            cols.append(contentsOf: s.colIdx[a..<b]); vals.append(contentsOf: s.values[a..<b])
        }
        let newCols = try comm.alltoallv(cols, sendCounts: entryCounts).values
        cols = []
        let newVals = try comm.alltoallv(vals, sendCounts: entryCounts).values
        vals = []
        var rowPtr = [Int64](repeating: 0, count: lens.count + 1)
        for i in 0..<lens.count { rowPtr[i + 1] = rowPtr[i] + lens[i] }
        // obs.
        var obs = Frame(index: try exchangeStrings(order.map { s.obs.index[$0] }, counts: rowsPer, comm: comm))
        obs.indexName = s.obs.indexName
        for name in s.obs.columnNames {
            let c = s.obs[name]!.subset(order)
            switch c {
            case .categorical(let codes, let cats, let o):
                obs.set(name, .categorical(codes: try comm.alltoallv(codes, sendCounts: rowsPer).values, categories: cats, ordered: o))
            case .numeric(let v):
                obs.set(name, .numeric(try comm.alltoallv(v, sendCounts: rowsPer).values))
            case .bools(let v):
                obs.set(name, .bools(try comm.alltoallv(v.map { UInt8($0 ? 1 : 0) }, sendCounts: rowsPer).values.map { $0 != 0 }))
            case .strings(let v):
                obs.set(name, .strings(try exchangeStrings(v, counts: rowsPer, comm: comm)))
            }
        }
        return CellShard(nObs: s.nObs, nVars: s.nVars, rowIds: ids, rowPtr: rowPtr, colIdx: newCols, values: newVals,
                         obs: obs, vars: s.vars, source: s.source, sourceRows: sources, sourceObs: s.sourceObs)
    }

    /// All-to-all of strings: `strings` ordered by destination, `counts[r]` of them for rank r.
    static func exchangeStrings(_ strings: [String], counts: [Int], comm: Communicator) throws -> [String] {
        var bytes: [UInt8] = [], lens: [Int64] = []
        var byteCounts = [Int](repeating: 0, count: counts.count)
        var k = 0
        for (r, c) in counts.enumerated() {
            for _ in 0..<c {
                let u = Array(strings[k].utf8)
                bytes.append(contentsOf: u); lens.append(Int64(u.count)); byteCounts[r] += u.count
                k += 1
            }
        }
        let rl = try comm.alltoallv(lens, sendCounts: counts).values
        let rb = try comm.alltoallv(bytes, sendCounts: byteCounts).values
        var out: [String] = []
        out.reserveCapacity(rl.count)
        var off = 0
        for l in rl {
            out.append(String(decoding: rb[off..<(off + Int(l))], as: UTF8.self))
            off += Int(l)
        }
        return out
    }
}
