import Foundation

/// Row/column reductions, row-wise softmax, per-row top-k and pairwise distances.
public enum Reduce {
    /// Σ over each row → rows×1, into `out` (alpha·sum + beta·out).
    public static func sumRows(_ x: Tensor, into out: Tensor, alpha: Float = 1, beta: Float = 0) {
        precondition(out.count == x.rows)
        let p = x.pointer, o = out.pointer
        for r in 0..<x.rows {
            let s = alpha * Elementwise.rowSum(p + r * x.cols, x.cols)
            o[r] = beta == 0 ? s : s + beta * o[r]
        }
    }

    /// Σ over each column → 1×cols, into `out` (alpha·sum + beta·out).
    public static func sumColumns(_ x: Tensor, into out: Tensor, alpha: Float = 1, beta: Float = 0) {
        precondition(out.count == x.cols)
        let C = x.cols, o = out.pointer, p = x.pointer
        if beta == 0 { o.update(repeating: 0, count: C) } else if beta != 1 { for j in 0..<C { o[j] *= beta } }
        for r in 0..<x.rows {
            let xr = p + r * C
            for j in 0..<C { o[j] += alpha * xr[j] }
        }
    }

    public static func sum(_ x: Tensor) -> Float {
        var s: Double = 0
        for r in 0..<x.rows { s += Double(Elementwise.rowSum(x.pointer + r * x.cols, x.cols)) }
        return Float(s)
    }

    public static func sumRows(_ x: Tensor) -> Tensor { let o = Tensor(uninitializedRows: x.rows, cols: 1); sumRows(x, into: o); return o }
    public static func sumColumns(_ x: Tensor) -> Tensor { let o = Tensor(uninitializedRows: 1, cols: x.cols); sumColumns(x, into: o); return o }
    public static func meanRows(_ x: Tensor) -> Tensor { let o = Tensor(uninitializedRows: x.rows, cols: 1); sumRows(x, into: o, alpha: 1 / Float(max(x.cols, 1))); return o }
    public static func meanColumns(_ x: Tensor) -> Tensor { let o = Tensor(uninitializedRows: 1, cols: x.cols); sumColumns(x, into: o, alpha: 1 / Float(max(x.rows, 1))); return o }

    /// Maximum of each row → rows×1.
    public static func maxRows(_ x: Tensor) -> Tensor {
        let o = Tensor(uninitializedRows: x.rows, cols: 1)
        for r in 0..<x.rows {
            let p = x.pointer + r * x.cols
            var m = -Float.infinity
            for j in 0..<x.cols { m = max(m, p[j]) }
            o.pointer[r] = m
        }
        return o
    }

    /// Row-wise softmax, into `out` (may alias x).
    public static func softmaxRows(_ x: Tensor, into out: Tensor) {
        precondition(out.rows == x.rows && out.cols == x.cols)
        let C = x.cols
        for r in 0..<x.rows {
            let p = x.pointer + r * C, o = out.pointer + r * C
            var m = -Float.infinity
            for j in 0..<C { m = max(m, p[j]) }
            var s: Float = 0
            for j in 0..<C { let e = Foundation.exp(p[j] - m); o[j] = e; s += e }
            let inv = 1 / s
            for j in 0..<C { o[j] *= inv }
        }
    }

    /// Row-wise log-softmax, into `out` (may alias x).
    public static func logSoftmaxRows(_ x: Tensor, into out: Tensor) {
        precondition(out.rows == x.rows && out.cols == x.cols)
        let C = x.cols
        for r in 0..<x.rows {
            let p = x.pointer + r * C, o = out.pointer + r * C
            let lse = logSumExp(p, C)
            for j in 0..<C { o[j] = p[j] - lse }
        }
    }

    /// log Σ exp over n elements, shifted by the maximum.
    @inline(__always)
    public static func logSumExp(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = -Float.infinity
        for j in 0..<n { m = max(m, p[j]) }
        if m == -.infinity { return m }
        var s: Float = 0
        for j in 0..<n { s += Foundation.exp(p[j] - m) }
        return m + Foundation.log(s)
    }

    public static func softmaxRows(_ x: Tensor) -> Tensor { let o = Tensor(uninitializedRows: x.rows, cols: x.cols); softmaxRows(x, into: o); return o }
    public static func logSoftmaxRows(_ x: Tensor) -> Tensor { let o = Tensor(uninitializedRows: x.rows, cols: x.cols); logSoftmaxRows(x, into: o); return o }

    /// The k largest entries of each row, in descending order (ties: lower column first).
    /// Returns (indices rows×k as Int32, values rows×k).
    public static func topK(_ x: Tensor, k: Int, largest: Bool = true) -> (indices: [Int32], values: Tensor) {
        precondition(k >= 0 && k <= x.cols, "top-k with k=\(k) of \(x.cols) columns")
        var idx = [Int32](repeating: 0, count: x.rows * k)
        let vals = Tensor(uninitializedRows: x.rows, cols: k)
        if k == 0 { return (idx, vals) }
        let sign: Float = largest ? 1 : -1
        // Per row: keep a sorted buffer of the best k seen (insertion; k is small in practice).
        var bestV = [Float](repeating: 0, count: k)
        var bestI = [Int32](repeating: 0, count: k)
        for r in 0..<x.rows {
            let p = x.pointer + r * x.cols
            var n = 0
            for j in 0..<x.cols {
                let v = sign * p[j]
                if n == k && !(v > bestV[k - 1]) { continue }
                var pos = n < k ? n : k - 1
                while pos > 0 && v > bestV[pos - 1] {
                    bestV[pos] = bestV[pos - 1]; bestI[pos] = bestI[pos - 1]; pos -= 1
                }
                bestV[pos] = v; bestI[pos] = Int32(j)
                if n < k { n += 1 }
            }
            for t in 0..<k { idx[r * k + t] = bestI[t]; vals.pointer[r * k + t] = sign * bestV[t] }
        }
        return (idx, vals)
    }

    /// Squared Euclidean distances between the rows of A (m×d) and B (n×d) → m×n, via
    /// |a|² + |b|² − 2 A·Bᵀ (one sgemm), clamped at 0.
    public static func pairwiseSquaredDistances(_ a: Tensor, _ b: Tensor, into out: Tensor) {
        precondition(a.cols == b.cols, "pairwise distances need equal widths, got \(a.cols) and \(b.cols)")
        precondition(out.rows == a.rows && out.cols == b.rows)
        let m = a.rows, n = b.rows, d = a.cols
        Linalg.gemm(a, b, transB: true, into: out, alpha: -2, beta: 0)
        var nb = [Float](repeating: 0, count: n)
        for j in 0..<n { let q = b.pointer + j * d; var s: Float = 0; for t in 0..<d { s += q[t] * q[t] }; nb[j] = s }
        for i in 0..<m {
            let q = a.pointer + i * d
            var na: Float = 0
            for t in 0..<d { na += q[t] * q[t] }
            let o = out.pointer + i * n
            for j in 0..<n { o[j] = max(o[j] + na + nb[j], 0) }
        }
    }

    public static func pairwiseSquaredDistances(_ a: Tensor, _ b: Tensor) -> Tensor {
        let o = Tensor(uninitializedRows: a.rows, cols: b.rows)
        pairwiseSquaredDistances(a, b, into: o)
        return o
    }
}
