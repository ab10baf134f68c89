import Collectives
import Foundation
import TensorCore

/// DEC-style soft assignments (Xie et al. 2016), computed on a rank's shard with global column sums.
public enum SoftAssignment {
    /// Student-t kernel q_ij ∝ (1 + ‖z_i − μ_j‖² / α)^(−(α+1)/2), each row normalised (local, no communication).
    /// `z`: n × d, `centres`: k × d, both row-major. Returns n × k.
    public static func studentT(_ z: [Float], n: Int, centres: [Float], k: Int, dim d: Int, alpha: Float = 1) -> [Float] {
        precondition(z.count == n * d && centres.count == k * d)
        var q = [Float](repeating: 0, count: n * k)
        let power = -(alpha + 1) / 2
        for i in 0..<n {
            var rowSum: Float = 0
            for c in 0..<k {
                var s: Float = 0
                for j in 0..<d { let t = z[i * d + j] - centres[c * d + j]; s += t * t }
                let v = powf(1 + s / alpha, power)
                q[i * k + c] = v; rowSum += v
            }
            let inv = 1 / rowSum
            for c in 0..<k { q[i * k + c] *= inv }
        }
        return q
    }

    /// DEC target p_ij = (q_ij² / f_j) / Σ_j' (q_ij'² / f_j'), with cluster frequencies f_j = Σ_i q_ij summed
    /// over all ranks (one allreduce of k numbers).
    public static func decTarget(_ q: [Float], n: Int, k: Int, comm: Communicator) throws -> [Float] {
        var f = [Double](repeating: 0, count: k)
        for i in 0..<n { for c in 0..<k { f[c] += Double(q[i * k + c]) } }
        try comm.allreduce(&f, op: .sum)
        var p = [Float](repeating: 0, count: n * k)
        for i in 0..<n {
            var s = 0.0
            for c in 0..<k { let v = Double(q[i * k + c]) * Double(q[i * k + c]) / max(f[c], 1e-30); p[i * k + c] = Float(v); s += v }
            let inv = Float(1 / max(s, 1e-30))
            for c in 0..<k { p[i * k + c] *= inv }
        }
        return p
    }
}

/// Entropy-regularised optimal transport (Sinkhorn–Knopp) in the log domain, rows sharded over ranks.
///
/// Finds the transport plan P = diag(e^f) · exp(scores) · diag(e^g) whose row sums are `rowMass`
/// (for this rank's rows) and whose column sums are `colMass` (global). Column updates need a
/// global log-sum-exp: one allreduce(max) and one allreduce(sum) of k numbers per iteration.
public struct Sinkhorn {
    public var maxIterations = 1000
    /// Stop when Σ_j |column sum_j − colMass_j| ≤ tolerance (the rows are exact after each update).
    public var tolerance = 1e-6

    public init(maxIterations: Int = 1000, tolerance: Double = 1e-6) {
        self.maxIterations = maxIterations; self.tolerance = tolerance
    }

    public struct Result {
        public var plan: [Double]   // n × k, this rank's rows
        public var iterations: Int
        public var marginalError: Double
    }

    /// `scores`: n × k log-kernel (e.g. −cost/ε or logits/ε) for this rank's rows.
    public func solve(scores: [Double], n: Int, k: Int, rowMass: [Double], colMass: [Double],
                      comm: Communicator) throws -> Result {
        precondition(scores.count == n * k && rowMass.count == n && colMass.count == k)
        let logA = rowMass.map { log(max($0, 1e-300)) }, logB = colMass.map { log(max($0, 1e-300)) }
        var f = [Double](repeating: 0, count: n), g = [Double](repeating: 0, count: k)
        var err = Double.infinity
        var it = 0
        var colMax = [Double](repeating: 0, count: k), colSum = [Double](repeating: 0, count: k)
        // Rows (local): f_i = log a_i − LSE_j(S_ij + g_j); then the column sums of the plan → the
        // marginal error (global, so every rank takes the same branch below).
        func rowUpdateAndError() throws {
            for i in 0..<n {
                var m = -Double.infinity
                for c in 0..<k { m = max(m, scores[i * k + c] + g[c]) }
                var s = 0.0
                for c in 0..<k { s += exp(scores[i * k + c] + g[c] - m) }
                f[i] = logA[i] - (m + log(s))
            }
            try columnLSE(scores, f, n: n, k: k, comm: comm, max: &colMax, sum: &colSum)
            var e = 0.0
            for c in 0..<k { e += abs(exp(colMax[c] + log(colSum[c]) + g[c]) - colMass[c]) }
            err = e
        }
        var columnsLast = false
        while it < maxIterations {
            it += 1
            try rowUpdateAndError()
            columnsLast = false
            if err <= tolerance { break }
            // Columns (global): g_j = log b_j − LSE_i(S_ij + f_i).
            for c in 0..<k { g[c] = logB[c] - (colMax[c] + log(colSum[c])) }
            columnsLast = true
        }
        // Stopped at the cap right after a column update: one more row update, so the plan's rows
        // are exact (the targets are distributions per cell) and the error reported is the plan's.
        if columnsLast { try rowUpdateAndError() }
        var plan = [Double](repeating: 0, count: n * k)
        for i in 0..<n { for c in 0..<k { plan[i * k + c] = exp(scores[i * k + c] + f[i] + g[c]) } }
        return Result(plan: plan, iterations: it, marginalError: err)
    }

