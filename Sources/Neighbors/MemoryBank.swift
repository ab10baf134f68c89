import Collectives
import TensorCore

/// A sharded memory bank: one embedding per cell, held by the rank that owns the cell.
///
/// `update` overwrites (or moves by momentum) the rows of this rank's cells; `nearest` retrieves, for
/// a batch of queries from every rank, the top-k bank entries over all ranks: the queries are
/// allgathered, each rank scores them against its own shard by GEMM and keeps its k best, and the
/// per-rank candidates are sent back to each query's rank (alltoallv) and merged. Memory per rank:
/// its shard plus the gathered queries; nothing is O(N) on any one rank.
public final class MemoryBank: @unchecked Sendable {
    public let dim: Int
    public let layout: RowLayout
    public let rank: Int
    /// This rank's rows (layout.counts[rank] × dim).
    public private(set) var embeddings: Tensor
    /// Whether rows are kept at unit L2 norm after each update (for cosine retrieval).
    public let normalize: Bool

    public enum Similarity: Sendable { case cosine, dot, euclidean }

    /// Collective. `initial`: this rank's starting rows.
    public init(initial: Tensor, normalize: Bool = true, comm: Communicator) throws {
        dim = initial.cols
        layout = try RowLayout(comm: comm, localCount: initial.rows)
        rank = comm.rank
        embeddings = initial.copy()
        self.normalize = normalize
        if normalize { for i in 0..<initial.rows { normalizeRow(i) } }
    }

    /// Local. Writes rows for this rank's cells (local indices): `value` when `momentum` is 0, else
    /// m·old + (1 − m)·new (MoCo-style), then renormalises if the bank keeps unit rows.
    public func update(localRows: [Int], values: Tensor, momentum: Float = 0) {
        precondition(values.rows == localRows.count && values.cols == dim)
        embeddings.makeUnique()
        let e = embeddings.pointer, v = values.pointer
        for (r, i) in localRows.enumerated() {
            precondition(i >= 0 && i < embeddings.rows, "bank row \(i) is not owned by this rank")
            for j in 0..<dim { e[i * dim + j] = momentum * e[i * dim + j] + (1 - momentum) * v[r * dim + j] }
            if normalize { normalizeRow(i) }
        }
    }

    private func normalizeRow(_ i: Int) {
        let e = embeddings.pointer + i * dim
        var s: Float = 0
        for j in 0..<dim { s += e[j] * e[j] }
        let inv = s > 0 ? 1 / s.squareRoot() : 0
        for j in 0..<dim { e[j] *= inv }
    }

    /// Collective. For this rank's `queries` (q × dim; q may differ between ranks, zero included),
    /// the k best bank entries over all ranks: global cell ids and scores, best first (similarity:
    /// highest first; euclidean: smallest squared distance first). `exclude[i]` (a global id, or −1)
    /// is skipped for query i — typically the query cell itself.
    public func nearest(_ queries: Tensor, k: Int, similarity: Similarity = .cosine, exclude: [Int64]? = nil,
                        comm: Communicator) throws -> (ids: [Int64], scores: [Float]) {
        precondition(queries.cols == dim)
        guard k >= 1 && k <= layout.total else {
            throw CollectiveUsageError("memory bank retrieval of k = \(k) from \(layout.total) entries")
        }
        let q = queries.rows
        var qv = queries.scalars
        if similarity == .cosine {
            for i in 0..<q {
                var s: Float = 0
                for j in 0..<dim { s += qv[i * dim + j] * qv[i * dim + j] }
                let inv = s > 0 ? 1 / s.squareRoot() : 0
                for j in 0..<dim { qv[i * dim + j] *= inv }
            }
        }
        let (allQ, qCounts) = try comm.allgatherv(qv)
        let (allEx, _) = try comm.allgatherv(exclude ?? [Int64](repeating: -1, count: q))
        let nq = allQ.count / dim
        let n = embeddings.rows
        let first = Int64(layout.offsets[rank])
        // Scores as distances to minimise: −sim for similarities, ‖q − e‖² for euclidean.
        let top = TopK(rows: nq, k: k)
        if n > 0 && nq > 0 {
            let tileQ = 256
            var tile = [Float](repeating: 0, count: tileQ * n)
            let bankNorms: [Float] = similarity == .euclidean
                ? (0..<n).map { i in (0..<dim).reduce(0) { $0 + embeddings[i, $1] * embeddings[i, $1] } }
                : [Float](repeating: 0, count: n)
            allQ.withUnsafeBufferPointer { qp in
                tile.withUnsafeMutableBufferPointer { t in
                    var r0 = 0
                    while r0 < nq {
                        let rh = min(tileQ, nq - r0)
                        let alpha: Float = similarity == .euclidean ? -2 : -1
                        Linalg.sgemm(transA: false, transB: true, m: rh, n: n, k: dim, alpha: alpha,
                                     a: qp.baseAddress! + r0 * dim, lda: dim, b: embeddings.pointer, ldb: dim,
                                     beta: 0, c: t.baseAddress!, ldc: n)
                        for i in 0..<rh {
                            let qi = r0 + i
                            var qn: Float = 0
                            if similarity == .euclidean { for j in 0..<dim { qn += qp[qi * dim + j] * qp[qi * dim + j] } }
                            let ex = allEx[qi]
                            let row = t.baseAddress! + i * n
                            for c in 0..<n {
                                let v = row[c] + bankNorms[c] + qn
                                if v < top.threshold(qi) && first + Int64(c) != ex { top.insert(row: qi, distance: v, id: first + Int64(c)) }
                            }
                        }
                        r0 += rh
                    }
                }
            }
        }
        // Each query's candidates from this rank go back to the query's rank (queries were gathered in
        // rank order, so the candidate lists are already grouped by destination).
        let send = qCounts.map { $0 / dim * k }
        let (ids, _) = try comm.alltoallv(top.ids, sendCounts: send)
        let (ds, _) = try comm.alltoallv(top.distances, sendCounts: send)
        // Received: for each source rank, k candidates for each of my q queries.
        let merged = TopK(rows: q, k: k)
        for src in 0..<comm.size {
            for i in 0..<q {
                let o = (src * q + i) * k
                merged.merge(row: i, distances: ds[o..<(o + k)], ids: ids[o..<(o + k)])
            }
        }
        var scores = merged.distances
        if similarity != .euclidean { for i in 0..<scores.count { scores[i] = -scores[i] } }
        return (merged.ids, scores)
    }
}
