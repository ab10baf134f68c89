import Autograd
import CellData
import Clustering
import Collectives
import Foundation
import TensorCore
import TestSupport
import Training
import XCTest
@testable import Models

final class SCNAMELossTests: XCTestCase {
    let comm = Communicator.world  // a single-process test run: the world is one rank

    func testFastExpLog() {
        var worstExp = 0.0, worstLog = 0.0
        for i in 0..<4000 {
            let x = Float(i) / 4000 * 170 - 85
            let e = vexp(F8(repeating: x))[0]
            worstExp = max(worstExp, abs(Double(e) - Foundation.exp(Double(x))) / Foundation.exp(Double(x)))
            let y = Float(i + 1) * 1.7e-3 * Float(i % 7 + 1) + 1e-9
            worstLog = max(worstLog, abs(Double(vlog(F8(repeating: y))[0]) - Foundation.log(Double(y))))
            let l1 = vlog1p(F8(repeating: Float(i) / 4000))[0]
            worstLog = max(worstLog, abs(Double(l1) - Foundation.log1p(Double(i) / 4000)))
        }
        XCTAssertLessThan(worstExp, 1e-6)
        XCTAssertLessThan(worstLog, 1e-6)
    }

    func testZINBGradient() {
        var rng = RandomStream(seed: 1, purpose: .custom("zinb-test"))
        let b = 3, g = 10   // one 8-wide vector chunk and a scalar tail per row
        let heads = Tensor.uniform(rows: b, cols: 3 * g, -1.5, 1.5, rng: &rng)
        // zeros, small integers (finite-sum path), a large count and a non-integer (lgamma path)
        let counts = Tensor(rows: b, cols: g, values: [0, 1, 0, 3, 40, 0, 0, 0, 5, 0,
                                                       2, 0, 0, 7, 0, 0, 0, 0, 0, 0,
                                                       0, 2.5, 1, 0, 12, 0, 0, 1, 0, 3])
        let sf: [Float] = [0.7, 1.3, 1.0]
        let report = sf.withUnsafeBufferPointer { sp in
            GradCheck.check([heads], h: 1e-2) { t, v in t.zinbLoss(v[0], counts: counts, sizeFactors: sp.baseAddress!, ridge: 1) }
        }
        XCTAssertTrue(report.passed, "\(report)")
    }

    func testLgammaDigammaDifference8() {
        // a over 1e-4 … 1e4 (θ's clip range), x from 0.3 to 1e5; against Double lgamma and a Double ψ.
        func psi(_ z: Double) -> Double { TensorCore.digamma(z) }
        var worstLg = 0.0, worstPsi = 0.0
        let xs: [Float] = [0.3, 1, 2, 3, 7, 20, 33, 150, 2000, 1e5]
        for i in 0...80 {
            let a = Float(1e-4 * Foundation.pow(1e8, Double(i) / 80))
            for chunk in stride(from: 0, to: xs.count, by: 8) {
                var xv = F8(repeating: 1)
                for l in 0..<8 where chunk + l < xs.count { xv[l] = xs[chunk + l] }
                let (lg, ps) = lgammaDigammaDifference8(F8(repeating: a), xv)
                for l in 0..<8 where chunk + l < xs.count {
                    let ad = Double(a), xd = Double(xv[l])
                    let refLg = lgamma(ad + xd) - lgamma(ad), refPsi = psi(ad + xd) - psi(ad)
                    worstLg = max(worstLg, abs(Double(lg[l]) - refLg) / max(1, abs(refLg)))
                    worstPsi = max(worstPsi, abs(Double(ps[l]) - refPsi) / max(1, abs(refPsi)))
                }
            }
        }
        XCTAssertLessThan(worstLg, 4e-6)
        XCTAssertLessThan(worstPsi, 4e-6)
    }

