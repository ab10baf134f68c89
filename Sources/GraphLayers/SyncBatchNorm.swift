// Batch normalisation over the rows of ALL ranks (as torch's SyncBatchNorm), and dropout whose mask
// is a function of a key per row (a cell id): layers whose results do not depend on how the rows
// are spread over ranks, so a full-graph step on N ranks equals the step on one.
import Autograd
import Collectives
import Foundation
import NN
import TensorCore

extension Tape {
    /// Batch normalisation of each column over the rows of every rank. Training (`training`): the
    /// global batch mean and biased variance normalise, the running statistics move by `momentum`
    /// towards the batch mean and unbiased variance (PyTorch's convention), identically on every rank.
    /// Evaluation: the running statistics, no communication. Collective in forward and backward
    /// (training): one allreduce of 2·cols + 1 doubles forward, 2·cols backward.
    public func syncBatchNorm(_ x: Var, gamma: Var?, beta: Var?, runningMean: Tensor, runningVar: Tensor,
                              momentum: Float = 0.1, eps: Float = 1e-5, comm: Communicator) throws -> Var {
        let xv = value(x), R = xv.rows, C = xv.cols
        precondition(runningMean.count == C && runningVar.count == C, "syncBatchNorm running statistics need \(C) elements")
        let gv = gamma.map { value($0) }, bv = beta.map { value($0) }
        let xhat = alloc(R, C), rstd = alloc(1, C), out = alloc(R, C)
        let train = training
        var total = 0.0
        if train {
            var m = [Double](repeating: 0, count: 2 * C + 1)
            for r in 0..<R {
                let p = xv.pointer + r * C
                for j in 0..<C { let v = Double(p[j]); m[j] += v; m[C + j] += v * v }
            }
            m[2 * C] = Double(R)
            try comm.allreduce(&m, op: .sum)
            total = m[2 * C]
            guard total > 1 else { throw CollectiveUsageError("batch norm in training mode needs more than one row over all ranks, got \(Int(total))") }
            var mean = [Float](repeating: 0, count: C)
            for j in 0..<C {
                let mu = m[j] / total
                let varB = max(m[C + j] / total - mu * mu, 0)
                mean[j] = Float(mu)
                rstd.pointer[j] = Float(1 / (varB + Double(eps)).squareRoot())
                runningMean.pointer[j] = (1 - momentum) * runningMean.pointer[j] + momentum * Float(mu)
                runningVar.pointer[j] = (1 - momentum) * runningVar.pointer[j] + momentum * Float(varB * total / (total - 1))
            }
            for r in 0..<R {
                let p = xv.pointer + r * C, h = xhat.pointer + r * C
                for j in 0..<C { h[j] = (p[j] - mean[j]) * rstd.pointer[j] }
            }
        } else {
            for j in 0..<C { rstd.pointer[j] = 1 / (runningVar.pointer[j] + eps).squareRoot() }
            for r in 0..<R {
                let p = xv.pointer + r * C, h = xhat.pointer + r * C
                for j in 0..<C { h[j] = (p[j] - runningMean.pointer[j]) * rstd.pointer[j] }
            }
        }
        for r in 0..<R {
            let h = xhat.pointer + r * C, o = out.pointer + r * C
            for j in 0..<C { o[j] = h[j] * (gv?.pointer[j] ?? 1) + (bv?.pointer[j] ?? 0) }
        }
        let rg = requiresGrad(x) || (gamma.map(requiresGrad) ?? false) || (beta.map(requiresGrad) ?? false)
        return push(out, requiresGrad: rg) { t, g in
            if let beta, let gb = t.gradAccumulator(beta) { Reduce.sumColumns(g, into: gb, beta: 1) }
            if let gamma, let gg = t.gradAccumulator(gamma) {
                for r in 0..<R { let gr = g.pointer + r * C, h = xhat.pointer + r * C; for j in 0..<C { gg.pointer[j] += gr[j] * h[j] } }
            }
            guard let gx = t.gradAccumulator(x) else { return }
            if !train {
                for r in 0..<R { let gr = g.pointer + r * C, d = gx.pointer + r * C; for j in 0..<C { d[j] += gr[j] * (gv?.pointer[j] ?? 1) * rstd.pointer[j] } }
                return
            }
            // dx = rstd·(dh − mean(dh) − x̂·mean(dh·x̂)) with dh = g·γ and means over the rows of all ranks.
            var m = [Double](repeating: 0, count: 2 * C)
            for r in 0..<R {
                let gr = g.pointer + r * C, h = xhat.pointer + r * C
                for j in 0..<C { let dh = Double(gr[j] * (gv?.pointer[j] ?? 1)); m[j] += dh; m[C + j] += dh * Double(h[j]) }
            }
            comm.orAbort { try comm.allreduce(&m, op: .sum) }
            let m1 = (0..<C).map { Float(m[$0] / total) }, m2 = (0..<C).map { Float(m[C + $0] / total) }
            for r in 0..<R {
                let gr = g.pointer + r * C, h = xhat.pointer + r * C, d = gx.pointer + r * C
                for j in 0..<C {
                    let dh = gr[j] * (gv?.pointer[j] ?? 1)
                    d[j] += rstd.pointer[j] * (dh - m1[j] - h[j] * m2[j])
                }
            }
        }
    }

