// A label-stratified, seeded train/validation split over cells spread across ranks, exact per type
// and independent of the rank count: within each type, cells are ordered by a hash of (seed, global
// id) and the first round(fraction × n_type) are validation. The order statistic is found by a
// bisection on the 64-bit hash with one allreduce of per-type counts per halving (64 in all), so no
// rank ever holds another rank's cells.
import Collectives
import TensorCore

public enum StratifiedSplit {
    /// The hash that orders cells within a type.
    static func key(seed: UInt64, id: Int64) -> UInt64 { SplitMix64.mix(SplitMix64.mix(seed ^ 0x5CE1_1A55) ^ UInt64(bitPattern: id)) }

    /// Collective. Whether each local cell is in the validation set. `labels` < 0 (unlabelled) are
    /// never validation. A type with n cells gets round(fraction × n) validation cells, at most n − 1
    /// (each type keeps a training cell).
    public static func validationMask(ids: [Int64], labels: [Int32], types: Int, fraction: Double, seed: UInt64,
                                      comm: Communicator) throws -> [Bool] {
        precondition(ids.count == labels.count)
        var n = [Int64](repeating: 0, count: types)
        for y in labels where y >= 0 { n[Int(y)] += 1 }
        try comm.allreduce(&n, op: .sum)
        let want = n.map { c -> Int64 in c < 2 ? 0 : min(c - 1, Int64((fraction * Double(c)).rounded())) }
        let keys = zip(ids, labels).map { $1 >= 0 ? key(seed: seed, id: $0) : 0 }
        // Per type: the smallest threshold t with #{key ≤ t} ≥ want (bisection on [0, 2^64)).
        var lo = [UInt64](repeating: 0, count: types), hi = [UInt64](repeating: .max, count: types)
        for _ in 0..<64 {
            let mid = zip(lo, hi).map { $0 + ($1 - $0) / 2 }
            var below = [Int64](repeating: 0, count: types)
            for (k, y) in zip(keys, labels) where y >= 0 && k <= mid[Int(y)] { below[Int(y)] += 1 }
            try comm.allreduce(&below, op: .sum)
            for t in 0..<types {
                if below[t] >= want[t] { hi[t] = mid[t] } else { lo[t] = mid[t] &+ 1 }
            }
        }
        // Hash ties (probability ~ n² / 2^64) would only make a type's count one larger.
        return zip(keys, labels).map { k, y in y >= 0 && want[Int(y)] > 0 && k <= hi[Int(y)] }
    }

    /// Collective. Compact ids 0..<total of the cells where `keep` is true, in global-id order. Cells
    /// must be spread over ranks in contiguous, increasing id ranges (as the readers shard them).
    public static func compactIds(ids: [Int64], keep: [Bool], comm: Communicator) throws -> (ids: [Int64], total: Int) {
        let mine = Int64(keep.filter { $0 }.count)
        let counts = try comm.allgather(value: mine)
        let bounds = try comm.allgather([ids.first ?? -1, ids.last ?? -1])
        var last: Int64 = -1
        for r in 0..<comm.size where bounds[2 * r] >= 0 {
            guard bounds[2 * r] > last else { throw CollectiveUsageError("compact ids need contiguous, increasing id ranges per rank") }
            last = bounds[2 * r + 1]
        }
        var next = counts.prefix(comm.rank).reduce(0, +)
        var out: [Int64] = []
        out.reserveCapacity(Int(mine))
        for k in keep where k { out.append(next); next += 1 }
        return (out, Int(counts.reduce(0, +)))
    }
}
