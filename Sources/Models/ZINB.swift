// The ZINB negative log-likelihood shared by the models with a count decoder (scNAME, scDEFR), as one
// fused tape op: eight-lane kernels for the zero and non-zero cases, the scalar element as reference.
import Autograd
import Foundation
import TensorCore

/// log(x!) for small integer counts (table), lgamma otherwise.
private let logFactorialTable: [Double] = {
    var t = [Double](repeating: 0, count: 1025)
    for i in 2..<t.count { t[i] = t[i - 1] + Foundation.log(Double(i)) }
    return t
}()

/// One ZINB element (either case): loss and d loss / d (mean, dispersion, dropout) logits. The
/// non-zero case is evaluated in Double (this scalar path only serves the G mod 8 tail of each row
/// and the tests), so it is also the accurate reference the eight-lane kernels are checked against.
func zinbElement(_ am: Float, _ ad: Float, _ ap: Float, x: Float, sf: Float, ridge: Float) -> (l: Float, gm: Float, gd: Float, gp: Float) {
    let eps: Float = 1e-10
    let em = Foundation.exp(am)
    let mClipped = em < 1e-5 || em > 1e6
    let mu = min(max(em, 1e-5), 1e6) * sf
    let ed = Foundation.exp(-Swift.abs(ad))
    let sp = max(ad, 0) + Foundation.log1p(ed)
    let sigD: Float = ad >= 0 ? 1 / (1 + ed) : ed / (1 + ed)
    let tClipped = sp < 1e-4 || sp > 1e4
    let theta = min(max(sp, 1e-4), 1e4)
    let ep = Foundation.exp(-Swift.abs(ap))
    let pi: Float = ap >= 0 ? 1 / (1 + ep) : ep / (1 + ep)
    let oneMinusPi: Float = ap >= 0 ? ep / (1 + ep) : 1 / (1 + ep)      // sigmoid(−ap), exact for π → 1
    if x < 1e-8 {
        let tme = theta + mu + eps
        let r = theta / tme
        let lr = Foundation.log(r)
        let p = Foundation.exp(theta * lr)
        let a = pi + oneMinusPi * p + eps
        let l = -Foundation.log(a) + ridge * pi * pi
        let dpi = -(1 - p) / a + 2 * ridge * pi
        let dth = -oneMinusPi * p * (lr + 1 - r) / a
        let dmu = oneMinusPi * p * r / a
        return (l, mClipped ? 0 : dmu * mu, tClipped ? 0 : dth * sigD, dpi * pi * oneMinusPi)
    }
    let e = Double(eps), th = Double(theta), t = th + e, m = Double(mu), xd = Double(x)
    let p = Double(pi), q = Double(oneMinusPi)
    var lgd: Double, psid: Double
    let xi = Int(min(x, 1e9))
    if Float(xi) == x && xi <= 32 {
        var prod = 1.0, inv = 0.0
        for k in 0..<xi { prod *= t + Double(k); inv += 1 / (t + Double(k)) }
        lgd = -Foundation.log(prod); psid = -inv
    } else {
        lgd = Foundation.lgamma(t) - Foundation.lgamma(xd + t)
        psid = digamma(t) - digamma(xd + t)
    }
    let l1 = Foundation.log1p(m / t)
    let l = lgd + logFactorial(x) + (th + xd) * l1 + xd * (Foundation.log(t) - Foundation.log(m + e)) - Foundation.log(q + e)
        + Double(ridge) * p * p
    // −(θ+x)μ/(θ(θ+μ)) + x/θ = (x − μ)/(θ + μ);  μ((θ+x)/(θ+μ) − x/(μ+ε)) = θ(μ − x)/(θ + μ) + xε/(μ + ε).
    let dth = psid + l1 + (xd - m) / (t + m)
    let gm = th * (m - xd) / (t + m) + xd * e / (m + e)
    let gp = p * q / (q + e) + 2 * Double(ridge) * p * p * q
    return (Float(l), mClipped ? 0 : Float(gm), tClipped ? 0 : Float(dth) * sigD, Float(gp))
}

