// CELLULAR's loss on one global batch (MODELS.md §6.3), forward and backward side by side:
//   L = w_t · L_target + w_b · L_batch + w_c · L_centroid
// with, for unit embeddings ê and cosines c_ij = ê_i·ê_j (legend: B cells, d dims, C types):
//   L_target   = Σ_i a_i ℓ_i,  ℓ_i = log(P_i + N_i) − log P_i,  P_i = Σ_{j≠i, y_j=y_i} e^{c_ij/τ},
//                N_i = Σ_{y_j≠y_i} e^{c_ij/τ},  a_i = w_{y_i} / (valid anchors of y_i) for anchors with
//                ≥ 1 positive and ≥ 1 negative (0 otherwise); w = class weights of the whole training set.
//   L_batch    = Σ_i a'_i / m_i,  m_i = log(P'_i + N'_i) − log P'_i with τ_b fixed, positives = same
//                type and batch, negatives = same type, other batch; a'_i = batch weight / valid anchors
//                of the batch (minimising 1/m raises m: batches mix within a type).
//   L_centroid = mean over type pairs (p, q) present in the batch with D_PCA(p, q) > 0 of
//                (‖μ_p − μ_q‖ / max − D_PCA(p, q) / max_PCA)², μ = per-type mean of the raw embeddings.
// Batches with too few cells of a kind simply have no valid anchors for that term (the term is 0
// there); nothing is swallowed. Everything but the Gram matrix is in Double.
import Foundation
import TensorCore

public struct CELLULARLossWeights: Sendable, Equatable {
    public var target: Double, batch: Double, centroid: Double
    public init(target: Double, batch: Double, centroid: Double) { self.target = target; self.batch = batch; self.centroid = centroid }
}

/// The global-batch statistics the loss needs: class and batch weights, the PCA centroid distances.
public struct CELLULARStatistics: Sendable, Codable, Equatable {
    /// Normalised inverse class frequencies over the training set (Σ = 1), one per type.
    public var classWeights: [Double]
    /// Normalised inverse batch frequencies (Σ = 1), one per batch (empty without batches).
    public var batchWeights: [Double]
    /// C × C distances between type centroids in PCA space (averaged over batches), 0 = undefined.
    public var pcaDistances: [Double]
    public var types: Int { classWeights.count }
}

public struct CELLULARLossResult {
    public var loss: Double
    public var target: Double, batch: Double, centroid: Double
    /// ∂L/∂e, B × d (raw embeddings), and ∂L/∂τ.
    public var gradient: [Double]
    public var gradTemperature: Double
}

