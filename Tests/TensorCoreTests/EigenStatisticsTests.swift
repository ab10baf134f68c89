import XCTest
@testable import TensorCore

/// Symmetric eigensolver (LAPACK dsyevd). Tolerances follow LAPACK's own tests of its symmetric
/// drivers (TESTING/EIG/ddrvst.f): the ratios ‖A V − V Λ‖ / (‖A‖ n ε) and ‖VᵀV − I‖ / (n ε) must stay
/// below a threshold, 30 in the shipped input files; we use c = 30 with ε = `Double.ulpOfOne`.
final class SymmetricEigenTests: XCTestCase {
    let c = 30.0
    let eps = Double.ulpOfOne

    /// (M + Mᵀ)/2 with M uniform in [−1, 1), row-major n × n.
    func randomSymmetric(_ n: Int, _ rng: inout RandomStream) -> [Double] {
        let m = (0..<(n * n)).map { _ in 2 * rng.uniformDouble() - 1 }
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { a[i * n + j] = 0.5 * (m[i * n + j] + m[j * n + i]) } }
        return a
    }

    func frobenius(_ a: [Double]) -> Double { a.reduce(0) { $0 + $1 * $1 }.squareRoot() }

    /// ‖A V − V Λ‖_F with eigenvector i in row i of `vectors`.
    func residual(_ a: [Double], _ values: [Double], _ vectors: [Double], _ n: Int) -> Double {
        var s = 0.0
        for i in 0..<n {
            for r in 0..<n {
                var av = 0.0
                for k in 0..<n { av += a[r * n + k] * vectors[i * n + k] }
                let d = av - values[i] * vectors[i * n + r]
                s += d * d
            }
        }
        return s.squareRoot()
    }

    /// ‖V Vᵀ − I‖_F (rows of `vectors` orthonormal).
    func orthogonalityError(_ vectors: [Double], _ n: Int) -> Double {
        var s = 0.0
        for i in 0..<n { for j in 0..<n {
            var d = 0.0
            for k in 0..<n { d += vectors[i * n + k] * vectors[j * n + k] }
            d -= i == j ? 1 : 0
            s += d * d
        } }
        return s.squareRoot()
    }

    func testRandomSymmetricMatrices() throws {
        var rng = RandomStream(seed: 2024, purpose: .custom("eigen-test"))
        for n in [1, 2, 3, 5, 8, 17, 64, 150] {
            let a = randomSymmetric(n, &rng)
            let (values, vectors) = try SymmetricEigen.decompose(a, n: n)
            XCTAssertEqual(values.count, n)
            XCTAssertEqual(vectors.count, n * n)
            let normA = frobenius(a)
            XCTAssertLessThanOrEqual(residual(a, values, vectors, n), c * Double(n) * eps * normA, "n \(n): ‖AV − VΛ‖")
            XCTAssertLessThanOrEqual(orthogonalityError(vectors, n), c * Double(n) * eps, "n \(n): ‖VVᵀ − I‖")
            XCTAssertEqual(values, values.sorted(), "n \(n): ascending")
            // Values alone (another LAPACK path inside dsyevd): both are within n·ε·‖A‖ of the exact
            // spectrum (Weyl), so of each other.
            let alone = try SymmetricEigen.eigenvalues(a, n: n)
            for (x, y) in zip(alone, values) { XCTAssertEqual(x, y, accuracy: 2 * c * Double(n) * eps * normA, "n \(n)") }
            // Σλ = trace A (the trace is invariant under the orthogonal similarity).
            let trace = (0..<n).reduce(0.0) { $0 + a[$1 * n + $1] }
            XCTAssertEqual(values.reduce(0, +), trace, accuracy: c * Double(n) * eps * normA * Double(n).squareRoot(), "n \(n): trace")
        }
    }

    func testKnownSpectrumThroughAReflector() throws {
        // A = H diag(d) H with H = I − 2uuᵀ/uᵀu orthogonal and symmetric: eigenvalues d, vectors the
        // columns of H. Weyl bounds the eigenvalue error by the backward error; Davis–Kahan the
        // vector error by backward error / gap (smallest gap here 0.5).
        let d = [4.0, -3, 10, 0.5, 1]
        let n = d.count
        let u = [1.0, -2, 0.5, 3, 1]
        let uu = u.reduce(0) { $0 + $1 * $1 }
        var h = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { h[i * n + j] = (i == j ? 1 : 0) - 2 * u[i] * u[j] / uu } }
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { for k in 0..<n { a[i * n + j] += h[i * n + k] * d[k] * h[j * n + k] } } }
        let (values, vectors) = try SymmetricEigen.decompose(a, n: n)
        let normA = d.map(abs).max()!
        let tol = c * Double(n) * eps * normA
        let order = d.indices.sorted { d[$0] < d[$1] }
        for (i, e) in order.enumerated() {
            XCTAssertEqual(values[i], d[e], accuracy: tol, "eigenvalue \(i)")
            let dot = (0..<n).reduce(0.0) { $0 + vectors[i * n + $1] * h[$1 * n + e] }
            XCTAssertEqual(abs(dot), 1, accuracy: tol / 0.5, "eigenvector \(i) vs column \(e) of H")
        }
    }

    func testSmallExactCases() throws {
        let empty = try SymmetricEigen.decompose([], n: 0)
        XCTAssertTrue(empty.values.isEmpty && empty.vectors.isEmpty)

        let one = try SymmetricEigen.decompose([-2.5], n: 1)
        XCTAssertEqual(one.values, [-2.5])
        XCTAssertEqual(one.vectors.map(abs), [1])

        // [[2, 1], [1, 2]]: λ = 1 with (1, −1)/√2, λ = 3 with (1, 1)/√2.
        let two = try SymmetricEigen.decompose([2, 1, 1, 2], n: 2)
        let tol = c * 2 * eps * 3
        XCTAssertEqual(two.values[0], 1, accuracy: tol)
        XCTAssertEqual(two.values[1], 3, accuracy: tol)
        let s = 0.5.squareRoot()
        XCTAssertEqual(abs(two.vectors[0] * s - two.vectors[1] * s), 1, accuracy: tol)
        XCTAssertEqual(abs(two.vectors[2] * s + two.vectors[3] * s), 1, accuracy: tol)

        // Diagonal: the spectrum is the diagonal, sorted; each vector a unit axis.
        let diag = try SymmetricEigen.decompose([3, 0, 0, 0, -1, 0, 0, 0, 2], n: 3)
        for (x, y) in zip(diag.values, [-1.0, 2, 3]) { XCTAssertEqual(x, y, accuracy: c * 3 * eps * 3) }
        for (i, axis) in [1, 2, 0].enumerated() {
            XCTAssertEqual(abs(diag.vectors[i * 3 + axis]), 1, accuracy: c * 3 * eps)
        }

        // A repeated eigenvalue: any orthonormal basis is right; check that one is returned.
        var identity = [Double](repeating: 0, count: 16)
        for i in 0..<4 { identity[i * 4 + i] = 1 }
        let rep = try SymmetricEigen.decompose(identity, n: 4)
        for v in rep.values { XCTAssertEqual(v, 1, accuracy: c * 4 * eps) }
        XCTAssertLessThanOrEqual(orthogonalityError(rep.vectors, 4), c * 4 * eps)
    }

    func testReadsOnlyTheUpperTriangle() throws {
        var rng = RandomStream(seed: 7, purpose: .custom("eigen-test"))
        let n = 6
        let a = randomSymmetric(n, &rng)
        var garbled = a
        for i in 0..<n { for j in 0..<i { garbled[i * n + j] = 99 } }
        let x = try SymmetricEigen.decompose(a, n: n), y = try SymmetricEigen.decompose(garbled, n: n)
        XCTAssertEqual(x.values, y.values)
        XCTAssertEqual(x.vectors, y.vectors)
    }

    func testNonFiniteInputThrows() {
        XCTAssertThrowsError(try SymmetricEigen.decompose([1, .nan, .nan, 1], n: 2)) { e in
            guard let err = e as? LAPACKError else { return XCTFail("not a LAPACKError: \(e)") }
            XCTAssertEqual(err.routine, "dsyevd")
            XCTAssertEqual(err.info, 0)
            XCTAssertTrue(err.description.contains("entry [0, 1]"), err.description)
        }
        XCTAssertThrowsError(try SymmetricEigen.eigenvalues([.infinity], n: 1))
    }
}