/// lgamma(a + x) − lgamma(a) and ψ(a + x) − ψ(a) for a > 0, x ≥ 0, eight lanes at once, without
/// differencing two large lgammas: lanes with a < 8 are shifted up by 8 through the recurrences
/// (Γ(z + 8) = Γ(z)·Π_{k<8}(z + k), ψ(z + 8) = ψ(z) + Σ_{k<8} 1/(z + k)), then Stirling's series for
/// lgamma and the asymptotic series for ψ are differenced term by term, the leading terms in the
/// cancellation-free form (a − ½)·log1p(x/a) + x·log(a + x) − x. Truncation error < 1e-9 for arguments ≥ 8.
/// The shift's products run in two halves of four (each in Float range for a ≥ 1e-4, x ≤ 1e9) and
/// give Σ 1/(z + k) as P′/P, so it costs one log and five divisions.
@inline(__always)
func lgammaDigammaDifference8(_ a: F8, _ x: F8) -> (lgamma: F8, digamma: F8) {
    let shift = a .< 8
    let a1 = a.replacing(with: a + 8, where: shift)
    let b1 = a1 + x
    let ia = 1 / a1, ib = 1 / b1
    let lr = vlog1p(x * ia)
    // Stirling tails: lgamma ~ 1/(12z) − 1/(360z³) + 1/(1260z⁵); ψ ~ −1/(2z) − 1/(12z²) + 1/(120z⁴) − 1/(252z⁶).
    @inline(__always) func lgTail(_ i: F8) -> F8 {
        let i2 = i * i
        var t = F8(repeating: 1 / 1260) * i2
        t = F8(repeating: 1 / 360) - t
        t = F8(repeating: 1 / 12) - i2 * t
        return i * t
    }
    @inline(__always) func psiTail(_ i: F8) -> F8 {
        let i2 = i * i
        var t = F8(repeating: 1 / 252) * i2
        t = F8(repeating: 1 / 120) - t
        t = F8(repeating: 1 / 12) - i2 * t
        return F8(repeating: -0.5) * i - i2 * t
    }
    var lg = (a1 - 0.5) * lr + x * vlog(b1) - x + lgTail(ib) - lgTail(ia)
    var psi = lr + psiTail(ib) - psiTail(ia)
    if any(shift) {
        // P(z) = Π (z + k) over k < 4 and 4 ≤ k < 8, with P′ by the product rule (Σ 1/(z + k) = P′/P).
        let b = a + x
        var pa1 = F8(repeating: 1), da1 = F8(repeating: 0), pb1 = F8(repeating: 1), db1 = F8(repeating: 0)
        var pa2 = F8(repeating: 1), da2 = F8(repeating: 0), pb2 = F8(repeating: 1), db2 = F8(repeating: 0)
        for k in 0..<4 {
            let ak = a + Float(k), bk = b + Float(k)
            da1 = da1 * ak + pa1; pa1 = pa1 * ak
            db1 = db1 * bk + pb1; pb1 = pb1 * bk
            let ak2 = ak + 4, bk2 = bk + 4
            da2 = da2 * ak2 + pa2; pa2 = pa2 * ak2
            db2 = db2 * bk2 + pb2; pb2 = pb2 * bk2
        }
        // lgamma(a + x) − lgamma(a) = Δ(shifted) − log(P_b / P_a); the ratio's first half is split into
        // mantissa and binary exponent so the product of both halves cannot overflow.
        let r1 = pb1 / pa1, r2 = pb2 / pa2
        let bits = unsafeBitCast(r1, to: SIMD8<UInt32>.self)
        let e1 = F8(SIMD8<Int32>(truncatingIfNeeded: bits &>> 23) &- 127)
        let m1 = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F80_0000, to: F8.self)
        let logRatio = vlog(m1 * r2) + e1 * 0.693147180559945309
        // ψ(a + x) − ψ(a) = Δψ(shifted) + Σ 1/(a + k) − Σ 1/(b + k); P_a1·P_a2 ≤ 15⁸ for a < 8.
        let sumA = (da1 * pa2 + da2 * pa1) / (pa1 * pa2)
        let sumB = db1 / pb1 + db2 / pb2
        lg = lg.replacing(with: lg - logRatio, where: shift)
        psi = psi.replacing(with: psi + sumA - sumB, where: shift)
    }
    return (lg, psi)
}

