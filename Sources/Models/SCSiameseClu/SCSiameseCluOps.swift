// scSiameseClu's new tape ops, none of which holds an n × n matrix:
// - `personalizedPageRank`: the PPR diffusion Ad·X, Ad = α(I − (1 − α)Â)⁻¹, by a truncated power
//   iteration on the distributed sparse Â (the reference inverts a dense n × n matrix);
// - `crossCorrelationReduction`: DCRN's CR(S) = mean((diag S − 1)²) + mean(offdiag(S)²) of the n × n
//   cross-view similarity S = U Vᵀ, exactly, from d × d Gram matrices (Σ_ij (u_i·v_j)² = Σ_i u_iᵀ G_v u_i,
//   G_v = Σ_j v_j v_jᵀ over every rank);
// - `siameseNoise`: the multiplicative Gaussian feature noise of a view, per cell from a stream keyed
//   by (seed, epoch, view, global cell id), so a view does not depend on the rank count.
import Autograd
import Collectives
import Foundation
import GraphLayers
import TensorCore

/// Power iterations for the PPR diffusion to tolerance `tol`: ‖Â‖₂ ≤ 1 for Â = D^−½ W D^−½, so
/// ‖Z_T − Z*‖ ≤ (1 − α)^T ‖X − Z*‖ ≤ 2(1 − α)^T ‖X‖ (‖Z*‖ ≤ ‖X‖); T = ⌈log tol / log(1 − α)⌉.
public func pprIterations(alpha: Float, tolerance: Float) -> Int {
    alpha >= 1 ? 0 : max(1, Int((Foundation.log(Double(tolerance)) / Foundation.log(1 - Double(alpha))).rounded(.up)))
}

private func must(_ op: GraphOperator, _ body: () throws -> Void) {
    if let c = op.comm { c.orAbort(body) } else {
        do { try body() } catch { preconditionFailure("local graph operator failed: \(error)") }
    }
}

extension Tape {
    /// Z_T with Z_0 = X, Z_{t+1} = (1 − α)Â Z_t + α X (T = `iterations`): the truncated PPR diffusion,
    /// a fixed linear map of X, so its backward is exact for the truncated map: with M = (1 − α)Â,
    /// ∂/∂X = (Mᵀ)^T g + α Σ_{t<T} (Mᵀ)^t g. `op` must be square (its rows are its local inputs).
    /// Collective when `op` is distributed: T halo exchanges forward and T backward. Memory O(n·w).
    public func personalizedPageRank(_ x: Var, _ op: GraphOperator, alpha: Float, iterations: Int) throws -> Var {
        let xv = value(x), n = xv.rows, w = xv.cols
        precondition(op.rows == n && op.localInputs == n, "personalizedPageRank: operator \(op.rows) × \(op.localInputs), input \(n) rows")
        let z = alloc(n, w), tmp = alloc(n, w)
        z.pointer.update(from: xv.pointer, count: n * w)
        let beta = 1 - alpha
        for _ in 0..<iterations {
            let halo = try op.fetchHalo(z)
            op.apply(z.pointer, halo: halo, width: w, into: tmp.pointer)
            for e in 0..<(n * w) { z.pointer[e] = beta * tmp.pointer[e] + alpha * xv.pointer[e] }
        }
        return push(z, requiresGrad: requiresGrad(x)) { t, g in
            guard let gx = t.gradAccumulator(x) else { return }
            let cur = t.alloc(max(n, 1), w), nxt = t.alloc(max(n, 1), w)
            cur.pointer.update(from: g.pointer, count: n * w)
            for _ in 0..<iterations {
                for e in 0..<(n * w) { gx.pointer[e] += alpha * cur.pointer[e] }
                nxt.pointer.update(repeating: 0, count: n * w)
                must(op) { try op.applyTranspose(cur.pointer, width: w, into: nxt.pointer) }
                for e in 0..<(n * w) { cur.pointer[e] = beta * nxt.pointer[e] }
            }
            for e in 0..<(n * w) { gx.pointer[e] += cur.pointer[e] }
        }
    }

