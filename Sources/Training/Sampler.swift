import Collectives
import TensorCore

/// A permutation of 0..<n from a seed, computed element by element in O(1) memory: a 4-round
/// Feistel network on the smallest power-of-four domain ≥ n, with cycle-walking back into range.
public struct IndexPermutation: Sendable {
    public let n: Int
    private let halfBits: Int
    private let keys: (UInt64, UInt64, UInt64, UInt64)

    public init(n: Int, seed: UInt64) {
        precondition(n >= 1)
        self.n = n
        var bits = 1
        while (1 << (2 * bits)) < n { bits += 1 }
        halfBits = bits
        var s = SplitMix64(seed: seed)
        keys = (s.next(), s.next(), s.next(), s.next())
    }

    /// The element at position `i` (0 ≤ i < n).
    @inline(__always)
    public func callAsFunction(_ i: Int) -> Int {
        var x = UInt64(i)
        repeat { x = encrypt(x) } while x >= UInt64(n)
        return Int(x)
    }

    @inline(__always)
    private func encrypt(_ x: UInt64) -> UInt64 {
        let mask = (UInt64(1) << UInt64(halfBits)) - 1
        var l = x >> UInt64(halfBits), r = x & mask
        for k in [keys.0, keys.1, keys.2, keys.3] {
            let f = SplitMix64.mix(r ^ k) & mask  // round function: a 64-bit mixing hash
            (l, r) = (r, l ^ f)
        }
        return (l << UInt64(halfBits)) | r
    }
}

/// Global minibatches, the same whatever the rank count: epoch e's order of all N cells (by global
/// cell id) is a permutation from (seed, e); step s takes positions [s·B, (s+1)·B) of it, and each
/// rank trains on the cells of that batch it owns, wherever they sit in its shard. Every rank runs
/// the same number of steps (⌈N / B⌉, the last one smaller), so no collective is ever left waiting,
/// and the gradient summed over ranks is that of the global batch — a 1-rank and an N-rank run
/// follow the same trajectory.
public struct GlobalBatchSampler: Sendable {
    public let total: Int
    public let globalBatch: Int
    public let seed: UInt64
    public let shuffle: Bool
    private enum Ownership: Sendable { case range(Int, Int), lookup([Int64: Int]) }
    private let owned: Ownership

    /// `ownedIds`: the global ids (0..<total) of this rank's rows, in shard order.
    public init(total: Int, ownedIds: [Int64], globalBatch: Int, seed: UInt64, shuffle: Bool = true) {
        precondition(globalBatch >= 1 && total >= 1)
        self.total = total; self.globalBatch = globalBatch; self.seed = seed; self.shuffle = shuffle
        let contiguous = ownedIds.isEmpty || zip(ownedIds, ownedIds.dropFirst()).allSatisfy { $1 == $0 + 1 }
        if contiguous {
            let lo = Int(ownedIds.first ?? 0)
            owned = .range(lo, lo + ownedIds.count)
        } else {
            var d: [Int64: Int] = [:]
            d.reserveCapacity(ownedIds.count)
            for (i, g) in ownedIds.enumerated() { d[g] = i }
            owned = .lookup(d)
        }
    }

    /// Rows laid out contiguously in rank order (rank r owns global ids offsets[r]..<offsets[r]+counts[r]).
    public init(layout: RowLayout, rank: Int, globalBatch: Int, seed: UInt64, shuffle: Bool = true) {
        let r = layout.range(of: rank)
        self.init(total: layout.total, ownedIds: (r.lowerBound..<r.upperBound).map(Int64.init), globalBatch: globalBatch,
                  seed: seed, shuffle: shuffle)
    }

    /// Epoch e's permutation key: the first draw of child e of the `.sampler` stream (rank 0's,
    /// so every rank shuffles alike).
    static func permutationSeed(_ seed: UInt64, epoch: Int) -> UInt64 {
        var rng = RandomStream(seed: seed, purpose: .sampler).split(UInt64(epoch))
        return rng.next()
    }

    public var stepsPerEpoch: Int { (total + globalBatch - 1) / globalBatch }

    /// Size of the global batch at `step` (the last one may be smaller).
    public func batchSize(step: Int) -> Int { min(globalBatch, total - step * globalBatch) }

    /// The cells of batch (epoch, step) that this rank owns: local row indices, in batch order.
    public func localRows(epoch: Int, step: Int) -> [Int] { placedRows(epoch: epoch, step: step).map(\.row) }

    /// As `localRows`, with each row's position in the global batch (0..<batchSize(step:)): the same
    /// for a cell on any rank count, so micro-batches cut by position hold the same cells everywhere.
    public func placedRows(epoch: Int, step: Int) -> [(row: Int, position: Int)] {
        precondition(step >= 0 && step < stepsPerEpoch)
        let perm = IndexPermutation(n: total, seed: Self.permutationSeed(seed, epoch: epoch))
        var out: [(row: Int, position: Int)] = []
        let first = step * globalBatch
        for pos in first..<(first + batchSize(step: step)) {
            let g = shuffle ? perm(pos) : pos
            switch owned {
            case .range(let lo, let hi): if g >= lo && g < hi { out.append((g - lo, pos - first)) }
            case .lookup(let d): if let l = d[Int64(g)] { out.append((l, pos - first)) }
            }
        }
        return out
    }
}
