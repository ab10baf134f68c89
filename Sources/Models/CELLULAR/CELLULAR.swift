// CELLULAR (Andrekson & Mercado; PyPI CELLULAR-CL 0.0.4): a supervised, batch-aware embedding of
// cells (MODELS.md §6), as a data-parallel `Model`. The only model that reads the labels.
//
// Network: LayerNorm(G) → Linear(G→1000) → LayerNorm → ReLU → Dropout(0.2) → Linear(1000→500) →
// LayerNorm → ReLU → Linear(500→100), on log1p-normalised HVG values (dense per batch).
// Loss: CELLULARLoss (cell-type contrast with class weights of the whole training set, batch mixing
// within types, centroid distances against PCA centroids), over the GLOBAL batch: the ranks'
// embeddings are gathered (B × 100 floats) and sorted by cell id, every rank evaluates the same loss,
// and each back-propagates the gradient of its own rows. The result does not depend on the rank count.
//
// Deviations from the reference code, each deliberate:
// - A loss that cannot be formed on a batch (one type only, no positive) is not an exception that
//   skips the batch: the terms simply have no valid anchors there (MODELS.md §6.3).
// - The temperature is clamped to [min, max] before every step, as the reference does in place.
// - Dropout masks come from streams keyed by (seed, epoch, step, cell id), so they are the same on any
//   rank count; the reference draws them from one global torch stream.
// - The validation split is label-stratified and exact per type (`StratifiedSplit`), seeded by the
//   run's seed; the reference uses StratifiedKFold(5, shuffle, 42)'s first fold. Types with one cell
//   stay in training. Early stopping keeps the parameters of the best validation loss, as the reference.
// - The PCA of the centroid targets is fitted on a seeded subsample (`pca_cells`, default 20,000
//   training cells) and the per-(batch, type) centroids of all training cells are projected on it: at
//   scale a dense PCA of every training cell would be O(N × genes) per rank.
// - HVGs are chosen on the whole training file (labels play no part); the reference chooses them on
//   its training split only.
// - The reference hard-codes obs['cell_type'] for the centroid targets; here the label key is used.
import Autograd
import CellData
import Collectives
import Foundation
import Logging
import NN
import TensorCore
import Training

public final class CELLULAR: Model {
    public typealias Hyperparameters = CELLULARHyperparameters
    public static let name = "cellular"
    public static let summary = "supervised batch-aware contrastive embedding, cell-type annotation, novel types (Andrekson & Mercado)"
    public let hyperparameters: Hyperparameters
    public let store = ParameterStore()
    public var lossTermNames: [String] { ["target", "batch", "centroid"] }
    public var totalEpochs: Int { hyperparameters.epochs }
    public func phase(atEpoch epoch: Int) -> TrainingPhase { .fineTune }
    public var embeddingDim: Int { hyperparameters.latent }

    let comm: Communicator
    let seed: UInt64
    /// This rank's cells over the model's genes (log1p-normalised, CSR).
    let x: CSRMatrix
    public let cellIds: [Int64]
    /// Training-time data (nil for a model loaded to embed a query).
    let labels: [Int32]?, batches: [Int32]?
    public let labelNames: [String], batchNames: [String]
    public let genes: [String]
    public let statistics: CELLULARStatistics
    let weights: CELLULARLossWeights
    /// Local rows in training and in validation; compact ids of the training rows.
    let trainRows: [Int], validationRows: [Int]
    let validationIds: [Int64], validationTotal: Int
    public let trainingCells: (ids: [Int64], idSpace: Int)?

    let layers: [Linear], norms: [LayerNorm], inputNorm: LayerNorm
    let temperature: Parameter
    /// Early stopping: the best parameters so far and [best validation loss, epochs since, best epoch].
    let best: Parameter, stopping: Parameter
    public private(set) var validationHistory: [Double] = []

    // MARK: building