/// The three ZINB heads' activations for eight elements: μ = clip(exp(am), 1e-5, 1e6)·sf and whether
/// it was clipped, θ = clip(softplus(ad), 1e-4, 1e4) and whether it was clipped, sigmoid(ad) (dθ/d ad
/// inside the clip), π = sigmoid(ap) and 1 − π = sigmoid(−ap) (exact for π → 1).
@inline(__always)
func zinbActivations8(_ am: F8, _ ad: F8, _ ap: F8, sf: Float)
    -> (mu: F8, mClipped: SIMDMask<SIMD8<Int32>>, theta: F8, tClipped: SIMDMask<SIMD8<Int32>>, sigD: F8, pi: F8, oneMinusPi: F8) {
    let em = vexp(am)
    let mClipped = (em .< 1e-5) .| (em .> 1e6)
    let mu = vclamp(em, 1e-5, 1e6) * sf
    let ed = vexp(-vabs(ad))
    let sp = vrelu(ad) + vlog1p(ed)
    let inv1 = 1 / (1 + ed)
    let sigD = (ed * inv1).replacing(with: inv1, where: ad .>= 0)
    let tClipped = (sp .< 1e-4) .| (sp .> 1e4)
    let theta = vclamp(sp, 1e-4, 1e4)
    let ep = vexp(-vabs(ap))
    let inv2 = 1 / (1 + ep)
    let pi = (ep * inv2).replacing(with: inv2, where: ap .>= 0)
    let oneMinusPi = (ep * inv2).replacing(with: inv2, where: ap .< 0)
    return (mu, mClipped, theta, tClipped, sigD, pi, oneMinusPi)
}

/// The zero-count case of ZINB for eight elements: loss (ridge included) and d loss / d (mean,
/// dispersion, dropout) logits, the formulas of `zinbElement`.
@inline(__always)
func zinbZero8(_ am: F8, _ ad: F8, _ ap: F8, sf: Float, ridge: Float) -> (F8, F8, F8, F8) {
    let eps: Float = 1e-10
    let (mu, mClipped, theta, tClipped, sigD, pi, _) = zinbActivations8(am, ad, ap, sf: sf)
    let r = theta / (theta + mu + eps)
    let lr = vlog(r)
    let p = vexp(theta * lr)
    let a = pi + (1 - pi) * p + eps
    let ia = 1 / a
    let l = -vlog(a) + ridge * pi * pi
    let dpi = -(1 - p) * ia + 2 * ridge * pi
    let dth = -(1 - pi) * p * (lr + 1 - r) * ia
    let dmu = (1 - pi) * p * r * ia
    let zero = F8(repeating: 0)
    return (l, (dmu * mu).replacing(with: zero, where: mClipped), (dth * sigD).replacing(with: zero, where: tClipped),
            dpi * pi * (1 - pi))
}

/// The non-zero case of ZINB (x > 0) for eight elements, log(x!) excluded: loss (ridge included)
/// and the three logit gradients, the formulas of `zinbElement`. `logSf` = log(sf).
@inline(__always)
func zinbNonzero8(_ am: F8, _ ad: F8, _ ap: F8, x: F8, sf: Float, logSf: Float, ridge: Float) -> (F8, F8, F8, F8) {
    let eps: Float = 1e-10
    let (mu, mClipped, theta, tClipped, sigD, pi, oneMinusPi) = zinbActivations8(am, ad, ap, sf: sf)
    // log(μ + ε) without a log: the clipped logit plus log(sf), ε by its first-order term.
    let logMu = vclamp(am, -11.512925464970229, 13.815510557964274) + logSf + eps / mu
    let te = theta + eps
    let (dlg, dpsi) = lgammaDigammaDifference8(te, x)
    let l1 = vlog1p(mu / te)
    let t2 = (theta + x) * l1 + x * (vlog(te) - logMu)
    let l = -dlg + t2 - vlog(oneMinusPi + eps) + ridge * pi * pi
    // d/dθ and μ·d/dμ with the large terms cancelled algebraically:
    // −(θ+x)μ/(θ(θ+μ)) + x/θ = (x − μ)/(θ + μ) and μ((θ+x)/(θ+μ) − x/μ) = θ(μ − x)/(θ + μ) (ε dropped).
    let invTM = 1 / (te + mu)
    let dth = -dpsi + l1 + (x - mu) * invTM
    let gmu = theta * (mu - x) * invTM + x * eps / (mu + eps)
    let piTerm = pi * oneMinusPi
    let gpi = piTerm / (oneMinusPi + eps) + 2 * ridge * pi * piTerm
    let zero = F8(repeating: 0)
    return (l, gmu.replacing(with: zero, where: mClipped), (dth * sigD).replacing(with: zero, where: tClipped), gpi)
}

