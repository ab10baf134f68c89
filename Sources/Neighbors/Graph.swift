import Collectives
import Foundation

/// The rows a rank owns of a sparse N × N cell graph: CSR with global column ids, columns sorted
/// within each row. Row i of the shard is global row `layout.offsets[rank] + i`.
public struct GraphShard: Sendable, Equatable {
    public var rowPtr: [Int64]
    public var cols: [Int64]
    public var values: [Float]
    public var rows: Int { rowPtr.count - 1 }
    public var nnz: Int { cols.count }

    public init(rowPtr: [Int64], cols: [Int64], values: [Float]) {
        self.rowPtr = rowPtr; self.cols = cols; self.values = values
    }

    /// The directed kNN graph: row i holds its k neighbours with the given per-edge values
    /// (default: the distances), columns sorted.
    public init(knn: KNNResult, values: [Float]? = nil) {
        let k = knn.k
        let vals = values ?? knn.distances
        precondition(vals.count == knn.count * k)
        var rp = [Int64](repeating: 0, count: knn.count + 1)
        var c: [Int64] = [], v: [Float] = []
        c.reserveCapacity(knn.count * k); v.reserveCapacity(knn.count * k)
        for i in 0..<knn.count {
            let row = (0..<k).filter { knn.indices[i * k + $0] >= 0 }.sorted { knn.indices[i * k + $0] < knn.indices[i * k + $1] }
            for j in row { c.append(knn.indices[i * k + j]); v.append(vals[i * k + j]) }
            rp[i + 1] = Int64(c.count)
        }
        self.init(rowPtr: rp, cols: c, values: v)
    }

    public func row(_ i: Int) -> (cols: ArraySlice<Int64>, values: ArraySlice<Float>) {
        let a = Int(rowPtr[i]), b = Int(rowPtr[i + 1])
        return (cols[a..<b], values[a..<b])
    }

    /// How the two directions of an edge combine when symmetrising (a missing direction counts as 0).
    public enum Combine: String, Sendable {
        /// a + b − a·b: UMAP's fuzzy union (probabilistic OR).
        case fuzzyUnion
        case max
        /// (a + b) / 2.
        case mean
        case sum
        func apply(_ a: Float, _ b: Float) -> Float {
            switch self {
            case .fuzzyUnion: return a + b - a * b
            case .max: return Swift.max(a, b)
            case .mean: return 0.5 * (a + b)
            case .sum: return a + b
            }
        }
    }

    /// Collective. The symmetric graph G ∘ Gᵀ: every edge is sent to the owner of its other end
    /// (one alltoallv) and merged with the reverse edge there.
    public func symmetrized(_ combine: Combine, layout: RowLayout, comm: Communicator) throws -> GraphShard {
        let first = Int64(layout.offsets[comm.rank])
        var outIds = [[Int64]](repeating: [], count: comm.size), outVals = [[Float]](repeating: [], count: comm.size)
        for i in 0..<rows {
            for e in Int(rowPtr[i])..<Int(rowPtr[i + 1]) {
                let o = layout.owner(ofGlobal: Int(cols[e])).rank
                outIds[o].append(cols[e]); outIds[o].append(first + Int64(i)); outVals[o].append(values[e])
            }
        }
        let (rIds, _) = try comm.alltoallv(outIds.flatMap { $0 }, sendCounts: outIds.map(\.count))
        let (rVals, _) = try comm.alltoallv(outVals.flatMap { $0 }, sendCounts: outVals.map(\.count))
        // Reverse edges per local row, then merge each row's two sorted lists.
        var revCount = [Int](repeating: 0, count: rows + 1)
        for e in 0..<rVals.count { revCount[Int(rIds[2 * e] - first) + 1] += 1 }
        for i in 0..<rows { revCount[i + 1] += revCount[i] }
        var fill = revCount
        var revCol = [Int64](repeating: 0, count: rVals.count), revVal = [Float](repeating: 0, count: rVals.count)
        for e in 0..<rVals.count {
            let r = Int(rIds[2 * e] - first); let s = fill[r]; fill[r] += 1
            revCol[s] = rIds[2 * e + 1]; revVal[s] = rVals[e]
        }
        var rp = [Int64](repeating: 0, count: rows + 1)
        var c: [Int64] = [], v: [Float] = []
        c.reserveCapacity(nnz * 2); v.reserveCapacity(nnz * 2)
        var order: [Int] = []
        for i in 0..<rows {
            let lo = revCount[i], hi = revCount[i + 1]
            order = Array(lo..<hi); order.sort { revCol[$0] < revCol[$1] }
            var a = Int(rowPtr[i]); let aEnd = Int(rowPtr[i + 1])
            var b = 0
            while a < aEnd || b < order.count {
                if b >= order.count || (a < aEnd && cols[a] < revCol[order[b]]) {
                    c.append(cols[a]); v.append(combine.apply(values[a], 0)); a += 1
                } else if a >= aEnd || revCol[order[b]] < cols[a] {
                    c.append(revCol[order[b]]); v.append(combine.apply(0, revVal[order[b]])); b += 1
                } else {
                    c.append(cols[a]); v.append(combine.apply(values[a], revVal[order[b]])); a += 1; b += 1
                }
            }
            rp[i + 1] = Int64(c.count)
        }
        return GraphShard(rowPtr: rp, cols: c, values: v)
    }

