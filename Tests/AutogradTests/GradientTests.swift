import XCTest
import TensorCore
import TestSupport
@testable import Autograd

/// Every differentiable op against central finite differences (see `GradCheck` for the tolerance
/// argument), on random shapes including one row, one column and non-square.
final class GradientTests: XCTestCase {
    var rng = RandomStream(seed: 2024, purpose: .custom("gradient-tests"))
    /// (rows, cols): one row, one column, non-square both ways, square, plus two random shapes.
    let shapes: [(Int, Int)] = {
        var r = RandomStream(seed: 77, purpose: .custom("gradient-test-shapes"))
        return [(1, 5), (4, 1), (3, 7), (6, 4), (5, 5)] + (0..<2).map { _ in (1 + r.int(below: 8), 1 + r.int(below: 8)) }
    }()

    func rand(_ r: Int, _ c: Int, _ lo: Float = -1, _ hi: Float = 1) -> Tensor { Tensor.uniform(rows: r, cols: c, lo, hi, rng: &rng) }
    /// Values with |x| in [lo, hi] and random sign (away from kinks at 0).
    func awayFromZero(_ r: Int, _ c: Int, _ lo: Float = 0.1, _ hi: Float = 1) -> Tensor {
        let t = rand(r, c, lo, hi)
        for i in 0..<t.count where rng.uniform() < 0.5 { t.pointer[i] = -t.pointer[i] }
        return t
    }

    func check(_ name: String, _ inputs: [Tensor], kinds: [GradCheck.InputKind]? = nil, training: Bool = true,
               rtol: Double = 1e-2, atol: Double = 2e-3,
               file: StaticString = #filePath, line: UInt = #line, _ build: (Tape, [Var]) -> Var) {
        let r = GradCheck.check(inputs, kinds: kinds, rtol: rtol, atol: atol, training: training, build)
        XCTAssertTrue(r.passed, "\(name) shapes \(inputs.map { "\($0.rows)×\($0.cols)" }): \(r)", file: file, line: line)
    }

    // MARK: products

    func testMatmulAllTransposes() {
        for (m, n) in [(1, 4), (5, 1), (3, 6)] {
            let k = 3
            for ta in [false, true] { for tb in [false, true] {
                let a = ta ? rand(k, m) : rand(m, k), b = tb ? rand(n, k) : rand(k, n)
                check("matmul ta\(ta) tb\(tb)", [a, b]) { t, v in t.matmul(v[0], v[1], transA: ta, transB: tb) }
                // Same with both as parameters (external gradient buffers, overwrite on first write).
                check("matmul param ta\(ta) tb\(tb)", [a, b], kinds: [.parameter, .parameter]) { t, v in t.matmul(v[0], v[1], transA: ta, transB: tb) }
            } }
        }
        // Using one value on both sides accumulates both contributions.
        check("matmul x·xᵀ", [rand(3, 4)]) { t, v in t.matmul(v[0], v[0], transB: true) }
    }

    func testSparseMatmul() {
        for (m, k, n) in [(1, 5, 3), (4, 3, 1), (6, 7, 4)] {
            let xd = rand(m, k)
            for i in 0..<xd.count where rng.uniform() < 0.5 { xd.pointer[i] = 0 }
            let x = CSRMatrix(dense: xd)
            check("sparse matmul", [rand(k, n)]) { t, v in t.matmul(x, v[0]) }
            check("sparse matmul param", [rand(k, n)], kinds: [.parameter]) { t, v in t.matmul(x, v[0]) }
        }
    }

