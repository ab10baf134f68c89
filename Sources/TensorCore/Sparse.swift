/// A compressed-sparse-row matrix: Float32 values, Int32 column indices, Int64 row pointers.
public struct CSRMatrix: Sendable, Equatable {
    public let rows: Int
    public let cols: Int
    public var rowPtr: [Int64]
    public var colIdx: [Int32]
    public var values: [Float]

    public var nnz: Int { values.count }

    public enum ValidationError: Error, CustomStringConvertible {
        case shape(String)
        public var description: String { switch self { case .shape(let s): return "invalid CSR matrix: \(s)" } }
    }

    /// Checks the structure: rowPtr has rows+1 non-decreasing entries from 0 to nnz, column indices are in range.
    public init(rows: Int, cols: Int, rowPtr: [Int64], colIdx: [Int32], values: [Float]) throws {
        guard rows >= 0, cols >= 0 else { throw ValidationError.shape("negative shape \(rows)×\(cols)") }
        guard rowPtr.count == rows + 1 else { throw ValidationError.shape("rowPtr has \(rowPtr.count) entries, expected \(rows + 1)") }
        guard colIdx.count == values.count else { throw ValidationError.shape("\(colIdx.count) column indices but \(values.count) values") }
        guard rowPtr.first == 0, rowPtr.last == Int64(values.count) else {
            throw ValidationError.shape("rowPtr must run from 0 to nnz=\(values.count), got \(rowPtr.first ?? -1)…\(rowPtr.last ?? -1)")
        }
        for r in 0..<rows where rowPtr[r] > rowPtr[r + 1] { throw ValidationError.shape("rowPtr decreases at row \(r)") }
        for c in colIdx where c < 0 || Int(c) >= cols { throw ValidationError.shape("column index \(c) outside 0..<\(cols)") }
        self.rows = rows; self.cols = cols
        self.rowPtr = rowPtr; self.colIdx = colIdx; self.values = values
    }

    /// The non-zeros of a dense tensor.
    public init(dense t: Tensor) {
        var rp: [Int64] = [0]; var ci: [Int32] = []; var v: [Float] = []
        for r in 0..<t.rows {
            for c in 0..<t.cols where t[r, c] != 0 { ci.append(Int32(c)); v.append(t[r, c]) }
            rp.append(Int64(v.count))
        }
        rows = t.rows; cols = t.cols; rowPtr = rp; colIdx = ci; values = v
    }

    public func toDense() -> Tensor {
        let t = Tensor(uninitializedRows: rows, cols: cols)
        densify(into: t)
        return t
    }

    /// Writes the dense form into `t` (rows×cols), in place.
    public func densify(into t: Tensor) {
        precondition(t.rows == rows && t.cols == cols, "densify into \(t.rows)×\(t.cols), matrix is \(rows)×\(cols)")
        t.fill(0)
        for r in 0..<rows {
            for p in Int(rowPtr[r])..<Int(rowPtr[r + 1]) { t.pointer[r * cols + Int(colIdx[p])] += values[p] }
        }
    }

    /// Fraction of entries stored.
    public var density: Double { rows * cols == 0 ? 0 : Double(nnz) / (Double(rows) * Double(cols)) }

    /// The listed rows, in order, as a new CSR matrix (e.g. a minibatch).
    public func gatherRows(_ indices: [Int]) -> CSRMatrix {
        var rp: [Int64] = [0]; rp.reserveCapacity(indices.count + 1)
        var total = 0
        for i in indices { precondition(i >= 0 && i < rows); total += Int(rowPtr[i + 1] - rowPtr[i]) }
        var ci: [Int32] = []; ci.reserveCapacity(total)
        var v: [Float] = []; v.reserveCapacity(total)
        for i in indices {
            let lo = Int(rowPtr[i]), hi = Int(rowPtr[i + 1])
            ci.append(contentsOf: colIdx[lo..<hi]); v.append(contentsOf: values[lo..<hi])
            rp.append(Int64(v.count))
        }
        return try! CSRMatrix(rows: indices.count, cols: cols, rowPtr: rp, colIdx: ci, values: v)
    }

    /// The transpose (CSR of Xᵀ), by counting sort over columns.
    public func transposed() -> CSRMatrix {
        var counts = [Int64](repeating: 0, count: cols + 1)
        for c in colIdx { counts[Int(c) + 1] += 1 }
        for j in 0..<cols { counts[j + 1] += counts[j] }
        var next = counts
        var ci = [Int32](repeating: 0, count: nnz), v = [Float](repeating: 0, count: nnz)
        for r in 0..<rows {
            for p in Int(rowPtr[r])..<Int(rowPtr[r + 1]) {
                let c = Int(colIdx[p]); let q = Int(next[c]); next[c] += 1
                ci[q] = Int32(r); v[q] = values[p]
            }
        }
        return try! CSRMatrix(rows: cols, cols: rows, rowPtr: counts, colIdx: ci, values: v)
    }
}

/// Sparse × dense products.
public enum SparseOps {
    /// Above this density a layer with sparse input densifies the batch and calls sgemm instead.
    /// Measured with `syncytium bench sparse` (one thread, 256×2000 · 2000×1024, 4-way unrolled
    /// kernels): sparse/sgemm time ≈ 0.3 at 10 % non-zeros, 0.6 at 15 %, 0.9–1.0 at 20–25 %, 1.1–1.3 at 30 %.
    nonisolated(unsafe) public static var denseCrossoverDensity = 0.25