    /// The reference ZINB element (DCA / scNAME formula) in Double.
    static func zinbReference(_ am: Double, _ ad: Double, _ ap: Double, x: Double, sf: Double, ridge: Double = 1) -> Double {
        let eps = 1e-10
        let mu = min(max(exp(am), 1e-5), 1e6) * sf
        let theta = min(max(max(ad, 0) + log1p(exp(-abs(ad))), 1e-4), 1e4)
        let pi = 1 / (1 + exp(-ap))
        var l: Double
        if x < 1e-8 {
            l = -log(pi + (1 - pi) * pow(theta / (theta + mu + eps), theta) + eps)
        } else {
            let t1 = lgamma(theta + eps) + lgamma(x + 1) - lgamma(x + theta + eps)
            let t2 = (theta + x) * log1p(mu / (theta + eps)) + x * (log(theta + eps) - log(mu + eps))
            l = t1 + t2 - log(1 - pi + eps)
        }
        return l + ridge * pi * pi
    }

    func testZINBKernelsMatchDoubleReference() {
        // The eight-lane kernels and the scalar one against the Double formula (value) and its central
        // differences (gradients), over logits spanning the clip boundaries and counts on every path.
        var rng = RandomStream(seed: 5, purpose: .custom("zinb8"))
        let counts: [Float] = [1, 2, 3, 7, 33, 150, 2000, 2.5, 0.3, 40000, 1, 5]
        var worstVector = [Double](repeating: 0, count: 8), worstScalar = [Double](repeating: 0, count: 8)
        for trial in 0..<400 {
            var am = F8(), ad = F8(), ap = F8(), x = F8()
            for l in 0..<8 {
                am[l] = rng.uniform() * 30 - 15; ad[l] = rng.uniform() * 24 - 12; ap[l] = rng.uniform() * 20 - 10
                x[l] = counts[(trial * 8 + l * 3) % counts.count]
            }
            let sf: Float = [0.2, 1, 3.5][trial % 3]
            let z = zinbZero8(am, ad, ap, sf: sf, ridge: 1)
            let n = zinbNonzero8(am, ad, ap, x: x, sf: sf, logSf: Foundation.log(sf), ridge: 1)
            for lane in 0..<8 {
                for (c, xv) in [Float(0), x[lane]].enumerated() {
                    let a = [Double(am[lane]), Double(ad[lane]), Double(ap[lane])]
                    let ref = SCNAMELossTests.zinbReference(a[0], a[1], a[2], x: Double(xv), sf: Double(sf))
                    var refGrad = [Double](repeating: 0, count: 3)
                    for q in 0..<3 {
                        var hi = a, lo = a
                        hi[q] += 1e-5; lo[q] -= 1e-5
                        refGrad[q] = (SCNAMELossTests.zinbReference(hi[0], hi[1], hi[2], x: Double(xv), sf: Double(sf))
                                      - SCNAMELossTests.zinbReference(lo[0], lo[1], lo[2], x: Double(xv), sf: Double(sf))) / 2e-5
                    }
                    let v: [Float] = c == 0 ? [z.0[lane], z.1[lane], z.2[lane], z.3[lane]]
                                            : [n.0[lane] + Float(logFactorial(xv)), n.1[lane], n.2[lane], n.3[lane]]
                    let e = zinbElement(am[lane], ad[lane], ap[lane], x: xv, sf: sf, ridge: 1)
                    let s: [Float] = [e.l, e.gm, e.gd, e.gp]
                    let r = [ref] + refGrad
                    for q in 0..<4 {
                        XCTAssertTrue(v[q].isFinite, "lane \(lane) trial \(trial) quantity \(q) not finite")
                        // The non-zero loss is a sum of terms of size ≈ x·|log x| that cancel; in Float32 their rounding
                        // (≈ 1e-7 each) is the floor, so its error is measured against that scale (gradients are formed
                        // cancellation-free and need no such allowance).
                        let xs = Double(xv)
                        let scale = max(1, abs(r[q])) + (c == 1 && q == 0 ? 0.025 * xs * (1 + log(max(xs, 1))) : 0)
                        worstVector[4 * c + q] = max(worstVector[4 * c + q], abs(Double(v[q]) - r[q]) / scale)
                        worstScalar[4 * c + q] = max(worstScalar[4 * c + q], abs(Double(s[q]) - r[q]) / max(1, abs(r[q])))
                    }
                }
            }
        }
        print("zinb vs Double reference, worst relative error (zero: l, dmean, ddisp, ddrop; non-zero: same)")
        print("  8-lane:", worstVector.map { String(format: "%.1e", $0) })
        print("  scalar:", worstScalar.map { String(format: "%.1e", $0) })
        for (q, w) in worstVector.enumerated() { XCTAssertLessThan(w, 2e-5, "8-lane quantity \(q)") }
        for (q, w) in worstScalar.enumerated() { XCTAssertLessThan(w, 2e-5, "scalar quantity \(q)") }
    }