    func testFusedLinear() {
        for (b, i, o) in [(1, 5, 3), (4, 1, 2), (5, 4, 1), (6, 3, 7)] {
            let x = rand(b, i)
            var w = rand(i, o), bias = rand(1, o)
            let xd = x.copy()
            for k in 0..<xd.count where rng.uniform() < 0.5 { xd.pointer[k] = 0 }
            // ReLU has a kink at 0: redraw W and b until every pre-activation (dense and sparse input)
            // is at least 5h away from it, so that x ± h never crosses it.
            for _ in 0..<1000 {
                let z1 = Linalg.matmul(x, w) + bias, z2 = Linalg.matmul(xd, w) + bias
                if (z1.scalars + z2.scalars).allSatisfy({ Swift.abs($0) > 0.05 }) { break }
                w = rand(i, o); bias = rand(1, o)
            }
            for act in [Tape.Activation.identity, .relu, .leakyRelu(0.2), .tanh, .sigmoid] {
                check("linear \(act)", [x, w, bias]) { t, v in t.linear(v[0], v[1], v[2], activation: act) }
                check("linear \(act) params", [x, w, bias], kinds: [.variable, .parameter, .parameter]) { t, v in
                    t.linear(v[0], v[1], v[2], activation: act)
                }
                check("linear \(act) no bias", [x, w]) { t, v in t.linear(v[0], v[1], nil, activation: act) }
                let xs = CSRMatrix(dense: xd)
                // Both paths of the sparse-input layer: sparse kernels, and densify + sgemm.
                let saved = SparseOps.denseCrossoverDensity
                defer { SparseOps.denseCrossoverDensity = saved }
                for crossover in [2.0, 0.0] {
                    SparseOps.denseCrossoverDensity = crossover
                    check("linear sparse \(act) crossover \(crossover)", [w, bias]) { t, v in t.linear(xs, v[0], v[1], activation: act) }
                }
            }
        }
        // The fused op equals the unfused composition.
        let x = rand(4, 3), w = rand(3, 5), b = rand(1, 5)
        let t = Tape()
        let xv = t.constant(x), wv = t.constant(w), bv = t.constant(b)
        let fused = t.value(t.linear(xv, wv, bv, activation: .relu))
        let plain = t.value(t.relu(t.add(t.matmul(xv, wv), bv)))
        XCTAssertLessThan(fused.maxAbsDifference(plain), 1e-6)
        let z = t.add(t.matmul(xv, wv), bv)
        for (act, unfused) in [(Tape.Activation.leakyRelu(0.2), t.leakyRelu(z, slope: 0.2)), (.tanh, t.tanh(z)), (.sigmoid, t.sigmoid(z))] {
            XCTAssertLessThan(t.value(t.linear(xv, wv, bv, activation: act)).maxAbsDifference(t.value(unfused)), 1e-6, "\(act)")
        }
        // Sparse input gives the dense result on both of its paths.
        let xz = x.copy()
        xz.pointer[1] = 0; xz.pointer[5] = 0; xz.pointer[6] = 0
        let saved = SparseOps.denseCrossoverDensity
        defer { SparseOps.denseCrossoverDensity = saved }
        let dense = t.value(t.linear(t.constant(xz), wv, bv, activation: .relu))
        for crossover in [2.0, 0.0] {
            SparseOps.denseCrossoverDensity = crossover
            let sparse = t.value(t.linear(CSRMatrix(dense: xz), wv, bv, activation: .relu))
            XCTAssertLessThan(sparse.maxAbsDifference(dense), 1e-6)
        }
    }

    // MARK: arithmetic with broadcasting

    func testBroadcastArithmetic() {
        for (r, c) in shapes {
            for bs in [(r, c), (1, c), (r, 1), (1, 1)] {
                let a = rand(r, c), b = rand(bs.0, bs.1)
                let bpos = awayFromZero(bs.0, bs.1, 0.5, 2)
                check("add \(bs)", [a, b]) { t, v in t.add(v[0], v[1]) }
                check("add reversed \(bs)", [b, a]) { t, v in t.add(v[0], v[1]) }
                check("sub \(bs)", [a, b]) { t, v in t.sub(v[0], v[1]) }
                check("sub reversed \(bs)", [b, a]) { t, v in t.sub(v[0], v[1]) }
                check("mul \(bs)", [a, b]) { t, v in t.mul(v[0], v[1]) }
                check("mul reversed \(bs)", [b, a]) { t, v in t.mul(v[0], v[1]) }
                check("div \(bs)", [a, bpos]) { t, v in t.div(v[0], v[1]) }
                check("div reversed \(bs)", [bpos, awayFromZero(r, c, 0.5, 2)]) { t, v in t.div(v[0], v[1]) }
            }
            check("scale", [rand(r, c)]) { t, v in t.scale(v[0], -1.7) }
            check("addScalar", [rand(r, c)]) { t, v in t.addScalar(v[0], 0.3) }
            check("mul self", [rand(r, c)]) { t, v in t.mul(v[0], v[0]) }
        }
    }