final class StatisticsTests: XCTestCase {
    /// Expectations are numpy.median's on the same arrays.
    func testMedianConventions() {
        XCTAssertEqual(median([3, 1, 2]), 2)
        XCTAssertEqual(median([4, 1, 3, 2]), 2.5)       // even count: mean of the two middle values
        XCTAssertEqual(median([5, 1, 3, 2]), 2.5)
        XCTAssertEqual(median([7]), 7)
        XCTAssertEqual(median([-1, -1, 10, -1]), -1)
        XCTAssertEqual(median([2, 9]), 5.5)
        XCTAssertTrue(median([]).isNaN)
        XCTAssertTrue(median([1, .nan, 3]).isNaN)
    }

    func testMedianSplitsTheSample() {
        // For any array: at least half the values are ≤ the median and at least half are ≥ it.
        var rng = RandomStream(seed: 5, purpose: .custom("median-test"))
        for n in 1...40 {
            let x = (0..<n).map { _ in Double(rng.int(below: 7)) - 3 }
            let m = median(x)
            XCTAssertGreaterThanOrEqual(2 * x.filter { $0 <= m }.count, n, "\(x)")
            XCTAssertGreaterThanOrEqual(2 * x.filter { $0 >= m }.count, n, "\(x)")
        }
    }
}

final class SplitMix64Tests: XCTestCase {
    /// The first outputs of the reference splitmix64.c (Vigna, prng.di.unimi.it) from state 0.
    func testMatchesTheReferenceSequence() {
        var g = SplitMix64(seed: 0)
        XCTAssertEqual([g.next(), g.next(), g.next()], [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F])
        XCTAssertEqual(SplitMix64.mix(0x9E37_79B9_7F4A_7C15), 0xE220_A839_7B1D_CDAF)
    }
}
