// CICL's ops: the residual LayerNorm of its encoder blocks, the two contrastive losses fused into
// one pass over the batch's similarity rows (value and gradient together, in row blocks, so no
// 2B × 2B matrix is ever held), the noisy views and the per-cell dropout masks.
// Legend: B cells in the (gathered) batch, b on this rank, d the projection width, G genes.
import Autograd
import Collectives
import Foundation
import TensorCore

// MARK: - SIMD row helpers

@inline(__always) private func rowSum8(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F8(repeating: 0), j = 0
    while j + 8 <= n { acc += load8(p + j); j += 8 }
    var s = acc.sum()
    while j < n { s += p[j]; j += 1 }
    return s
}

@inline(__always) private func centredSquares8(_ p: UnsafePointer<Float>, _ n: Int, _ mu: Float) -> Float {
    var acc = F8(repeating: 0), j = 0
    let m = F8(repeating: mu)
    while j + 8 <= n { let d = load8(p + j) - m; acc += d * d; j += 8 }
    var s = acc.sum()
    while j < n { let d = p[j] - mu; s += d * d; j += 1 }
    return s
}

@inline(__always) private func dot8(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F8(repeating: 0), j = 0
    while j + 8 <= n { acc += load8(a + j) * load8(b + j); j += 8 }
    var s = acc.sum()
    while j < n { s += a[j] * b[j]; j += 1 }
    return s
}

extension Tape {
    // MARK: - residual LayerNorm

    /// y = LN(x + m ⊙ r)·γ + β over each row (eps inside the square root, biased variance, as
    /// `torch.nn.LayerNorm`), fusing the residual add, the dropout mask `m` on the branch (already
    /// scaled by 1/(1 − p); nil: no mask) and the normalisation into one pass. γ, β are 1×C or nil
    /// (the reference's LayerNorm built inside `forward`, weight 1 and bias 0, never learned).
    /// Backward: with ĥ the normalised sum and dh = g ⊙ γ, ds = rstd·(dh − mean(dh) − ĥ·mean(dh ⊙ ĥ));
    /// dx = ds, dr = m ⊙ ds, dγ = Σ_rows g ⊙ ĥ, dβ = Σ_rows g.
    public func residualLayerNorm(_ x: Var, _ r: Var, mask: Tensor? = nil, gamma: Var?, beta: Var?, eps: Float = 1e-5) -> Var {
        let xv = value(x), rv = value(r)
        let R = xv.rows, C = xv.cols
        precondition(rv.rows == R && rv.cols == C, "residualLayerNorm: \(R)×\(C) + \(rv.rows)×\(rv.cols)")
        if let mask { precondition(mask.rows == R && mask.cols == C, "residualLayerNorm: mask \(mask.rows)×\(mask.cols)") }
        let gv = gamma.map { value($0) }, bv = beta.map { value($0) }
        if let gv { precondition(gv.count == C, "residualLayerNorm: gamma has \(gv.count) elements, expected \(C)") }
        if let bv { precondition(bv.count == C, "residualLayerNorm: beta has \(bv.count) elements, expected \(C)") }
        let xhat = alloc(R, C), rstd = alloc(max(R, 1), 1), out = alloc(R, C)
        let invC = 1 / Float(C)
        for i in 0..<R {
            let xp = xv.pointer + i * C, rp = rv.pointer + i * C, h = xhat.pointer + i * C, o = out.pointer + i * C
            if let mask {
                let mp = mask.pointer + i * C
                for j in 0..<C { h[j] = xp[j] + mp[j] * rp[j] }
            } else {
                for j in 0..<C { h[j] = xp[j] + rp[j] }
            }
            let mu = rowSum8(h, C) * invC
            let rs = 1 / (centredSquares8(h, C, mu) * invC + eps).squareRoot()
            rstd.pointer[i] = rs
            for j in 0..<C { h[j] = (h[j] - mu) * rs }
            switch (gv, bv) {
            case let (g?, b?): for j in 0..<C { o[j] = h[j] * g.pointer[j] + b.pointer[j] }
            case let (g?, nil): for j in 0..<C { o[j] = h[j] * g.pointer[j] }
            case let (nil, b?): for j in 0..<C { o[j] = h[j] + b.pointer[j] }
            case (nil, nil): o.update(from: h, count: C)
            }
        }
        let rg = requiresGrad(x) || requiresGrad(r) || (gamma.map(requiresGrad) ?? false) || (beta.map(requiresGrad) ?? false)
        return push(out, requiresGrad: rg) { t, g in
            if let beta, let gb = t.gradAccumulator(beta) { Reduce.sumColumns(g, into: gb, beta: 1) }
            if let gamma, let gg = t.gradAccumulator(gamma) {
                let gp = gg.pointer
                for i in 0..<R { let gr = g.pointer + i * C, h = xhat.pointer + i * C; for j in 0..<C { gp[j] += gr[j] * h[j] } }
            }
            let gx = t.gradAccumulator(x), gr = t.gradAccumulator(r)
            guard gx != nil || gr != nil else { return }
            let ds = t.alloc(1, C)
            for i in 0..<R {
                let go = g.pointer + i * C, h = xhat.pointer + i * C, d = ds.pointer
                if let gv { for j in 0..<C { d[j] = go[j] * gv.pointer[j] } } else { d.update(from: go, count: C) }
                let m1 = rowSum8(d, C) * invC, m2 = dot8(d, h, C) * invC
                let rs = rstd.pointer[i]
                for j in 0..<C { d[j] = rs * (d[j] - m1 - h[j] * m2) }
                if let gx { let p = gx.pointer + i * C; for j in 0..<C { p[j] += d[j] } }
                if let gr {
                    let p = gr.pointer + i * C
                    if let mask { let mp = mask.pointer + i * C; for j in 0..<C { p[j] += mp[j] * d[j] } } else { for j in 0..<C { p[j] += d[j] } }
                }
            }
        }
    }
}

