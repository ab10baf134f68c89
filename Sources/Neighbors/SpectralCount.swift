import Collectives
import Foundation
import TensorCore

/// Estimating the number of clusters from the kNN graph's spectrum (the eigengap heuristic, von
/// Luxburg 2007): the normalised adjacency M = D^−½(A + I)D^−½ has one eigenvalue near 1 per
/// well-separated group of cells, so K is where the sorted eigenvalues drop most. The top `count`
/// eigenvalues come from a distributed subspace iteration on (M + I)/2 — one halo exchange of the
/// block per iteration, Cholesky-QR orthonormalisation with one b×b allreduce — and a Rayleigh–Ritz
/// step. Start vectors depend only on (seed, global cell id), so any rank count gives the same K.
public enum SpectralClusterCount {
    public struct Result: Sendable {
        public let k: Int
        public let eigenvalues: [Double]
    }

    /// `graph`: this rank's rows of a symmetric kNN graph (e.g. UMAP connectivities).
    public static func estimate(_ graph: GraphShard, layout: RowLayout, maxK: Int = 30, iterations: Int = 150,
                                seed: UInt64 = 0, comm: Communicator) throws -> Result {
        let m = try graph.symmetricNormalized(selfLoops: true, layout: layout, comm: comm)
        // Extra vectors beyond maxK + 1: the last Ritz values of a block converge slowest.
        let b = min(maxK + 12, layout.total)
        let n = m.rows
        let first = layout.offsets[comm.rank]
        let halo = try HaloPlan(needed: m.cols, layout: layout, comm: comm)
        let colSlot = m.cols.map { halo.index(of: $0)! }
        var v = [Float](repeating: 0, count: n * b)
        let start = RandomStream(seed: seed, purpose: .custom("spectral-count"))
        for i in 0..<n {
            var rng = start.split(UInt64(first + i))  // row i's start values: a stream of its global id
            for j in 0..<b { v[i * b + j] = Float(rng.uniformDouble() - 0.5) }
        }
        var w = [Float](repeating: 0, count: n * b)
        func apply() throws {  // w = ((M + I)/2) v
            let remote = try halo.fetch(v, width: b)
            for i in 0..<n {
                for j in 0..<b { w[i * b + j] = 0.5 * v[i * b + j] }
                for e in Int(m.rowPtr[i])..<Int(m.rowPtr[i + 1]) {
                    let a = 0.5 * m.values[e], src = colSlot[e] * b
                    for j in 0..<b { w[i * b + j] += a * remote[src + j] }
                }
            }
        }
        for _ in 0..<iterations {
            try apply()
            v = try orthonormalize(w, n: n, b: b, comm: comm)
        }
        // Rayleigh–Ritz: H = Vᵀ ((M+I)/2) V, eigenvalues of M = 2λ − 1.
        try apply()
        var h = [Double](repeating: 0, count: b * b)
        for i in 0..<n { for p in 0..<b { let vp = Double(v[i * b + p]); for q in 0..<b { h[p * b + q] += vp * Double(w[i * b + q]) } } }
        try comm.allreduce(&h, op: .sum)
        for p in 0..<b { for q in (p + 1)..<b { let s = 0.5 * (h[p * b + q] + h[q * b + p]); h[p * b + q] = s; h[q * b + p] = s } }
        // Every rank takes rank 0's eigenvalues: OpenBLAS picks LAPACK kernels per CPU, and ranks
        // must not disagree on K because of last-bit differences.
        var ritz = try SymmetricEigen.eigenvalues(h, n: b)
        try comm.broadcast(&ritz)
        let eig = Array(ritz.map { 2 * $0 - 1 }.reversed())  // descending
        var best = 2, gap = -Double.infinity
        for k in 2...max(2, min(maxK, eig.count - 1)) where eig[k - 1] - eig[k] > gap { gap = eig[k - 1] - eig[k]; best = k }
        if ProcessInfo.processInfo.environment["SYNCYTIUM_DEBUG_SPECTRUM"] != nil && comm.rank == 0 {
            writeStderr("spectrum: " + eig.prefix(maxK + 1).map { String(format: "%.4f", $0) }.joined(separator: " ") + "\n")
        }
        return Result(k: best, eigenvalues: eig)
    }

    /// Collective. Cholesky QR (twice, for stability) of the n × b rows of W this rank holds: returns
    /// W R⁻¹, whose columns are orthonormal over all ranks.
    public static func orthonormalize(_ w: [Float], n: Int, b: Int, comm: Communicator) throws -> [Float] {
        var x = w
        for _ in 0..<2 {
            var g = [Double](repeating: 0, count: b * b)
            for i in 0..<n { for p in 0..<b { let xp = Double(x[i * b + p]); if xp == 0 { continue }; for q in p..<b { g[p * b + q] += xp * Double(x[i * b + q]) } } }
            try comm.allreduce(&g, op: .sum)
            for p in 0..<b { for q in 0..<p { g[p * b + q] = g[q * b + p] } }
            // g = Rᵀ R (upper R), then x ← x R⁻¹ row by row.
            var r = [Double](repeating: 0, count: b * b)
            for j in 0..<b {
                var s = g[j * b + j]
                for k in 0..<j { s -= r[k * b + j] * r[k * b + j] }
                let d = max(s, 1e-300).squareRoot()
                r[j * b + j] = d
                for c in (j + 1)..<b {
                    var t = g[j * b + c]
                    for k in 0..<j { t -= r[k * b + j] * r[k * b + c] }
                    r[j * b + c] = t / d
                }
            }
            var row = [Double](repeating: 0, count: b)
            for i in 0..<n {
                for c in 0..<b {
                    var t = Double(x[i * b + c])
                    for k in 0..<c { t -= row[k] * r[k * b + c] }
                    row[c] = t / r[c * b + c]
                }
                for c in 0..<b { x[i * b + c] = Float(row[c]) }
            }
        }
        return x
    }
}
