// Self-attention softmax(Z Zᵀ)·Z over rows spread across ranks, never as an n × n matrix: exactly, by
// row blocks against the all-gathered Z with an online softmax (FlashAttention's recurrence), or
// restricted to the edges of a graph operator (each row attends to its graph neighbours).
import Autograd
import Collectives
import Foundation
import TensorCore

extension Tape {
    /// out_i = Σ_j softmax_j(z_i·z_j)·z_j over every row j of every rank (i included). Collective: one
    /// allgatherv of n × d forward, one reduce-scatter of n × d backward. Memory O(n·d + block²);
    /// time O(n_local·n·d). The backward recomputes the scores block by block from the saved row
    /// log-sum-exps: dV_j = Σ_i P_ij g_i, dS_ij = P_ij (g_i·z_j − g_i·out_i), dQ_i = Σ_j dS_ij z_j,
    /// dK_j = Σ_i dS_ij z_i; Z is query, key and value at once, so the three add up.
    public func globalSelfAttention(_ z: Var, comm: Communicator, blockRows: Int = 256, blockCols: Int = 2048) throws -> Var {
        let zv = value(z), n = zv.rows, d = zv.cols
        let (all, counts) = try comm.allgatherv(zv.scalars)
        let total = all.count / max(d, 1)
        let rowCounts = counts.map { $0 / max(d, 1) }
        let offset = rowCounts.prefix(comm.rank).reduce(0, +)
        let out = alloc(n, d), lse = alloc(max(n, 1), 1)
        let bc = min(blockCols, max(total, 1)), br = min(blockRows, max(n, 1))
        let s = alloc(br, bc)
        all.withUnsafeBufferPointer { ap in
            let zp = ap.baseAddress!
            var r0 = 0
            while r0 < n {
                let rh = min(br, n - r0)
                let q = zv.pointer + r0 * d, o = out.pointer + r0 * d
                o.update(repeating: 0, count: rh * d)
                var mx = [Float](repeating: -.infinity, count: rh), l = [Float](repeating: 0, count: rh)
                var c0 = 0
                while c0 < total {
                    let cw = min(bc, total - c0)
                    Linalg.sgemm(transA: false, transB: true, m: rh, n: cw, k: d, alpha: 1, a: q, lda: d,
                                 b: zp + c0 * d, ldb: d, beta: 0, c: s.pointer, ldc: cw)
                    for i in 0..<rh {
                        let row = s.pointer + i * cw
                        var m = mx[i]
                        for j in 0..<cw { m = max(m, row[j]) }
                        let rescale = mx[i] == -.infinity ? 0 : Foundation.exp(mx[i] - m)
                        var sum: Float = 0
                        for j in 0..<cw { let e = Foundation.exp(row[j] - m); row[j] = e; sum += e }
                        l[i] = l[i] * rescale + sum
                        let oi = o + i * d
                        for t in 0..<d { oi[t] *= rescale }
                        mx[i] = m
                    }
                    // out_block += P · Z_chunk
                    Linalg.sgemm(transA: false, transB: false, m: rh, n: d, k: cw, alpha: 1, a: s.pointer, lda: cw,
                                 b: zp + c0 * d, ldb: d, beta: 1, c: o, ldc: d)
                    c0 += cw
                }
                for i in 0..<rh {
                    let inv = 1 / l[i]
                    for t in 0..<d { o[i * d + t] *= inv }
                    lse.pointer[r0 + i] = mx[i] + Foundation.log(l[i])
                }
                r0 += rh
            }
        }
        return push(out, requiresGrad: requiresGrad(z)) { t, g in
            guard let gz = t.gradAccumulator(z) else { return }
            var dAll = [Float](repeating: 0, count: total * d)
            let ds = t.alloc(br, bc), dp = t.alloc(br, bc)
            all.withUnsafeBufferPointer { ap in
                dAll.withUnsafeMutableBufferPointer { dap in
                    let zp = ap.baseAddress!, dz = dap.baseAddress!
                    var r0 = 0
                    while r0 < n {
                        let rh = min(br, n - r0)
                        let q = zv.pointer + r0 * d, gq = g.pointer + r0 * d, o = out.pointer + r0 * d, dq = gz.pointer + r0 * d
                        var dot = [Float](repeating: 0, count: rh)
                        for i in 0..<rh { var acc: Float = 0; for t in 0..<d { acc += gq[i * d + t] * o[i * d + t] }; dot[i] = acc }
                        var c0 = 0
                        while c0 < total {
                            let cw = min(bc, total - c0)
                            let zc = zp + c0 * d
                            Linalg.sgemm(transA: false, transB: true, m: rh, n: cw, k: d, alpha: 1, a: q, lda: d,
                                         b: zc, ldb: d, beta: 0, c: ds.pointer, ldc: cw)
                            Linalg.sgemm(transA: false, transB: true, m: rh, n: cw, k: d, alpha: 1, a: gq, lda: d,
                                         b: zc, ldb: d, beta: 0, c: dp.pointer, ldc: cw)
                            for i in 0..<rh {
                                let p = ds.pointer + i * cw, dpi = dp.pointer + i * cw, li = lse.pointer[r0 + i]
                                for j in 0..<cw {
                                    let pij = Foundation.exp(p[j] - li)
                                    p[j] = pij                       // P
                                    dpi[j] = pij * (dpi[j] - dot[i]) // dS
                                }
                            }
                            // dV_c += Pᵀ g_b;  dK_c += dSᵀ q_b;  dQ_b += dS z_c
                            Linalg.sgemm(transA: true, transB: false, m: cw, n: d, k: rh, alpha: 1, a: ds.pointer, lda: cw,
                                         b: gq, ldb: d, beta: 1, c: dz + c0 * d, ldc: d)
                            Linalg.sgemm(transA: true, transB: false, m: cw, n: d, k: rh, alpha: 1, a: dp.pointer, lda: cw,
                                         b: q, ldb: d, beta: 1, c: dz + c0 * d, ldc: d)
                            Linalg.sgemm(transA: false, transB: false, m: rh, n: d, k: cw, alpha: 1, a: dp.pointer, lda: cw,
                                         b: zc, ldb: d, beta: 1, c: dq, ldc: d)
                            c0 += cw
                        }
                        r0 += rh
                    }
                }
            }
            // Every rank's contributions to the rows of rank r, summed at rank r.
            var mine = [Float](repeating: 0, count: max(n * d, 1))
            comm.orAbort {
                try dAll.withUnsafeBufferPointer { src in
                    try mine.withUnsafeMutableBufferPointer { dst in
                        try comm.reduceScatter(src, into: dst, counts: rowCounts.map { $0 * d }, op: .sum)
                    }
                }
            }
            _ = offset
            for e in 0..<(n * d) { gz.pointer[e] += mine[e] }
        }
    }