    // MARK: reductions

    func testReductions() {
        for (r, c) in shapes {
            let x = rand(r, c)
            check("sum", [x]) { t, v in t.sum(v[0]) }
            check("mean", [x]) { t, v in t.mean(v[0]) }
            check("sumRows", [x]) { t, v in t.sumRows(v[0]) }
            check("meanRows", [x]) { t, v in t.meanRows(v[0]) }
            check("sumColumns", [x]) { t, v in t.sumColumns(v[0]) }
            check("meanColumns", [x]) { t, v in t.meanColumns(v[0]) }
        }
    }

    // MARK: elementwise functions

    func testElementwiseFunctions() {
        for (r, c) in shapes {
            check("exp", [rand(r, c, -2, 2)]) { t, v in t.exp(v[0]) }
            check("log", [rand(r, c, 0.5, 3)]) { t, v in t.log(v[0]) }
            check("lgamma", [rand(r, c, 0.5, 6)]) { t, v in t.lgamma(v[0]) }
            check("pow 2.5", [rand(r, c, 0.5, 2)]) { t, v in t.pow(v[0], 2.5) }
            check("pow -1.5", [rand(r, c, 0.5, 2)]) { t, v in t.pow(v[0], -1.5) }
            check("pow 2 (negative base)", [rand(r, c, -2, 2)]) { t, v in t.pow(v[0], 2) }
            check("sqrt", [rand(r, c, 0.5, 3)]) { t, v in t.sqrt(v[0]) }
            check("abs", [awayFromZero(r, c)]) { t, v in t.abs(v[0]) }
            // Clamp to [-0.5, 0.5], inputs kept ≥ 0.05 away from the bounds.
            let xc = rand(r, c, -1, 1)
            for i in 0..<xc.count where Swift.abs(Swift.abs(xc.pointer[i]) - 0.5) < 0.05 { xc.pointer[i] *= 0.8 }
            check("clamp", [xc]) { t, v in t.clamp(v[0], -0.5, 0.5) }
            check("relu", [awayFromZero(r, c)]) { t, v in t.relu(v[0]) }
            check("leakyRelu", [awayFromZero(r, c)]) { t, v in t.leakyRelu(v[0], slope: 0.2) }
            check("tanh", [rand(r, c, -2, 2)]) { t, v in t.tanh(v[0]) }
            check("sigmoid", [rand(r, c, -3, 3)]) { t, v in t.sigmoid(v[0]) }
            check("softplus", [rand(r, c, -3, 3)]) { t, v in t.softplus(v[0]) }
        }
        // Softplus stays finite and accurate far out.
        let t = Tape()
        let s = t.value(t.softplus(t.constant(Tensor(rows: 1, cols: 2, values: [100, -100]))))
        XCTAssertEqual(s[0, 0], 100, accuracy: 1e-4)
        XCTAssertEqual(s[0, 1], Float(Foundation.exp(-100.0)), accuracy: 1e-30)
    }

    // MARK: row-wise

    func testSoftmaxFamily() {
        for (r, c) in shapes {
            check("softmax", [rand(r, c, -2, 2)]) { t, v in t.softmax(v[0]) }
            check("logSoftmax", [rand(r, c, -2, 2)]) { t, v in t.logSoftmax(v[0]) }
            check("logSumExp", [rand(r, c, -2, 2)]) { t, v in t.logSumExp(v[0]) }
        }
    }

