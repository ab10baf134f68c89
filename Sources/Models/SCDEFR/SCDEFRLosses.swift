// scDEFR's clustering terms as fused tape ops: Student-t soft assignments against shared centres and
// the DEC target, with KL(P‖Q) (the reference's F.kl_div(Q.log(), P, 'batchmean')) or the element-mean
// binary cross-entropy BCE(Q, P) (F.binary_cross_entropy). The target P is computed in the same step
// from the cluster frequencies of the whole global batch (one allreduce of K numbers) and detached.
import Autograd
import Collectives
import Foundation
import TensorCore

/// Which loss of the soft assignment against its DEC target.
public enum DECLoss: Sendable { case kl, bce }

extension Tape {
    /// Collective. q_ij ∝ 1/(1 + ‖z_i − μ_j‖²) over the first `k` centres (Student-t, α = 1);
    /// p_ij ∝ q_ij² / f_j with f_j = Σ_i q_ij over the rows of every rank (the reference's
    /// target_distribution, detached); returns the KL(P‖Q) summed over clusters and averaged over this
    /// rank's rows, or the BCE averaged over rows × clusters. Backward, with g_ij = ∂L/∂q_ij and
    /// a_ij = −u_ij q_ij (g_ij − Σ_l g_il q_il), u = (1 + d)⁻¹: ∂L/∂z_i = 2 Σ_j a_ij (z_i − μ_j),
    /// ∂L/∂μ_j = −2 Σ_i a_ij (z_i − μ_j).
    public func decLoss(_ z: Var, centres: Var, k: Int, loss kind: DECLoss, comm: Communicator) throws -> Var {
        try decLoss(z, centres: centres, k: k, loss: kind, comm: comm, fixedTarget: nil)
    }

    /// `decLoss` with the target P given (n × k, rows summing to 1) instead of computed: for checking
    /// the gradient with P held fixed, as the backward pass treats it.
    func decLoss(_ z: Var, centres: Var, k: Int, loss kind: DECLoss, comm: Communicator, fixedTarget: [Double]?) throws -> Var {
        let zv = value(z), cv = value(centres)
        let n = zv.rows, d = zv.cols
        precondition(cv.cols == d && k >= 1 && k <= cv.rows, "decLoss: centres \(cv.rows)×\(cv.cols), k \(k), dim \(d)")
        var q = [Double](repeating: 0, count: n * k), u = [Double](repeating: 0, count: n * k)
        var f = [Double](repeating: 0, count: k)
        for i in 0..<n {
            var s = 0.0
            for j in 0..<k {
                var dd = 0.0
                for c in 0..<d { let t = Double(zv.pointer[i * d + c]) - Double(cv.pointer[j * d + c]); dd += t * t }
                let v = 1 / (1 + dd)
                u[i * k + j] = v; s += v
            }
            for j in 0..<k { q[i * k + j] = u[i * k + j] / s; f[j] += q[i * k + j] }
        }
        try comm.allreduce(&f, op: .sum)
        let rows = Double(max(n, 1))
        var total = 0.0
        let a = alloc(max(n, 1), k)
        for i in 0..<n {
            var p = [Double](repeating: 0, count: k), ps = 0.0
            for j in 0..<k { let v = q[i * k + j] * q[i * k + j] / max(f[j], 1e-300); p[j] = v; ps += v }
            if let fixedTarget { for j in 0..<k { p[j] = fixedTarget[i * k + j] }; ps = 1 }
            var g = [Double](repeating: 0, count: k), gq = 0.0
            for j in 0..<k {
                let pj = p[j] / max(ps, 1e-300), qj = max(q[i * k + j], 1e-300)
                switch kind {
                case .kl:
                    if pj > 0 { total += pj * (Foundation.log(pj) - Foundation.log(qj)) }
                    g[j] = -pj / qj / rows
                case .bce:
                    // torch clamps each log at −100.
                    let lq = max(Foundation.log(qj), -100), l1q = max(Foundation.log1p(-min(q[i * k + j], 1)), -100)
                    total -= pj * lq + (1 - pj) * l1q
                    let dq = lq > -100 ? pj / qj : 0, d1q = l1q > -100 ? (1 - pj) / max(1 - q[i * k + j], 1e-300) : 0
                    g[j] = -(dq - d1q) / (rows * Double(k))
                }
                gq += g[j] * q[i * k + j]
            }
            for j in 0..<k { a.pointer[i * k + j] = Float(-u[i * k + j] * q[i * k + j] * (g[j] - gq)) }
        }
        let out = alloc(1, 1)
        out.pointer[0] = Float(kind == .kl ? total / rows : total / (rows * Double(k)))
        return push(out, requiresGrad: requiresGrad(z) || requiresGrad(centres)) { t, go in
            let s = 2 * go.pointer[0]
            if let gz = t.gradAccumulator(z) {
                for i in 0..<n {
                    for c in 0..<d {
                        var acc: Float = 0
                        for j in 0..<k { acc += a.pointer[i * k + j] * (zv.pointer[i * d + c] - cv.pointer[j * d + c]) }
                        gz.pointer[i * d + c] += s * acc
                    }
                }
            }
            if let gc = t.gradAccumulator(centres) {
                for j in 0..<k {
                    for c in 0..<d {
                        var acc: Float = 0
                        for i in 0..<n { acc += a.pointer[i * k + j] * (zv.pointer[i * d + c] - cv.pointer[j * d + c]) }
                        gc.pointer[j * d + c] -= s * acc
                    }
                }
            }
        }
    }
}
