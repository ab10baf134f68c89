import Collectives
import TensorCore

/// Result of the distributed PCA: components are replicated, scores are this rank's rows.
public struct PCAResult: Sendable {
    /// nComps × nVars, row-major (each row a unit-length principal axis).
    public var components: [Float]
    /// Variance along each axis (eigenvalues of the covariance, ddof = 1).
    public var explainedVariance: [Double]
    public var explainedVarianceRatio: [Double]
    /// localRows × nComps, row-major.
    public var scores: [Float]
    public var nComps: Int
}

extension Preprocess {
    /// Distributed PCA of dense local rows (localRows × nVars, row-major) by randomized subspace
    /// iteration: only nVars × (k + oversampling) blocks are allreduced, never the covariance.
    /// Columns are centred with their global means first. Every rank gets the same components;
    /// coordinates agree across rank counts to floating-point reassociation (~1e-5), not bitwise.
    public static func pca(_ x: inout [Float], localRows: Int, nVars: Int, nComps: Int, nObs: Int,
                           iterations: Int = 16, oversampling: Int = 30, seed: UInt64 = 0,
                           comm: Communicator) throws -> PCAResult {
        let k = Swift.min(nComps, nVars, nObs)
        let l = Swift.min(k + oversampling, nVars)
        // Centre.
        var sums = ExactColumnSums(columns: nVars, rows: nObs)
        for i in 0..<localRows { for j in 0..<nVars { sums.add(j, Double(x[i * nVars + j])) } }
        let mean = try sums.total(comm).map { Float($0 / Double(nObs)) }
        for i in 0..<localRows { for j in 0..<nVars { x[i * nVars + j] -= mean[j] } }
        var total = 0.0
        for v in x { total += Double(v) * Double(v) }
        total = try comm.allreduce(value: total, op: .sum) / Double(Swift.max(nObs - 1, 1))

        // Start block Q (nVars × l), the same on every rank.
        var rng = RandomStream(seed: seed, purpose: .custom("pca"))
        var q = (0..<(nVars * l)).map { _ in rng.normal() }
        orthonormalizeColumns(&q, rows: nVars, cols: l)
        var y = [Float](repeating: 0, count: Swift.max(localRows * l, 1))
        var z = [Float](repeating: 0, count: nVars * l)
        func xTimes(_ m: [Float]) {  // y = X m   (localRows × l)
            guard localRows > 0 else { return }
            x.withUnsafeBufferPointer { a in m.withUnsafeBufferPointer { b in y.withUnsafeMutableBufferPointer { c in
                Linalg.sgemm(transA: false, transB: false, m: localRows, n: l, k: nVars, alpha: 1,
                             a: a.baseAddress!, lda: nVars, b: b.baseAddress!, ldb: l, beta: 0, c: c.baseAddress!, ldc: l)
            } } }
        }
        func xtTimesY() throws {  // z = Xᵀ y allreduced   (nVars × l)
            if localRows > 0 {
                x.withUnsafeBufferPointer { a in y.withUnsafeBufferPointer { b in z.withUnsafeMutableBufferPointer { c in
                    Linalg.sgemm(transA: true, transB: false, m: nVars, n: l, k: localRows, alpha: 1,
                                 a: a.baseAddress!, lda: nVars, b: b.baseAddress!, ldb: l, beta: 0, c: c.baseAddress!, ldc: l)
                } } }
            } else {
                for i in z.indices { z[i] = 0 }
            }
            try comm.allreduce(&z, op: .sum)
        }
        for _ in 0..<iterations {
            xTimes(q)
            try xtTimesY()
            q = z
            orthonormalizeColumns(&q, rows: nVars, cols: l)
        }
        // Rayleigh–Ritz: small matrix B = Qᵀ C Q = (X Q)ᵀ (X Q) / (n - 1).
        xTimes(q)
        var b = [Double](repeating: 0, count: l * l)
        for i in 0..<localRows {
            for a in 0..<l {
                let ya = Double(y[i * l + a])
                if ya == 0 { continue }
                for c in a..<l { b[a * l + c] += ya * Double(y[i * l + c]) }
            }
        }
        try comm.allreduce(&b, op: .sum)
        for a in 0..<l { for c in 0..<a { b[a * l + c] = b[c * l + a] } }
        for i in b.indices { b[i] /= Double(Swift.max(nObs - 1, 1)) }
        // Ascending eigenvalues, eigenvector e in row e of evecs: the top k are the last k, reversed.
        // OpenBLAS picks its LAPACK kernels per CPU, so ranks on different CPU models could differ
        // in the last bits: every rank takes rank 0's result, so all hold the same components.
        var (evals, evecs) = try SymmetricEigen.decompose(b, n: l)
        try comm.broadcast(&evals)
        try comm.broadcast(&evecs)
        let order = (0..<l).reversed().prefix(k)
        var comps = [Float](repeating: 0, count: k * nVars)
        for (r, e) in order.enumerated() {
            for g in 0..<nVars {
                var v = 0.0
                for a in 0..<l { v += Double(q[g * l + a]) * evecs[e * l + a] }
                comps[r * nVars + g] = Float(v)
            }
            // Sign: largest-magnitude loading positive (deterministic across ranks and runs).
            var best = 0
            for g in 0..<nVars where abs(comps[r * nVars + g]) > abs(comps[r * nVars + best]) { best = g }
            if comps[r * nVars + best] < 0 { for g in 0..<nVars { comps[r * nVars + g] = -comps[r * nVars + g] } }
        }
        var scores = [Float](repeating: 0, count: localRows * k)
        if localRows > 0 && k > 0 {
            x.withUnsafeBufferPointer { a in comps.withUnsafeBufferPointer { c in scores.withUnsafeMutableBufferPointer { s in
                Linalg.sgemm(transA: false, transB: true, m: localRows, n: k, k: nVars, alpha: 1,
                             a: a.baseAddress!, lda: nVars, b: c.baseAddress!, ldb: nVars, beta: 0, c: s.baseAddress!, ldc: k)
            } } }
        }
        let ev = order.map { evals[$0] }
        return PCAResult(components: comps, explainedVariance: ev, explainedVarianceRatio: ev.map { $0 / Swift.max(total, 1e-300) },
                         scores: scores, nComps: k)
    }

    /// Modified Gram–Schmidt on the columns of a row-major rows × cols matrix (in Double).
    static func orthonormalizeColumns(_ m: inout [Float], rows: Int, cols: Int) {
        var d = m.map(Double.init)
        for c in 0..<cols {
            for p in 0..<c {
                var dot = 0.0
                for r in 0..<rows { dot += d[r * cols + c] * d[r * cols + p] }
                for r in 0..<rows { d[r * cols + c] -= dot * d[r * cols + p] }
            }
            var norm = 0.0
            for r in 0..<rows { norm += d[r * cols + c] * d[r * cols + c] }
            norm = norm.squareRoot()
            if norm > 0 { for r in 0..<rows { d[r * cols + c] /= norm } }
        }
        m = d.map(Float.init)
    }
}