/// log(x!) for x > 0 (table for integers ≤ 1024, lgamma otherwise).
@inline(__always)
func logFactorial(_ x: Float) -> Double {
    let xi = Int(min(x, 1e9))
    return Float(xi) == x && xi < logFactorialTable.count ? logFactorialTable[xi] : Foundation.lgamma(Double(x) + 1)
}

/// The ZINB kernel over B rows: `hp` points at row 0 of the logits, each row `rowStride` floats with
/// the mean, dispersion and dropout logits of gene j at `hrow[mo + j]`, `hrow[dOff + j]`, `hrow[po + j]`.
/// Writes d loss / d (mean, dispersion, dropout logit) of each element into `gp` (B × 3G: the three
/// blocks of a row side by side) and returns the summed loss.
func zinbKernel(_ hp: UnsafePointer<Float>, rowStride: Int, offsets: (mean: Int, dispersion: Int, dropout: Int),
                counts cp: UnsafePointer<Float>, rows b: Int, genes g: Int, sizeFactors: UnsafePointer<Float>, ridge: Float,
                gradients gp: UnsafeMutablePointer<Float>) -> Double {
    let (mo, dOff, po) = offsets
    var total = 0.0
    let g8 = g / 8 * 8
    // Two passes per row over the first ⌊G/8⌋·8 genes: the zero-count formula over all of them,
    // eight at a time (non-zero lanes contribute no loss there), then the non-zero entries,
    // compacted into groups of eight, through the non-zero formula, overwriting their gradients.
    // So the costlier non-zero case runs once per non-zero count, not once per mixed block.
    let nz = UnsafeMutablePointer<Int32>.allocate(capacity: max(g8, 1))
    defer { nz.deallocate() }
    for i in 0..<b {
        let sf = sizeFactors[i], logSf = Foundation.log(sf)
        let hrow = hp + i * rowStride, grow = gp + i * 3 * g, crow = cp + i * g
        var acc = F8(repeating: 0)
        var j = 0
        while j < g8 {
            let x = load8(crow + j)
            let (l, gm, gd, gpi) = zinbZero8(load8(hrow + mo + j), load8(hrow + dOff + j), load8(hrow + po + j), sf: sf, ridge: ridge)
            acc += l.replacing(with: 0, where: x .>= 1e-8)
            store8(gm, grow + j); store8(gd, grow + g + j); store8(gpi, grow + 2 * g + j)
            j += 8
        }
        var count = 0
        var logFact = 0.0
        for j in 0..<g8 {       // branch-free compaction of the non-zero genes
            nz[count] = Int32(j)
            count &+= crow[j] >= 1e-8 ? 1 : 0
        }
        var e = 0
        while e < count {
            let lanes = min(8, count - e)
            var am = F8(repeating: 0), ad = F8(repeating: 0), ap = F8(repeating: 0), x = F8(repeating: 1)
            for l in 0..<lanes {
                let c = Int(nz[e + l])
                am[l] = hrow[mo + c]; ad[l] = hrow[dOff + c]; ap[l] = hrow[po + c]; x[l] = crow[c]
                logFact += logFactorial(crow[c])
            }
            let (l, gm, gd, gpi) = zinbNonzero8(am, ad, ap, x: x, sf: sf, logSf: logSf, ridge: ridge)
            for q in 0..<lanes {
                let c = Int(nz[e + q])
                acc[q] += l[q]
                grow[c] = gm[q]; grow[g + c] = gd[q]; grow[2 * g + c] = gpi[q]
            }
            e += 8
        }
        var rowSum = Double(acc.sum()) + logFact
        while j < g {
            let e = zinbElement(hrow[mo + j], hrow[dOff + j], hrow[po + j], x: crow[j], sf: sf, ridge: ridge)
            rowSum += Double(e.l)
            grow[j] = e.gm; grow[g + j] = e.gd; grow[2 * g + j] = e.gp
            j += 1
        }
        total += rowSum
    }
    return total
}

