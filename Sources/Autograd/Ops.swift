// Differentiable ops: each forward next to its backward.
import Foundation
import TensorCore

extension Tape {
    @inline(__always) func needs(_ v: Var) -> Bool { nodes[v.id].requiresGrad }

    // MARK: matrix products

    /// op(A)·op(B).
    public func matmul(_ a: Var, _ b: Var, transA: Bool = false, transB: Bool = false) -> Var {
        let av = value(a), bv = value(b)
        let (m, n, _) = Linalg.productShape(av, transA: transA, bv, transB: transB)
        let out = alloc(m, n)
        Linalg.gemm(av, transA: transA, bv, transB: transB, into: out)
        return push(out, requiresGrad: needs(a) || needs(b)) { t, g in
            if let (ga, beta) = t.gradTarget(a) {
                if !transA {
                    Linalg.gemm(g, bv, transB: !transB, into: ga, beta: beta)      // g·op(B)ᵀ
                } else {
                    Linalg.gemm(bv, transA: transB, g, transB: true, into: ga, beta: beta)  // op(B)·gᵀ
                }
            }
            if let (gb, beta) = t.gradTarget(b) {
                if !transB {
                    Linalg.gemm(av, transA: !transA, g, into: gb, beta: beta)      // op(A)ᵀ·g
                } else {
                    Linalg.gemm(g, transA: true, av, transB: transA, into: gb, beta: beta)  // gᵀ·op(A)
                }
            }
        }
    }

    /// X·W with X sparse (a constant: data or a fixed graph) and W dense.
    public func matmul(_ x: CSRMatrix, _ w: Var) -> Var {
        let wv = value(w)
        let out = alloc(x.rows, wv.cols)
        SparseOps.matmul(x, wv, into: out)
        return push(out, requiresGrad: needs(w)) { t, g in
            if let (gw, beta) = t.gradTarget(w) { SparseOps.transposeMatmul(x, g, into: gw, beta: beta) }
        }
    }

    /// Activations fused into `linear`; each one's derivative is computed from its output y.
    /// (leakyRelu needs a positive slope so that y and x have the same sign.)
    public enum Activation: Sendable, Equatable { case identity, relu, leakyRelu(Float), tanh, sigmoid }

    /// Fused dense layer act(X·W + b): one sgemm forward (bias pre-copied, beta = 1), and backward
    /// dW = Xᵀ·dZ, db = column sums of dZ, dX = dZ·Wᵀ (only when X needs a gradient).
    public func linear(_ x: Var, _ w: Var, _ b: Var?, activation: Activation = .identity) -> Var {
        let xv = value(x), wv = value(w)
        precondition(xv.cols == wv.rows, "linear: input has \(xv.cols) features, weight is \(wv.rows)×\(wv.cols)")
        let out = alloc(xv.rows, wv.cols)
        linearForward(out: out, weight: wv, bias: b.map { value($0) }, activation: activation) { beta in Linalg.gemm(xv, wv, into: out, beta: beta) }
        let rg = needs(x) || needs(w) || (b.map(needs) ?? false)
        return push(out, requiresGrad: rg) { t, g in
            let dz = t.linearActivationBackward(g, out: out, activation: activation)
            if let b, let gb = t.gradTarget(b) { Reduce.sumColumns(dz, into: gb.grad, beta: gb.beta) }
            if let (gw, beta) = t.gradTarget(w) { Linalg.gemm(xv, transA: true, dz, into: gw, beta: beta) }
            if let (gx, beta) = t.gradTarget(x) { Linalg.gemm(dz, wv, transB: true, into: gx, beta: beta) }
        }
    }

    /// Fused dense layer with sparse input act(X·W + b).
    /// Batches denser than `SparseOps.denseCrossoverDensity` are densified and take the sgemm path.
    public func linear(_ x: CSRMatrix, _ w: Var, _ b: Var?, activation: Activation = .identity) -> Var {
        if x.density >= SparseOps.denseCrossoverDensity {
            let xd = alloc(x.rows, x.cols)
            x.densify(into: xd)
            return linear(constant(xd), w, b, activation: activation)
        }
        let wv = value(w)
        precondition(x.cols == wv.rows, "linear: input has \(x.cols) features, weight is \(wv.rows)×\(wv.cols)")
        let out = alloc(x.rows, wv.cols)
        linearForward(out: out, weight: wv, bias: b.map { value($0) }, activation: activation) { beta in SparseOps.matmul(x, wv, into: out, beta: beta) }
        let rg = needs(w) || (b.map(needs) ?? false)
        return push(out, requiresGrad: rg) { t, g in
            let dz = t.linearActivationBackward(g, out: out, activation: activation)
            if let b, let gb = t.gradTarget(b) { Reduce.sumColumns(dz, into: gb.grad, beta: gb.beta) }
            if let (gw, beta) = t.gradTarget(w) { SparseOps.transposeMatmul(x, dz, into: gw, beta: beta) }
        }
    }