// MARK: - the contrastive losses

/// The instance InfoNCE loss and the cluster-aware pair loss of CICL's `para` objective
/// (MODELS.md §4.3; `learner/contrastive_utils.py::InfoNCELoss`, `CirculatePairConLoss`) on unit
/// projections F = [U2; U3] (2B × d) of a batch of B cells with pseudo-labels y:
///   L_ins = (1/B) Σ_i [log Σ_j exp(u2_i·u3_j/T) − u2_i·u3_i/T]          (one-directional)
///   L_clu = Σ_c (1/(2 n_c)) Σ_{p: y(p) = c} [log(e_p + Σ_{q: y(q) ≠ c} exp(F_p·F_q/T)) − log e_p]
/// with e_p = exp(u2_i·u3_i/T) for both copies p ∈ {u2_i, u3_i} of cell i, n_c the cells of cluster
/// c in the batch, the sum over the clusters present (not their mean, as the reference). Cells of
/// the anchor's own pseudo-cluster are never negatives: a B×B label mask, not a loop over clusters.
public enum CICLContrastive {
    /// Rows of anchors per block: the block's similarity rows are 2B wide, so memory is O(block × B).
    static let blockRows = 256

    /// Adds the two losses' terms of the `anchors` (cell positions in 0..<B; each contributes its
    /// u2 and its u3 row) and the gradient of L_ins + λ·L_clu with respect to F (all 2B rows, also the
    /// non-anchor ones through the negatives) into `grad` (2B × d, row-major). Returns the partial
    /// sums of L_ins and L_clu (already weighted, so summing them over a partition of the cells gives
    /// the batch's L_ins and L_clu). Labels are any Int32 (compared exactly up to 2²⁴).
    public static func accumulate(features f: UnsafePointer<Float>, cells B: Int, dim d: Int, labels: [Int32],
                                  anchors: [Int], temperature: Float, lambda: Float,
                                  grad: UnsafeMutablePointer<Float>) -> (instance: Double, cluster: Double) {
        precondition(labels.count == B, "contrastive loss: \(labels.count) labels for \(B) cells")
        guard B > 0, !anchors.isEmpty else { return (0, 0) }
        let n2 = 2 * B
        let invT = 1 / temperature
        var clusterSize: [Int32: Int] = [:]
        for y in labels { clusterSize[y, default: 0] += 1 }
        // Labels of all 2B rows as Floats, compared eight at a time (exact for |label| < 2²⁴).
        var rowLabel = [Float](repeating: 0, count: n2)
        for i in 0..<B { rowLabel[i] = Float(labels[i]); rowLabel[B + i] = Float(labels[i]) }
        let anchorRows = anchors + anchors.map { B + $0 }
        let block = min(blockRows, anchorRows.count)
        let a = UnsafeMutablePointer<Float>.allocate(capacity: block * d)
        let s = UnsafeMutablePointer<Float>.allocate(capacity: block * n2)
        let da = UnsafeMutablePointer<Float>.allocate(capacity: block * d)
        defer { a.deallocate(); s.deallocate(); da.deallocate() }
        var lIns = 0.0, lClu = 0.0
        let wIns = 1 / Double(B)
        rowLabel.withUnsafeBufferPointer { labp in
            let lab = labp.baseAddress!
            var r0 = 0
            while r0 < anchorRows.count {
                let rn = min(block, anchorRows.count - r0)
                for r in 0..<rn { (a + r * d).update(from: f + anchorRows[r0 + r] * d, count: d) }
                // S = A · Fᵀ (raw dot products), then each row is turned into dL/dS·T in place.
                Linalg.sgemm(transA: false, transB: true, m: rn, n: n2, k: d, alpha: 1, a: a, lda: d, b: f, ldb: d,
                             beta: 0, c: s, ldc: n2)
                for r in 0..<rn {
                    let p = anchorRows[r0 + r]
                    let isU2 = p < B
                    let cell = isU2 ? p : p - B
                    let positive = isU2 ? B + cell : cell
                    let y = labels[cell]
                    let row = s + r * n2
                    // Shift by the row's maximum: every exponent ≤ 0.
                    var mx = -Float.infinity
                    for q in 0..<n2 { mx = max(mx, row[q]) }
                    let sPos = row[positive]
                    // e_q = exp((S_q − max)/T) in place; the masked sum of the other clusters' e_q alongside.
                    let yv = F8(repeating: Float(y)), shift = F8(repeating: mx), it = F8(repeating: invT)
                    var ng8 = F8(repeating: 0)
                    var q = 0
                    while q + 8 <= n2 {
                        let e = vexp((load8(row + q) - shift) * it)
                        store8(e, row + q)
                        ng8 += e.replacing(with: 0, where: load8(lab + q) .== yv)
                        q += 8
                    }
                    var ng = Double(ng8.sum())
                    while q < n2 {
                        let e = Foundation.exp((row[q] - mx) * invT)
                        row[q] = e
                        if lab[q] != Float(y) { ng += Double(e) }
                        q += 1
                    }
                    let logPos = Double((sPos - mx) * invT)
                    let pos = Foundation.exp(logPos)
                    // Pair loss: log(e_p + Ng) − log e_p, weight 1/(2 n_c) (λ only in the gradient: L_clu is returned unweighted).
                    let wLoss = 1 / Double(2 * clusterSize[y]!), wc = Double(lambda) * wLoss
                    let denP = pos + ng
                    lClu += wLoss * (Foundation.log(max(denP, 1e-300)) - logPos)
                    let cNeg = Float(wc / max(denP, 1e-300))
                    // InfoNCE over the U3 columns (u2 anchors only): log Σ_j e_{B+j} − log e_{B+i}, weight 1/B.
                    var cIns: Float = 0
                    if isU2 {
                        let den = Double(rowSum8(row + B, B))
                        lIns += wIns * (Foundation.log(max(den, 1e-300)) - logPos)
                        cIns = Float(wIns / max(den, 1e-300))
                    }
                    // dL/dS_q · T in place: the masked negatives cNeg·e_q, plus the InfoNCE softmax cIns·e_q
                    // over the U3 columns; then the positive's −terms.
                    let cn = F8(repeating: cNeg), ci = F8(repeating: cIns)
                    for (lo, hi, insWeight) in [(0, B, Float(0)), (B, n2, cIns)] {
                        let cw = insWeight == 0 ? F8(repeating: 0) : ci
                        q = lo
                        while q + 8 <= hi {
                            let e = load8(row + q)
                            store8((cn * e).replacing(with: 0, where: load8(lab + q) .== yv) + cw * e, row + q)
                            q += 8
                        }
                        while q < hi {
                            let e = row[q]
                            row[q] = (lab[q] != Float(y) ? cNeg * e : 0) + insWeight * e
                            q += 1
                        }
                    }
                    if isU2 { row[positive] -= Float(wIns) }
                    row[positive] += Float(wc * pos / max(denP, 1e-300) - wc)
                    for q in 0..<n2 { row[q] *= invT }
                }
                // dF += Wᵀ·A (the negatives' side) and dF[anchor rows] += W·F (the anchors' side).
                Linalg.sgemm(transA: true, transB: false, m: n2, n: d, k: rn, alpha: 1, a: s, lda: n2, b: a, ldb: d,
                             beta: 1, c: grad, ldc: d)
                Linalg.sgemm(transA: false, transB: false, m: rn, n: d, k: n2, alpha: 1, a: s, lda: n2, b: f, ldb: d,
                             beta: 0, c: da, ldc: d)
                for r in 0..<rn {
                    let dst = grad + anchorRows[r0 + r] * d, src = da + r * d
                    for c in 0..<d { dst[c] += src[c] }
                }
                r0 += rn
            }
        }
        return (lIns, lClu)
    }
}