extension Tape {
    /// ZINB negative log-likelihood of scNAME / DCA (MODELS.md §2.4), mean over the batch × genes.
    ///
    /// `heads` is B × 3G: columns [0, G) the mean logits (μ = clip(exp(·), 1e-5, 1e6)·s_i),
    /// [G, 2G) the dispersion logits (θ = clip(softplus(·), 1e-4, 1e4)), [2G, 3G) the dropout logits
    /// (π = sigmoid(·)). `counts` is B × G (raw counts), `sizeFactors` one per row. ε = 1e-10 as in
    /// the reference; ridge λ·π² is added per element. Eight genes at a time go through `zinbZero8`
    /// and, compacted, `zinbNonzero8` (lgamma/digamma differences from the shifted Stirling series,
    /// `lgammaDigammaDifference8`); the row tail (G mod 8) through the scalar `zinbElement`.
    public func zinbLoss(_ heads: Var, counts: Tensor, sizeFactors: UnsafePointer<Float>, ridge: Float = 1) -> Var {
        let hv = value(heads)
        let b = counts.rows, g = counts.cols
        precondition(hv.rows == b && hv.cols == 3 * g, "zinbLoss: heads \(hv.rows)×\(hv.cols), counts \(b)×\(g)")
        let grad = alloc(b, 3 * g)
        let total = zinbKernel(hv.pointer, rowStride: 3 * g, offsets: (0, g, 2 * g), counts: counts.pointer, rows: b, genes: g,
                               sizeFactors: sizeFactors, ridge: ridge, gradients: grad.pointer)
        let n = Float(max(b * g, 1))
        let out = alloc(1, 1)
        out.pointer[0] = Float(total / Double(max(b * g, 1)))
        return push(out, requiresGrad: requiresGrad(heads)) { t, go in
            guard let (gh, beta) = t.gradTarget(heads) else { return }
            let s = go.pointer[0] / n
            let dst = gh.pointer, src = grad.pointer
            if beta == 0 { for e in 0..<gh.count { dst[e] = s * src[e] } } else { for e in 0..<gh.count { dst[e] += s * src[e] } }
        }
    }

    /// The same likelihood with ONE logit matrix for all three heads (B × G: μ = clip(exp(h)),
    /// θ = clip(softplus(h)), π = sigmoid(h) of the same h, as scDEFR's single `layer_zinb` module
    /// called three times); the gradient is the sum of the three heads' gradients.
    public func zinbLossTied(_ logits: Var, counts: Tensor, sizeFactors: UnsafePointer<Float>, ridge: Float = 0) -> Var {
        let hv = value(logits)
        let b = counts.rows, g = counts.cols
        precondition(hv.rows == b && hv.cols == g, "zinbLossTied: logits \(hv.rows)×\(hv.cols), counts \(b)×\(g)")
        let parts = alloc(max(b, 1), 3 * g)
        let total = zinbKernel(hv.pointer, rowStride: g, offsets: (0, 0, 0), counts: counts.pointer, rows: b, genes: g,
                               sizeFactors: sizeFactors, ridge: ridge, gradients: parts.pointer)
        let grad = alloc(max(b, 1), g)
        for i in 0..<b {
            let p = parts.pointer + i * 3 * g, d = grad.pointer + i * g
            for j in 0..<g { d[j] = p[j] + p[g + j] + p[2 * g + j] }
        }
        let n = Float(max(b * g, 1))
        let out = alloc(1, 1)
        out.pointer[0] = Float(total / Double(max(b * g, 1)))
        return push(out, requiresGrad: requiresGrad(logits)) { t, go in
            guard let (gh, beta) = t.gradTarget(logits) else { return }
            let s = go.pointer[0] / n
            let dst = gh.pointer, src = grad.pointer
            if beta == 0 { for e in 0..<gh.count { dst[e] = s * src[e] } } else { for e in 0..<gh.count { dst[e] += s * src[e] } }
        }
    }
}