    /// out_i = Σ_{e ∈ row i} softmax_e(z_{rowSlot i}·z_{slot e})·z_{slot e}: attention restricted to the
    /// entries of `op` (its values are ignored), the halo rows fetched from their owners. Collective
    /// when `op` is distributed. Rows without entries give 0.
    public func graphSelfAttention(_ z: Var, _ op: GraphOperator) throws -> Var {
        let zv = value(z), d = zv.cols
        let halo = try op.fetchHalo(zv)
        let out = alloc(op.rows, d)
        let p = alloc(max(op.nnz, 1), 1)
        func row(_ s: Int, _ hp: UnsafePointer<Float>) -> UnsafePointer<Float> {
            s < op.localInputs ? UnsafePointer(zv.pointer + s * d) : hp + (s - op.localInputs) * d
        }
        halo.withUnsafeBufferPointer { hb in
            let hp = hb.baseAddress ?? UnsafePointer(zv.pointer)
            for i in 0..<op.rows {
                let qi = row(Int(op.rowSlot[i]), hp)
                let lo = op.rowPtr[i], hi = op.rowPtr[i + 1]
                var m = -Float.infinity
                for e in lo..<hi {
                    let kj = row(Int(op.slot[e]), hp)
                    var s: Float = 0
                    for t in 0..<d { s += qi[t] * kj[t] }
                    p.pointer[e] = s; m = max(m, s)
                }
                var sum: Float = 0
                for e in lo..<hi { let v = Foundation.exp(p.pointer[e] - m); p.pointer[e] = v; sum += v }
                let o = out.pointer + i * d
                o.update(repeating: 0, count: d)
                for e in lo..<hi {
                    p.pointer[e] /= sum
                    let kj = row(Int(op.slot[e]), hp), w = p.pointer[e]
                    for t in 0..<d { o[t] += w * kj[t] }
                }
            }
        }
        return push(out, requiresGrad: requiresGrad(z)) { t, g in
            guard let gz = t.gradAccumulator(z) else { return }
            var gh = [Float](repeating: 0, count: op.haloRows * d)
            halo.withUnsafeBufferPointer { hb in
                gh.withUnsafeMutableBufferPointer { ghb in
                    let hp = hb.baseAddress ?? UnsafePointer(zv.pointer)
                    func grad(_ s: Int) -> UnsafeMutablePointer<Float> {
                        s < op.localInputs ? gz.pointer + s * d : ghb.baseAddress! + (s - op.localInputs) * d
                    }
                    for i in 0..<op.rows {
                        let si = Int(op.rowSlot[i])
                        let qi = row(si, hp), gi = g.pointer + i * d, oi = out.pointer + i * d
                        var dot: Float = 0
                        for c in 0..<d { dot += gi[c] * oi[c] }
                        let dq = grad(si)
                        for e in op.rowPtr[i]..<op.rowPtr[i + 1] {
                            let sj = Int(op.slot[e])
                            let kj = row(sj, hp), pe = p.pointer[e]
                            var gk: Float = 0
                            for c in 0..<d { gk += gi[c] * kj[c] }
                            let dsE = pe * (gk - dot)
                            let dk = grad(sj)
                            for c in 0..<d {
                                dk[c] += pe * gi[c] + dsE * qi[c]   // value and key
                                dq[c] += dsE * kj[c]                // query
                            }
                        }
                    }
                }
            }
            if let plan = op.halo {
                op.mustSucceed { try gh.withUnsafeBufferPointer { try plan.accumulate($0, width: d, into: gz.pointer) } }
            }
        }
    }

