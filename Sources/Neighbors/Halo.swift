import Collectives

/// A reusable plan for fetching rows owned by other ranks ("halo" rows), e.g. the neighbours of a
/// rank's cells in a graph layer. Built once (two alltoallv calls), then each `fetch` moves only the
/// requested rows (one alltoallv). Rows this rank owns are served locally. `accumulate` is the
/// adjoint of `fetch` (values for the requested rows go back to their owners and are added there:
/// the backward pass of a graph layer), and `fetchSparse` moves variable-length rows (CSR).
public final class HaloPlan: @unchecked Sendable {
    public let layout: RowLayout
    /// The distinct global rows requested, ascending; `fetch` returns them in this order.
    public let rows: [Int64]
    private let comm: Communicator
    /// The communicator the plan exchanges rows on.
    public var communicator: Communicator { comm }
    private let sendRows: [Int32]     // local rows to send, grouped by requesting rank
    /// This rank's local rows that other ranks requested (grouped by requesting rank; a row may repeat).
    public var servedRows: [Int32] { sendRows }
    private let sendCounts: [Int]     // rows per requesting rank
    private let receiveCounts: [Int]  // rows of `rows` owned by each rank

    /// Collective. `needed`: global row ids this rank wants (any order, duplicates allowed).
    public init(needed: [Int64], layout: RowLayout, comm: Communicator) throws {
        self.layout = layout; self.comm = comm
        let unique = Array(Set(needed)).sorted()
        rows = unique
        // Ask each owner for its rows (unique is sorted, so each owner's requests are contiguous and sorted).
        var ask = [Int](repeating: 0, count: comm.size)
        for g in unique {
            guard g >= 0 && Int(g) < layout.total else { throw CollectiveUsageError("halo: row \(g) outside 0..<\(layout.total)") }
            ask[layout.owner(ofGlobal: Int(g)).rank] += 1
        }
        // Owners hold contiguous ascending ranges, so the sorted requests are already grouped by owner
        // and the replies arrive in the order of `rows`.
        let (requested, counts) = try comm.alltoallv(unique, sendCounts: ask)
        let first = Int64(layout.offsets[comm.rank])
        sendRows = requested.map { Int32($0 - first) }
        sendCounts = counts
        receiveCounts = ask
    }

    /// Index of global row `g` in `rows` (nil if it was not requested).
    public func index(of g: Int64) -> Int? {
        var lo = 0, hi = rows.count
        while lo < hi { let m = (lo + hi) / 2; if rows[m] < g { lo = m + 1 } else { hi = m } }
        return lo < rows.count && rows[lo] == g ? lo : nil
    }

    /// Collective. `local`: this rank's rows, row-major, `width` values each. Returns the requested rows
    /// (`rows.count × width`, in the order of `rows`).
    public func fetch<T: CollectiveScalar>(_ local: UnsafeBufferPointer<T>, width: Int) throws -> [T] {
        var send = [T](repeating: 0, count: sendRows.count * width)
        if width > 0 {
            send.withUnsafeMutableBufferPointer { s in
                for (i, r) in sendRows.enumerated() {
                    let src = local.baseAddress! + Int(r) * width
                    (s.baseAddress! + i * width).update(from: src, count: width)
                }
            }
        }
        let (got, _) = try comm.alltoallv(send, sendCounts: sendCounts.map { $0 * width })
        return got
    }

    public func fetch<T: CollectiveScalar>(_ local: [T], width: Int) throws -> [T] {
        try local.withUnsafeBufferPointer { try fetch($0, width: width) }
    }

    /// Collective; the adjoint of `fetch`. `values` holds `rows.count × width` numbers in the order of
    /// `rows`; each goes back to the rank owning that row and is added into `local` (this rank's rows,
    /// row-major, `width` each). Every rank's contributions to one row arrive in rank order.
    public func accumulate(_ values: UnsafeBufferPointer<Float>, width: Int, into local: UnsafeMutablePointer<Float>) throws {
        precondition(values.count >= rows.count * width, "halo accumulate: \(values.count) values for \(rows.count) rows × \(width)")
        let send = Array(UnsafeBufferPointer(rebasing: values[0..<(rows.count * width)]))
        let (got, _) = try comm.alltoallv(send, sendCounts: receiveCounts.map { $0 * width })
        got.withUnsafeBufferPointer { g in
            for (i, r) in sendRows.enumerated() {
                let dst = local + Int(r) * width, src = g.baseAddress! + i * width
                for j in 0..<width { dst[j] += src[j] }
            }
        }
    }

    /// Collective. Variable-length rows (CSR over this rank's rows: `rowPtr` has local rows + 1
    /// entries) for the requested rows, in the order of `rows`: their row pointer, columns and values.
    public func fetchSparse<C: CollectiveScalar>(rowPtr: [Int64], columns: [C], values: [Float]) throws
        -> (rowPtr: [Int64], columns: [C], values: [Float]) {
        var lengths = [Int64](repeating: 0, count: sendRows.count)
        var perRank = [Int](repeating: 0, count: comm.size)
        var cols: [C] = [], vals: [Float] = []
        var i = 0
        for (q, c) in sendCounts.enumerated() {
            for _ in 0..<c {
                let r = Int(sendRows[i])
                let lo = Int(rowPtr[r]), hi = Int(rowPtr[r + 1])
                lengths[i] = Int64(hi - lo)
                perRank[q] += hi - lo
                cols.append(contentsOf: columns[lo..<hi]); vals.append(contentsOf: values[lo..<hi])
                i += 1
            }
        }
        let (gotLengths, _) = try comm.alltoallv(lengths, sendCounts: sendCounts)
        let (gotCols, _) = try comm.alltoallv(cols, sendCounts: perRank)
        let (gotVals, _) = try comm.alltoallv(vals, sendCounts: perRank)
        var rp = [Int64](repeating: 0, count: rows.count + 1)
        for r in 0..<rows.count { rp[r + 1] = rp[r] + gotLengths[r] }
        return (rp, gotCols, gotVals)
    }
}
