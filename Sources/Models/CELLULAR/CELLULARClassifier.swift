// CELLULAR's cell-type classifier on the frozen embedding (MODELS.md §6.5), its novelty score and the
// per-type representations.
//
// Deviations from the reference, each deliberate:
// - LayerNorm instead of BatchNorm1d between the layers: batch statistics would depend on how the
//   global batch is split over ranks (a synchronised BatchNorm needs collectives inside the backward
//   pass, which ranks with no rows in a step skip); LayerNorm is per cell.
// - Cross-entropy on the logits; the reference applies nn.CrossEntropyLoss to a softmax output
//   (softmax twice), which flattens its gradients.
// - No Optuna search: the reference's defaults without it (512, 512, dropout 0.2).
// - Novelty: besides the reference's dataset-level flag (min over cells of the rescaled top
//   probability < 0.25), a per-cell score — the distance of the unit embedding to the nearest training
//   type centroid, in units of that type's 95th-percentile radius — and a per-cell call: score above
//   the `novelty_quantile` (default 0.99) of the score on the held-out validation cells, whose types are
//   all known (so about 1 % of cells of known types are called novel).
import Autograd
import Collectives
import Foundation
import NN
import Settings
import TensorCore
import Training

/// The `classifier:` section of `annotate`.
public struct CELLULARClassifierSettings: SettingsSection, Equatable {
    @Setting("Hidden widths (reference default without Optuna: [512, 512]).")
    public var hidden = [512, 512]
    @Setting("Dropout after the first hidden layer (reference 0.2).", min: 0, max: 0.95)
    public var dropout: Float = 0.2
    @Setting("Maximum epochs (reference 50).", min: 1)
    public var epochs = 50
    @Setting("Warm-up epochs before the cosine decay (reference 4).", min: 0)
    public var warmupEpochs = 4
    @Setting("Early stopping patience in epochs (reference 10).", min: 1)
    public var patience = 10
    @Setting("Quantile of the validation cells' novelty score above which a cell is called novel.", min: 0.5, max: 1)
    public var noveltyQuantile = 0.99
    @Setting("The reference's dataset-level flag: a novel type is present when some cell's rescaled top probability is below this (reference 0.25).", min: 0, max: 1)
    public var noveltyFlagThreshold = 0.25
    public init() {}
    public func validate() throws {
        if hidden.isEmpty || hidden.contains(where: { $0 < 1 }) { throw SettingsError(key: "classifier.hidden", "needs positive widths") }
    }
}

/// An MLP from the embedding to type logits, trained by the Trainer on the training split.
public final class CELLULARClassifier: TrainingTask {
    public let store = ParameterStore()
    public var lossTermNames: [String] { [] }
    let settings: CELLULARClassifierSettings
    let seed: UInt64
    let input: Tensor               // local rows × d (frozen embeddings)
    let cellIds: [Int64]
    let labels: [Int32]
    let types: Int
    let trainRows: [Int], validationRows: [Int], validationIds: [Int64], validationTotal: Int
    public let trainingCells: (ids: [Int64], idSpace: Int)
    let layers: [Linear], norms: [LayerNorm], inputNorm: LayerNorm
    let best: Parameter, stopping: Parameter

    /// Collective. `split`: the embedding model's validation mask (the same cells are held out).
    public init(embedding: Tensor, cellIds: [Int64], labels: [Int32], types: Int, validation: [Bool],
                settings: CELLULARClassifierSettings, seed: UInt64, comm: Communicator) throws {
        self.settings = settings; self.seed = seed; input = embedding; self.cellIds = cellIds; self.labels = labels; self.types = types
        var rng = RandomStream(seed: seed, purpose: .custom("cellular-classifier"))
        let s = store
        inputNorm = LayerNorm(s, "input_norm", features: embedding.cols)
        let widths = [embedding.cols] + settings.hidden + [types]
        var ls: [Linear] = [], ns: [LayerNorm] = []
        for l in 0..<(widths.count - 1) {
            ls.append(Linear(s, "layer\(l)", inputs: widths[l], outputs: widths[l + 1], rng: &rng))
            if l < widths.count - 2 { ns.append(LayerNorm(s, "norm\(l)", features: widths[l + 1])) }
        }
        layers = ls; norms = ns
        best = s.addBuffer("best_parameters", rows: 1, cols: max(s.count, 1), fill: 0)
        stopping = s.addBuffer("early_stopping", rows: 1, cols: 3, fill: 0)
        stopping.value.pointer[0] = .infinity
        let train = zip(labels, validation).map { $0 >= 0 && !$1 }
        trainRows = train.indices.filter { train[$0] }
        validationRows = validation.indices.filter { validation[$0] }
        let t = try StratifiedSplit.compactIds(ids: cellIds, keep: train, comm: comm)
        trainingCells = (t.ids, t.total)
        let v = try StratifiedSplit.compactIds(ids: cellIds, keep: validation, comm: comm)
        validationIds = v.ids; validationTotal = v.total
    }