    /// Inverted dropout whose mask row i is drawn from `stream.split(keys[i])`: the same cells get the
    /// same mask whatever rank holds them. Identity when not training or p = 0.
    public func dropout(_ x: Var, p: Float, stream: RandomStream, keys: [UInt64]) -> Var {
        precondition(p >= 0 && p < 1, "dropout probability must be in [0, 1), got \(p)")
        if !training || p == 0 { return x }
        let s = shape(x)
        precondition(keys.count == s.rows, "dropout: \(keys.count) keys for \(s.rows) rows")
        let mask = alloc(s.rows, s.cols)
        let threshold = UInt64(min(1 - Double(p), 0.999_999_999_999) * 18_446_744_073_709_551_616.0)   // keep iff draw < (1 − p)·2⁶⁴
        let scale = 1 / (1 - p)
        for i in 0..<s.rows {
            var rng = stream.split(keys[i])
            let m = mask.pointer + i * s.cols
            for j in 0..<s.cols { m[j] = rng.next() < threshold ? scale : 0 }
        }
        return dropout(x, mask: mask)
    }
}

/// Batch normalisation over features with statistics from the rows of every rank (`Tape.syncBatchNorm`).
public final class SyncBatchNorm1d {
    public let gamma: Parameter?, beta: Parameter?
    public let runningMean: Parameter, runningVar: Parameter
    public let momentum: Float, eps: Float
    public let comm: Communicator

    public init(_ store: ParameterStore, _ name: String, features: Int, momentum: Float = 0.1, eps: Float = 1e-5,
                affine: Bool = true, comm: Communicator) {
        var rng = RandomStream(seed: 0)
        gamma = affine ? store.add(name + ".weight", rows: 1, cols: features, .ones, rng: &rng) : nil
        beta = affine ? store.add(name + ".bias", rows: 1, cols: features, .zeros, rng: &rng) : nil
        runningMean = store.addBuffer(name + ".running_mean", rows: 1, cols: features, fill: 0)
        runningVar = store.addBuffer(name + ".running_var", rows: 1, cols: features, fill: 1)
        self.momentum = momentum; self.eps = eps; self.comm = comm
    }

    public func callAsFunction(_ x: Var, _ tape: Tape) throws -> Var {
        try tape.syncBatchNorm(x, gamma: gamma.map { tape.param($0) }, beta: beta.map { tape.param($0) },
                               runningMean: runningMean.value, runningVar: runningVar.value, momentum: momentum, eps: eps, comm: comm)
    }
}
