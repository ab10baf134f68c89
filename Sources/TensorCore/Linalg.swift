import COpenBLAS

/// BLAS-backed dense linear algebra. Every `into:` function writes in place into the output's
/// storage (no copy-on-write): pass tensors you own.
public enum Linalg {
    // MARK: raw cblas (row-major)

    /// Raw `cblas_sgemm`, row-major: C[m×n] = alpha·op(A)·op(B) + beta·C.
    @inline(__always)
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }

    /// Raw `cblas_sgemv`, row-major A[m×n]: y = alpha·op(A)·x + beta·y.
    @inline(__always)
    public static func sgemv(trans: Bool, m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                             x: UnsafePointer<Float>, incx: Int = 1, beta: Float,
                             y: UnsafeMutablePointer<Float>, incy: Int = 1) {
        cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), alpha, a,
                    blasint(lda), x, blasint(incx), beta, y, blasint(incy))
    }

    /// y += alpha·x over n elements.
    @inline(__always)
    public static func saxpy(_ n: Int, _ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        cblas_saxpy(blasint(n), alpha, x, 1, y, 1)
    }

    /// x *= alpha over n elements.
    @inline(__always)
    public static func sscal(_ n: Int, _ alpha: Float, _ x: UnsafeMutablePointer<Float>) {
        cblas_sscal(blasint(n), alpha, x, 1)
    }

    @inline(__always)
    public static func sdot(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>) -> Float {
        cblas_sdot(blasint(n), x, 1, y, 1)
    }

    @inline(__always)
    public static func snrm2(_ n: Int, _ x: UnsafePointer<Float>) -> Float {
        cblas_snrm2(blasint(n), x, 1)
    }

    // MARK: tensors

    /// The shape of op(A)·op(B).
    public static func productShape(_ a: Tensor, transA: Bool, _ b: Tensor, transB: Bool) -> (rows: Int, cols: Int, inner: Int) {
        let (m, k1) = transA ? (a.cols, a.rows) : (a.rows, a.cols)
        let (k2, n) = transB ? (b.cols, b.rows) : (b.rows, b.cols)
        precondition(k1 == k2, "matmul inner dimensions differ: op(A) is \(m)×\(k1), op(B) is \(k2)×\(n)")
        return (m, n, k1)
    }

    /// C = alpha·op(A)·op(B) + beta·C, in place into `c`.
    public static func gemm(_ a: Tensor, transA: Bool = false, _ b: Tensor, transB: Bool = false,
                            into c: Tensor, alpha: Float = 1, beta: Float = 0) {
        let (m, n, k) = productShape(a, transA: transA, b, transB: transB)
        precondition(c.rows == m && c.cols == n, "gemm output is \(c.rows)×\(c.cols), expected \(m)×\(n)")
        if m == 0 || n == 0 { return }
        if k == 0 {
            if beta == 0 { c.fill(0) } else if beta != 1 { sscal(c.count, beta, c.pointer) }
            return
        }
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
              a: a.pointer, lda: max(a.cols, 1), b: b.pointer, ldb: max(b.cols, 1),
              beta: beta, c: c.pointer, ldc: max(n, 1))
    }

    /// op(A)·op(B) as a new tensor.
    public static func matmul(_ a: Tensor, transA: Bool = false, _ b: Tensor, transB: Bool = false) -> Tensor {
        let (m, n, _) = productShape(a, transA: transA, b, transB: transB)
        let c = Tensor(uninitializedRows: m, cols: n)
        gemm(a, transA: transA, b, transB: transB, into: c)
        return c
    }

    /// y = alpha·op(A)·x + beta·y with x, y vectors stored as tensors (1×n or n×1), in place into `y`.
    public static func gemv(_ a: Tensor, trans: Bool = false, _ x: Tensor, into y: Tensor, alpha: Float = 1, beta: Float = 0) {
        let (outN, inN) = trans ? (a.cols, a.rows) : (a.rows, a.cols)
        precondition(x.count == inN && y.count == outN, "gemv shapes: A \(a.rows)×\(a.cols) trans \(trans), x \(x.count), y \(y.count)")
        if outN == 0 { return }
        if inN == 0 { if beta == 0 { y.fill(0) } else { sscal(outN, beta, y.pointer) }; return }
        sgemv(trans: trans, m: a.rows, n: a.cols, alpha: alpha, a: a.pointer, lda: max(a.cols, 1),
              x: x.pointer, beta: beta, y: y.pointer)
    }

    /// Σ x_i y_i over all elements.
    public static func dot(_ x: Tensor, _ y: Tensor) -> Float {
        precondition(x.count == y.count)
        return x.count == 0 ? 0 : sdot(x.count, x.pointer, y.pointer)
    }

    /// y += alpha·x (in place into `y`).
    public static func axpy(_ alpha: Float, _ x: Tensor, into y: Tensor) {
        precondition(x.count == y.count)
        if x.count > 0 { saxpy(x.count, alpha, x.pointer, y.pointer) }
    }

    /// x *= alpha (in place).
    public static func scale(_ x: Tensor, by alpha: Float) {
        if x.count > 0 { sscal(x.count, alpha, x.pointer) }
    }
}

extension Tensor {
    /// The transpose as a new tensor (blocked copy).
    public func transposed() -> Tensor {
        let t = Tensor(uninitializedRows: cols, cols: rows)
        Elementwise.transpose(pointer, rows: rows, cols: cols, into: t.pointer)
        return t
    }
}
