import XCTest
@testable import TensorCore

/// Naive reference product of op(A)·op(B) in Double.
func naiveProduct(_ a: Tensor, _ ta: Bool, _ b: Tensor, _ tb: Bool) -> [[Double]] {
    let m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols, n = tb ? b.rows : b.cols
    var out = Array(repeating: Array(repeating: 0.0, count: n), count: m)
    for i in 0..<m { for j in 0..<n { var s = 0.0
        for t in 0..<k { s += Double(ta ? a[t, i] : a[i, t]) * Double(tb ? b[j, t] : b[t, j]) }
        out[i][j] = s } }
    return out
}

final class TensorTests: XCTestCase {
    func testShapesAndCopyOnWrite() {
        var a = Tensor(rows: 2, cols: 3, values: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(a[1, 2], 6)
        let b = a
        a[0, 0] = 10
        XCTAssertEqual(b[0, 0], 1, "copy must not see the write")
        XCTAssertEqual(a[0, 0], 10)
        XCTAssertEqual(a.transposed().scalars, [10, 4, 2, 5, 3, 6])
        XCTAssertEqual(a.reshaped(rows: 3, cols: 2).row(2), [5, 6])
        XCTAssertEqual(Int(bitPattern: a.pointer) % 64, 0, "storage must be 64-byte aligned")
        XCTAssertEqual(a, a.copy())
        XCTAssertNotEqual(a, b)
        XCTAssertNotEqual(a, a.reshaped(rows: 3, cols: 2))
    }

    func testGemmAllTransposeCombinations() {
        var rng = RandomStream(seed: 1)
        for (m, n, k) in [(1, 5, 3), (4, 1, 2), (3, 7, 5), (6, 4, 1)] {
            for ta in [false, true] { for tb in [false, true] {
                let a = ta ? Tensor.uniform(rows: k, cols: m, -1, 1, rng: &rng) : Tensor.uniform(rows: m, cols: k, -1, 1, rng: &rng)
                let b = tb ? Tensor.uniform(rows: n, cols: k, -1, 1, rng: &rng) : Tensor.uniform(rows: k, cols: n, -1, 1, rng: &rng)
                let c0 = Tensor.uniform(rows: m, cols: n, -1, 1, rng: &rng)
                let c = c0.copy()
                Linalg.gemm(a, transA: ta, b, transB: tb, into: c, alpha: 0.5, beta: 2)
                let ref = naiveProduct(a, ta, b, tb)
                for i in 0..<m { for j in 0..<n {
                    XCTAssertEqual(Double(c[i, j]), 0.5 * ref[i][j] + 2 * Double(c0[i, j]), accuracy: 1e-5, "m\(m) n\(n) k\(k) ta\(ta) tb\(tb)")
                } }
            } }
        }
    }

    func testGemv() {
        var rng = RandomStream(seed: 2)
        let a = Tensor.uniform(rows: 3, cols: 5, -1, 1, rng: &rng)
        let x = Tensor.uniform(rows: 5, cols: 1, -1, 1, rng: &rng), xt = Tensor.uniform(rows: 1, cols: 3, -1, 1, rng: &rng)
        let y = Tensor(rows: 3, cols: 1), yt = Tensor(rows: 1, cols: 5)
        Linalg.gemv(a, x, into: y)
        Linalg.gemv(a, trans: true, xt, into: yt)
        let ref = naiveProduct(a, false, x, false), reft = naiveProduct(xt, false, a, false)
        for i in 0..<3 { XCTAssertEqual(Double(y[i, 0]), ref[i][0], accuracy: 1e-5) }
        for j in 0..<5 { XCTAssertEqual(Double(yt[0, j]), reft[0][j], accuracy: 1e-5) }
    }

    func testBroadcastingBinaryOps() {
        var rng = RandomStream(seed: 3)
        let a = Tensor.uniform(rows: 3, cols: 4, 1, 2, rng: &rng)
        for bs in [(3, 4), (1, 4), (3, 1), (1, 1)] {
            let b = Tensor.uniform(rows: bs.0, cols: bs.1, 1, 2, rng: &rng)
            let outs = [a + b, a - b, a * b, a / b, b - a]
            for i in 0..<3 { for j in 0..<4 {
                let bv = b[bs.0 == 1 ? 0 : i, bs.1 == 1 ? 0 : j], av = a[i, j]
                XCTAssertEqual(outs[0][i, j], av + bv, accuracy: 1e-6)
                XCTAssertEqual(outs[1][i, j], av - bv, accuracy: 1e-6)
                XCTAssertEqual(outs[2][i, j], av * bv, accuracy: 1e-6)
                XCTAssertEqual(outs[3][i, j], av / bv, accuracy: 1e-6)
                XCTAssertEqual(outs[4][i, j], bv - av, accuracy: 1e-6)
            } }
        }
    }

    func testReductionsSoftmaxTopK() {
        var rng = RandomStream(seed: 4)
        let x = Tensor.uniform(rows: 5, cols: 11, -3, 3, rng: &rng)
        let rs = Reduce.sumRows(x), cs = Reduce.sumColumns(x)
        for i in 0..<5 { XCTAssertEqual(rs[i, 0], x.row(i).reduce(0, +), accuracy: 1e-5) }
        for j in 0..<11 { XCTAssertEqual(cs[0, j], (0..<5).map { x[$0, j] }.reduce(0, +), accuracy: 1e-5) }
        XCTAssertEqual(Reduce.sum(x), x.scalars.reduce(0, +), accuracy: 1e-4)
        let sm = Reduce.softmaxRows(x), lsm = Reduce.logSoftmaxRows(x)
        for i in 0..<5 {
            let ex = x.row(i).map { Foundation.exp(Double($0)) }, z = ex.reduce(0, +)
            for j in 0..<11 {
                XCTAssertEqual(Double(sm[i, j]), ex[j] / z, accuracy: 1e-6)
                XCTAssertEqual(Double(lsm[i, j]), Foundation.log(ex[j] / z), accuracy: 1e-5)
            }
        }
        // Large logits must not overflow.
        let big = Reduce.softmaxRows(Tensor(rows: 1, cols: 2, values: [1000, 1000]))
        XCTAssertEqual(big.scalars, [0.5, 0.5])
        let (idx, vals) = Reduce.topK(x, k: 3)
        for i in 0..<5 {
            let order = x.row(i).enumerated().sorted { $0.element > $1.element }.prefix(3)
            XCTAssertEqual(Array(idx[(i * 3)..<(i * 3 + 3)]).map(Int.init), order.map(\.offset))
            XCTAssertEqual(vals.row(i), order.map(\.element))
        }
        let (sidx, _) = Reduce.topK(x, k: 2, largest: false)
        let smallest = x.row(0).enumerated().sorted { $0.element < $1.element }.prefix(2).map(\.offset)
        XCTAssertEqual(Array(sidx[0..<2]).map(Int.init), smallest)
    }

    func testPairwiseSquaredDistances() {
        var rng = RandomStream(seed: 5)
        let a = Tensor.uniform(rows: 4, cols: 3, -1, 1, rng: &rng), b = Tensor.uniform(rows: 6, cols: 3, -1, 1, rng: &rng)
        let d = Reduce.pairwiseSquaredDistances(a, b)
        for i in 0..<4 { for j in 0..<6 {
            let ref = (0..<3).map { Double(a[i, $0] - b[j, $0]) }.map { $0 * $0 }.reduce(0, +)
            XCTAssertEqual(Double(d[i, j]), ref, accuracy: 1e-5)
        } }
        let self_ = Reduce.pairwiseSquaredDistances(a, a)
        for i in 0..<4 { XCTAssertGreaterThanOrEqual(self_[i, i], 0); XCTAssertEqual(self_[i, i], 0, accuracy: 1e-5) }
    }

    func testDigammaKnownValues() {
        XCTAssertEqual(digamma(1), -0.5772156649015329, accuracy: 1e-12)
        XCTAssertEqual(digamma(0.5), -1.9635100260214235, accuracy: 1e-12)
        XCTAssertEqual(digamma(10), 2.251752589066721, accuracy: 1e-12)
        XCTAssertEqual(digamma(-0.5), 0.03648997397857652, accuracy: 1e-10)
        XCTAssertEqual(digamma(1e-3), -1000.5755719318103, accuracy: 1e-6)  // −1/x − γ + ζ(2)x − ζ(3)x² …
        XCTAssertTrue(digamma(0).isNaN && digamma(-2).isNaN)
        // ψ is the derivative of lgamma: compare against central differences in Double.
        for x in [0.3, 1.7, 4.2, 25.0, 123.4] {
            let h = 1e-5
            XCTAssertEqual(digamma(x), (Foundation.lgamma(x + h) - Foundation.lgamma(x - h)) / (2 * h), accuracy: 1e-6)
        }
    }
}

final class SparseTests: XCTestCase {
    func randomSparse(_ rows: Int, _ cols: Int, density: Float, rng: inout RandomStream) -> Tensor {
        let t = Tensor(rows: rows, cols: cols)
        for i in 0..<t.count where rng.uniform() < density { t.pointer[i] = rng.uniform(-2, 2) }
        return t
    }