    /// CR(S) for S = U Vᵀ over the rows of every rank (N in all), U, V: n × d (this rank's rows, the
    /// same cells in both): (1/N) Σ_i (s_ii − 1)² + Σ_{i≠j} s_ij² / (N(N − 1)), returned as the mean
    /// over this rank's rows of c_i = (s_ii − 1)² + (u_iᵀ G_v u_i − s_ii²)/(N − 1), G_v = Σ_j v_j v_jᵀ
    /// (all ranks), so the Trainer's row-weighted sum over ranks is CR itself. Collective: one
    /// allreduce of d² + 1 numbers forward, d² backward (G̃_u = Σ_ranks (g/n_r) Σ_i u_i u_iᵀ for ∂/∂v_j).
    public func crossCorrelationReduction(_ u: Var, _ v: Var, comm: Communicator) throws -> Var {
        let uv = value(u), vv = value(v), n = uv.rows, d = uv.cols
        precondition(vv.rows == n && vv.cols == d, "crossCorrelationReduction: \(n)×\(d) vs \(vv.rows)×\(vv.cols)")
        var gvN = [Double](repeating: 0, count: d * d + 1)
        for i in 0..<n {
            let vi = vv.pointer + i * d
            for a in 0..<d { let x = Double(vi[a]); for b in 0..<d { gvN[a * d + b] += x * Double(vi[b]) } }
        }
        gvN[d * d] = Double(n)
        try comm.allreduce(&gvN, op: .sum)
        let total = gvN[d * d], m1 = max(total - 1, 1)
        var s = [Double](repeating: 0, count: n), q = [Double](repeating: 0, count: n)
        var acc = 0.0
        for i in 0..<n {
            let ui = uv.pointer + i * d, vi = vv.pointer + i * d
            var sd = 0.0, qi = 0.0
            for a in 0..<d {
                sd += Double(ui[a]) * Double(vi[a])
                var r = 0.0
                for b in 0..<d { r += gvN[a * d + b] * Double(ui[b]) }
                qi += Double(ui[a]) * r
            }
            s[i] = sd; q[i] = qi
            acc += (sd - 1) * (sd - 1) + (qi - sd * sd) / m1
        }
        let out = alloc(1, 1)
        out.pointer[0] = Float(acc / Double(max(n, 1)))
        return push(out, requiresGrad: requiresGrad(u) || requiresGrad(v)) { t, go in
            let kappa = Double(go.pointer[0]) / Double(max(n, 1))
            // G̃_u over all ranks, each rank's rows weighted by its own seed / rows.
            var gu = [Double](repeating: 0, count: d * d)
            for i in 0..<n {
                let ui = uv.pointer + i * d
                for a in 0..<d { let x = kappa * Double(ui[a]); for b in 0..<d { gu[a * d + b] += x * Double(ui[b]) } }
            }
            comm.orAbort { try comm.allreduce(&gu, op: .sum) }
            let du = t.gradAccumulator(u), dv = t.gradAccumulator(v)
            for i in 0..<n {
                let ui = uv.pointer + i * d, vi = vv.pointer + i * d
                let cd = 2 * (s[i] - 1) - 2 * s[i] / m1
                if let du {
                    for a in 0..<d {
                        var r = 0.0
                        for b in 0..<d { r += gvN[a * d + b] * Double(ui[b]) }
                        du.pointer[i * d + a] += Float(kappa * (cd * Double(vi[a]) + 2 * r / m1))
                    }
                }
                if let dv {
                    for a in 0..<d {
                        var r = 0.0
                        for b in 0..<d { r += gu[a * d + b] * Double(vi[b]) }
                        dv.pointer[i * d + a] += Float(kappa * cd * Double(ui[a]) + 2 * r / m1)
                    }
                }
            }
        }
    }
}

/// X ⊙ N with N_ij ~ N(1, σ²), row i drawn from `stream.split(view).split(id_i)` (the caller's stream
/// keyed by seed and epoch): the same noisy view of a cell on any rank count.
public func siameseNoise(_ x: Tensor, sigma: Float, stream: RandomStream, view: UInt64, ids: [Int64]) -> Tensor {
    precondition(ids.count == x.rows)
    let out = Tensor(rows: x.rows, cols: x.cols)
    let s = stream.split(view)
    for i in 0..<x.rows {
        var rng = s.split(UInt64(bitPattern: ids[i]))
        for j in 0..<x.cols { out.pointer[i * x.cols + j] = x.pointer[i * x.cols + j] * (1 + sigma * rng.normal()) }
    }
    return out
}