    private func linearForward(out: Tensor, weight: Tensor, bias: Tensor?, activation: Activation, product: (Float) -> Void) {
        if let bias {
            precondition(bias.count == weight.cols, "linear: bias has \(bias.count) elements, expected \(weight.cols)")
            let n = out.cols
            for r in 0..<out.rows { (out.pointer + r * n).update(from: bias.pointer, count: n) }
            product(1)
        } else {
            product(0)
        }
        let p = out.pointer, n = out.count
        switch activation {
        case .identity: break
        case .relu: Elementwise.reluInPlace(p, n)
        case .leakyRelu(let s):
            precondition(s > 0, "fused leakyRelu needs a positive slope, got \(s)")
            for i in 0..<n { p[i] = p[i] > 0 ? p[i] : s * p[i] }
        case .tanh: for i in 0..<n { p[i] = Foundation.tanh(p[i]) }
        case .sigmoid: for i in 0..<n { p[i] = SigmoidFn.apply(p[i]) }
        }
    }

    fileprivate func linearActivationBackward(_ g: Tensor, out: Tensor, activation: Activation) -> Tensor {
        switch activation {
        case .identity: return g
        default: break
        }
        let dz = alloc(g.rows, g.cols)
        let gp = g.pointer, yp = out.pointer, d = dz.pointer, n = g.count
        switch activation {
        case .identity: break
        case .relu: for i in 0..<n { d[i] = yp[i] > 0 ? gp[i] : 0 }
        case .leakyRelu(let s): for i in 0..<n { d[i] = yp[i] > 0 ? gp[i] : s * gp[i] }
        case .tanh: for i in 0..<n { d[i] = gp[i] * (1 - yp[i] * yp[i]) }
        case .sigmoid: for i in 0..<n { d[i] = gp[i] * yp[i] * (1 - yp[i]) }
        }
        return dz
    }

    // MARK: broadcasting arithmetic

    public func add(_ a: Var, _ b: Var) -> Var {
        let out = broadcastOut(a, b)
        Elementwise.binary(AddOp.self, value(a), value(b), into: out)
        return push(out, requiresGrad: needs(a) || needs(b)) { t, g in
            if let ga = t.gradAccumulator(a) { Elementwise.accumulateReduced(g, into: ga) }
            if let gb = t.gradAccumulator(b) { Elementwise.accumulateReduced(g, into: gb) }
        }
    }

    public func sub(_ a: Var, _ b: Var) -> Var {
        let out = broadcastOut(a, b)
        Elementwise.binary(SubOp.self, value(a), value(b), into: out)
        return push(out, requiresGrad: needs(a) || needs(b)) { t, g in
            if let ga = t.gradAccumulator(a) { Elementwise.accumulateReduced(g, into: ga) }
            if let gb = t.gradAccumulator(b) { Elementwise.accumulateReduced(g, into: gb, alpha: -1) }
        }
    }

    public func mul(_ a: Var, _ b: Var) -> Var {
        let av = value(a), bv = value(b)
        let out = broadcastOut(a, b)
        Elementwise.binary(MulOp.self, av, bv, into: out)
        return push(out, requiresGrad: needs(a) || needs(b)) { t, g in
            if let ga = t.gradAccumulator(a) {
                let tmp = t.alloc(g.rows, g.cols)
                Elementwise.binary(MulOp.self, g, bv, into: tmp)
                Elementwise.accumulateReduced(tmp, into: ga)
            }
            if let gb = t.gradAccumulator(b) {
                let tmp = t.alloc(g.rows, g.cols)
                Elementwise.binary(MulOp.self, g, av, into: tmp)
                Elementwise.accumulateReduced(tmp, into: gb)
            }
        }
    }

