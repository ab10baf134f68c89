// scNAME's losses as fused tape ops: each forward computes the value and the input gradient in one
// pass over the batch (no per-element closures, buffers from the tape's pool); backward scales it.
// The ZINB likelihood it shares with scDEFR is in Models/ZINB.swift.
import Autograd
import Collectives
import Foundation
import Neighbors
import TensorCore

extension Tape {
    /// Binary cross-entropy of sigmoid(`logits`) against 0/1 `target`, mean over all entries (Keras'
    /// BCE averaged over genes, then over the batch), computed stably from the logits.
    public func maskBCE(_ logits: Var, target: Tensor) -> Var {
        let lv = value(logits)
        precondition(lv.rows == target.rows && lv.cols == target.cols, "maskBCE: shapes differ")
        let grad = alloc(lv.rows, lv.cols)
        let lp = lv.pointer, tp = target.pointer, gp = grad.pointer
        let cnt = lv.count, c8 = cnt / 8 * 8
        var acc = F8(repeating: 0)
        var e = 0
        while e < c8 {
            let a = load8(lp + e), m = load8(tp + e)
            let ea = vexp(-vabs(a))
            acc += vrelu(a) + vlog1p(ea) - m * a
            let inv = 1 / (1 + ea)
            store8((ea * inv).replacing(with: inv, where: a .>= 0) - m, gp + e)
            e += 8
        }
        var total = Double(acc.sum())
        while e < cnt {
            let a = lp[e], m = tp[e]
            let ea = Foundation.exp(-Swift.abs(a))
            total += Double(max(a, 0) + Foundation.log1p(ea) - m * a)
            gp[e] = (a >= 0 ? 1 / (1 + ea) : ea / (1 + ea)) - m
            e += 1
        }
        let n = Float(max(lv.count, 1))
        let out = alloc(1, 1)
        out.pointer[0] = Float(total / Double(max(lv.count, 1)))
        return push(out, requiresGrad: requiresGrad(logits)) { t, go in
            guard let (gl, beta) = t.gradTarget(logits) else { return }
            let s = go.pointer[0] / n
            let dst = gl.pointer, src = grad.pointer
            if beta == 0 { for e in 0..<gl.count { dst[e] = s * src[e] } } else { for e in 0..<gl.count { dst[e] += s * src[e] } }
        }
    }

    /// scNAME's soft k-means loss over the first `k` rows of `centres`: d_ij = ‖z_i − μ_j‖²,
    /// q = softmax(−d) sharpened to q²/Σq² (= softmax(−2d)), L = mean_i Σ_j q_ij d_ij, q not detached.
    /// dL/dd_ij = w_ij (1 − 2 (d_ij − L_i)) / B with w = softmax(−2d).
    public func softKMeansLoss(_ z: Var, centres: Var, k: Int) -> Var {
        let zv = value(z), cv = value(centres)
        let b = zv.rows, d = zv.cols
        precondition(cv.cols == d && k >= 1 && k <= cv.rows, "softKMeansLoss: centres \(cv.rows)×\(cv.cols), k \(k), dim \(d)")
        let coef = alloc(max(b, 1), k)   // dL/dd_ij (unscaled by 1/B)
        let zp = zv.pointer, cp = cv.pointer, wp = coef.pointer
        var total = 0.0
        for i in 0..<b {
            let w = wp + i * k
            var mn = Float.infinity
            for j in 0..<k {
                var s: Float = 0
                for c in 0..<d { let t = zp[i * d + c] - cp[j * d + c]; s += t * t }
                w[j] = s
                mn = min(mn, s)
            }
            // w holds d; compute softmax(−2d) into a second pass.
            var den: Float = 0
            for j in 0..<k { den += Foundation.exp(-2 * (w[j] - mn)) }
            var li: Float = 0
            for j in 0..<k { li += Foundation.exp(-2 * (w[j] - mn)) / den * w[j] }
            for j in 0..<k {
                let q = Foundation.exp(-2 * (w[j] - mn)) / den
                w[j] = q * (1 - 2 * (w[j] - li))
            }
            total += Double(li)
        }
        let out = alloc(1, 1)
        out.pointer[0] = Float(total / Double(max(b, 1)))
        let invB = 1 / Float(max(b, 1))
        return push(out, requiresGrad: requiresGrad(z) || requiresGrad(centres)) { t, go in
            let s = 2 * go.pointer[0] * invB
            if let (gz, beta) = t.gradTarget(z) {
                let gp = gz.pointer
                if beta == 0 { gz.fill(0) }
                for i in 0..<b {
                    let w = wp + i * k
                    var rs: Float = 0
                    for j in 0..<k { rs += w[j] }
                    for c in 0..<d {
                        var acc = rs * zp[i * d + c]
                        for j in 0..<k { acc -= w[j] * cp[j * d + c] }
                        gp[i * d + c] += s * acc
                    }
                }
            }
            if let (gc, beta) = t.gradTarget(centres) {
                let gp = gc.pointer
                if beta == 0 { gc.fill(0) }
                for j in 0..<k {
                    var cs: Float = 0
                    for i in 0..<b { cs += wp[i * k + j] }
                    for c in 0..<d {
                        var acc = -cs * cp[j * d + c]
                        for i in 0..<b { acc += wp[i * k + j] * zp[i * d + c] }
                        gp[j * d + c] -= s * acc
                    }
                }
            }
        }
    }

