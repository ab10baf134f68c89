import COpenBLAS

// The package's one symmetric eigensolver: LAPACK's dsyevd (divide and conquer) from OpenBLAS.
// LAPACK is column-major. A symmetric matrix equals its transpose, so a row-major array is handed
// over as is; the eigenvectors LAPACK writes as columns of its column-major result are then, read
// row-major, the rows of `vectors` — no transpose either way.

/// A LAPACK routine failed, or was not called because its input could not be valid.
public struct LAPACKError: Error, CustomStringConvertible, Sendable {
    /// The routine, e.g. "dsyevd".
    public let routine: String
    /// LAPACK's `info`: < 0 means argument −info was illegal, > 0 that the algorithm did not
    /// converge; 0 when the input was refused before the call.
    public let info: Int
    /// What went wrong, in words.
    public let detail: String

    public init(routine: String, info: Int, detail: String) {
        self.routine = routine
        self.info = info
        self.detail = detail
    }

    public var description: String {
        info == 0 ? "\(routine): \(detail)" : "\(routine) failed (info \(info)): \(detail)"
    }
}

/// Eigendecomposition of a real symmetric matrix, A = V Λ Vᵀ.
///
/// The corresponding LAPACK routine is `dsyevd`. Its result is backward stable: the computed
/// pairs satisfy ‖A V − V Λ‖ and ‖VᵀV − I‖ of order n·ε·‖A‖ and n·ε (ε = `Double.ulpOfOne`).
public enum SymmetricEigen {
    /// Eigenvalues and eigenvectors of the symmetric n × n matrix `a`.
    ///
    /// - Parameters:
    ///   - a: n × n, row-major, symmetric. Only its upper triangle (`a[i * n + j]`, j ≥ i) is read.
    ///   - n: the order of the matrix (0 gives empty results).
    /// - Returns: `values`: the n eigenvalues in ascending order (as LAPACK and `numpy.linalg.eigh`
    ///   return them). `vectors`: n × n, row-major, **row i** (`vectors[i * n ..< (i + 1) * n]`) the
    ///   unit eigenvector of `values[i]`; rows are mutually orthogonal. Each vector's sign is
    ///   whatever LAPACK produced: callers that need a convention impose it.
    /// - Throws: `LAPACKError` when `a` holds a NaN or an infinity (checked first: LAPACK's result
    ///   is undefined then), or when `dsyevd` reports an error through `info`.
    /// - Precondition: `a.count == n * n`.
    public static func decompose(_ a: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        try dsyevd(a, n: n, vectors: true)
    }

    /// Eigenvalues alone (ascending) of the symmetric n × n matrix `a`: same contract as
    /// `decompose`, cheaper since no vectors are formed.
    public static func eigenvalues(_ a: [Double], n: Int) throws -> [Double] {
        try dsyevd(a, n: n, vectors: false).values
    }

    static func dsyevd(_ a: [Double], n: Int, vectors wantVectors: Bool) throws -> (values: [Double], vectors: [Double]) {
        precondition(n >= 0, "SymmetricEigen: negative order \(n)")
        precondition(a.count == n * n, "SymmetricEigen: \(a.count) values for a \(n)×\(n) matrix")
        // The workspace for vectors is 1 + 6n + 2n² doubles; it must be indexable by a LAPACK integer.
        precondition(n <= 30_000, "SymmetricEigen: order \(n) is beyond the LP64 LAPACK workspace limit")
        if n == 0 { return ([], []) }
        if let bad = a.firstIndex(where: { !$0.isFinite }) {
            throw LAPACKError(routine: "dsyevd", info: 0,
                              detail: "entry [\(bad / n), \(bad % n)] of the \(n)×\(n) matrix is \(a[bad]); it must be finite")
        }
        var m = a
        var w = [Double](repeating: 0, count: n)
        var jobz = CChar(UInt8(ascii: wantVectors ? "V" : "N"))
        // 'L' in LAPACK's column-major terms is the upper triangle of our row-major array.
        var uplo = CChar(UInt8(ascii: "L"))
        var order = blasint(n), lda = blasint(n), info: blasint = 0

        // Workspace query (lwork = liwork = −1), then the call. The minima from dsyevd's
        // documentation guard against a query answer rounded down in its Double.
        var lwork: blasint = -1, liwork: blasint = -1
        var workSize = 0.0
        var iworkSize: blasint = 0
        dsyevd_(&jobz, &uplo, &order, &m, &lda, &w, &workSize, &lwork, &iworkSize, &liwork, &info, 1, 1)
        try check(info)
        let minWork = wantVectors ? 1 + 6 * n + 2 * n * n : 2 * n + 1
        let minIWork = wantVectors ? 3 + 5 * n : 1
        lwork = blasint(Swift.max(Int(workSize.rounded(.up)), minWork))
        liwork = blasint(Swift.max(Int(iworkSize), minIWork))
        var work = [Double](repeating: 0, count: Int(lwork))
        var iwork = [blasint](repeating: 0, count: Int(liwork))
        dsyevd_(&jobz, &uplo, &order, &m, &lda, &w, &work, &lwork, &iwork, &liwork, &info, 1, 1)
        try check(info)
        return (w, wantVectors ? m : [])
    }

    private static func check(_ info: blasint) throws {
        guard info != 0 else { return }
        let detail = info < 0
            ? "argument \(-info) had an illegal value"
            : "the divide-and-conquer iteration did not converge (an eigenvalue could not be computed)"
        throw LAPACKError(routine: "dsyevd", info: Int(info), detail: detail)
    }
}