    /// Row sums (local).
    public var degrees: [Float] {
        (0..<rows).map { i in values[Int(rowPtr[i])..<Int(rowPtr[i + 1])].reduce(0, +) }
    }

    /// D⁻¹·A: each row sums to 1 (rows without edges stay empty). Local.
    public func rowNormalized() -> GraphShard {
        var g = self
        for i in 0..<rows {
            let s = values[Int(rowPtr[i])..<Int(rowPtr[i + 1])].reduce(0, +)
            if s > 0 { for e in Int(rowPtr[i])..<Int(rowPtr[i + 1]) { g.values[e] /= s } }
        }
        return g
    }

    /// Collective. D^−½·A·D^−½ (as GCNs use); the degrees of neighbours owned elsewhere come by halo.
    /// With `selfLoops`, A + I is normalised instead.
    public func symmetricNormalized(selfLoops: Bool = false, layout: RowLayout, comm: Communicator) throws -> GraphShard {
        var g = selfLoops ? withSelfLoops(layout: layout, rank: comm.rank) : self
        let deg = g.degrees
        let halo = try HaloPlan(needed: g.cols, layout: layout, comm: comm)
        let theirs = try halo.fetch(deg, width: 1)
        for i in 0..<g.rows {
            let di = deg[i]
            for e in Int(g.rowPtr[i])..<Int(g.rowPtr[i + 1]) {
                let dj = theirs[halo.index(of: g.cols[e])!]
                g.values[e] = di > 0 && dj > 0 ? g.values[e] / (di * dj).squareRoot() : 0
            }
        }
        return g
    }

    /// A + I (a diagonal entry added, or incremented by 1 if present).
    public func withSelfLoops(layout: RowLayout, rank: Int) -> GraphShard {
        let first = Int64(layout.offsets[rank])
        var rp = [Int64](repeating: 0, count: rows + 1)
        var c: [Int64] = [], v: [Float] = []
        for i in 0..<rows {
            let me = first + Int64(i)
            var placed = false
            for e in Int(rowPtr[i])..<Int(rowPtr[i + 1]) {
                if !placed && cols[e] >= me {
                    if cols[e] == me { c.append(me); v.append(values[e] + 1); placed = true; continue }
                    c.append(me); v.append(1); placed = true
                }
                c.append(cols[e]); v.append(values[e])
            }
            if !placed { c.append(me); v.append(1) }
            rp[i + 1] = Int64(c.count)
        }
        return GraphShard(rowPtr: rp, cols: c, values: v)
    }
}