extension Tape {
    /// Collective when `negatives` is `.global`. L_ins + λ·L_clu of this rank's cells: `features` is
    /// 2b × d, rows 0..<b the unit projections u2 of the cells `ids` (in that order), rows b..<2b their
    /// u3; `labels` their pseudo-labels. Returns the loss and its two terms (L_ins, L_clu).
    ///
    /// `.global`: the projections, ids and labels of every rank are all-gathered and put in global-id
    /// order (so the arithmetic does not depend on how cells are spread over ranks); each rank
    /// computes the terms of its own anchors against all 2B rows, and one allreduce of the 2B × d
    /// gradient (and the two partial sums) completes the batch's loss on every rank. The value is the
    /// global batch loss on every rank; the backward pass hands this rank's rows of its gradient on,
    /// scaled by B/b, because the Trainer seeds each rank's backward with b/B (its share of a loss that
    /// is a mean over its own rows) and sums the ranks' gradients.
    /// `.local`: the loss of this rank's b cells alone (no communication), as the reference under DDP.
    /// With b = 0 the collectives are still entered (and nothing is returned to differentiate).
    public func ciclContrastiveLoss(_ features: Var, ids: [Int64], labels: [Int32], temperature: Float, lambda: Float,
                                    negatives: NegativeScope, comm: Communicator) throws -> (loss: Var, instance: Float, cluster: Float) {
        let fv = value(features)
        let b = ids.count, d = fv.cols
        precondition(fv.rows == 2 * b && labels.count == b, "ciclContrastiveLoss: \(fv.rows) feature rows for \(b) cells")
        let localGrad = alloc(max(2 * b, 1), d)
        var ins = 0.0, clu = 0.0
        var scale: Float = 1
        switch negatives {
        case .local:
            localGrad.fill(0)
            (ins, clu) = CICLContrastive.accumulate(features: fv.pointer, cells: b, dim: d, labels: labels, anchors: Array(0..<b),
                                                    temperature: temperature, lambda: lambda, grad: localGrad.pointer)
        case .global:
            let (all, counts) = try comm.allgatherv(fv.scalars)
            let allIds = try comm.allgatherv(ids).values
            let allLabels = try comm.allgatherv(labels).values
            let bTotal = allIds.count
            // Gathered index g of (rank r, local k) → its u2 and u3 rows in `all`.
            var u2Row = [Int](repeating: 0, count: bTotal), u3Row = [Int](repeating: 0, count: bTotal)
            var g = 0, offset = 0, myFirst = 0
            for (r, c) in counts.enumerated() {
                let br = c / (2 * max(d, 1))
                if r == comm.rank { myFirst = g }
                for k in 0..<br { u2Row[g] = offset / max(d, 1) + k; u3Row[g] = offset / max(d, 1) + br + k; g += 1 }
                offset += c
            }
            let order = allIds.indices.sorted { allIds[$0] < allIds[$1] }
            var position = [Int](repeating: 0, count: bTotal)
            for (p, g) in order.enumerated() { position[g] = p }
            let f = alloc(max(2 * bTotal, 1), d)
            var sortedLabels = [Int32](repeating: 0, count: bTotal)
            all.withUnsafeBufferPointer { ap in
                for g in 0..<bTotal {
                    let p = position[g]
                    (f.pointer + p * d).update(from: ap.baseAddress! + u2Row[g] * d, count: d)
                    (f.pointer + (bTotal + p) * d).update(from: ap.baseAddress! + u3Row[g] * d, count: d)
                    sortedLabels[p] = allLabels[g]
                }
            }
            let anchors = (0..<b).map { position[myFirst + $0] }
            let grad = zeros(max(2 * bTotal, 1), d)
            let partial = CICLContrastive.accumulate(features: f.pointer, cells: bTotal, dim: d, labels: sortedLabels, anchors: anchors,
                                                     temperature: temperature, lambda: lambda, grad: grad.pointer)
            try comm.allreduce(UnsafeMutableBufferPointer(start: grad.pointer, count: 2 * bTotal * d), op: .sum)
            var sums = [partial.instance, partial.cluster]
            try comm.allreduce(&sums, op: .sum)
            (ins, clu) = (sums[0], sums[1])
            for (k, p) in anchors.enumerated() {
                (localGrad.pointer + k * d).update(from: grad.pointer + p * d, count: d)
                (localGrad.pointer + (b + k) * d).update(from: grad.pointer + (bTotal + p) * d, count: d)
            }
            scale = b > 0 ? Float(bTotal) / Float(b) : 0
        }
        let out = alloc(1, 1)
        out.pointer[0] = Float(ins + Double(lambda) * clu)
        let v = push(out, requiresGrad: requiresGrad(features) && b > 0) { t, go in
            guard let gx = t.gradAccumulator(features) else { return }
            Linalg.saxpy(2 * b * d, go.pointer[0] * scale, localGrad.pointer, gx.pointer)
        }
        return (v, Float(ins), Float(clu))
    }
}