    /// Collective. Training: `input.labels` required (the label key); `input.batches` optional.
    public convenience init(input: Dataset, hyperparameters h: Hyperparameters, context: ModelContext, comm: Communicator) throws {
        guard let labels = input.labels else {
            throw CellDataError("cellular is supervised: give the label key (--label-key KEY)")
        }
        try self.init(x: input.x, cellIds: input.cellIds, genes: input.shard.geneNames, labels: labels, labelNames: input.labelNames,
                      batches: input.batches, batchNames: input.batchNames, statistics: nil, hyperparameters: h, seed: context.seed, comm: comm)
    }

    /// Collective. `statistics` nil: computed from the labelled training cells (training); given: a
    /// saved model applied to new cells (no labels needed).
    public init(x: CSRMatrix, cellIds: [Int64], genes: [String], labels: [Int32]?, labelNames: [String], batches: [Int32]?,
                batchNames: [String], statistics: CELLULARStatistics?, hyperparameters h: Hyperparameters, seed: UInt64,
                comm: Communicator) throws {
        self.hyperparameters = h; self.comm = comm; self.seed = seed
        self.x = x; self.cellIds = cellIds; self.genes = genes
        self.labels = labels; self.batches = batches; self.labelNames = labelNames; self.batchNames = batchNames
        let useBatches = batches != nil && batchNames.count > 1
        weights = CELLULARLossWeights(target: useBatches ? h.targetWeight : 1, batch: useBatches ? h.batchWeight : 0, centroid: h.centroidWeight)
        var rng = RandomStream(seed: seed, purpose: .initialization)
        let s = store
        inputNorm = LayerNorm(s, "input_norm", features: x.cols)
        let widths = [x.cols] + h.hidden + [h.latent]
        var ls: [Linear] = [], ns: [LayerNorm] = []
        for l in 0..<(widths.count - 1) {
            ls.append(Linear(s, "layer\(l)", inputs: widths[l], outputs: widths[l + 1], rng: &rng))
            if l < widths.count - 2 { ns.append(LayerNorm(s, "norm\(l)", features: widths[l + 1])) }
        }
        layers = ls; norms = ns
        temperature = s.add("temperature", rows: 1, cols: 1, .zeros, rng: &rng)
        temperature.value.pointer[0] = h.temperature
        best = s.addBuffer("best_parameters", rows: 1, cols: max(s.count, 1), fill: 0)
        stopping = s.addBuffer("early_stopping", rows: 1, cols: 3, fill: 0)
        stopping.value.pointer[0] = .infinity

        if let labels {
            let types = labelNames.count
            let val = try StratifiedSplit.validationMask(ids: cellIds, labels: labels, types: types, fraction: h.validationFraction,
                                                         seed: seed, comm: comm)
            let inTraining = zip(labels, val).map { $0 >= 0 && !$1 }
            trainRows = inTraining.indices.filter { inTraining[$0] }
            validationRows = val.indices.filter { val[$0] }
            let t = try StratifiedSplit.compactIds(ids: cellIds, keep: inTraining, comm: comm)
            trainingCells = (t.ids, t.total)
            let v = try StratifiedSplit.compactIds(ids: cellIds, keep: val, comm: comm)
            validationIds = v.ids; validationTotal = v.total
            self.statistics = try statistics ?? Self.trainingStatistics(x: x, rows: trainRows, ids: cellIds, labels: labels, types: types,
                                                                    batches: useBatches ? batches : nil, batchCount: batchNames.count,
                                                                    h: h, seed: seed, comm: comm)
            Logger(label: "syncytium.cellular").info("cellular: \(t.total) training and \(v.total) validation cells, \(types) types\(useBatches ? ", \(batchNames.count) batches" : "")")
        } else {
            guard let st = statistics else { preconditionFailure("a CELLULAR model without labels needs its saved statistics") }
            self.statistics = st
            trainRows = []; validationRows = []; validationIds = []; validationTotal = 0; trainingCells = nil
        }
    }