    func logits(_ rows: [Int], tape: Tape, dropoutKey: (epoch: Int, step: Int)?) -> Var {
        let d = input.cols
        let x = tape.zeros(max(rows.count, 1), d)
        for (i, r) in rows.enumerated() { (x.pointer + i * d).update(from: input.pointer + r * d, count: d) }
        var h = inputNorm(tape.constant(x), tape)
        for (l, layer) in layers.enumerated() {
            h = layer(h, tape)
            guard l < norms.count else { break }
            h = tape.relu(norms[l](h, tape))
            if l == 0, let key = dropoutKey, settings.dropout > 0 {
                let w = layer.weight.value.cols, keep = 1 - settings.dropout
                let mask = tape.alloc(max(rows.count, 1), w)
                let base = RandomStream(seed: seed, purpose: .custom("cellular-classifier-dropout")).split(UInt64(key.epoch)).split(UInt64(key.step))
                for (i, r) in rows.enumerated() {
                    var st = base.split(UInt64(bitPattern: cellIds[r]))
                    for c in 0..<w { mask.pointer[i * w + c] = st.uniform() < keep ? 1 / keep : 0 }
                }
                h = tape.mul(h, tape.constant(mask))
            }
        }
        return h
    }

    /// Mean cross-entropy of `rows` (local) on the tape.
    func crossEntropy(_ rows: [Int], tape: Tape, dropoutKey: (epoch: Int, step: Int)?) -> Var {
        let z = tape.logSoftmax(logits(rows, tape: tape, dropoutKey: dropoutKey))
        let onehot = tape.zeros(max(rows.count, 1), types)
        for (i, r) in rows.enumerated() { onehot.pointer[i * types + Int(labels[r])] = -1 / Float(rows.count) }
        return tape.sum(tape.mul(z, tape.constant(onehot)))
    }

    public func loss(rows: [Int], context: StepContext, tape: Tape) throws -> (loss: Var, terms: [Float]) {
        if rows.isEmpty { return (tape.constant(Tensor.scalar(0)), []) }
        return (crossEntropy(rows.map { trainRows[$0] }, tape: tape, dropoutKey: (context.epoch, context.step)), [])
    }

    public func epochDidEnd(_ epoch: Int, trainer: Trainer) throws {
        guard validationTotal > 0 else { return }
        let tape = Tape()
        tape.training = false
        var sum = 0.0
        if !validationRows.isEmpty {
            let l = crossEntropy(validationRows, tape: tape, dropoutKey: nil)
            sum = Double(tape.value(l).scalar) * Double(validationRows.count)
        }
        let v = try trainer.comm.allreduce(value: sum, op: .sum) / Double(validationTotal)
        let st = stopping.value.pointer
        if v < Double(st[0]) {
            st[0] = Float(v); st[1] = 0; st[2] = Float(epoch)
            best.value.pointer.update(from: store.valuesPointer, count: store.count)
        } else { st[1] += 1 }
        if Int(st[1]) >= settings.patience { trainer.finishRequested = true }
    }

    public func restoreBest() {
        guard stopping.value.pointer[0].isFinite else { return }
        store.valuesPointer.update(from: best.value.pointer, count: store.count)
    }

    /// Softmax probabilities of every local row (rows × types).
    public func probabilities() -> Tensor {
        Tape.inferInBlocks(globalIds: cellIds, cols: types) { $1.softmax(logits($0, tape: $1, dropoutKey: nil)) }
    }
}

/// Distance-to-type-centroid novelty (see the file header): centroids of the unit embeddings of the
/// training cells of each type and their 95th-percentile radii.
public struct CELLULARNovelty: Codable, Sendable, Equatable {
    public var centroids: [Float]        // types × d, unit-embedding space
    public var radii: [Float]            // per type
    public var threshold: Double         // the score above which a cell is called novel
    public var dim: Int

    static func unit(_ e: Tensor, _ i: Int) -> [Float] {
        let d = e.cols
        var s: Float = 0
        for t in 0..<d { s += e[i, t] * e[i, t] }
        let inv = s > 0 ? 1 / s.squareRoot() : 0
        return (0..<d).map { e[i, $0] * inv }
    }