    func testZINBLossMixedRowsMatchScalar() throws {
        // Whole rows through zinbLoss (two passes, compaction, tail) against per-element zinbElement sums.
        var rng = RandomStream(seed: 9, purpose: .custom("zinb-rows"))
        let b = 5, g = 37
        let heads = Tensor.uniform(rows: b, cols: 3 * g, -4, 4, rng: &rng)
        var cv = [Float](repeating: 0, count: b * g)
        for e in 0..<cv.count where rng.uniform() < [0.0, 0.1, 0.5, 0.9, 1.0][e / g] { cv[e] = Float(rng.int(below: 60) + 1) }
        let counts = Tensor(rows: b, cols: g, values: cv)
        let sf: [Float] = [0.4, 1, 2.2, 0.9, 1.6]
        let t = Tape()
        let hv = t.variable(heads)
        let loss = sf.withUnsafeBufferPointer { t.zinbLoss(hv, counts: counts, sizeFactors: $0.baseAddress!, ridge: 1) }
        try t.backward(loss)
        let grad = t.grad(hv)!
        var ref = 0.0, worstGrad: Float = 0
        for i in 0..<b {
            for j in 0..<g {
                let e = zinbElement(heads[i, j], heads[i, g + j], heads[i, 2 * g + j], x: counts[i, j], sf: sf[i], ridge: 1)
                ref += Double(e.l)
                let n = Float(b * g)
                for (q, r) in [e.gm, e.gd, e.gp].enumerated() {
                    worstGrad = max(worstGrad, abs(grad[i, q * g + j] - r / n) / max(1e-3, abs(r / n)))
                }
            }
        }
        XCTAssertEqual(Double(t.value(loss).scalar), ref / Double(b * g), accuracy: 1e-4 * max(1, abs(ref / Double(b * g))))
        XCTAssertLessThan(worstGrad, 1e-3)
    }