    func testNormalisations() {
        for (r, c) in shapes {
            check("l2NormalizeRows", [awayFromZero(r, c, 0.2, 1)]) { t, v in t.l2NormalizeRows(v[0]) }
            check("layerNorm affine", [rand(r, c, -2, 2), rand(1, c, 0.5, 1.5), rand(1, c)]) { t, v in
                t.layerNorm(v[0], gamma: v[1], beta: v[2])
            }
            check("layerNorm plain", [rand(r, c, -2, 2)]) { t, v in t.layerNorm(v[0], gamma: nil, beta: nil) }
            let rm = rand(1, c, -0.5, 0.5), rv = rand(1, c, 0.5, 2)
            if r > 1 {
                check("batchNorm train", [rand(r, c, -2, 2), rand(1, c, 0.5, 1.5), rand(1, c)]) { t, v in
                    t.batchNorm(v[0], gamma: v[1], beta: v[2], runningMean: rm.copy(), runningVar: rv.copy())
                }
                check("batchNorm train plain", [rand(r, c, -2, 2)]) { t, v in
                    t.batchNorm(v[0], gamma: nil, beta: nil, runningMean: rm.copy(), runningVar: rv.copy())
                }
            }
            check("batchNorm eval", [rand(r, c, -2, 2), rand(1, c, 0.5, 1.5), rand(1, c)], training: false) { t, v in
                t.batchNorm(v[0], gamma: v[1], beta: v[2], runningMean: rm, runningVar: rv)
            }
        }
    }

    func testBatchNormRunningStatistics() {
        let x = Tensor(rows: 4, cols: 2, values: [1, 10, 2, 20, 3, 30, 4, 40])
        let rm = Tensor(rows: 1, cols: 2, values: [0, 0]), rv = Tensor(rows: 1, cols: 2, values: [1, 1])
        let t = Tape()
        let y = t.value(t.batchNorm(t.constant(x), gamma: nil, beta: nil, runningMean: rm, runningVar: rv, momentum: 0.5, eps: 0))
        // Column 0: mean 2.5, biased var 1.25, unbiased 5/3.
        XCTAssertEqual(rm[0, 0], 1.25, accuracy: 1e-6)
        XCTAssertEqual(rv[0, 0], 0.5 + 0.5 * 5 / 3, accuracy: 1e-5)
        XCTAssertEqual(rm[0, 1], 12.5, accuracy: 1e-5)
        XCTAssertEqual(y[0, 0], (1 - 2.5) / Float(1.25).squareRoot(), accuracy: 1e-5)
        t.training = false
        let ye = t.value(t.batchNorm(t.constant(x), gamma: nil, beta: nil, runningMean: rm, runningVar: rv, momentum: 0.5, eps: 0))
        XCTAssertEqual(ye[0, 0], (1 - 1.25) / rv[0, 0].squareRoot(), accuracy: 1e-5)
        XCTAssertEqual(rm[0, 0], 1.25, accuracy: 1e-6, "evaluation must not update running statistics")
    }

    func testDropout() {
        for (r, c) in shapes {
            let mask = Tensor(rows: r, cols: c)
            var mr = RandomStream(seed: 3)
            mr.fillBernoulli(mask, keep: 0.6, scale: 1 / 0.6)
            check("dropout fixed mask", [rand(r, c)]) { t, v in t.dropout(v[0], mask: mask) }
        }
        // The random form: same seed → same mask; eval → identity; kept fraction ≈ 1 − p.
        let x = Tensor(rows: 50, cols: 40, repeating: 1)
        let t = Tape()
        var r1 = RandomStream(seed: 5, purpose: .dropout), r2 = RandomStream(seed: 5, purpose: .dropout)
        let a = t.value(t.dropout(t.constant(x), p: 0.25, rng: &r1)), b = t.value(t.dropout(t.constant(x), p: 0.25, rng: &r2))
        XCTAssertEqual(a.scalars, b.scalars)
        XCTAssertEqual(Double(a.scalars.filter { $0 > 0 }.count) / 2000, 0.75, accuracy: 0.04)
        XCTAssertEqual(a.scalars.first { $0 > 0 } ?? 0, 1 / 0.75, accuracy: 1e-6)
        t.training = false
        let e = t.constant(x)
        XCTAssertEqual(t.dropout(e, p: 0.25, rng: &r1), e)
    }

    // MARK: structure