    /// Collective. From the embeddings of labelled cells; the threshold from the validation cells.
    public static func fit(embedding e: Tensor, labels: [Int32], types: Int, train: [Bool], validation: [Bool],
                           quantile: Double, comm: Communicator) throws -> CELLULARNovelty {
        let d = e.cols
        var sums = [Double](repeating: 0, count: types * (d + 1))
        for i in 0..<e.rows where train[i] {
            let u = unit(e, i), y = Int(labels[i])
            for t in 0..<d { sums[y * (d + 1) + t] += Double(u[t]) }
            sums[y * (d + 1) + d] += 1
        }
        try comm.allreduce(&sums, op: .sum)
        var centroids = [Float](repeating: 0, count: types * d)
        for y in 0..<types where sums[y * (d + 1) + d] > 0 {
            for t in 0..<d { centroids[y * d + t] = Float(sums[y * (d + 1) + t] / sums[y * (d + 1) + d]) }
        }
        func dist(_ u: [Float], _ y: Int) -> Float {
            var s: Float = 0
            for t in 0..<d { let x = u[t] - centroids[y * d + t]; s += x * x }
            return s.squareRoot()
        }
        var own = [Float](repeating: 0, count: e.rows), group = [Int32](repeating: -1, count: e.rows)
        for i in 0..<e.rows where train[i] { own[i] = dist(unit(e, i), Int(labels[i])); group[i] = labels[i] }
        let radii = try DistributedQuantile.perGroup(own, groups: group, groupCount: types, quantile: 0.95, comm: comm)
            .map { max($0, 1e-6) }
        var model = CELLULARNovelty(centroids: centroids, radii: radii, threshold: .infinity, dim: d)
        let scores = model.scores(e)
        let vGroups = validation.map { $0 ? Int32(0) : -1 }
        model.threshold = Double(try DistributedQuantile.perGroup(scores, groups: vGroups, groupCount: 1, quantile: quantile, comm: comm)[0])
        return model
    }

    /// min over types of (distance to the type's centroid / its radius), per row; types with no
    /// training cells are skipped.
    public func scores(_ e: Tensor) -> [Float] {
        let types = radii.count
        return (0..<e.rows).map { i in
            let u = CELLULARNovelty.unit(e, i)
            var best = Float.infinity
            for y in 0..<types {
                var s: Float = 0, any: Float = 0
                for t in 0..<dim { let x = u[t] - centroids[y * dim + t]; s += x * x; any += abs(centroids[y * dim + t]) }
                if any > 0 { best = min(best, s.squareRoot() / radii[y]) }
            }
            return best
        }
    }
}

/// Quantiles of values spread over ranks, by bisection with allreduced counts (no rank gathers them).
public enum DistributedQuantile {
    /// Per group (codes 0..<groupCount; −1 = in no group): the smallest value v with
    /// #{x ≤ v} ≥ quantile · n (NaN for an empty group). 40 halvings of the group's range: a relative
    /// resolution of 2⁻⁴⁰ of the range, far below float32 spacing of typical values.
    public static func perGroup(_ values: [Float], groups: [Int32], groupCount: Int, quantile: Double,
                                comm: Communicator) throws -> [Float] {
        var range = [Double](repeating: 0, count: 3 * groupCount)   // -min, max, count
        for g in 0..<groupCount { range[g] = -.infinity; range[groupCount + g] = -.infinity }
        for (v, g) in zip(values, groups) where g >= 0 {
            range[Int(g)] = max(range[Int(g)], -Double(v)); range[groupCount + Int(g)] = max(range[groupCount + Int(g)], Double(v))
        }
        var mm = Array(range[0..<(2 * groupCount)])
        try comm.allreduce(&mm, op: .max)
        var n = [Double](repeating: 0, count: groupCount)
        for g in groups where g >= 0 { n[Int(g)] += 1 }
        try comm.allreduce(&n, op: .sum)
        var lo = (0..<groupCount).map { -mm[$0] }, hi = (0..<groupCount).map { mm[groupCount + $0] }
        let want = n.map { ($0 * quantile).rounded(.up) }
        for _ in 0..<40 {
            let mid = zip(lo, hi).map { ($0 + $1) / 2 }
            var below = [Double](repeating: 0, count: groupCount)
            for (v, g) in zip(values, groups) where g >= 0 && Double(v) <= mid[Int(g)] { below[Int(g)] += 1 }
            try comm.allreduce(&below, op: .sum)
            for g in 0..<groupCount { if below[g] >= want[g] { hi[g] = mid[g] } else { lo[g] = mid[g] } }
        }
        return (0..<groupCount).map { n[$0] > 0 ? Float(hi[$0]) : .nan }
    }
}