    /// Collective: class and batch weights over the training cells, and the PCA centroid distances.
    static func trainingStatistics(x: CSRMatrix, rows: [Int], ids: [Int64], labels: [Int32], types: Int, batches: [Int32]?,
                                   batchCount: Int, h: Hyperparameters, seed: UInt64, comm: Communicator) throws -> CELLULARStatistics {
        let nb = batches == nil ? 1 : batchCount
        var counts = [Double](repeating: 0, count: types + nb)
        for r in rows {
            counts[Int(labels[r])] += 1
            if let b = batches, b[r] >= 0 { counts[types + Int(b[r])] += 1 }
        }
        try comm.allreduce(&counts, op: .sum)
        func normalisedInverse(_ c: ArraySlice<Double>) -> [Double] {
            let inv = c.map { $0 > 0 ? 1 / $0 : 0 }, s = inv.reduce(0, +)
            return inv.map { s > 0 ? $0 / s : 0 }
        }
        let classWeights = normalisedInverse(counts[0..<types])
        let batchWeights = batches == nil ? [] : normalisedInverse(counts[types...])
        // PCA basis on a seeded subsample of the training cells (dense log values).
        let g = x.cols
        let trainingTotal = Double(try comm.allreduce(value: Int64(rows.count), op: .sum))
        let keepFraction = min(1, Double(h.pcaCells) / max(1, trainingTotal))
        let threshold = keepFraction >= 1 ? UInt64.max : UInt64(keepFraction * 0x1p63) << 1
        let sample = rows.filter { keepFraction >= 1 || StratifiedSplit.key(seed: seed &+ 1, id: ids[$0]) <= threshold }
        let nSample = Int(try comm.allreduce(value: Int64(sample.count), op: .sum))
        var dense = [Float](repeating: 0, count: sample.count * g)
        for (i, r) in sample.enumerated() {
            for e in Int(x.rowPtr[r])..<Int(x.rowPtr[r + 1]) { dense[i * g + Int(x.colIdx[e])] = x.values[e] }
        }
        let k = min(h.pcaComponents, g, max(nSample - 1, 1))
        let pca = try Preprocess.pca(&dense, localRows: sample.count, nVars: g, nComps: k, nObs: nSample, seed: seed, comm: comm)
        // Per (batch, type) gene-space centroids of all training cells, projected on the axes.
        var sums = [Double](repeating: 0, count: nb * types * (g + 1))
        for r in rows {
            let b = batches.map { max(Int($0[r]), 0) } ?? 0, y = Int(labels[r])
            let base = (b * types + y) * (g + 1)
            sums[base + g] += 1
            for e in Int(x.rowPtr[r])..<Int(x.rowPtr[r + 1]) { sums[base + Int(x.colIdx[e])] += Double(x.values[e]) }
        }
        try comm.allreduce(&sums, op: .sum)
        let kc = pca.nComps
        var proj = [Double](repeating: 0, count: nb * types * kc)
        for bt in 0..<(nb * types) where sums[bt * (g + 1) + g] > 0 {
            let n = sums[bt * (g + 1) + g]
            for c in 0..<kc {
                var s = 0.0
                for j in 0..<g { s += sums[bt * (g + 1) + j] / n * Double(pca.components[c * g + j]) }
                proj[bt * kc + c] = s
            }
        }
        var dist = [Double](repeating: 0, count: types * types), seen = [Double](repeating: 0, count: types * types)
        for b in 0..<nb {
            for p in 0..<types where sums[(b * types + p) * (g + 1) + g] > 0 {
                for q in 0..<types where q != p && sums[(b * types + q) * (g + 1) + g] > 0 {
                    var s = 0.0
                    for c in 0..<kc { let d = proj[(b * types + p) * kc + c] - proj[(b * types + q) * kc + c]; s += d * d }
                    dist[p * types + q] += s.squareRoot(); seen[p * types + q] += 1
                }
            }
        }
        for e in 0..<dist.count where seen[e] > 0 { dist[e] /= seen[e] }
        let m = dist.max() ?? 0
        if m > 0 { for e in 0..<dist.count { dist[e] /= m } }
        return CELLULARStatistics(classWeights: classWeights, batchWeights: batchWeights, pcaDistances: dist)
    }