    func testZINBValueMatchesDirectFormula() {
        // One NB element and one zero element, against the reference formula evaluated in Double.
        let g = 2
        let heads = Tensor(rows: 1, cols: 3 * g, values: [0.3, -0.2, 0.5, 1.2, -0.4, 0.1])
        let counts = Tensor(rows: 1, cols: g, values: [4, 0])
        let sf: [Float] = [1.5]
        let t = Tape()
        let v = sf.withUnsafeBufferPointer { t.value(t.zinbLoss(t.constant(heads), counts: counts, sizeFactors: $0.baseAddress!)).scalar }
        func sp(_ x: Double) -> Double { log(1 + exp(x)) }
        func sig(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
        let eps = 1e-10
        var total = 0.0
        for j in 0..<g {
            let mu = exp(Double(heads[0, j])) * 1.5, th = sp(Double(heads[0, g + j])), pi = sig(Double(heads[0, 2 * g + j]))
            let x = Double(counts[0, j])
            var l: Double
            if x < 1e-8 {
                l = -log(pi + (1 - pi) * pow(th / (th + mu + eps), th) + eps)
            } else {
                let t1 = lgamma(th + eps) + lgamma(x + 1) - lgamma(x + th + eps)
                let t2 = (th + x) * log(1 + mu / (th + eps)) + x * (log(th + eps) - log(mu + eps))
                l = t1 + t2 - log(1 - pi + eps)
            }
            total += l + pi * pi
        }
        XCTAssertEqual(Double(v), total / Double(g), accuracy: 1e-5)
    }

    func testMaskBCEGradientAndValue() {
        var rng = RandomStream(seed: 2, purpose: .custom("bce-test"))
        let logits = Tensor.uniform(rows: 4, cols: 6, -3, 3, rng: &rng)
        let target = Tensor(rows: 4, cols: 6, values: (0..<24).map { Float(($0 * 7) % 3 == 0 ? 1 : 0) })
        let report = GradCheck.check([logits]) { t, v in t.maskBCE(v[0], target: target) }
        XCTAssertTrue(report.passed, "\(report)")
        let t = Tape()
        let v = t.value(t.maskBCE(t.constant(logits), target: target)).scalar
        var ref = 0.0
        for e in 0..<24 {
            let p = 1 / (1 + exp(-Double(logits[flat: e]))), m = Double(target[flat: e])
            ref -= m * log(p) + (1 - m) * log(1 - p)
        }
        XCTAssertEqual(Double(v), ref / 24, accuracy: 1e-5)
    }

    func testSoftKMeansGradientAndUnusedCentres() {
        var rng = RandomStream(seed: 3, purpose: .custom("km-test"))
        let z = Tensor.uniform(rows: 5, cols: 3, -1, 1, rng: &rng)
        let c = Tensor.uniform(rows: 4, cols: 3, -1, 1, rng: &rng)   // capacity 4, k = 3
        let report = GradCheck.check([z, c], kinds: [.variable, .parameter]) { t, v in t.softKMeansLoss(v[0], centres: v[1], k: 3) }
        XCTAssertTrue(report.passed, "\(report)")
        // Value: mean_i Σ_j (q²/Σq²)_ij d_ij with q = softmax(−d).
        let t = Tape()
        let v = t.value(t.softKMeansLoss(t.constant(z), centres: t.constant(c), k: 3)).scalar
        var ref = 0.0
        for i in 0..<5 {
            let d = (0..<3).map { j in (0..<3).reduce(0.0) { $0 + pow(Double(z[i, $1] - c[j, $1]), 2) } }
            let q = d.map { exp(-$0) }, qs = q.reduce(0, +)
            let q2 = q.map { ($0 / qs) * ($0 / qs) }, s2 = q2.reduce(0, +)
            ref += zip(q2, d).reduce(0.0) { $0 + $1.0 / s2 * $1.1 }
        }
        XCTAssertEqual(Double(v), ref / 5, accuracy: 1e-5)
    }

    /// Unit rows of a random tensor.
    func unitRows(_ n: Int, _ d: Int, seed: UInt64) -> Tensor {
        var rng = RandomStream(seed: seed, purpose: .custom("unit"))
        let t = Tensor.uniform(rows: n, cols: d, -1, 1, rng: &rng)
        for i in 0..<n {
            var s: Float = 0
            for c in 0..<d { s += t[i, c] * t[i, c] }
            for c in 0..<d { t.pointer[i * d + c] /= s.squareRoot() }
        }
        return t
    }

    func testNeighbourContrastiveGradientAndValue() throws {
        let d = 4, n = 25, b = 3, k = 5
        let bank = unitRows(n, d, seed: 4), clean = unitRows(b, d, seed: 5)
        var rng = RandomStream(seed: 6, purpose: .custom("ncl"))
        let zt = Tensor.uniform(rows: b, cols: d, -1, 1, rng: &rng)
        let ids = (0..<n).map { Int64($0) }
        let report = GradCheck.check([zt], h: 1e-2) { t, v in
            try! t.neighbourContrastiveLoss(t.l2NormalizeRows(v[0]), clean: clean, bank: bank, bankIds: ids,
                                            k: k, temperature: 0.7, comm: self.comm)
        }
        XCTAssertTrue(report.passed, "\(report)")
        // Value against the dense formula.
        let t = Tape()
        let v = t.value(try t.neighbourContrastiveLoss(t.l2NormalizeRows(t.constant(zt)), clean: clean, bank: bank, bankIds: ids,
                                                       k: k, temperature: 0.7, comm: comm)).scalar
        var ref = 0.0
        for i in 0..<b {
            let nz = (0..<d).reduce(0.0) { $0 + Double(zt[i, $1] * zt[i, $1]) }.squareRoot()
            let s = (0..<n).map { j in (0..<d).reduce(0.0) { $0 + Double(zt[i, $1]) / nz * Double(bank[j, $1]) } / 0.7 }
            let c = (0..<n).map { j in (0..<d).reduce(0.0) { $0 + Double(clean[i, $1] * bank[j, $1]) } }
            let top = (0..<n).sorted { c[$0] > c[$1] }.prefix(k)
            let num = top.reduce(0.0) { $0 + exp(s[$1]) }, den = s.reduce(0.0) { $0 + exp($1) }
            ref -= log(num / den)
        }
        XCTAssertEqual(Double(v), ref / Double(b), accuracy: 1e-4)
    }
}

extension SCNAMELossTests {
    /// The sampled form: finite differences, and the value against its formula in Double —
    /// num over the given positives, den = num + N/M · (Σ over the draws − the draws of positives).
    func testSampledNeighbourContrastiveGradientAndValue() throws {
        let d = 4, n = 40, b = 3, k = 4, m = 30
        let bank = unitRows(n, d, seed: 14)
        var rng = RandomStream(seed: 16, purpose: .custom("ncl"))
        let zt = Tensor.uniform(rows: b, cols: d, -1, 1, rng: &rng)
        var pos = [Int64](repeating: -1, count: b * k)
        for i in 0..<b { for e in 0..<k where !(i == 1 && e == 3) { pos[i * k + e] = Int64((i * 7 + e * 5) % n) } }
        var neg = (0..<m).map { _ in Int64(rng.int(below: n)) }
        neg[0] = pos[0]; neg[1] = pos[0]   // a positive drawn twice
        let row: (Int64) -> Int? = { Int($0) }
        let report = GradCheck.check([zt], h: 1e-2) { t, v in
            try! t.sampledNeighbourContrastiveLoss(t.l2NormalizeRows(v[0]), bank: bank, positives: pos, k: k, negatives: neg,
                                                   bankTotal: n, localRow: row, temperature: 0.7, comm: self.comm)
        }
        XCTAssertTrue(report.passed, "\(report)")
        let t = Tape()
        let v = t.value(try t.sampledNeighbourContrastiveLoss(t.l2NormalizeRows(t.constant(zt)), bank: bank, positives: pos, k: k,
                                                              negatives: neg, bankTotal: n, localRow: row, temperature: 0.7,
                                                              comm: comm)).scalar
        var ref = 0.0
        for i in 0..<b {
            let nz = (0..<d).reduce(0.0) { $0 + Double(zt[i, $1] * zt[i, $1]) }.squareRoot()
            func e(_ j: Int) -> Double { exp(((0..<d).reduce(0.0) { $0 + Double(zt[i, $1]) / nz * Double(bank[j, $1]) } - 1) / 0.7) }
            let p = Set((0..<k).compactMap { pos[i * k + $0] >= 0 ? Int(pos[i * k + $0]) : nil })
            let num = p.reduce(0.0) { $0 + e($1) }
            let den = num + Double(n) / Double(m) * neg.filter { !p.contains(Int($0)) }.reduce(0.0) { $0 + e(Int($1)) }
            ref -= log(num / den)
        }
        XCTAssertEqual(Double(v), ref / Double(b), accuracy: 1e-5 * max(1, abs(ref / Double(b))))
    }