    func testStructureOps() throws {
        for (r, c) in shapes {
            check("transpose", [rand(r, c)]) { t, v in t.transpose(v[0]) }
            check("concat columns", [rand(r, c), rand(r, 2), rand(r, 1)]) { t, v in t.concat(v, axis: .columns) }
            check("concat rows", [rand(r, c), rand(2, c), rand(1, c)]) { t, v in t.concat(v, axis: .rows) }
            check("slice", [rand(r, c)]) { t, v in t.slice(v[0], rows: (r > 1 ? 1 : 0)..<r, cols: 0..<max(1, c - 1)) }
            let idx: [Int32] = [Int32(r - 1), 0, Int32(r - 1), Int32(r / 2)]
            check("gatherRows (repeats)", [rand(r, c)]) { t, v in t.gatherRows(v[0], idx) }
            check("scatterAddRows", [rand(4, c)]) { t, v in t.scatterAddRows(v[0], idx, outRows: r) }
        }
        // stopGradient: the value passes, the gradient does not.
        let t = Tape()
        let x = t.variable(Tensor(rows: 2, cols: 2, values: [1, 2, 3, 4]))
        let y = t.add(t.mul(t.stopGradient(x), x), x)   // d/dx = stop(x) + 1
        XCTAssertEqual(t.value(y).scalars, [2, 6, 12, 20])
        try t.backward(t.sum(y))
        XCTAssertEqual(t.grad(x)!.scalars, [2, 3, 4, 5])
    }

    // MARK: distances and losses

    func testDistancesAndSimilarities() {
        for (m, n, d) in [(1, 4, 3), (5, 1, 2), (3, 6, 4), (4, 4, 1)] {
            check("pairwiseSquaredDistances", [rand(m, d), rand(n, d)]) { t, v in t.pairwiseSquaredDistances(v[0], v[1]) }
            check("pairwiseSquaredDistances params", [rand(m, d), rand(n, d)], kinds: [.parameter, .parameter]) { t, v in
                t.pairwiseSquaredDistances(v[0], v[1])
            }
            check("cosineSimilarity", [awayFromZero(m, d, 0.2, 1), awayFromZero(n, d, 0.2, 1)]) { t, v in t.cosineSimilarity(v[0], v[1]) }
        }
        check("pairwise distances to itself", [rand(4, 3, -2, 2)]) { t, v in t.pairwiseSquaredDistances(v[0], v[0]) }
        check("cosineSimilarity to itself", [awayFromZero(4, 3, 0.2, 1)]) { t, v in t.cosineSimilarity(v[0], v[0]) }
    }

    func testMSELoss() {
        for (r, c) in shapes {
            check("mse", [rand(r, c), rand(r, c)]) { t, v in t.mseLoss(v[0], v[1]) }
        }
    }

    /// A composite through many ops at once (chain rule across nodes, shared subexpressions).
    func testComposite() throws {
        check("composite", [rand(4, 3), rand(3, 5), rand(1, 5)]) { t, v in
            let h = t.tanh(t.linear(v[0], v[1], v[2]))
            let p = t.softmax(t.layerNorm(h, gamma: nil, beta: nil))
            return t.add(t.logSumExp(t.mul(p, h)), t.sumRows(t.sigmoid(h)))
        }
    }
}

final class TapeTests: XCTestCase {
    func testParameterGradientsOverwriteThenZeroWhenUnused() throws {
        let t = Tape()
        let w = Tensor(rows: 2, cols: 1, values: [1, 2]), gw = Tensor(rows: 2, cols: 1, values: [99, 99])
        let u = Tensor(rows: 1, cols: 1, values: [3]), gu = Tensor(rows: 1, cols: 1, values: [7])
        let x = t.constant(Tensor(rows: 1, cols: 2, values: [1, 1]))
        let wv = t.parameter(w, grad: gw)
        _ = t.parameter(u, grad: gu)   // not used by the loss
        try t.backward(t.sum(t.matmul(x, wv)))
        XCTAssertEqual(gw.scalars, [1, 1], "stale gradient must be overwritten")
        XCTAssertEqual(gu.scalars, [0], "unused parameter gradient must be zeroed")
        // Accumulate mode adds.
        t.reset()
        let wa = t.parameter(w, grad: gw, accumulate: true)
        try t.backward(t.sum(t.matmul(t.constant(Tensor(rows: 1, cols: 2, values: [1, 1])), wa)))
        XCTAssertEqual(gw.scalars, [2, 2])
    }

