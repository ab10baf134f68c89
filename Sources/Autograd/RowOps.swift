// Row-wise differentiable ops: softmax family, normalisations, dropout, distances, losses.
import Foundation
import TensorCore

extension Tape {
    // MARK: softmax family (each row independently)

    /// Row-wise softmax. Backward: dx = y ⊙ (g − Σⱼ gⱼyⱼ).
    public func softmax(_ x: Var) -> Var {
        let xv = value(x)
        let out = alloc(xv.rows, xv.cols)
        Reduce.softmaxRows(xv, into: out)
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                let C = gx.cols
                for r in 0..<gx.rows {
                    let y = out.pointer + r * C, gr = g.pointer + r * C, d = gx.pointer + r * C
                    var s: Float = 0
                    for j in 0..<C { s += gr[j] * y[j] }
                    for j in 0..<C { d[j] += y[j] * (gr[j] - s) }
                }
            }
        }
    }

    /// Row-wise log-softmax. Backward: dx = g − softmax·Σⱼ gⱼ.
    public func logSoftmax(_ x: Var) -> Var {
        let xv = value(x)
        let out = alloc(xv.rows, xv.cols)
        Reduce.logSoftmaxRows(xv, into: out)
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                let C = gx.cols
                for r in 0..<gx.rows {
                    let y = out.pointer + r * C, gr = g.pointer + r * C, d = gx.pointer + r * C
                    let s = Elementwise.rowSum(gr, C)
                    for j in 0..<C { d[j] += gr[j] - Foundation.exp(y[j]) * s }
                }
            }
        }
    }

    /// log Σ exp over each row → rows×1. Backward: dx = g_r·softmax(x_r).
    public func logSumExp(_ x: Var) -> Var {
        let xv = value(x)
        let out = alloc(xv.rows, 1)
        for r in 0..<xv.rows { out.pointer[r] = Reduce.logSumExp(xv.pointer + r * xv.cols, xv.cols) }
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                let C = gx.cols
                for r in 0..<gx.rows {
                    let xr = xv.pointer + r * C, d = gx.pointer + r * C, l = out.pointer[r], gr = g.pointer[r]
                    for j in 0..<C { d[j] += gr * Foundation.exp(xr[j] - l) }
                }
            }
        }
    }

    // MARK: normalisation

    /// Each row divided by √(‖row‖² + eps). Backward: dx = (g − y·(g·y)) / n.
    public func l2NormalizeRows(_ x: Var, eps: Float = 1e-12) -> Var {
        let xv = value(x), C = xv.cols
        let out = alloc(xv.rows, C)
        let norms = alloc(xv.rows, 1)
        for r in 0..<xv.rows {
            let p = xv.pointer + r * C, o = out.pointer + r * C
            var s: Float = 0
            for j in 0..<C { s += p[j] * p[j] }
            let n = (s + eps).squareRoot()
            norms.pointer[r] = n
            let inv = 1 / n
            for j in 0..<C { o[j] = p[j] * inv }
        }
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                for r in 0..<gx.rows {
                    let y = out.pointer + r * C, gr = g.pointer + r * C, d = gx.pointer + r * C
                    var s: Float = 0
                    for j in 0..<C { s += gr[j] * y[j] }
                    let inv = 1 / norms.pointer[r]
                    for j in 0..<C { d[j] += (gr[j] - y[j] * s) * inv }
                }
            }
        }
    }

    /// Layer normalisation over each row: (x − μ)/√(σ² + eps) · γ + β, with γ, β 1×cols (optional).
    public func layerNorm(_ x: Var, gamma: Var?, beta: Var?, eps: Float = 1e-5) -> Var {
        let xv = value(x), R = xv.rows, C = xv.cols
        let gv = gamma.map { value($0) }, bv = beta.map { value($0) }
        if let gv { precondition(gv.count == C, "layerNorm gamma has \(gv.count) elements, expected \(C)") }
        if let bv { precondition(bv.count == C, "layerNorm beta has \(bv.count) elements, expected \(C)") }
        let xhat = alloc(R, C), rstd = alloc(R, 1), out = alloc(R, C)
        for r in 0..<R {
            let p = xv.pointer + r * C, h = xhat.pointer + r * C, o = out.pointer + r * C
            let mu = Elementwise.rowSum(p, C) / Float(C)
            var v: Float = 0
            for j in 0..<C { let d = p[j] - mu; v += d * d }
            let rs = 1 / (v / Float(C) + eps).squareRoot()
            rstd.pointer[r] = rs
            for j in 0..<C { h[j] = (p[j] - mu) * rs }
            for j in 0..<C { o[j] = h[j] * (gv?.pointer[j] ?? 1) + (bv?.pointer[j] ?? 0) }
        }
        let rg = needs(x) || (gamma.map(needs) ?? false) || (beta.map(needs) ?? false)
        return push(out, requiresGrad: rg) { t, g in
            if let beta, let gb = t.gradAccumulator(beta) { Reduce.sumColumns(g, into: gb, beta: 1) }
            if let gamma, let gg = t.gradAccumulator(gamma) {
                for r in 0..<R { let gr = g.pointer + r * C, h = xhat.pointer + r * C; for j in 0..<C { gg.pointer[j] += gr[j] * h[j] } }
            }
            if let gx = t.gradAccumulator(x) {
                for r in 0..<R {
                    let gr = g.pointer + r * C, h = xhat.pointer + r * C, d = gx.pointer + r * C
                    var m1: Float = 0, m2: Float = 0
                    for j in 0..<C { let dh = gr[j] * (gv?.pointer[j] ?? 1); m1 += dh; m2 += dh * h[j] }
                    m1 /= Float(C); m2 /= Float(C)
                    let rs = rstd.pointer[r]
                    for j in 0..<C { let dh = gr[j] * (gv?.pointer[j] ?? 1); d[j] += rs * (dh - m1 - h[j] * m2) }
                }
            }
        }
    }

    /// Batch normalisation over each column (features in columns, samples in rows).
    /// Training: batch statistics, and the running ones updated in place as
    /// running ← (1 − momentum)·running + momentum·batch (unbiased variance, PyTorch's convention).
    /// Evaluation (`training == false`): the running statistics.
    public func batchNorm(_ x: Var, gamma: Var?, beta: Var?, runningMean: Tensor, runningVar: Tensor,
                          momentum: Float = 0.1, eps: Float = 1e-5) -> Var {
        let xv = value(x), R = xv.rows, C = xv.cols
        precondition(runningMean.count == C && runningVar.count == C, "batchNorm running statistics need \(C) elements")
        let gv = gamma.map { value($0) }, bv = beta.map { value($0) }
        let xhat = alloc(R, C), rstd = alloc(1, C), out = alloc(R, C)
        let train = training
        if train {
            precondition(R > 1, "batchNorm in training mode needs more than one row")
            let mean = alloc(1, C)
            Reduce.sumColumns(xv, into: mean, alpha: 1 / Float(R))
            let vsum = zeros(1, C)
            for r in 0..<R { let p = xv.pointer + r * C; for j in 0..<C { let d = p[j] - mean.pointer[j]; vsum.pointer[j] += d * d } }
            for j in 0..<C {
                let varB = vsum.pointer[j] / Float(R)
                rstd.pointer[j] = 1 / (varB + eps).squareRoot()
                runningMean.pointer[j] = (1 - momentum) * runningMean.pointer[j] + momentum * mean.pointer[j]
                runningVar.pointer[j] = (1 - momentum) * runningVar.pointer[j] + momentum * vsum.pointer[j] / Float(R - 1)
            }
            for r in 0..<R { let p = xv.pointer + r * C, h = xhat.pointer + r * C; for j in 0..<C { h[j] = (p[j] - mean.pointer[j]) * rstd.pointer[j] } }
        } else {
            for j in 0..<C { rstd.pointer[j] = 1 / (runningVar.pointer[j] + eps).squareRoot() }
            for r in 0..<R { let p = xv.pointer + r * C, h = xhat.pointer + r * C; for j in 0..<C { h[j] = (p[j] - runningMean.pointer[j]) * rstd.pointer[j] } }
        }
        for r in 0..<R {
            let h = xhat.pointer + r * C, o = out.pointer + r * C
            for j in 0..<C { o[j] = h[j] * (gv?.pointer[j] ?? 1) + (bv?.pointer[j] ?? 0) }
        }
        let rg = needs(x) || (gamma.map(needs) ?? false) || (beta.map(needs) ?? false)
        return push(out, requiresGrad: rg) { t, g in
            if let beta, let gb = t.gradAccumulator(beta) { Reduce.sumColumns(g, into: gb, beta: 1) }
            if let gamma, let gg = t.gradAccumulator(gamma) {
                for r in 0..<R { let gr = g.pointer + r * C, h = xhat.pointer + r * C; for j in 0..<C { gg.pointer[j] += gr[j] * h[j] } }
            }
            if let gx = t.gradAccumulator(x) {
                if !train {
                    for r in 0..<R { let gr = g.pointer + r * C, d = gx.pointer + r * C; for j in 0..<C { d[j] += gr[j] * (gv?.pointer[j] ?? 1) * rstd.pointer[j] } }
                    return
                }
                // dx = rstd·(dh − mean_rows(dh) − h·mean_rows(dh·h)), dh = g·γ.
                let m1 = t.zeros(1, C), m2 = t.zeros(1, C)
                for r in 0..<R {
                    let gr = g.pointer + r * C, h = xhat.pointer + r * C
                    for j in 0..<C { let dh = gr[j] * (gv?.pointer[j] ?? 1); m1.pointer[j] += dh; m2.pointer[j] += dh * h[j] }
                }
                let invR = 1 / Float(R)
                for r in 0..<R {
                    let gr = g.pointer + r * C, h = xhat.pointer + r * C, d = gx.pointer + r * C
                    for j in 0..<C {
                        let dh = gr[j] * (gv?.pointer[j] ?? 1)
                        d[j] += rstd.pointer[j] * (dh - m1.pointer[j] * invR - h[j] * m2.pointer[j] * invR)
                    }
                }
            }
        }
    }

    // MARK: dropout

    /// Inverted dropout: in training, each element is kept with probability 1 − p and scaled by 1/(1 − p);
    /// identity in evaluation mode or when p = 0.
    public func dropout(_ x: Var, p: Float, rng: inout RandomStream) -> Var {
        precondition(p >= 0 && p < 1, "dropout probability must be in [0, 1), got \(p)")
        if !training || p == 0 { return x }
        let s = shape(x)
        let mask = alloc(s.rows, s.cols)
        rng.fillBernoulli(mask, keep: 1 - p, scale: 1 / (1 - p))
        return dropout(x, mask: mask)
    }

    /// x ⊙ mask for a given (already scaled) mask of the same shape.
    public func dropout(_ x: Var, mask: Tensor) -> Var {
        let xv = value(x)
        precondition(mask.rows == xv.rows && mask.cols == xv.cols, "dropout mask shape differs from input")
        let out = alloc(xv.rows, xv.cols)
        for i in 0..<xv.count { out.pointer[i] = xv.pointer[i] * mask.pointer[i] }
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) { for i in 0..<gx.count { gx.pointer[i] += g.pointer[i] * mask.pointer[i] } }
        }
    }

    // MARK: distances and similarities

    /// D[i, j] = ‖aᵢ − bⱼ‖² for rows of a (m×d) and b (n×d).
    /// Backward: dA = 2·(rowsum(g)·a − g·B), dB = 2·(colsum(g)ᵀ·b − gᵀ·A).
    public func pairwiseSquaredDistances(_ a: Var, _ b: Var) -> Var {
        let av = value(a), bv = value(b)
        let out = alloc(av.rows, bv.rows)
        Reduce.pairwiseSquaredDistances(av, bv, into: out)
        return push(out, requiresGrad: needs(a) || needs(b)) { t, g in
            let d = av.cols
            if let (ga, beta) = t.gradTarget(a) {
                Linalg.gemm(g, bv, into: ga, alpha: -2, beta: beta)
                for i in 0..<av.rows {
                    let s = 2 * Elementwise.rowSum(g.pointer + i * g.cols, g.cols)
                    let dst = ga.pointer + i * d, src = av.pointer + i * d
                    for k in 0..<d { dst[k] += s * src[k] }
                }
            }
            if let (gb, beta) = t.gradTarget(b) {
                Linalg.gemm(g, transA: true, av, into: gb, alpha: -2, beta: beta)
                let cs = t.alloc(1, g.cols)
                Reduce.sumColumns(g, into: cs)
                for j in 0..<bv.rows {
                    let s = 2 * cs.pointer[j], dst = gb.pointer + j * d, src = bv.pointer + j * d
                    for k in 0..<d { dst[k] += s * src[k] }
                }
            }
        }
    }

    /// Cosine similarity of every row of a with every row of b → m×n (normalise rows, then one product).
    public func cosineSimilarity(_ a: Var, _ b: Var, eps: Float = 1e-12) -> Var {
        let na = l2NormalizeRows(a, eps: eps)
        let nb = a == b ? na : l2NormalizeRows(b, eps: eps)
        return matmul(na, nb, transB: true)
    }

    // MARK: losses

    /// Mean squared error mean((p − y)²) → 1×1 (fused).
    public func mseLoss(_ p: Var, _ y: Var) -> Var {
        let pv = value(p), yv = value(y)
        precondition(pv.rows == yv.rows && pv.cols == yv.cols, "mse shapes differ: \(pv.rows)×\(pv.cols) vs \(yv.rows)×\(yv.cols)")
        let n = pv.count
        let diff = alloc(pv.rows, pv.cols)
        // Float lanes over blocks of 512 elements, blocks summed in Double: the loss value is exact to
        // ~1e-7 relative whatever n (a plain Float accumulator drifts by ~1e-5 over 10⁶ elements, enough
        // to blur loss curves compared across rank counts).
        var total = 0.0
        var i = 0
        let a = pv.pointer, b = yv.pointer, d = diff.pointer
        while i + 8 <= n {
            var acc = SIMD8<Float>()
            let end = min(n - (n - i) % 8, i + 512)
            while i < end {
                let v = UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self) - UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(d + i).storeBytes(of: v, as: SIMD8<Float>.self)
                acc += v * v
                i += 8
            }
            total += Double(acc.sum())
        }
        while i < n { let v = a[i] - b[i]; d[i] = v; total += Double(v * v); i += 1 }
        let out = alloc(1, 1)
        out.pointer[0] = Float(total / Double(max(n, 1)))
        return push(out, requiresGrad: needs(p) || needs(y)) { t, g in
            let k = 2 * g.pointer[0] / Float(max(n, 1))
            if let gp = t.gradAccumulator(p) { Linalg.saxpy(n, k, diff.pointer, gp.pointer) }
            if let gy = t.gradAccumulator(y) { Linalg.saxpy(n, -k, diff.pointer, gy.pointer) }
        }
    }
}