    /// With every bank row drawn exactly once (M = N) and the exact top-k as positives, the sampled
    /// estimate is the exact denominator, so both forms give the same loss and gradient (float rounding
    /// of a sum of N terms in a different order: a few ulps of the loss).
    func testSampledEqualsExactWhenEveryRowIsDrawnOnce() throws {
        let d = 5, n = 30, b = 4, k = 3
        let bank = unitRows(n, d, seed: 21), clean = unitRows(b, d, seed: 22)
        var rng = RandomStream(seed: 23, purpose: .custom("ncl"))
        let zt = Tensor.uniform(rows: b, cols: d, -1, 1, rng: &rng)
        var pos = [Int64](repeating: -1, count: b * k)
        for i in 0..<b {
            let c = (0..<n).map { j in (0..<d).reduce(Float(0)) { $0 + clean[i, $1] * bank[j, $1] } }
            for (e, j) in (0..<n).sorted(by: { c[$0] > c[$1] }).prefix(k).enumerated() { pos[i * k + e] = Int64(j) }
        }
        let all = (0..<n).map(Int64.init)
        func run(_ sampled: Bool) -> (Float, [Float]) {
            let t = Tape()
            let x = t.variable(zt.copy())
            let l = sampled
                ? try! t.sampledNeighbourContrastiveLoss(t.l2NormalizeRows(x), bank: bank, positives: pos, k: k, negatives: all,
                                                        bankTotal: n, localRow: { Int($0) }, temperature: 0.5, comm: comm)
                : try! t.neighbourContrastiveLoss(t.l2NormalizeRows(x), clean: clean, bank: bank, bankIds: all, k: k,
                                                 temperature: 0.5, comm: comm)
            try! t.backward(l)
            return (t.value(l).scalar, t.grad(x)!.scalars)
        }
        let (le, ge) = run(false), (ls, gs) = run(true)
        // Budget: the exact form sums N terms in Float (relative error ≤ N·u in den and Gden); each of
        // Gden/den and Gnum/num is a weighted mean of unit-row components (|·| ≤ 1) over T, and the
        // gradient of the normalisation multiplies by ≤ 1/‖z̃‖ (the rows here have ‖z̃‖ ≥ 0.2).
        let u = Double(Float.ulpOfOne) / 2, nu = Double(n) * u
        XCTAssertEqual(Double(ls), Double(le), accuracy: 2 * nu + 4 * u * abs(Double(le)))
        let norms = (0..<b).map { i in (0..<d).reduce(0.0) { $0 + Double(zt[i, $1] * zt[i, $1]) }.squareRoot() }
        XCTAssertGreaterThanOrEqual(norms.min()!, 0.2)
        let gradBound = 4 * nu / 0.5 / norms.min()! / Double(b) + 8 * u * Double(ge.map(abs).max()!)
        for (a, c) in zip(gs, ge) { XCTAssertEqual(Double(a), Double(c), accuracy: gradBound) }
    }
}

final class SCNAMECorruptionTests: XCTestCase {
    /// A batch whose every entry is distinct, so x ≠ x̃ exactly when a different row was drawn.
    func batch(_ b: Int, _ g: Int) -> ([Int64], Tensor) {
        let ids = (0..<b).map { Int64($0 * 3 + 1) }
        let t = Tensor(rows: b, cols: g, values: (0..<(b * g)).map { Float($0) + 0.5 })
        return (ids, t)
    }