    /// Collective. scNAME's neighbourhood contrastive loss against a bank sharded over ranks
    /// (MODELS.md §2.4), mean over this rank's rows:
    /// L_i = −log( Σ_{j∈N_k(i)} exp(z̃_i·b_j/T) / Σ_{all j} exp(z̃_i·b_j/T) ),
    /// N_k(i) = the k bank rows (over all ranks) most cosine-similar to the clean ẑ_i.
    ///
    /// `zTilde` (B×d, rows already L2-normalised on the tape) and `clean` (B×d, unit rows, a constant)
    /// are this rank's batch; `bank` (n_r×d, unit rows) is this rank's shard with global ids `bankIds`.
    /// The batch's rows are allgathered; each rank scores them against its shard by GEMM, keeps its
    /// k best candidates per query and accumulates the denominator (exp shifted by the bound 1/T,
    /// so no max is needed) and the softmax-weighted bank sums; the global top-k is decided from the
    /// gathered candidate lists (ties by global id); one allreduce of B_total × (2 + 2d) doubles
    /// completes numerator, denominator and the gradient dL_i/dz̃_i = (Σ_all e b − Σ_N e b / num · den…)/T.
    /// The bank receives no gradient (as in the reference).
    public func neighbourContrastiveLoss(_ zTilde: Var, clean: Tensor, bank: Tensor, bankIds: [Int64],
                                         k: Int, temperature: Float, comm: Communicator) throws -> Var {
        let zt = value(zTilde)
        let d = bank.cols
        precondition(zt.cols == d && clean.cols == d && clean.rows == zt.rows && bankIds.count == bank.rows)
        let bLocal = zt.rows
        let (ztAll, ztCounts) = try comm.allgatherv(zt.scalars)
        let (zcAll, _) = try comm.allgatherv(clean.scalars)
        let bTot = ztAll.count / d
        var myOffset = 0
        for r in 0..<comm.rank { myOffset += ztCounts[r] / d }
        let n = bank.rows
        let invT = 1 / temperature
        // Per query: [den, num, Gden (d), Gnum (d)] in doubles.
        let width = 2 + 2 * d
        var acc = [Double](repeating: 0, count: bTot * width)
        let top = TopK(rows: max(bTot, 1), k: k)     // ids: local bank rows
        if n > 0 && bTot > 0 {
            let chunk = min(n, 2048)
            let s = alloc(bTot, chunk), c = alloc(bTot, chunk)
            let gden = zeros(bTot, d)
            ztAll.withUnsafeBufferPointer { ztp in
                zcAll.withUnsafeBufferPointer { zcp in
                    var c0 = 0
                    while c0 < n {
                        let cn = min(chunk, n - c0)
                        let bp = bank.pointer + c0 * d
                        Linalg.sgemm(transA: false, transB: true, m: bTot, n: cn, k: d, alpha: 1, a: ztp.baseAddress!, lda: d,
                                     b: bp, ldb: d, beta: 0, c: s.pointer, ldc: cn)
                        Linalg.sgemm(transA: false, transB: true, m: bTot, n: cn, k: d, alpha: 1, a: zcp.baseAddress!, lda: d,
                                     b: bp, ldb: d, beta: 0, c: c.pointer, ldc: cn)
                        for q in 0..<bTot {
                            let srow = s.pointer + q * cn, crow = c.pointer + q * cn
                            var den8 = F8(repeating: 0)
                            var j = 0
                            while j + 8 <= cn {
                                let e = vexp((load8(srow + j) - 1) * invT)
                                store8(e, srow + j)
                                den8 += e
                                j += 8
                            }
                            var den = den8.sum()
                            while j < cn {
                                let e = Foundation.exp((srow[j] - 1) * invT)
                                srow[j] = e
                                den += e
                                j += 1
                            }
                            acc[q * width] += Double(den)
                            for j in 0..<cn where -crow[j] < top.threshold(q) {
                                top.insert(row: q, distance: -crow[j], id: Int64(c0 + j))
                            }
                        }
                        // Gden += E · B_chunk
                        Linalg.sgemm(transA: false, transB: false, m: bTot, n: d, k: cn, alpha: 1, a: s.pointer, lda: cn,
                                     b: bp, ldb: d, beta: 1, c: gden.pointer, ldc: d)
                        c0 += cn
                    }
                }
            }
            for q in 0..<bTot { for t in 0..<d { acc[q * width + 2 + t] = Double(gden.pointer[q * d + t]) } }
        }
        // Global top-k: gather every rank's candidates (distance, global id) and find each query's k-th.
        let localIds = top.ids, localDist = top.distances
        var sendIds = [Int64](repeating: -1, count: bTot * k), sendDist = [Float](repeating: .infinity, count: bTot * k)
        if bTot > 0 {
            for e in 0..<(bTot * k) where localIds[e] >= 0 { sendIds[e] = bankIds[Int(localIds[e])]; sendDist[e] = localDist[e] }
        }
        let allIds = try comm.allgather(sendIds), allDist = try comm.allgather(sendDist)
        let ranks = comm.size
        var cand: [(Float, Int64)] = []
        cand.reserveCapacity(ranks * k)
        ztAll.withUnsafeBufferPointer { ztp in
            for q in 0..<bTot {
                cand.removeAll(keepingCapacity: true)
                for r in 0..<ranks {
                    let o = r * bTot * k + q * k
                    for e in 0..<k where allIds[o + e] >= 0 { cand.append((allDist[o + e], allIds[o + e])) }
                }
                cand.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
                guard !cand.isEmpty else { continue }
                let kth = cand[min(k, cand.count) - 1]
                for e in 0..<k {
                    let li = localIds[q * k + e]
                    guard li >= 0 else { continue }
                    let dist = localDist[q * k + e], gid = bankIds[Int(li)]
                    guard dist < kth.0 || (dist == kth.0 && gid <= kth.1) else { continue }
                    let bp = bank.pointer + Int(li) * d
                    var dot: Float = 0
                    for t in 0..<d { dot += ztp[q * d + t] * bp[t] }
                    let ev = Double(Foundation.exp((dot - 1) * invT))
                    acc[q * width + 1] += ev
                    for t in 0..<d { acc[q * width + 2 + d + t] += ev * Double(bp[t]) }
                }
            }
        }
        try comm.allreduce(&acc, op: .sum)
        return neighbourLossFromSums(zTilde, acc: acc, width: width, rows: bLocal, offset: myOffset, dim: d, invT: invT)
    }
}