    /// Per column: the global max of S_ij + f_i and the global Σ_i exp(S_ij + f_i − max).
    private func columnLSE(_ s: [Double], _ f: [Double], n: Int, k: Int, comm: Communicator,
                           max colMax: inout [Double], sum colSum: inout [Double]) throws {
        for c in 0..<k { colMax[c] = -Double.infinity }
        for i in 0..<n { for c in 0..<k { colMax[c] = Swift.max(colMax[c], s[i * k + c] + f[i]) } }
        try comm.allreduce(&colMax, op: .max)
        for c in 0..<k { colSum[c] = 0 }
        for i in 0..<n { for c in 0..<k { colSum[c] += exp(s[i * k + c] + f[i] - colMax[c]) } }
        try comm.allreduce(&colSum, op: .sum)
    }
}

/// Mean silhouette coefficient (Euclidean) over a seeded sample of cells, computed against all cells on
/// all ranks: the sample is gathered everywhere, each rank sums distances from its own cells per
/// cluster, and one allreduce combines them. Cells in singleton clusters score 0 (as scikit-learn).
public enum Silhouette {
    public static func sampled(_ points: PointShard, labels: [Int32], k: Int, sampleSize: Int, seed: UInt64,
                               comm: Communicator) throws -> Double {
        let layout = try RowLayout(comm: comm, localCount: points.count)
        let d = points.dim
        let m = min(sampleSize, layout.total)
        guard m > 0 else { return 0 }
        // Sample without replacement: partial Fisher–Yates over indices, same on every rank.
        var rng = RandomStream(seed: seed, purpose: .custom("silhouette"))
        var chosen: [Int]
        if m == layout.total { chosen = Array(0..<m) } else {
            var picked = Set<Int>(); chosen = []
            while chosen.count < m { let g = rng.int(below: layout.total); if picked.insert(g).inserted { chosen.append(g) } }
        }
        let rows = try KMeans.fetchRows(chosen, points, layout: layout, comm: comm)
        // Labels of the sample.
        var myLab: [Int64] = [], myPos: [Int64] = []
        for (pos, g) in chosen.enumerated() {
            let (o, l) = layout.owner(ofGlobal: g)
            if o == comm.rank { myLab.append(Int64(labels[l])); myPos.append(Int64(pos)) }
        }
        let (labs, _) = try comm.allgatherv(myLab)
        let (poss, _) = try comm.allgatherv(myPos)
        var sampleLabel = [Int](repeating: 0, count: m)
        for (slot, p) in poss.enumerated() { sampleLabel[Int(p)] = Int(labs[slot]) }
        // Sums of distances per (sample, cluster) and cluster sizes.
        var acc = [Double](repeating: 0, count: m * k + k)
        points.values.withUnsafeBufferPointer { x in
            rows.withUnsafeBufferPointer { s in
                for i in 0..<points.count {
                    let c = Int(labels[i])
                    acc[m * k + c] += 1
                    for t in 0..<m {
                        var dd = 0.0
                        for j in 0..<d { let v = Double(x[i * d + j]) - Double(s[t * d + j]); dd += v * v }
                        acc[t * k + c] += dd.squareRoot()
                    }
                }
            }
        }
        try comm.allreduce(&acc, op: .sum)
        var total = 0.0
        for t in 0..<m {
            let own = sampleLabel[t]
            let ownCount = acc[m * k + own]
            if ownCount <= 1 { continue }
            let a = acc[t * k + own] / (ownCount - 1)
            var b = Double.infinity
            for c in 0..<k where c != own && acc[m * k + c] > 0 { b = min(b, acc[t * k + c] / acc[m * k + c]) }
            if b.isFinite { total += (b - a) / max(a, b) }
        }
        return total / Double(m)
    }
}
