/// Where each rank's rows sit in a global row order: rank 0 owns the first `counts[0]` rows,
/// rank 1 the next `counts[1]`, and so on (counts may be zero, and need not be equal).
public struct RowLayout: Sendable, Equatable {
    public let counts: [Int]
    /// Exclusive prefix sums of `counts`: the global index of each rank's first row.
    public let offsets: [Int]
    public let total: Int

    /// Collective: every rank passes its own row count.
    public init(comm: Communicator, localCount: Int) throws {
        self.init(counts: try comm.allgather(value: Int64(localCount)).map(Int.init))
    }

    public init(counts: [Int]) {
        self.counts = counts
        var o = [Int](repeating: 0, count: counts.count)
        var acc = 0
        for i in 0..<counts.count { o[i] = acc; acc += counts[i] }
        offsets = o
        total = acc
    }

    /// The rank owning global row `g` and the row's index there.
    public func owner(ofGlobal g: Int) -> (rank: Int, local: Int) {
        precondition(g >= 0 && g < total, "row \(g) outside 0..<\(total)")
        // Binary search for the last rank whose offset ≤ g and which owns rows.
        var lo = 0, hi = counts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if offsets[mid] <= g { lo = mid } else { hi = mid - 1 }
        }
        while counts[lo] == 0 || g >= offsets[lo] + counts[lo] { lo -= 1 }  // skip empty ranks sharing the offset
        return (lo, g - offsets[lo])
    }

    /// The half-open global range of `rank`'s rows.
    public func range(of rank: Int) -> Range<Int> { offsets[rank]..<(offsets[rank] + counts[rank]) }

    /// An even split of `total` rows over `size` ranks (the first `total % size` ranks get one more).
    public static func even(total: Int, size: Int) -> RowLayout {
        RowLayout(counts: (0..<size).map { total / size + ($0 < total % size ? 1 : 0) })
    }
}