/// Edge weights of a kNN graph as scanpy computes them (`sc.pp.neighbors`).
public enum Connectivities {
    /// UMAP's fuzzy simplicial set (scanpy's default, method='umap'): per cell, ρ = distance to the
    /// nearest neighbour and σ by bisection so that Σ_j exp(−max(0, d_j − ρ)/σ) = log₂(k + 1)
    /// (k + 1 counts the cell itself, as scanpy's n_neighbors does); w = exp(−max(0, d − ρ)/σ);
    /// then the fuzzy union w + wᵀ − w∘wᵀ. Collective.
    public static func umap(_ knn: KNNResult, layout: RowLayout, comm: Communicator) throws -> GraphShard {
        let k = knn.k
        var weights = [Float](repeating: 0, count: knn.count * k)
        let meanAll = try globalMean(knn.distances, comm: comm)
        let target = log2(Double(k + 1))
        for i in 0..<knn.count {
            let d = knn.distances[(i * k)..<(i * k + k)].map(Double.init)
            let rho = d.first(where: { $0 > 0 }) ?? 0
            var lo = 0.0, hi = Double.infinity, mid = 1.0
            for _ in 0..<64 {
                var s = 0.0
                for dj in d { let t = dj - rho; s += t > 0 ? exp(-t / mid) : 1 }
                if abs(s - target) < 1e-5 { break }
                if s > target { hi = mid; mid = (lo + hi) / 2 } else { lo = mid; mid = hi.isInfinite ? mid * 2 : (lo + hi) / 2 }
            }
            // UMAP's floor on σ (MIN_K_DIST_SCALE = 1e-3 of the mean distance).
            let meanRow = d.reduce(0, +) / Double(k)
            mid = max(mid, 1e-3 * (rho > 0 ? meanRow : meanAll))
            for j in 0..<k { let t = d[j] - rho; weights[i * k + j] = Float(t > 0 ? exp(-t / mid) : 1) }
        }
        return try GraphShard(knn: knn, values: weights).symmetrized(.fuzzyUnion, layout: layout, comm: comm)
    }

    /// Gaussian kernel with adaptive widths (scanpy's method='gauss' on a kNN graph): σ_i² = median
    /// squared distance to the cell's neighbours, w_ij = √(2σ_iσ_j/(σ_i²+σ_j²))·exp(−d_ij²/(σ_i²+σ_j²)),
    /// symmetrised by max (the kernel is symmetric wherever both directions exist). Collective.
    public static func gaussian(_ knn: KNNResult, layout: RowLayout, comm: Communicator) throws -> GraphShard {
        let k = knn.k
        var sigma = [Float](repeating: 0, count: knn.count)
        for i in 0..<knn.count {
            let s = knn.distances[(i * k)..<(i * k + k)].map { $0 * $0 }.sorted()
            sigma[i] = (k % 2 == 1 ? s[k / 2] : 0.5 * (s[k / 2 - 1] + s[k / 2])).squareRoot()
        }
        let halo = try HaloPlan(needed: knn.indices.filter { $0 >= 0 }, layout: layout, comm: comm)
        let theirs = try halo.fetch(sigma, width: 1)
        var w = [Float](repeating: 0, count: knn.count * k)
        for i in 0..<knn.count {
            for j in 0..<k where knn.indices[i * k + j] >= 0 {
                let si = Double(sigma[i]), sj = Double(theirs[halo.index(of: knn.indices[i * k + j])!])
                let den = si * si + sj * sj
                let d = Double(knn.distances[i * k + j])
                w[i * k + j] = den > 0 ? Float((2 * si * sj / den).squareRoot() * exp(-d * d / den)) : 0
            }
        }
        return try GraphShard(knn: knn, values: w).symmetrized(.max, layout: layout, comm: comm)
    }

    private static func globalMean(_ xs: [Float], comm: Communicator) throws -> Double {
        var s = [xs.reduce(0.0) { $0 + Double($1) }, Double(xs.count)]
        try comm.allreduce(&s, op: .sum)
        return s[1] > 0 ? s[0] / s[1] : 0
    }
}
