import Collectives

/// A reusable plan for fetching rows owned by other ranks ("halo" rows), e.g. the neighbours of a
/// rank's cells in a graph layer. Built once (two alltoallv calls), then each `fetch` moves only the
/// requested rows (one alltoallv). Rows this rank owns are served locally.
public final class HaloPlan: @unchecked Sendable {
    public let layout: RowLayout
    /// The distinct global rows requested, ascending; `fetch` returns them in this order.
    public let rows: [Int64]
    private let comm: Communicator
    private let sendRows: [Int32]     // local rows to send, grouped by requesting rank
    private let sendCounts: [Int]     // rows per requesting rank

    /// Collective. `needed`: global row ids this rank wants (any order, duplicates allowed).
    public init(needed: [Int64], layout: RowLayout, comm: Communicator) throws {
        self.layout = layout; self.comm = comm
        let unique = Array(Set(needed)).sorted()
        rows = unique
        // Ask each owner for its rows (unique is sorted, so each owner's requests are contiguous and sorted).
        var ask = [Int](repeating: 0, count: comm.size)
        var owners = [Int](repeating: 0, count: unique.count)
        for (i, g) in unique.enumerated() {
            guard g >= 0 && Int(g) < layout.total else { throw CollectiveUsageError("halo: row \(g) outside 0..<\(layout.total)") }
            owners[i] = layout.owner(ofGlobal: Int(g)).rank; ask[owners[i]] += 1
        }
        // Owners hold contiguous ascending ranges, so the sorted requests are already grouped by owner
        // and the replies arrive in the order of `rows`.
        let (requested, counts) = try comm.alltoallv(unique, sendCounts: ask)
        let first = Int64(layout.offsets[comm.rank])
        sendRows = requested.map { Int32($0 - first) }
        sendCounts = counts
    }

    /// Index of global row `g` in `rows` (nil if it was not requested).
    public func index(of g: Int64) -> Int? {
        var lo = 0, hi = rows.count
        while lo < hi { let m = (lo + hi) / 2; if rows[m] < g { lo = m + 1 } else { hi = m } }
        return lo < rows.count && rows[lo] == g ? lo : nil
    }

    /// Collective. `local`: this rank's rows, row-major, `width` values each. Returns the requested rows
    /// (`rows.count × width`, in the order of `rows`).
    public func fetch(_ local: UnsafeBufferPointer<Float>, width: Int) throws -> [Float] {
        var send = [Float](repeating: 0, count: sendRows.count * width)
        send.withUnsafeMutableBufferPointer { s in
            for (i, r) in sendRows.enumerated() {
                let src = local.baseAddress! + Int(r) * width
                (s.baseAddress! + i * width).update(from: src, count: width)
            }
        }
        let (got, _) = try comm.alltoallv(send, sendCounts: sendCounts.map { $0 * width })
        return got
    }

    public func fetch(_ local: [Float], width: Int) throws -> [Float] {
        try local.withUnsafeBufferPointer { try fetch($0, width: width) }
    }
}
