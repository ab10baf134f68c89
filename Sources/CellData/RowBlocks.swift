import Collectives

/// Rows placed as the reader places them: each rank's global row ids ascend, and every rank's ids lie
/// below those of the ranks after it. With that placement a prefix over ranks (one allgather of P
/// small records) replaces the arrays of N entries on every rank that renumbering rows or laying out a
/// CSR matrix would otherwise need (issue 15: O(shard) memory per rank). Any other placement is still
/// handled, by the N-entry arrays, and says so through `ordered`.
struct RowBlocks {
    /// True when the placement is as above on every rank (the same on all ranks).
    let ordered: Bool
    /// Every rank's `value` (rank order).
    let values: [Int64]

    /// Collective. `ids`: this rank's global row ids in local order; `value`: a count to share
    /// (kept rows, stored entries); `alsoAscending`: a further local condition the caller needs.
    init(ids: [Int64], value: Int64, alsoAscending: Bool = true, comm: Communicator) throws {
        let ascending = alsoAscending && zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 }
        let record: [Int64] = [ascending ? 1 : 0, Int64(ids.count), ids.first ?? 0, ids.last ?? 0, value]
        let all = try comm.allgather(record)
        var ok = true, last = Int64.min
        for r in 0..<comm.size {
            let rec = all[(r * 5)..<(r * 5 + 5)].map { $0 }
            if rec[0] == 0 { ok = false; break }
            if rec[1] == 0 { continue }
            if rec[2] <= last { ok = false; break }
            last = rec[3]
        }
        ordered = ok
        values = (0..<comm.size).map { all[$0 * 5 + 4] }
    }

    /// Sum of the values of the ranks before `rank`.
    func before(_ rank: Int) -> Int64 { values[..<rank].reduce(0, +) }
    var total: Int64 { values.reduce(0, +) }
}