    /// Columns per block in the sparse products (a k×block panel of the dense operand is reused by
    /// every non-zero). Measured with `syncytium bench sparse` at 256×2000 · 2000×1024: blocks of
    /// 64–128 columns were 10–25 % slower than whole rows here (the 8 MiB operand stays in L3 and
    /// long inner loops win), so the default is no blocking.
    nonisolated(unsafe) public static var columnBlock = Int.max

    /// o[0..<w] += alpha·Σₚ val[p]·D[idx[p], 0..<w] over p in lo..<hi, four entries per pass so the
    /// output row is loaded and stored once per four source rows.
    @inline(__always)
    static func gatherAxpy(_ o: UnsafeMutablePointer<Float>, _ w: Int, _ d: UnsafePointer<Float>, _ ld: Int,
                           _ idx: UnsafePointer<Int32>, _ val: UnsafePointer<Float>, _ lo: Int, _ hi: Int, _ alpha: Float) {
        var p = lo
        while p + 4 <= hi {
            let a0 = alpha * val[p], a1 = alpha * val[p + 1], a2 = alpha * val[p + 2], a3 = alpha * val[p + 3]
            let s0 = d + Int(idx[p]) * ld, s1 = d + Int(idx[p + 1]) * ld
            let s2 = d + Int(idx[p + 2]) * ld, s3 = d + Int(idx[p + 3]) * ld
            for j in 0..<w { o[j] += (a0 * s0[j] + a1 * s1[j]) + (a2 * s2[j] + a3 * s3[j]) }
            p += 4
        }
        while p < hi {
            let a = alpha * val[p], s0 = d + Int(idx[p]) * ld
            for j in 0..<w { o[j] += a * s0[j] }
            p += 1
        }
    }

    /// out = alpha·X·D + beta·out with X sparse (m×k), D dense (k×n), out m×n.
    public static func matmul(_ x: CSRMatrix, _ d: Tensor, into out: Tensor, alpha: Float = 1, beta: Float = 0) {
        precondition(x.cols == d.rows, "sparse matmul: X is \(x.rows)×\(x.cols), D is \(d.rows)×\(d.cols)")
        precondition(out.rows == x.rows && out.cols == d.cols)
        let n = d.cols, dp = d.pointer
        if beta == 0 { out.fill(0) } else if beta != 1 { Linalg.scale(out, by: beta) }
        x.rowPtr.withUnsafeBufferPointer { rp in
            x.colIdx.withUnsafeBufferPointer { ci in
                x.values.withUnsafeBufferPointer { vv in
                    guard let cb = ci.baseAddress, let vb = vv.baseAddress else { return }
                    var j0 = 0
                    while j0 < n {
                        let w = min(columnBlock, n - j0)
                        for r in 0..<x.rows {
                            gatherAxpy(out.pointer + r * n + j0, w, dp + j0, n, cb, vb, Int(rp[r]), Int(rp[r + 1]), alpha)
                        }
                        j0 += w
                    }
                }
            }
        }
    }

    public static func matmul(_ x: CSRMatrix, _ d: Tensor) -> Tensor {
        let o = Tensor(uninitializedRows: x.rows, cols: d.cols)
        matmul(x, d, into: o)
        return o
    }

    /// out = alpha·Xᵀ·D + beta·out with X sparse (m×k), D dense (m×n), out k×n
    /// (the weight gradient Xᵀ·dY of a layer with sparse input). Pass `transposed` (X's CSR
    /// transpose) when it is at hand; otherwise it is built here (O(nnz)).
    public static func transposeMatmul(_ x: CSRMatrix, _ d: Tensor, into out: Tensor, alpha: Float = 1, beta: Float = 0,
                                       transposed: CSRMatrix? = nil) {
        precondition(x.rows == d.rows, "Xᵀ·D: X is \(x.rows)×\(x.cols), D is \(d.rows)×\(d.cols)")
        precondition(out.rows == x.cols && out.cols == d.cols)
        let xt = transposed ?? x.transposed()
        precondition(xt.rows == x.cols && xt.cols == x.rows, "transposed has the wrong shape")
        // Row c of the result gathers the rows of D at the non-zeros of column c of X.
        matmul(xt, d, into: out, alpha: alpha, beta: beta)
    }

    /// out = alpha·Dᵀ·X + beta·out with D dense (m×n), X sparse (m×k), out n×k.
    public static func denseTransposeMatmul(_ d: Tensor, _ x: CSRMatrix, into out: Tensor, alpha: Float = 1, beta: Float = 0) {
        precondition(x.rows == d.rows, "Dᵀ·X: D is \(d.rows)×\(d.cols), X is \(x.rows)×\(x.cols)")
        precondition(out.rows == d.cols && out.cols == x.cols)
        let k = x.cols
        if beta == 0 { out.fill(0) } else if beta != 1 { Linalg.scale(out, by: beta) }
        for r in 0..<x.rows {
            let drow = d.pointer + r * d.cols
            for p in Int(x.rowPtr[r])..<Int(x.rowPtr[r + 1]) {
                let c = Int(x.colIdx[p]), v = alpha * x.values[p]
                for i in 0..<d.cols { out.pointer[i * k + c] += drow[i] * v }
            }
        }
    }
}