    func testMaskStatistics() {
        let b = 200, g = 50
        let (ids, dense) = batch(b, g)
        let xt = Tensor(rows: b, cols: g), ml = Tensor(rows: b, cols: g)
        SCNAME.corrupt(batchIds: ids, batchDense: dense, ownIds: ids, maskProbability: 0.3, seed: 9, epoch: 2, step: 5,
                       xTilde: xt, maskLabel: ml)
        var masked = 0
        for i in 0..<b {
            for j in 0..<g {
                let v = xt[i, j]
                // Replacements come from the same gene (column) of some batch row.
                let src = Int((v - 0.5).rounded()) 
                XCTAssertEqual(src % g, j)
                XCTAssertEqual(ml[i, j], v != dense[i, j] ? 1 : 0)
                if ml[i, j] == 1 { masked += 1 }
            }
        }
        let frac = Double(masked) / Double(b * g)
        let expected = 0.3 * (1 - 1 / Double(b))
        XCTAssertEqual(frac, expected, accuracy: 0.015, "masked fraction")
        // Another step gives another mask; the same (seed, epoch, step) the same one.
        let xt2 = Tensor(rows: b, cols: g), ml2 = Tensor(rows: b, cols: g)
        SCNAME.corrupt(batchIds: ids, batchDense: dense, ownIds: ids, maskProbability: 0.3, seed: 9, epoch: 2, step: 6,
                       xTilde: xt2, maskLabel: ml2)
        XCTAssertNotEqual(ml.scalars, ml2.scalars)
        SCNAME.corrupt(batchIds: ids, batchDense: dense, ownIds: ids, maskProbability: 0.3, seed: 9, epoch: 2, step: 5,
                       xTilde: xt2, maskLabel: ml2)
        XCTAssertEqual(xt.scalars, xt2.scalars)
    }