    // MARK: forward

    /// Raw embeddings of the local rows `rows`; with `dropoutKey` (epoch, step) the training dropout.
    func forward(_ rows: [Int], tape: Tape, dropoutKey: (epoch: Int, step: Int)?) -> Var {
        let g = x.cols
        let input = tape.zeros(max(rows.count, 1), g)
        for (i, r) in rows.enumerated() {
            for e in Int(x.rowPtr[r])..<Int(x.rowPtr[r + 1]) { input.pointer[i * g + Int(x.colIdx[e])] = x.values[e] }
        }
        var h = inputNorm(tape.constant(input), tape)
        for (l, layer) in layers.enumerated() {
            h = layer(h, tape)
            guard l < norms.count else { break }
            h = tape.relu(norms[l](h, tape))
            if l == 0, let key = dropoutKey, hyperparameters.dropout > 0 {
                // Inverted dropout, one stream per (seed, epoch, step, cell): the same on any rank count.
                let w = layers[0].weight.value.cols, keep = 1 - hyperparameters.dropout
                let mask = tape.alloc(max(rows.count, 1), w)
                let base = RandomStream(seed: seed, purpose: .augmentation).split(UInt64(key.epoch)).split(UInt64(key.step))
                for (i, r) in rows.enumerated() {
                    var s = base.split(UInt64(bitPattern: cellIds[r]))
                    for c in 0..<w { mask.pointer[i * w + c] = s.uniform() < keep ? 1 / keep : 0 }
                }
                h = tape.mul(h, tape.constant(mask))
            }
        }
        return h
    }

    /// The global-batch loss as a tape op (see the file header). Collective.
    func globalBatchLoss(_ e: Var, rows: [Int], tape: Tape) throws -> (Var, [Float]) {
        let d = embeddingDim
        let local = rows.isEmpty ? [] : Array(tape.value(e).scalars.prefix(rows.count * d))
        let ids = rows.map { cellIds[$0] }
        let lab = rows.map { labels?[$0] ?? -1 }, bat = rows.map { batches?[$0] ?? -1 }
        let allIds = try comm.allgatherv(ids).values
        let allE = try comm.allgatherv(local).values
        let allLab = try comm.allgatherv(lab).values, allBat = try comm.allgatherv(bat).values
        let order = allIds.indices.sorted { allIds[$0] < allIds[$1] }
        let b = order.count
        var se = [Float](repeating: 0, count: b * d)
        for (p, i) in order.enumerated() { for t in 0..<d { se[p * d + t] = allE[i * d + t] } }
        let tau = Double(temperature.value.pointer[0])
        let r = CELLULARLoss.evaluate(se, rows: b, dim: d, labels: order.map { allLab[$0] },
                                      batches: weights.batch > 0 ? order.map { allBat[$0] } : nil,
                                      temperature: tau, batchTemperature: Double(hyperparameters.batchTemperature),
                                      statistics: statistics, weights: weights)
        // Position of each local row in the sorted global batch.
        var position: [Int64: Int] = [:]
        for (p, i) in order.enumerated() { position[allIds[i]] = p }
        let out = tape.alloc(1, 1)
        out.pointer[0] = Float(r.loss)
        let scale = Double(b) / Double(max(rows.count, 1))   // cancels the Trainer's n_r / B weight
        let tv = tape.param(temperature)
        let lossVar = tape.push(out, requiresGrad: !rows.isEmpty) { t, go in
            let s = Double(go.pointer[0])
            if let (ge, beta) = t.gradTarget(e) {
                for (i, id) in ids.enumerated() {
                    let p = position[id]!
                    for c in 0..<d {
                        let v = Float(s * scale * r.gradient[p * d + c])
                        ge.pointer[i * d + c] = beta == 0 ? v : ge.pointer[i * d + c] + v
                    }
                }
            }
            if let (gt, beta) = t.gradTarget(tv) {
                let v = Float(s * r.gradTemperature)
                gt.pointer[0] = beta == 0 ? v : gt.pointer[0] + v
            }
        }
        return (lossVar, [Float(r.target), Float(r.batch), Float(r.centroid)])
    }