public enum CELLULARLoss {
    /// The loss of a batch of raw embeddings `e` (B × d, row-major) with type codes `labels` (0..<C,
    /// −1 = unlabelled: excluded from every term) and batch codes `batches` (nil: no batch term).
    public static func evaluate(_ e: [Float], rows b: Int, dim d: Int, labels: [Int32], batches: [Int32]?,
                                temperature tau: Double, batchTemperature tauB: Double,
                                statistics st: CELLULARStatistics, weights w: CELLULARLossWeights) -> CELLULARLossResult {
        var grad = [Double](repeating: 0, count: b * d)
        guard b > 0 else { return CELLULARLossResult(loss: 0, target: 0, batch: 0, centroid: 0, gradient: grad, gradTemperature: 0) }
        // Unit rows and the Gram matrix of cosines.
        var norms = [Double](repeating: 0, count: b)
        var unit = [Float](repeating: 0, count: b * d)
        for i in 0..<b {
            var s = 0.0
            for t in 0..<d { s += Double(e[i * d + t]) * Double(e[i * d + t]) }
            norms[i] = max(s.squareRoot(), 1e-12)
            for t in 0..<d { unit[i * d + t] = Float(Double(e[i * d + t]) / norms[i]) }
        }
        var gram = [Float](repeating: 0, count: b * b)
        unit.withUnsafeBufferPointer { u in
            gram.withUnsafeMutableBufferPointer { g in
                Linalg.sgemm(transA: false, transB: true, m: b, n: b, k: d, alpha: 1, a: u.baseAddress!, lda: d,
                             b: u.baseAddress!, ldb: d, beta: 0, c: g.baseAddress!, ldc: b)
            }
        }
        // dL/dc_ij accumulated per ordered pair (anchor row i), then symmetrised through ê.
        var dC = [Double](repeating: 0, count: b * b)
        var gTau = 0.0

        // Target term.
        var lTarget = 0.0
        do {
            var valid = [Bool](repeating: false, count: b)
            var validPerType = [Int](repeating: 0, count: st.types)
            for i in 0..<b where labels[i] >= 0 {
                var pos = 0, neg = 0
                for j in 0..<b where j != i && labels[j] >= 0 { if labels[j] == labels[i] { pos += 1 } else { neg += 1 } }
                if pos >= 1 && neg >= 1 { valid[i] = true; validPerType[Int(labels[i])] += 1 }
            }
            for i in 0..<b where valid[i] {
                let a = st.classWeights[Int(labels[i])] / Double(validPerType[Int(labels[i])])
                var p = 0.0, n = 0.0
                for j in 0..<b where j != i && labels[j] >= 0 {
                    let s = Foundation.exp(Double(gram[i * b + j]) / tau)
                    if labels[j] == labels[i] { p += s } else { n += s }
                }
                lTarget += a * (Foundation.log(p + n) - Foundation.log(p))
                for j in 0..<b where j != i && labels[j] >= 0 {
                    let c = Double(gram[i * b + j]), s = Foundation.exp(c / tau)
                    let q = labels[j] == labels[i] ? (1 / (p + n) - 1 / p) : 1 / (p + n)
                    dC[i * b + j] += w.target * a * q * s / tau
                    gTau += w.target * a * q * (-s * c / (tau * tau))
                }
            }
        }

        // Batch term.
        var lBatch = 0.0
        if let bt = batches, !st.batchWeights.isEmpty {
            var valid = [Bool](repeating: false, count: b)
            var validPerBatch = [Int](repeating: 0, count: st.batchWeights.count)
            for i in 0..<b where labels[i] >= 0 && bt[i] >= 0 {
                var pos = 0, neg = 0
                for j in 0..<b where j != i && labels[j] == labels[i] && bt[j] >= 0 { if bt[j] == bt[i] { pos += 1 } else { neg += 1 } }
                if pos >= 1 && neg >= 1 { valid[i] = true; validPerBatch[Int(bt[i])] += 1 }
            }
            for i in 0..<b where valid[i] {
                let a = st.batchWeights[Int(bt[i])] / Double(validPerBatch[Int(bt[i])])
                var p = 0.0, n = 0.0
                for j in 0..<b where j != i && labels[j] == labels[i] && bt[j] >= 0 {
                    let s = Foundation.exp(Double(gram[i * b + j]) / tauB)
                    if bt[j] == bt[i] { p += s } else { n += s }
                }
                let m = max(Foundation.log(p + n) - Foundation.log(p), 1e-9)
                lBatch += a / m
                let dm = -a / (m * m)          // d(a/m)/dm
                for j in 0..<b where j != i && labels[j] == labels[i] && bt[j] >= 0 {
                    let s = Foundation.exp(Double(gram[i * b + j]) / tauB)
                    let q = bt[j] == bt[i] ? (1 / (p + n) - 1 / p) : 1 / (p + n)
                    dC[i * b + j] += w.batch * dm * q * s / tauB
                }
            }
        }

        // dL/dê_i = Σ_j (dC_ij + dC_ji) ê_j; then through the normalisation.
        for i in 0..<b {
            var gu = [Double](repeating: 0, count: d)
            for j in 0..<b where j != i {
                let k = dC[i * b + j] + dC[j * b + i]
                if k == 0 { continue }
                for t in 0..<d { gu[t] += k * Double(unit[j * d + t]) }
            }
            var dot = 0.0
            for t in 0..<d { dot += gu[t] * Double(unit[i * d + t]) }
            for t in 0..<d { grad[i * d + t] = (gu[t] - dot * Double(unit[i * d + t])) / norms[i] }
        }

        // Centroid term on the raw embeddings.
        var lCentroid = 0.0
        do {
            let c = st.types
            var count = [Int](repeating: 0, count: c)
            var mu = [Double](repeating: 0, count: c * d)
            for i in 0..<b where labels[i] >= 0 {
                let y = Int(labels[i]); count[y] += 1
                for t in 0..<d { mu[y * d + t] += Double(e[i * d + t]) }
            }
            for y in 0..<c where count[y] > 0 { for t in 0..<d { mu[y * d + t] /= Double(count[y]) } }
            var pairs: [(Int, Int)] = []
            for p in 0..<c where count[p] > 0 { for q in (p + 1)..<max(c, p + 1) where count[q] > 0 && st.pcaDistances[p * c + q] > 0 { pairs.append((p, q)) } }
            if !pairs.isEmpty {
                let u = pairs.map { (p, q) -> Double in
                    var s = 0.0
                    for t in 0..<d { let x = mu[p * d + t] - mu[q * d + t]; s += x * x }
                    return s.squareRoot()
                }
                let v0 = pairs.map { st.pcaDistances[$0.0 * c + $0.1] }
                let mU = max(u.max()!, 1e-12), mV = v0.max()!
                let k = Double(pairs.count)
                var resid = [Double](repeating: 0, count: pairs.count)
                for (n, _) in pairs.enumerated() {
                    resid[n] = u[n] / mU - v0[n] / mV
                    lCentroid += resid[n] * resid[n] / k
                }
                // dL/du_n = 2 r_n / (K M) for every pair, and through M = u_argmax: −2 Σ r_q u_q / (K M²).
                var du = resid.map { 2 * $0 / (k * mU) }
                let arg = u.firstIndex(of: u.max()!)!
                du[arg] -= 2 * zip(resid, u).reduce(0) { $0 + $1.0 * $1.1 } / (k * mU * mU)
                var dmu = [Double](repeating: 0, count: c * d)
                for (n, (p, q)) in pairs.enumerated() where u[n] > 0 {
                    for t in 0..<d {
                        let g = du[n] * (mu[p * d + t] - mu[q * d + t]) / u[n]
                        dmu[p * d + t] += g; dmu[q * d + t] -= g
                    }
                }
                for i in 0..<b where labels[i] >= 0 {
                    let y = Int(labels[i])
                    for t in 0..<d { grad[i * d + t] += w.centroid * dmu[y * d + t] / Double(count[y]) }
                }
            }
        }
        let loss = w.target * lTarget + w.batch * lBatch + w.centroid * lCentroid
        return CELLULARLossResult(loss: loss, target: lTarget, batch: lBatch, centroid: lCentroid, gradient: grad, gradTemperature: gTau)
    }
}