extension Tape {
    /// Collective. The neighbourhood loss with a sampled denominator, for banks too large to scan on
    /// every step (issue "atlas scale"; the negatives of MoCo's queue, the positives of scNAME):
    /// L_i = −log( num_i / (num_i + N/M · Σ_{j∈S, j∉P(i)} e_ij) ),  num_i = Σ_{p∈P(i)} e_ip,
    /// e_ij = exp((z̃_i·b_j − 1)/T), with P(i) the k positives given by global cell id (the cell itself
    /// and its k − 1 bank neighbours from the bank's kNN graph) and S the `negatives` (global cell ids
    /// of a uniform sample with replacement of the N bank rows, the same list on every rank). The
    /// denominator is the exact positives plus an unbiased estimate of the other rows' sum (draws that
    /// hit a positive are taken out again), so its expectation is the exact denominator and it never
    /// falls below the numerator; with every row drawn once it is exact. Cost per step
    /// O(B_total · (M + k) · d) instead of O(B_total · N · d).
    ///
    /// `positives`: this rank's batch rows × k global cell ids (−1 = none). Each rank scores the
    /// gathered batch against the sampled and positive rows it owns (`localRow` maps a global cell id
    /// to its row in `bank`, nil when another rank owns it); one allreduce of B_total × (2 + 2d)
    /// doubles completes both sums and the gradient (1/T)(Gden/den − Gnum/num), as the exact form.
    public func sampledNeighbourContrastiveLoss(_ zTilde: Var, bank: Tensor, positives: [Int64], k: Int,
                                                negatives: [Int64], bankTotal: Int, localRow: (Int64) -> Int?,
                                                temperature: Float, comm: Communicator) throws -> Var {
        let zt = value(zTilde)
        let d = bank.cols
        precondition(zt.cols == d && positives.count == zt.rows * k)
        let bLocal = zt.rows
        let (ztAll, ztCounts) = try comm.allgatherv(zt.scalars)
        let (posAll, _) = try comm.allgatherv(positives)
        let bTot = ztAll.count / d
        var myOffset = 0
        for r in 0..<comm.rank { myOffset += ztCounts[r] / d }
        let invT = 1 / temperature
        let scale = Double(bankTotal) / Double(max(negatives.count, 1))
        // How often each row was drawn, to take draws of a query's own positives out of its estimate.
        var draws: [Int64: Int] = [:]
        for id in negatives { draws[id, default: 0] += 1 }
        let width = 2 + 2 * d
        var acc = [Double](repeating: 0, count: bTot * width)
        // The sampled rows this rank owns (a row drawn twice counts twice), as one matrix.
        let mine = negatives.compactMap(localRow)
        if bTot > 0 && !mine.isEmpty {
            let m = mine.count
            let rows = alloc(m, d)
            for (e, r) in mine.enumerated() { for t in 0..<d { rows.pointer[e * d + t] = bank.pointer[r * d + t] } }
            let s = alloc(bTot, m)
            ztAll.withUnsafeBufferPointer { ztp in
                Linalg.sgemm(transA: false, transB: true, m: bTot, n: m, k: d, alpha: 1, a: ztp.baseAddress!, lda: d,
                             b: rows.pointer, ldb: d, beta: 0, c: s.pointer, ldc: m)
            }
            // Eight lanes of vexp (FastMath, ≈ 2 ulp) summed in Double: the B × M/P exps were the largest
            // part of a fine-tuning step's extra cost over pretraining with libm's scalar exp.
            for q in 0..<bTot {
                let srow = s.pointer + q * m
                var den8 = SIMD8<Double>(repeating: 0)
                var j = 0
                while j + 8 <= m {
                    let e = vexp((load8(srow + j) - 1) * invT)
                    store8(e, srow + j)
                    den8 += SIMD8<Double>(e)
                    j += 8
                }
                var den = den8.sum()
                while j < m { let e = Foundation.exp((srow[j] - 1) * invT); srow[j] = e; den += Double(e); j += 1 }
                acc[q * width] += scale * den
            }
            let gden = zeros(bTot, d)
            Linalg.sgemm(transA: false, transB: false, m: bTot, n: d, k: m, alpha: 1, a: s.pointer, lda: m,
                         b: rows.pointer, ldb: d, beta: 0, c: gden.pointer, ldc: d)
            for q in 0..<bTot { for t in 0..<d { acc[q * width + 2 + t] += scale * Double(gden.pointer[q * d + t]) } }
        }
        // Positives this rank owns: into the numerator and, exactly, into the denominator.
        ztAll.withUnsafeBufferPointer { ztp in
            for q in 0..<bTot {
                for e in 0..<k {
                    let id = posAll[q * k + e]
                    guard id >= 0, let r = localRow(id) else { continue }
                    let bp = bank.pointer + r * d
                    var dot: Float = 0
                    for t in 0..<d { dot += ztp[q * d + t] * bp[t] }
                    let ev = Double(Foundation.exp((dot - 1) * invT))
                    let inDen = ev * (1 - scale * Double(draws[id] ?? 0))
                    acc[q * width] += inDen
                    acc[q * width + 1] += ev
                    for t in 0..<d { acc[q * width + 2 + t] += inDen * Double(bp[t]); acc[q * width + 2 + d + t] += ev * Double(bp[t]) }
                }
            }
        }
        try comm.allreduce(&acc, op: .sum)
        return neighbourLossFromSums(zTilde, acc: acc, width: width, rows: bLocal, offset: myOffset, dim: d, invT: invT)
    }