// MARK: - views and dropout masks

/// Per-cell random streams: everything random about a cell in an epoch comes from a stream keyed by
/// (seed, purpose, epoch, global cell id, view), so a batch gets the same views and masks whatever
/// the rank count and wherever the cell sits in its shard.
public enum CICLStreams {
    public static func stream(seed: UInt64, purpose: RandomPurpose, epoch: Int, cell: Int64, view: Int) -> RandomStream {
        RandomStream(seed: seed, purpose: purpose).split(UInt64(epoch)).split(UInt64(bitPattern: cell)).split(UInt64(view))
    }

    /// Two standard normals from one 64-bit draw (Box–Muller on two 24-bit uniforms, u1 ∈ (0, 1]).
    @inline(__always) static func normalPair(_ rng: inout RandomStream) -> (Float, Float) {
        let r = rng.next()
        let u1 = Float((r >> 40) + 1) * (1 / 16_777_216)
        let u2 = Float((r >> 16) & 0xFF_FFFF) * (1 / 16_777_216)
        let radius = (-2 * Foundation.log(u1)).squareRoot(), angle = 2 * Float.pi * u2
        return (radius * Foundation.cos(angle), radius * Foundation.sin(angle))
    }

    /// The reference's `random_gaussian_noise(p = 0.8)`: ⌊p·G⌋ genes drawn without replacement
    /// get N(0, σ²) added. Rows k (view 1) and b + k (view 2) of `out` (2b × G) are the two views of
    /// row k of `clean` (b × G), the cell `ids[k]`. With `geneScale`, gene j's noise is N(0, (σ·geneScale[j])²).
    public static func views(clean: Tensor, ids: [Int64], seed: UInt64, epoch: Int, fraction: Float, std: Float,
                             geneScale: [Float]? = nil, into out: Tensor) {
        let b = clean.rows, g = clean.cols
        precondition(ids.count == b && out.rows == 2 * b && out.cols == g, "views: \(b) cells into \(out.rows)×\(out.cols)")
        precondition(geneScale == nil || geneScale!.count == g, "views: \(geneScale?.count ?? 0) gene scales for \(g) genes")
        let sigma = geneScale?.map { std * $0 } ?? []
        let m = min(g, Int(Float(g) * fraction))
        // Floyd's sampling of the smaller of the two sets (noised or left alone): a uniform m-subset.
        let markNoised = m <= g - m
        let sampled = markNoised ? m : g - m
        var marked = [Bool](repeating: false, count: g)
        for k in 0..<b {
            for view in 0..<2 {
                var rng = stream(seed: seed, purpose: .augmentation, epoch: epoch, cell: ids[k], view: view)
                for j in 0..<g { marked[j] = false }
                for j in (g - sampled)..<g {
                    let t = rng.int(below: j + 1)
                    if marked[t] { marked[j] = true } else { marked[t] = true }
                }
                let src = clean.pointer + k * g, dst = out.pointer + (view * b + k) * g
                dst.update(from: src, count: g)
                var spare: Float? = nil
                for j in 0..<g where marked[j] == markNoised {
                    let z: Float
                    if let s = spare { z = s; spare = nil } else { let (a, c) = normalPair(&rng); z = a; spare = c }
                    dst[j] += (sigma.isEmpty ? std : sigma[j]) * z
                }
            }
        }
    }
}

