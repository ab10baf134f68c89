import Collectives
import TensorCore

/// The k nearest neighbours of each row a rank owns: global row ids and Euclidean distances,
/// nearest first, the row itself excluded.
public struct KNNResult: Sendable {
    public let k: Int
    public let count: Int
    public var indices: [Int64]    // count × k
    public var distances: [Float]  // count × k, Euclidean
}

/// Exact kNN graph by blockwise GEMM over a ring of ranks, computing each unordered pair of rows once.
///
/// Step 0: a rank's own rows against themselves (upper-triangle tiles). Steps 1…⌊P/2⌋: the row
/// block of rank r − s visits rank r together with the top-k lists of its rows; one pass over each
/// distance tile updates both sides' lists. At s = P/2 (P even) the pair is met twice, so the lower
/// rank takes the visitor's first half of rows and the higher rank its own second half. Then the
/// visiting lists go home and are merged. The next block's vectors travel while the current one is
/// computed. Memory per rank: its shard, one visiting block with its lists, a 1 MiB tile.
public enum ExactKNN {
    static let tileRows = 512, tileCols = 512

    public static func build(_ x: Tensor, k: Int, comm: Communicator) throws -> KNNResult {
        let n = x.rows, d = x.cols
        let layout = try RowLayout(comm: comm, localCount: n)
        let dims = try comm.allgather(value: Int64(d))
        guard dims.allSatisfy({ $0 == Int64(d) }) else {
            throw CollectiveUsageError("kNN: ranks hold embeddings of different widths \(dims)")
        }
        guard k >= 1 && k < layout.total else {
            throw CollectiveUsageError("kNN with k = \(k) needs more than k cells; there are \(layout.total)")
        }
        let p = comm.size, r = comm.rank
        let kFinal = k
        let k = KNNRefine.searchWidth(k: kFinal, total: layout.total)
        let mine = x.scalars
        let myNorms = mine.withUnsafeBufferPointer { rowSquaredNorms($0.baseAddress!, rows: n, dim: d) }
        let myFirst = Int64(layout.offsets[r])
        let top = TopK(rows: n, k: k)
        var tile = [Float](repeating: 0, count: tileRows * tileCols)
        var colAdj: [Float] = []

        // Step 0: own rows against themselves, pairs i < j only; both ends update the same lists.
        pairTiles(mine, myNorms, rowsRange: 0..<n, mine, myNorms, colsRange: 0..<n, dim: d, triangular: true,
                  rowTop: top, rowIdFirst: myFirst, colTop: top, colIdFirst: myFirst, tile: &tile, colAdj: &colAdj)

        let steps = p / 2
        if steps > 0 {
            var owner = r
            var block = mine, blockNorms = myNorms
            var visit = TopK(rows: n, k: k)  // lists of the visiting block's rows (starts with our own)
            let maxRows = layout.counts.max() ?? 0
            var nextBlock = [Float](repeating: 0, count: maxRows * d)
            let right = (r + 1) % p, left = (r - 1 + p) % p
            for s in 1...steps {
                // Move vectors and lists one step right: the block of rank r − s arrives.
                let nextOwner = (owner - 1 + p) % p
                let nb = layout.counts[nextOwner]
                let rv = try nextBlock.withUnsafeMutableBufferPointer {
                    try comm.irecv(UnsafeMutableBufferPointer(rebasing: $0[0..<(nb * d)]), from: left, tag: 80)
                }
                let sv = try block.withUnsafeBufferPointer { try comm.isend($0, to: right, tag: 80) }
                let nextIds = try comm.sendrecv(visit.ids, to: right, receiveCount: nb * k, from: left, tag: 81)
                let nextDist = try comm.sendrecv(visit.distances, to: right, receiveCount: nb * k, from: left, tag: 82)
                try sv.wait(); try rv.wait()
                owner = nextOwner
                block = Array(nextBlock[0..<(nb * d)])
                blockNorms = block.withUnsafeBufferPointer { rowSquaredNorms($0.baseAddress!, rows: nb, dim: d) }
                visit = TopK(rows: nb, k: k, distances: nextDist, ids: nextIds)

                var rows = 0..<n, cols = 0..<nb
                if p % 2 == 0 && s == steps {
                    // Met twice at this step: split the rectangle between the two ranks.
                    if r < owner { cols = 0..<(nb / 2) } else { rows = (n / 2)..<n }
                }
                pairTiles(mine, myNorms, rowsRange: rows, block, blockNorms, colsRange: cols, dim: d, triangular: false,
                          rowTop: top, rowIdFirst: myFirst, colTop: visit, colIdFirst: Int64(layout.offsets[owner]),
                          tile: &tile, colAdj: &colAdj)
            }
            // Lists go home: we hold those of rank r − steps; ours are at rank r + steps.
            let home = owner, from = (r + steps) % p
            let backIds = try comm.sendrecv(visit.ids, to: home, receiveCount: n * k, from: from, tag: 83)
            let backDist = try comm.sendrecv(visit.distances, to: home, receiveCount: n * k, from: from, tag: 84)
            for i in 0..<n { top.merge(row: i, distances: backDist[(i * k)..<(i * k + k)], ids: backIds[(i * k)..<(i * k + k)]) }
        }
        return try KNNRefine.refine(x, candidates: top, k: kFinal, layout: layout, comm: comm)
    }

    /// All tiles of rows × cols (only tiles on or above the diagonal when `triangular`).
    private static func pairTiles(_ a: [Float], _ an: [Float], rowsRange: Range<Int>, _ b: [Float], _ bn: [Float],
                                  colsRange: Range<Int>, dim d: Int, triangular: Bool,
                                  rowTop: TopK, rowIdFirst: Int64, colTop: TopK, colIdFirst: Int64,
                                  tile: inout [Float], colAdj: inout [Float]) {
        guard !rowsRange.isEmpty && !colsRange.isEmpty else { return }
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                an.withUnsafeBufferPointer { anp in
                    bn.withUnsafeBufferPointer { bnp in
                        tile.withUnsafeMutableBufferPointer { t in
                            var r0 = rowsRange.lowerBound
                            while r0 < rowsRange.upperBound {
                                let rh = min(tileRows, rowsRange.upperBound - r0)
                                var c0 = triangular ? r0 : colsRange.lowerBound
                                while c0 < colsRange.upperBound {
                                    let cw = min(tileCols, colsRange.upperBound - c0)
                                    Linalg.sgemm(transA: false, transB: true, m: rh, n: cw, k: d, alpha: -2,
                                                 a: ap.baseAddress! + r0 * d, lda: d, b: bp.baseAddress! + c0 * d, ldb: d,
                                                 beta: 0, c: t.baseAddress!, ldc: cw)
                                    scanSymmetric(tile: t.baseAddress!, ld: cw, rows: rh, cols: cw,
                                                  diagonal: triangular && c0 == r0,
                                                  rowTop: rowTop, rowFirst: r0, rowIdFirst: rowIdFirst + Int64(r0),
                                                  rowNorm: anp.baseAddress! + r0,
                                                  colTop: colTop, colFirst: c0, colIdFirst: colIdFirst + Int64(c0),
                                                  colNorm: bnp.baseAddress! + c0, colAdj: &colAdj)
                                    c0 += cw
                                }
                                r0 += rh
                            }
                        }
                    }
                }
            }
        }
    }
}