    public func div(_ a: Var, _ b: Var) -> Var {
        let bv = value(b)
        let out = broadcastOut(a, b)
        Elementwise.binary(DivOp.self, value(a), bv, into: out)
        return push(out, requiresGrad: needs(a) || needs(b)) { t, g in
            let q = t.alloc(g.rows, g.cols)               // g / b
            Elementwise.binary(DivOp.self, g, bv, into: q)
            if let ga = t.gradAccumulator(a) { Elementwise.accumulateReduced(q, into: ga) }
            if let gb = t.gradAccumulator(b) {             // −g·a/b² = −(g/b)·out
                Elementwise.binary(MulOp.self, q, out, into: q)
                Elementwise.accumulateReduced(q, into: gb, alpha: -1)
            }
        }
    }

    private func broadcastOut(_ a: Var, _ b: Var) -> Tensor {
        let s = broadcastShape(shape(a), shape(b))
        return alloc(s.rows, s.cols)
    }

    /// s·x.
    public func scale(_ x: Var, _ s: Float) -> Var {
        let xv = value(x)
        let out = alloc(xv.rows, xv.cols)
        Elementwise.scale(xv, s, into: out)
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) { Elementwise.accumulateReduced(g, into: gx, alpha: s) }
        }
    }

    /// x + c for a constant scalar c.
    public func addScalar(_ x: Var, _ c: Float) -> Var {
        let xv = value(x)
        let out = alloc(xv.rows, xv.cols)
        for i in 0..<xv.count { out.pointer[i] = xv.pointer[i] + c }
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) { Elementwise.accumulateReduced(g, into: gx) }
        }
    }

    public func neg(_ x: Var) -> Var { scale(x, -1) }

    // MARK: reductions

    /// Σ of all elements → 1×1.
    public func sum(_ x: Var) -> Var { reduceAll(x, mean: false) }
    /// Mean of all elements → 1×1.
    public func mean(_ x: Var) -> Var { reduceAll(x, mean: true) }

    private func reduceAll(_ x: Var, mean: Bool) -> Var {
        let xv = value(x)
        let alpha: Float = mean ? 1 / Float(max(xv.count, 1)) : 1
        let out = alloc(1, 1)
        out.pointer[0] = alpha * Reduce.sum(xv)
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                let v = alpha * g.pointer[0]
                for i in 0..<gx.count { gx.pointer[i] += v }
            }
        }
    }

    /// Σ over each row → rows×1.
    public func sumRows(_ x: Var) -> Var { reduceRows(x, alpha: 1) }
    /// Mean over each row → rows×1.
    public func meanRows(_ x: Var) -> Var { reduceRows(x, alpha: 1 / Float(max(shape(x).cols, 1))) }
    /// Σ over each column → 1×cols.
    public func sumColumns(_ x: Var) -> Var { reduceColumns(x, alpha: 1) }
    /// Mean over each column → 1×cols.
    public func meanColumns(_ x: Var) -> Var { reduceColumns(x, alpha: 1 / Float(max(shape(x).rows, 1))) }

    private func reduceRows(_ x: Var, alpha: Float) -> Var {
        let xv = value(x)
        let out = alloc(xv.rows, 1)
        Reduce.sumRows(xv, into: out, alpha: alpha)
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                let C = gx.cols
                for r in 0..<gx.rows { let v = alpha * g.pointer[r]; let p = gx.pointer + r * C; for j in 0..<C { p[j] += v } }
            }
        }
    }

    private func reduceColumns(_ x: Var, alpha: Float) -> Var {
        let xv = value(x)
        let out = alloc(1, xv.cols)
        Reduce.sumColumns(xv, into: out, alpha: alpha)
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                let C = gx.cols
                for r in 0..<gx.rows { let p = gx.pointer + r * C; for j in 0..<C { p[j] += alpha * g.pointer[j] } }
            }
        }
    }

    // MARK: structure

    public func transpose(_ x: Var) -> Var {
        let xv = value(x)
        let out = alloc(xv.cols, xv.rows)
        Elementwise.transpose(xv.pointer, rows: xv.rows, cols: xv.cols, into: out.pointer)
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                let R = gx.rows, C = gx.cols
                for r in 0..<R { for c in 0..<C { gx.pointer[r * C + c] += g.pointer[c * R + r] } }
            }
        }
    }

    /// The same value with no gradient flowing back through it.
    public func stopGradient(_ x: Var) -> Var { constant(value(x)) }

    public enum Axis: Sendable { case rows, columns }

    /// Concatenation along rows (stacking vertically) or columns (side by side).
    public func concat(_ xs: [Var], axis: Axis) -> Var {
        precondition(!xs.isEmpty, "concat of nothing")
        let vals = xs.map { value($0) }
        switch axis {
        case .rows:
            let C = vals[0].cols
            precondition(vals.allSatisfy { $0.cols == C }, "concat along rows needs equal column counts")
            let out = alloc(vals.reduce(0) { $0 + $1.rows }, C)
            var off = 0
            for v in vals { (out.pointer + off).update(from: v.pointer, count: v.count); off += v.count }
            return push(out, requiresGrad: xs.contains(where: needs)) { t, g in
                var off = 0
                for (x, v) in zip(xs, vals) {
                    if let gx = t.gradAccumulator(x) { for i in 0..<v.count { gx.pointer[i] += g.pointer[off + i] } }
                    off += v.count
                }
            }
        case .columns:
            let R = vals[0].rows
            precondition(vals.allSatisfy { $0.rows == R }, "concat along columns needs equal row counts")
            let C = vals.reduce(0) { $0 + $1.cols }
            let out = alloc(R, C)
            var c0 = 0
            for v in vals {
                for r in 0..<R { (out.pointer + r * C + c0).update(from: v.pointer + r * v.cols, count: v.cols) }
                c0 += v.cols
            }
            return push(out, requiresGrad: xs.contains(where: needs)) { t, g in
                var c0 = 0
                for (x, v) in zip(xs, vals) {
                    if let gx = t.gradAccumulator(x) {
                        for r in 0..<R { let s = g.pointer + r * C + c0, d = gx.pointer + r * v.cols; for j in 0..<v.cols { d[j] += s[j] } }
                    }
                    c0 += v.cols
                }
            }
        }
    }

    /// The sub-block x[rows, cols].
    public func slice(_ x: Var, rows: Range<Int>? = nil, cols: Range<Int>? = nil) -> Var {
        let xv = value(x)
        let rr = rows ?? 0..<xv.rows, cc = cols ?? 0..<xv.cols
        precondition(rr.lowerBound >= 0 && rr.upperBound <= xv.rows && cc.lowerBound >= 0 && cc.upperBound <= xv.cols,
                     "slice \(rr), \(cc) outside \(xv.rows)×\(xv.cols)")
        let out = alloc(rr.count, cc.count)
        for (i, r) in rr.enumerated() { (out.pointer + i * cc.count).update(from: xv.pointer + r * xv.cols + cc.lowerBound, count: cc.count) }
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                for (i, r) in rr.enumerated() {
                    let d = gx.pointer + r * xv.cols + cc.lowerBound, s = g.pointer + i * cc.count
                    for j in 0..<cc.count { d[j] += s[j] }
                }
            }
        }
    }

    /// Rows x[indices[0]], x[indices[1]], … (repeats allowed).
    public func gatherRows(_ x: Var, _ indices: [Int32]) -> Var {
        let xv = value(x), C = xv.cols
        let out = alloc(indices.count, C)
        for (i, r) in indices.enumerated() {
            precondition(r >= 0 && Int(r) < xv.rows, "gather row \(r) outside 0..<\(xv.rows)")
            (out.pointer + i * C).update(from: xv.pointer + Int(r) * C, count: C)
        }
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                for (i, r) in indices.enumerated() {
                    let d = gx.pointer + Int(r) * C, s = g.pointer + i * C
                    for j in 0..<C { d[j] += s[j] }
                }
            }
        }
    }

    /// An outRows×cols result with out[indices[i]] += x[i] (the adjoint of gatherRows).
    public func scatterAddRows(_ x: Var, _ indices: [Int32], outRows: Int) -> Var {
        let xv = value(x), C = xv.cols
        precondition(indices.count == xv.rows, "scatter needs one index per row")
        let out = zeros(outRows, C)
        for (i, r) in indices.enumerated() {
            precondition(r >= 0 && Int(r) < outRows, "scatter row \(r) outside 0..<\(outRows)")
            let d = out.pointer + Int(r) * C, s = xv.pointer + i * C
            for j in 0..<C { d[j] += s[j] }
        }
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                for (i, r) in indices.enumerated() {
                    let d = gx.pointer + i * C, s = g.pointer + Int(r) * C
                    for j in 0..<C { d[j] += s[j] }
                }
            }
        }
    }
}