    /// −log(num/den) per local query from the allreduced per-query sums [den, num, Gden (d), Gnum (d)]
    /// (the gathered batch's rows `offset..<offset+rows` are this rank's), mean over the local rows, and
    /// its gradient (1/T)(Gden/den − Gnum/num) on the tape. Shared by both forms of the loss.
    func neighbourLossFromSums(_ zTilde: Var, acc: [Double], width: Int, rows bLocal: Int, offset myOffset: Int,
                               dim d: Int, invT: Float) -> Var {
        let grad = alloc(max(bLocal, 1), d)
        var total = 0.0
        for i in 0..<bLocal {
            let q = myOffset + i
            let den = max(acc[q * width], 1e-300), num = max(acc[q * width + 1], 1e-300)
            total += Foundation.log(den) - Foundation.log(num)
            for t in 0..<d {
                grad.pointer[i * d + t] = Float(Double(invT) * (acc[q * width + 2 + t] / den - acc[q * width + 2 + d + t] / num))
            }
        }
        let out = alloc(1, 1)
        out.pointer[0] = Float(total / Double(max(bLocal, 1)))
        let invB = 1 / Float(max(bLocal, 1))
        return push(out, requiresGrad: requiresGrad(zTilde) && bLocal > 0) { t, go in
            guard let (gz, beta) = t.gradTarget(zTilde) else { return }
            let s = go.pointer[0] * invB
            let dst = gz.pointer, src = grad.pointer
            if beta == 0 { for e in 0..<gz.count { dst[e] = s * src[e] } } else { for e in 0..<gz.count { dst[e] += s * src[e] } }
        }
    }
}