    func testSharedParameterUsedTwiceAddsBothGradients() throws {
        let t = Tape()
        let w = Tensor(rows: 2, cols: 1, values: [1, 2]), gw = Tensor(rows: 2, cols: 1, values: [99, 99])
        let x1 = t.constant(Tensor(rows: 1, cols: 2, values: [1, 3]))
        let x2 = t.constant(Tensor(rows: 1, cols: 2, values: [2, -1]))
        let a = t.matmul(x1, t.parameter(w, grad: gw))
        let b = t.matmul(x2, t.parameter(w, grad: gw))   // the same weights again (e.g. a second view)
        try t.backward(t.sum(t.add(a, b)))
        XCTAssertEqual(gw.scalars, [3, 2])
    }

    /// Steps whose shapes change every time (sampled neighbourhoods) keep the pool bounded: sizes not
    /// asked for during the last two steps are freed.
    func testChangingShapesDoNotGrowThePool() throws {
        let t = Tape()
        var rng = RandomStream(seed: 2)
        let w = Tensor.uniform(rows: 8, cols: 6, -1, 1, rng: &rng), gw = Tensor(rows: 8, cols: 6)
        var most = 0
        for rows in 1...40 {
            t.reset()
            let x = Tensor.uniform(rows: rows, cols: 8, -1, 1, rng: &rng)
            let h = t.linear(t.constant(x), t.parameter(w, grad: gw), nil, activation: .relu)
            try t.backward(t.mean(t.softmax(h)))
            if rows > 30 { most = max(most, t.pooledElements) }
        }
        // Each step of r rows holds a few r × 6 buffers; three steps' worth (the current and the two
        // before) of the largest shapes bound the pool, far below the ~40 shapes a leak would keep.
        XCTAssertLessThan(most, 3 * 8 * 40 * 6, "pool holds \(most) elements")
    }

    func testSteadyStateReusesBuffers() throws {
        let t = Tape()
        var rng = RandomStream(seed: 1)
        let w = Tensor.uniform(rows: 8, cols: 6, -1, 1, rng: &rng), gw = Tensor(rows: 8, cols: 6)
        var x = Tensor.uniform(rows: 5, cols: 8, -1, 1, rng: &rng)
        @discardableResult func step() throws -> Var {
            t.reset()
            let h = t.linear(t.constant(x), t.parameter(w, grad: gw), nil, activation: .relu)
            try t.backward(t.mean(t.softmax(t.layerNorm(h, gamma: nil, beta: nil))))
            return h
        }
        try step(); try step()
        let pooled = t.pooledElements
        for _ in 0..<5 { try step() }
        XCTAssertEqual(t.pooledElements, pooled, "a repeated step must not allocate new buffers")
        // A pooled activation held outside the tape is not handed out again: the next step (same
        // shapes, other input) writes its activation elsewhere.
        let kept = t.value(try step())
        let before = kept.scalars
        x = Tensor.uniform(rows: 5, cols: 8, -1, 1, rng: &rng)
        let next = t.value(try step())
        XCTAssertNotEqual(next.scalars, before, "the new input must give another activation")
        XCTAssertEqual(kept.scalars, before, "a held buffer was recycled")
    }