    func testRankCountIndependence() {
        // The batch split over 1, 2 or 3 "ranks" (any subsets of the cells, any order) corrupts each
        // cell identically: masks depend only on (seed, epoch, step, cell id) and the gathered batch.
        let b = 40, g = 30
        let (ids, dense) = batch(b, g)
        let full = Tensor(rows: b, cols: g), fullM = Tensor(rows: b, cols: g)
        SCNAME.corrupt(batchIds: ids, batchDense: dense, ownIds: ids, maskProbability: 0.3, seed: 1, epoch: 0, step: 3,
                       xTilde: full, maskLabel: fullM)
        for parts in [2, 3] {
            for p in 0..<parts {
                let mine = ids.enumerated().filter { $0.offset % parts == p }.map { $0.element }.reversed()
                let own = Array(mine)
                let xt = Tensor(rows: own.count, cols: g), ml = Tensor(rows: own.count, cols: g)
                SCNAME.corrupt(batchIds: ids, batchDense: dense, ownIds: own, maskProbability: 0.3, seed: 1, epoch: 0, step: 3,
                               xTilde: xt, maskLabel: ml)
                for (r, id) in own.enumerated() {
                    let i = ids.firstIndex(of: id)!
                    for j in 0..<g {
                        XCTAssertEqual(xt[r, j], full[i, j])
                        XCTAssertEqual(ml[r, j], fullM[i, j])
                    }
                }
            }
        }
    }
}

final class SCNAMETrainingTests: XCTestCase {
    func testShortTrainingBeatsUntrainedEmbedding() throws {
        let path = "/work/shared/data/baron_mouse.h5ad"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: path), "shared dataset not present")
        let comm = Communicator.world
        var source = DataSettings(); source.input = path; source.labelKey = "cell_type"
        var po = PreprocessOptions(); po.topGenes = 1000; po.targetSum = nil
        let full = try Dataset.load(source, preprocess: po, comm: comm)
        // A small subset (the first 900 cells; the file's rows are not ordered by type) keeps the
        // debug-build test short.
        let n = min(900, full.cells)
        XCTAssertEqual(full.cellIds.prefix(n).map { Int($0) }, Array(0..<n))
        var data = full
        data.x = full.x.gatherRows(Array(0..<n)); data.counts = full.counts.gatherRows(Array(0..<n))
        data.sizeFactors = Array(full.sizeFactors.prefix(n)); data.cellIds = Array(full.cellIds.prefix(n))
        data.labels = Array(full.labels!.prefix(n)); data.cells = n
        (data.geneMean, data.geneStd) = try Dataset.geneMoments(data.x, comm: comm)
        let truth = data.labels!.map(Int.init)
        let k = Set(truth).count
        var h = SCNAME.Hyperparameters()
        h.pretrainEpochs = 8; h.epochs = 2; h.finetuneLrScale = 0.5
        let model = try SCNAME(input: data, hyperparameters: h, context: ModelContext(seed: 0, clusters: k, maxClusters: k), comm: comm)
        // Trivial baseline: k-means on the embedding of the untrained network.
        let z0 = try model.embedding(comm: comm)
        let km0 = try KMeans(k: k, restarts: 5, seed: 0).fit(PointShard(values: z0.scalars, count: z0.rows, dim: z0.cols), comm: comm)
        let ari0 = ClusterMetrics.adjustedRandIndex(truth, km0.labels.map(Int.init))
        var cfg = TrainerConfig()
        cfg.batchSize = 64; cfg.lr = 1e-3
        let plan = TrainingPlan(epochs: model.totalEpochs, seed: 0, learningRateChange: model.learningRateChange)
        let trainer = try Trainer(task: model, config: cfg, plan: plan, cellIds: data.cellIds, idSpace: data.cells, comm: comm)
        let firstFineStep = model.pretrainEpochs * trainer.stepsPerEpoch
        XCTAssertEqual(trainer.learningRate(at: firstFineStep - 1), 1e-3)
        XCTAssertEqual(trainer.learningRate(at: firstFineStep), 5e-4)
        XCTAssertEqual(try trainer.run(), TrainingOutcome.completed)
        let own = try XCTUnwrap(try model.clusterAssignment(comm: comm))
        XCTAssertEqual(own.clusters, k)
        let pred: [Int] = own.labels.map(Int.init)
        let ari = ClusterMetrics.adjustedRandIndex(truth, pred)
        let first = trainer.lossHistory.prefix(5).reduce(0, +) / 5
        let spe = trainer.stepsPerEpoch
        let lastPre = trainer.lossHistory[(model.pretrainEpochs - 1) * spe..<(model.pretrainEpochs * spe)].reduce(0, +) / Double(spe)
        print("baron_mouse[0..<\(n)]: untrained k-means ARI \(ari0), scNAME ARI \(ari); pretrain loss \(first) → \(lastPre)")
        XCTAssertLessThan(lastPre, first, "pretraining loss must decrease")
        XCTAssertGreaterThan(ari, ari0 + 0.03, "trained scNAME must beat k-means on the untrained embedding")
        XCTAssertEqual(pred.count, n)
        XCTAssertTrue(pred.allSatisfy { (0..<k).contains($0) }, "every cell in one of the K clusters")
        XCTAssertGreaterThan(Set(pred).count, k / 2, "the assignment uses most of the K centres")
    }
}