/// Inverted-dropout masks (keep with probability 1 − p, scaled by 1/(1 − p)) drawn row by row from
/// per-cell streams: row v·b + k belongs to view v of cell `ids[k]`. Masks are drawn in the order
/// the encoder asks for them, so each cell's masks depend only on its stream.
public struct CICLDropoutMasks {
    var streams: [RandomStream]
    public let p: Float
    let threshold: UInt32
    let scale: Float

    public init(seed: UInt64, epoch: Int, ids: [Int64], views: Int, p: Float) {
        streams = (0..<views).flatMap { v in ids.map { CICLStreams.stream(seed: seed, purpose: .dropout, epoch: epoch, cell: $0, view: v) } }
        self.p = p
        threshold = UInt32(min(Double(p) * 4_294_967_296, 4_294_967_295))
        scale = 1 / (1 - p)
    }

    public var rows: Int { streams.count }

    /// The next rows × cols mask (two keep decisions per 64-bit draw).
    public mutating func next(cols: Int, tape: Tape) -> Tensor {
        let m = tape.alloc(streams.count, cols)
        for r in 0..<streams.count {
            let row = m.pointer + r * cols
            var j = 0
            while j < cols {
                let x = streams[r].next()
                row[j] = UInt32(truncatingIfNeeded: x) < threshold ? 0 : scale
                if j + 1 < cols { row[j + 1] = UInt32(truncatingIfNeeded: x >> 32) < threshold ? 0 : scale }
                j += 2
            }
        }
        return m
    }
}