    func testBatchesOfSlightlyDifferentSizesShareThePool() throws {
        // A rank's share of a global batch varies by a few rows between steps: those steps must reuse
        // the pool's buffers (size classes of at most 12.5 % slack), not add buffers for every size.
        let t = Tape()
        var rng = RandomStream(seed: 2)
        let w = Tensor.uniform(rows: 300, cols: 64, -1, 1, rng: &rng), gw = Tensor(rows: 300, cols: 64)
        func step(rows: Int) throws {
            t.reset()
            let x = Tensor.uniform(rows: rows, cols: 300, -1, 1, rng: &rng)
            try t.backward(t.mean(t.layerNorm(t.linear(t.constant(x), t.parameter(w, grad: gw), nil, activation: .relu), gamma: nil, beta: nil)))
        }
        try step(rows: 100)
        let one = t.elementsAllocated, onePool = t.pooledElements
        for rows in 101..<140 { try step(rows: rows) }
        // 40 distinct sizes span five size classes: at most a new set of buffers per class, where one
        // set per size would be 39 more sets (buffers of ≤ 4096 elements are pooled by exact size, a
        // few per cent of one step's elements here). (The pool itself stays small either way: sizes unused
        // for two steps are freed, see testChangingShapesDoNotGrowThePool.)
        let rising = t.elementsAllocated - one
        XCTAssertLessThanOrEqual(rising, 6 * one, "39 more batch sizes allocated \(rising) elements (one step: \(one))")
        XCTAssertLessThan(t.pooledElements, 6 * onePool)
        let before = t.elementsAllocated
        for rows in (100..<140).reversed() { try step(rows: rows) }
        let falling = t.elementsAllocated - before
        XCTAssertLessThanOrEqual(falling, 6 * one, "a second pass over the same sizes allocated \(falling) elements (one step: \(one))")
        for n in [1, 4096, 4097, 5000, 1 << 20, (1 << 20) + 1, 3_000_001] {
            let c = Tape.poolCapacity(n)
            XCTAssertGreaterThanOrEqual(c, n)
            XCTAssertLessThanOrEqual(Double(c), Double(n) * 1.125 + 1)
        }
    }

    func testShortStepsBorrowTheFullStepsBuffers() throws {
        // An epoch of full steps and a short last one (2,617 of 8,617 cells at batch 6,000): the short
        // step takes the full steps' pooled buffers (classes up to 4× its sizes) instead of adding a
        // second set, and its values and gradients are those of a fresh tape.
        var rng = RandomStream(seed: 3)
        let w = Tensor.uniform(rows: 300, cols: 64, -1, 1, rng: &rng)
        let full = Tensor.uniform(rows: 240, cols: 300, -1, 1, rng: &rng), short = Tensor.uniform(rows: 100, cols: 300, -1, 1, rng: &rng)
        func step(_ t: Tape, _ x: Tensor, _ gw: Tensor) throws -> Float {
            t.reset()
            let loss = t.mean(t.layerNorm(t.linear(t.constant(x), t.parameter(w, grad: gw), nil, activation: .relu), gamma: nil, beta: nil))
            try t.backward(loss)
            return t.value(loss).scalar
        }
        let t = Tape(), gw = Tensor(rows: 300, cols: 64)
        _ = try step(t, full, gw)
        let afterFull = t.elementsAllocated
        var losses: [Float] = [], grads: [[Float]] = []
        for _ in 0..<3 {
            losses.append(try step(t, short, gw)); grads.append(gw.scalars)
            _ = try step(t, full, gw)
        }
        // Only buffers of ≤ 4096 elements (pooled by exact size, never lent) may be new.
        XCTAssertLessThanOrEqual(t.elementsAllocated - afterFull, 3 * 4096, "short steps allocated \(t.elementsAllocated - afterFull) elements beside a full step's \(afterFull)")
        let fresh = Tape(), gf = Tensor(rows: 300, cols: 64)
        let want = try step(fresh, short, gf)
        for (l, g) in zip(losses, grads) {
            XCTAssertEqual(l, want)
            XCTAssertEqual(g, gf.scalars)
        }
    }

    func testGradCheckDetectsAWrongGradient() {
        // An op with a deliberately wrong backward (factor 2 missing) must fail the checker.
        let r = GradCheck.check([Tensor(rows: 2, cols: 2, values: [0.5, -0.3, 0.8, 1.2])]) { t, v in
            let xv = t.value(v[0])
            let out = t.alloc(2, 2)
            for i in 0..<4 { out.pointer[i] = xv.pointer[i] * xv.pointer[i] }
            return t.push(out, requiresGrad: t.requiresGrad(v[0])) { t, g in
                if let gx = t.gradAccumulator(v[0]) { for i in 0..<4 { gx.pointer[i] += g.pointer[i] * xv.pointer[i] } }
            }
        }
        XCTAssertFalse(r.passed, "\(r)")
    }
}