    // MARK: TrainingTask

    public func loss(rows: [Int], context: StepContext, tape: Tape) throws -> (loss: Var, terms: [Float]) {
        // Clamp the learnable temperature as the reference does before every step.
        let tp = temperature.value.pointer
        tp[0] = min(max(tp[0], hyperparameters.minTemperature), hyperparameters.maxTemperature)
        let local = rows.map { trainRows[$0] }
        let e = forward(local, tape: tape, dropoutKey: (context.epoch, context.step))
        return try globalBatchLoss(e, rows: local, tape: tape)
    }

    /// Collective: the mean loss over the validation cells, in global batches of `batch` by compact id.
    public func validationLoss(batch: Int = 256) throws -> Double {
        guard validationTotal > 0 else { return .nan }
        let tape = Tape()
        tape.training = false
        var total = 0.0, weight = 0.0
        var start = 0
        while start < validationTotal {
            let end = min(validationTotal, start + batch)
            let rows = validationIds.indices.filter { validationIds[$0] >= Int64(start) && validationIds[$0] < Int64(end) }.map { validationRows[$0] }
            tape.reset()
            let e = forward(rows, tape: tape, dropoutKey: nil)
            let (l, _) = try globalBatchLoss(e, rows: rows, tape: tape)
            total += Double(tape.value(l).scalar) * Double(end - start); weight += Double(end - start)
            start = end
        }
        return total / weight
    }

    public func epochDidEnd(_ epoch: Int, trainer: Trainer) throws {
        guard validationTotal > 0 else { return }
        let v = try validationLoss()
        validationHistory.append(v)
        let st = stopping.value.pointer
        if v < Double(st[0]) {
            st[0] = Float(v); st[1] = 0; st[2] = Float(epoch)
            best.value.pointer.update(from: store.valuesPointer, count: store.count)
        } else {
            st[1] += 1
        }
        Logger(label: "syncytium.cellular").info("cellular: epoch \(epoch + 1): validation loss \(String(format: "%.5f", v))\(st[1] == 0 ? " (best)" : "")")
        if Int(st[1]) >= hyperparameters.patience {
            Logger(label: "syncytium.cellular").info("cellular: early stop after epoch \(epoch + 1); best epoch \(Int(st[2]) + 1)")
            trainer.finishRequested = true
        }
    }

    /// Restores the parameters of the best validation loss (if any epoch was validated).
    public func trainingDidEnd() throws {
        guard stopping.value.pointer[0].isFinite else { return }
        store.valuesPointer.update(from: best.value.pointer, count: store.count)
    }

    public var learningRateSchedulePlan: (warmupEpochs: Int, cosineEpochs: Int)? {
        (hyperparameters.warmupEpochs, hyperparameters.epochs)
    }

    // MARK: Model

    public func embedding(comm: Communicator) throws -> Tensor {
        Tape.inferInBlocks(globalIds: cellIds, cols: embeddingDim) { forward($0, tape: $1, dropoutKey: nil) }
    }

    public var report: [(String, ReportValue)] {
        var r: [(String, ReportValue)] = [("temperature", .number(Double(temperature.value.pointer[0])))]
        if stopping.value.pointer[0].isFinite {
            r += [("best_validation_loss", .number(Double(stopping.value.pointer[0]))), ("best_epoch", .integer(Int(stopping.value.pointer[2]) + 1))]
        }
        return r
    }
}