    func testProductsMatchDense() throws {
        var rng = RandomStream(seed: 6)
        for (m, k, n) in [(1, 6, 3), (5, 1, 2), (7, 9, 4), (4, 5, 1)] {
            let xd = randomSparse(m, k, density: 0.4, rng: &rng)
            let x = CSRMatrix(dense: xd)
            XCTAssertEqual(x.toDense().scalars, xd.scalars)
            let d = Tensor.uniform(rows: k, cols: n, -1, 1, rng: &rng)
            XCTAssertLessThan(SparseOps.matmul(x, d).maxAbsDifference(Linalg.matmul(xd, d)), 1e-5)
            let dy = Tensor.uniform(rows: m, cols: n, -1, 1, rng: &rng)
            let dw = Tensor.uniform(rows: k, cols: n, -1, 1, rng: &rng), dw0 = dw.copy()
            SparseOps.transposeMatmul(x, dy, into: dw, alpha: 1, beta: 1)   // accumulate like a gradient
            XCTAssertLessThan(dw.maxAbsDifference(Linalg.matmul(xd, transA: true, dy) + dw0), 1e-5)
            let dtx = Tensor(rows: n, cols: k)
            SparseOps.denseTransposeMatmul(dy, x, into: dtx)
            XCTAssertLessThan(dtx.maxAbsDifference(Linalg.matmul(dy, transA: true, xd)), 1e-5)
            XCTAssertEqual(x.transposed().toDense().scalars, xd.transposed().scalars)
            let g = x.gatherRows([m - 1, 0, m - 1])
            XCTAssertEqual(g.toDense().row(0), xd.row(m - 1))
            XCTAssertEqual(g.toDense().row(1), xd.row(0))
        }
    }

