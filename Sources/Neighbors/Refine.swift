import Collectives
import TensorCore

/// Exact re-ranking of kNN candidates. The GEMM form ‖x‖² + ‖y‖² − 2x·y in Float32 loses digits when
/// neighbours are close compared with their norms (1e-4 relative on PCA coordinates); the search
/// therefore keeps `k + extra` candidates per row, and this pass recomputes their distances in Double
/// from the vectors (candidates owned by other ranks come by one halo exchange), sorts, and keeps k.
enum KNNRefine {
    static func refine(_ x: Tensor, candidates: TopK, k: Int, layout: RowLayout, comm: Communicator) throws -> KNNResult {
        let n = x.rows, d = x.cols, kk = candidates.k
        let ids = candidates.ids
        let halo = try HaloPlan(needed: ids.filter { $0 >= 0 }, layout: layout, comm: comm)
        let vectors = try halo.fetch(x.scalars, width: d)
        var outIds = [Int64](repeating: -1, count: n * k)
        var outDist = [Float](repeating: .infinity, count: n * k)
        var row: [(Double, Int64)] = []
        row.reserveCapacity(kk)
        for i in 0..<n {
            row.removeAll(keepingCapacity: true)
            let xi = x.pointer + i * d
            for t in 0..<kk {
                let g = ids[i * kk + t]
                guard g >= 0, let h = halo.index(of: g) else { continue }
                var s = 0.0
                for j in 0..<d { let v = Double(xi[j]) - Double(vectors[h * d + j]); s += v * v }
                row.append((s, g))
            }
            row.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
            for (t, c) in row.prefix(k).enumerated() { outIds[i * k + t] = c.1; outDist[i * k + t] = Float(c.0.squareRoot()) }
        }
        return KNNResult(k: k, count: n, indices: outIds, distances: outDist)
    }

    /// Candidates kept per row for a final k: a few spares beyond k.
    static func searchWidth(k: Int, total: Int) -> Int { min(total - 1, k + max(4, k / 2)) }
}