final class EnsembleEmbeddingTests: XCTestCase {
    func testMembersScaledToUnitRMSNormAndPlacedSideBySide() throws {
        var rng = RandomStream(seed: 4, purpose: .custom("ensemble"))
        let a = Tensor.uniform(rows: 7, cols: 3, -2, 2, rng: &rng), b = Tensor.uniform(rows: 7, cols: 2, -50, 50, rng: &rng)
        let out = try EnsembleEmbedding.concatenate([a, b], comm: Communicator.world)
        XCTAssertEqual(out.rows, 7); XCTAssertEqual(out.cols, 5)
        for (part, c0, w) in [(a, 0, 3), (b, 3, 2)] {
            var ss = 0.0
            for i in 0..<7 { for c in 0..<w { ss += Double(out[i, c0 + c] * out[i, c0 + c]) } }
            XCTAssertEqual(ss / 7, 1, accuracy: 1e-5, "member at column \(c0): mean squared row norm")
            // Each block is its member times one positive constant.
            let ratio = out[0, c0] / part[0, 0]
            XCTAssertGreaterThan(ratio, 0)
            for i in 0..<7 { for c in 0..<w { XCTAssertEqual(out[i, c0 + c], part[i, c] * ratio, accuracy: 1e-5 * abs(part[i, c] * ratio) + 1e-6) } }
        }
    }
}