    func testValidation() {
        XCTAssertThrowsError(try CSRMatrix(rows: 2, cols: 3, rowPtr: [0, 1], colIdx: [0], values: [1]))
        XCTAssertThrowsError(try CSRMatrix(rows: 1, cols: 3, rowPtr: [0, 1], colIdx: [3], values: [1]))
        XCTAssertThrowsError(try CSRMatrix(rows: 2, cols: 3, rowPtr: [0, 2, 1], colIdx: [0], values: [1]))
        XCTAssertNoThrow(try CSRMatrix(rows: 2, cols: 3, rowPtr: [0, 1, 1], colIdx: [2], values: [1]))
    }
}

final class RandomTests: XCTestCase {
    func testDeterministicAndIndependentStreams() {
        var a = RandomStream(seed: 9, rank: 0, purpose: .dropout), b = RandomStream(seed: 9, rank: 0, purpose: .dropout)
        var c = RandomStream(seed: 9, rank: 1, purpose: .dropout), d = RandomStream(seed: 9, rank: 0, purpose: .sampler)
        var e = RandomStream(seed: 10, rank: 0, purpose: .dropout)
        let va = (0..<8).map { _ in a.next() }
        XCTAssertEqual(va, (0..<8).map { _ in b.next() })
        XCTAssertNotEqual(va, (0..<8).map { _ in c.next() })
        XCTAssertNotEqual(va, (0..<8).map { _ in d.next() })
        XCTAssertNotEqual(va, (0..<8).map { _ in e.next() })
        let s1 = a.split(1), s1b = a.split(1), s2 = a.split(2)
        var x = s1, y = s1b, z = s2
        XCTAssertEqual(x.next(), y.next())
        XCTAssertNotEqual(s1b.split(0).description(), s2.split(0).description())
        _ = z.next()
    }

    func testDistributions() {
        var r = RandomStream(seed: 11, purpose: .custom("stats"))
        let n = 200_000
        var su = 0.0, su2 = 0.0, sn = 0.0, sn2 = 0.0
        for _ in 0..<n {
            let u = Double(r.uniform()); XCTAssert(u >= 0 && u < 1)
            su += u; su2 += u * u
            let z = Double(r.normal()); sn += z; sn2 += z * z
        }
        XCTAssertEqual(su / Double(n), 0.5, accuracy: 0.005)
        XCTAssertEqual(su2 / Double(n) - 0.25, 1.0 / 12, accuracy: 0.002)
        XCTAssertEqual(sn / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(sn2 / Double(n), 1, accuracy: 0.02)
        let p = r.permutation(1000)
        XCTAssertEqual(p.sorted(), Array(0..<1000))
        XCTAssertNotEqual(p, Array(0..<1000))
        let mask = Tensor(rows: 100, cols: 100)
        r.fillBernoulli(mask, keep: 0.7, scale: 2)
        let kept = mask.scalars.filter { $0 == 2 }.count
        XCTAssertEqual(mask.scalars.filter { $0 != 0 && $0 != 2 }.count, 0)
        XCTAssertEqual(Double(kept) / 10_000, 0.7, accuracy: 0.03)
    }

    func testInitializers() {
        var r = RandomStream(seed: 12, purpose: .initialization)
        let w = Tensor.random(rows: 400, cols: 100, .xavierUniform(), rng: &r)
        let a = Float((6.0 / 500).squareRoot())
        XCTAssertTrue(w.scalars.allSatisfy { abs($0) <= a })
        let var_ = w.scalars.map { Double($0 * $0) }.reduce(0, +) / Double(w.count)
        XCTAssertEqual(var_, 2.0 / 500, accuracy: 2.0 / 500 * 0.05)
        let k = Tensor.random(rows: 400, cols: 100, .kaimingNormal(), rng: &r)
        let vk = k.scalars.map { Double($0 * $0) }.reduce(0, +) / Double(k.count)
        XCTAssertEqual(vk, 2.0 / 400, accuracy: 2.0 / 400 * 0.05)
    }
}

extension RandomStream {
    func description() -> [UInt64] { var c = self; return (0..<4).map { _ in c.next() } }
}