    /// The edge reconstruction loss of graph autoencoders restricted to the edges of `op` (the
    /// reference masks σ(Z Zᵀ) to the graph's edges, so this is exact):
    /// L = (1/rows) Σ_i w_i Σ_{e ∈ row i} u_e (σ(z_{rowSlot i}·z_{slot e}) − target_e)², with `targets` one
    /// per entry (default: the operator's values), row weights w and entry weights u (default 1).
    /// Collective when `op` is distributed (the halo rows forward, their gradients back).
    public func edgeReconstructionLoss(_ z: Var, _ op: GraphOperator, targets: [Float]? = nil, rowWeights: [Float]? = nil,
                                       edgeWeights: [Float]? = nil) throws -> Var {
        let zv = value(z), d = zv.cols
        let tg = targets ?? op.values
        precondition(tg.count == op.nnz && (rowWeights?.count ?? op.rows) == op.rows && (edgeWeights?.count ?? op.nnz) == op.nnz,
                     "edgeReconstructionLoss: targets, row or entry weights do not match the operator")
        let halo = try op.fetchHalo(zv)
        let coef = alloc(max(op.nnz, 1), 1)   // d L / d s_e (before the 1/rows factor)
        var total = 0.0
        func row(_ s: Int, _ hp: UnsafePointer<Float>) -> UnsafePointer<Float> {
            s < op.localInputs ? UnsafePointer(zv.pointer + s * d) : hp + (s - op.localInputs) * d
        }
        halo.withUnsafeBufferPointer { hb in
            let hp = hb.baseAddress ?? UnsafePointer(zv.pointer)
            for i in 0..<op.rows {
                let zi = row(Int(op.rowSlot[i]), hp), w = rowWeights?[i] ?? 1
                var acc = 0.0
                for e in op.rowPtr[i]..<op.rowPtr[i + 1] {
                    let zj = row(Int(op.slot[e]), hp)
                    var s: Float = 0
                    for t in 0..<d { s += zi[t] * zj[t] }
                    let sg = SigmoidFn.apply(s), r = sg - tg[e], u = edgeWeights?[e] ?? 1
                    acc += Double(u * r * r)
                    coef.pointer[e] = 2 * w * u * r * sg * (1 - sg)
                }
                total += Double(w) * acc
            }
        }
        let rows = Float(max(op.rows, 1))
        let out = alloc(1, 1)
        out.pointer[0] = Float(total / Double(rows))
        return push(out, requiresGrad: requiresGrad(z)) { t, g in
            guard let gz = t.gradAccumulator(z) else { return }
            let scale = g.pointer[0] / rows
            var gh = [Float](repeating: 0, count: op.haloRows * d)
            halo.withUnsafeBufferPointer { hb in
                gh.withUnsafeMutableBufferPointer { ghb in
                    let hp = hb.baseAddress ?? UnsafePointer(zv.pointer)
                    func grad(_ s: Int) -> UnsafeMutablePointer<Float> {
                        s < op.localInputs ? gz.pointer + s * d : ghb.baseAddress! + (s - op.localInputs) * d
                    }
                    for i in 0..<op.rows {
                        let si = Int(op.rowSlot[i])
                        let zi = row(si, hp), gi = grad(si)
                        for e in op.rowPtr[i]..<op.rowPtr[i + 1] {
                            let sj = Int(op.slot[e])
                            let zj = row(sj, hp), c = scale * coef.pointer[e]
                            let gj = grad(sj)
                            for k in 0..<d { gi[k] += c * zj[k]; gj[k] += c * zi[k] }
                        }
                    }
                }
            }
            if let plan = op.halo {
                op.mustSucceed { try gh.withUnsafeBufferPointer { try plan.accumulate($0, width: d, into: gz.pointer) } }
            }
        }
    }
}
