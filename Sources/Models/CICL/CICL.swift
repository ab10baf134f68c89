// CICL / CIRCLE (Jiang, Wang, Guan, Zhou; arXiv 2312.16600): a residual attention encoder trained
// with an instance InfoNCE loss plus a cluster-aware pair loss whose pseudo-labels come from fixed
// k-means centres (MODELS.md §4, objective `para` of Alunethy/CICL), as a data-parallel `Model`.
//
// The network as the reference computes it (`transformer_encoder.py`, `trans_model.py`,
// `sub_training.py`). The input is one cell as a sequence of length 1 with d_model = G genes, so the
// attention softmax is over one key and is identically 1: W_Q and W_K never change the output and
// receive exactly zero gradient. They are dropped (2·G·heads·value_dim parameters per block, 16.4 M
// of the reference's 54 M at G = 2000); every block is exactly
//   a  = LN(x + W_fc·(W_V·x))                    W_V: G → heads·value_dim, W_fc: → G, no biases; LN with
//                                                weight 1, bias 0 (the reference builds it inside forward)
//   x₁ = LN₁(x + drop(a))
//   x₂ = LN₂(x₁ + drop(W₂·drop(ReLU(W₁·x₁ + b₁)) + b₂))
// and h = LN_final(x₄) after four blocks is the embedding (width G). Projection head
// Linear(G, 2048)–ReLU–Linear(2048, 512), then L2 normalisation. Pseudo-labels ŷ = argmax of the
// Student-t q(h₁, C), α = 1, re-assigned every step against centres C fixed at their initial k-means
// solution (C gets no gradient through the argmax, so the reference's centres never move). Loss
// L_ins + λ·L_clu on the projections of two noisy views (CICLOps.swift).
//
// Deviations from the reference, each deliberate:
// - W_Q, W_K dropped (above); outputs and gradients are unchanged.
// - Initialisation as PyTorch's nn.Linear (U(±1/√fan_in) for weights and biases), the blocks
//   starting identical as the reference's `copy.deepcopy` clones do.
// - Views are drawn every epoch from streams keyed by (seed, epoch, global cell id, view), not once at
//   load time: a batch is the same on any rank count, and the network never sees the same noise twice.
//   Dropout masks are drawn from per-cell streams too.
// - The clean view, the centre initialisation and the final embedding use the encoder without dropout
//   (the reference keeps train mode, so its pseudo-labels and initial k-means carry dropout noise).
// - argmax_j q_ij is computed as the nearest centre (q is a decreasing function of ‖h − c_j‖² for α > 0).
// - Negatives: `global` (default) all-gathers the batch's projections, so the loss is that of the
//   global batch whatever the rank count; `local` keeps the reference's per-rank negatives under DDP.
// - One learning rate and weight decay for all parameters: trainer.lr × lr_scale (default 0.1, i.e.
//   1e-4 at the trainer's default 1e-3: the reference's encoder rate) and the trainer's weight decay;
//   the reference uses 1e-4 with L2 weight decay 1e-3 for the encoder and 1e-5 without decay for the
//   head. configs/cicl-reference.yaml has its schedule.
// - End of schedule without labels: `epochs` epochs, optionally ending earlier when fewer than
//   `tolerance` of the pseudo-labels changed over an epoch (the labels assigned during the epoch's
//   steps, compared with the previous epoch's; epoch 0 with the initial k-means). The reference runs
//   51 epochs and keeps the epoch with the best ARI against the ground truth.
// - K is given, or estimated without labels (the stability of Leiden on the untrained encoder's embedding's kNN graph, Neighbors/StableResolution.swift).
// - `centre_update: epoch` (not the default) moves the centres by Lloyd's iterations on the current
//   embedding before each epoch after the first and for the final clustering; `fixed` keeps the
//   reference's untrained-encoder centres. Measured (K given, 20 epochs, 2 ranks, seeds 0/1/2, AMD EPYC):
//   mean ARI epoch / fixed: pbmc 0.682 / 0.685, kidney 0.569 / 0.548, worm 0.330 / 0.327, cite 0.458 / 0.507,
//   baron 0.310 / 0.301: no consistent gain, so the reference's `fixed` stays the default.
// - The final clustering is the nearest fixed centre (`assignment: centres`, the reference's
//   model_score) or k-means on the trained embedding (`kmeans`, its kmeans_score).
// - `noise_scale: gene` (not the default) makes gene j's view noise σ × its global standard deviation.
//   Measured (K given, 20 epochs, seed 0, 2 ranks, AMD EPYC), ARI gene / absolute: baron 0.315 / 0.306,
//   worm 0.428 / 0.345, pbmc 0.598 / 0.665, kidney 0.568 / 0.570, cite 0.378 / 0.519: no consistent
//   gain, so the reference's absolute σ stays.
// - `scale_input: true` (not the default), measured the same way, means of seeds 0/1/2, scaled /
//   log-normalised: baron 0.389 / 0.301, worm 0.485 / 0.327, pbmc 0.616 / 0.685, kidney 0.513 / 0.548,
//   cite 0.411 / 0.507 (mean 0.483 / 0.474): up on the two files whose HVGs come from ≈ 14,000 genes,
//   down on the three top-2,000 files; either meets max(Leiden, k-means) on worm only.
// - What the training adds, measured the same way: ARI after 1 epoch (the untrained encoder's
//   k-means centres, barely moved) vs after the default 20, means of seeds 0/1/2: baron 0.330 / 0.301,
//   worm 0.305 / 0.327, pbmc 0.649 / 0.685, kidney 0.599 / 0.548, cite 0.447 / 0.507 (mean 0.466 /
//   0.474). The fixed centres decide the clustering; the reference hides this by choosing its epoch
//   by ARI against the labels.
// - Input: the log-normalised HVG matrix of the `cluster` preprocessing (the reference reads an
//   externally normalised CSV of unknown preprocessing; its filters are >200 genes per cell, >3 cells per gene).
import Autograd
import Clustering
import Collectives
import CellData
import Foundation
import Logging
import Neighbors
import NN
import TensorCore
import Training

public final class CICL: Model {
    public typealias Hyperparameters = CICLHyperparameters
    public static let name = "cicl"
    public static let summary = "residual attention encoder, instance InfoNCE + cluster-aware pair loss on pseudo-labels of fixed k-means centres (Jiang et al. 2023)"
    public let hyperparameters: Hyperparameters
    public let context: ModelContext
    public let store = ParameterStore()
    public var lossTermNames: [String] { ["instance", "cluster"] }
    public var totalEpochs: Int { hyperparameters.epochs }
    public var embeddingDim: Int { genes }
    public func phase(atEpoch epoch: Int) -> TrainingPhase { .fineTune }
    /// The whole schedule runs at trainer.lr × lr_scale (a change at epoch 0).
    public var learningRateChange: (epoch: Int, factor: Float)? { hyperparameters.lrScale == 1 ? nil : (0, hyperparameters.lrScale) }

    /// One residual block's parameters (weights fan-in × fan-out).
    struct Block {
        let value: Parameter, output: Parameter
        let norm1Gain: Parameter, norm1Bias: Parameter
        let hidden: Parameter, hiddenBias: Parameter, back: Parameter, backBias: Parameter
        let norm2Gain: Parameter, norm2Bias: Parameter
    }

    let comm: Communicator
    let genes: Int
    /// Log-normalised expression of this rank's cells (CSR) and their global ids.
    let x: CSRMatrix
    public let cellIds: [Int64]
    /// Global per-gene mean and 1/σ of `x` (for `scale_input`).
    let mean: [Float], invStd: [Float]
    /// Per-gene factor of the view noise's σ (`noise_scale: gene`; nil: σ for every gene).
    let noiseGeneScale: [Float]?
    let blocks: [Block]
    let finalGain: Parameter, finalBias: Parameter
    let head1: Parameter, head1Bias: Parameter, head2: Parameter, head2Bias: Parameter
    /// Cluster centres (capacity × G; the first k rows are used) and [centres ready, k, estimated K, 0].
    let centres: Parameter
    let state: Parameter
    /// Pseudo-labels of this rank's cells: assigned during the current epoch, at the end of the
    /// previous one, and by the initial k-means (−1: not assigned yet).
    public private(set) var currentLabels: [Int32]
    public private(set) var previousLabels: [Int32]
    public private(set) var initialLabels: [Int32] = []
    /// Fraction of pseudo-labels changed in each epoch run (rank-independent).
    public private(set) var labelChanges: [Double] = []
    public private(set) var estimate: ResolutionChoice?
    /// A tape for passes without gradients (pseudo-labels, embeddings).
    let inference = Tape()

    public var k: Int { Int(state.value.pointer[1]) }
    public var centresReady: Bool { state.value.pointer[0] > 0 }

    /// Collective (all ranks build the same parameters; the Trainer broadcasts rank 0's anyway).
    public init(input: Dataset, hyperparameters h: Hyperparameters, context: ModelContext, comm: Communicator) throws {
        hyperparameters = h
        self.context = context
        self.comm = comm
        genes = input.genes
        x = input.x
        cellIds = input.cellIds
        mean = input.geneMean
        invStd = input.geneStd.map { 1 / $0 }
        noiseGeneScale = h.noiseScale == .gene && !h.scaleInput ? input.geneStd : nil
        let g = genes, s = store
        var rng = RandomStream(seed: context.seed, purpose: .initialization)
        // nn.Linear's default: U(±1/√fan_in) for the weight and the bias.
        func linear(_ name: String, _ i: Int, _ o: Int, bias: Bool) -> (Parameter, Parameter?) {
            let bound = 1 / Float(i).squareRoot()
            let w = s.add(name + ".weight", rows: i, cols: o, .uniform(-bound, bound), rng: &rng)
            return (w, bias ? s.add(name + ".bias", rows: 1, cols: o, .uniform(-bound, bound), rng: &rng) : nil)
        }
        var made: [Block] = []
        for l in 0..<h.layers {
            let n = "block\(l)"
            let v = linear(n + ".attention.value", g, h.valueWidth, bias: false).0
            let o = linear(n + ".attention.output", h.valueWidth, g, bias: false).0
            let n1g = s.add(n + ".norm1.gamma", rows: 1, cols: g, .ones, rng: &rng)
            let n1b = s.add(n + ".norm1.beta", rows: 1, cols: g, .zeros, rng: &rng)
            let (w1, b1) = linear(n + ".linear1", g, h.feedForward, bias: true)
            let (w2, b2) = linear(n + ".linear2", h.feedForward, g, bias: true)
            let n2g = s.add(n + ".norm2.gamma", rows: 1, cols: g, .ones, rng: &rng)
            let n2b = s.add(n + ".norm2.beta", rows: 1, cols: g, .zeros, rng: &rng)
            made.append(Block(value: v, output: o, norm1Gain: n1g, norm1Bias: n1b, hidden: w1, hiddenBias: b1!, back: w2,
                              backBias: b2!, norm2Gain: n2g, norm2Bias: n2b))
        }
        // The reference's blocks are deep copies of one initialised layer: all start equal.
        for b in made.dropFirst() {
            for (dst, src) in [(b.value, made[0].value), (b.output, made[0].output), (b.hidden, made[0].hidden),
                               (b.hiddenBias, made[0].hiddenBias), (b.back, made[0].back), (b.backBias, made[0].backBias)] {
                dst.value.assign(from: src.value)
            }
        }
        blocks = made
        finalGain = s.add("norm.gamma", rows: 1, cols: g, .ones, rng: &rng)
        finalBias = s.add("norm.beta", rows: 1, cols: g, .zeros, rng: &rng)
        let (p1, q1) = linear("head.linear1", g, h.projectionHidden, bias: true)
        let (p2, q2) = linear("head.linear2", h.projectionHidden, h.projectionDim, bias: true)
        head1 = p1; head1Bias = q1!; head2 = p2; head2Bias = q2!
        let capacity = max(context.clusters ?? context.maxClusters, 1)
        centres = s.addBuffer("cluster_centres", rows: capacity, cols: g, fill: 0)
        state = s.addBuffer("cicl_state", rows: 1, cols: 4, fill: 0)
        state.value.pointer[1] = Float(context.clusters ?? 0)
        currentLabels = [Int32](repeating: -1, count: x.rows)
        previousLabels = currentLabels
    }

    // MARK: forward

    /// The encoder's input for local `rows`: log-normalised values, or with `scale_input` each gene
    /// standardised by its global mean and standard deviation and clipped above at 10 (scanpy's
    /// `scale(max_value=10)`).
    func input(_ rows: [Int], into out: Tensor) {
        x.gatherRows(rows).densify(into: out)
        guard hyperparameters.scaleInput else { return }
        let g = genes
        for i in 0..<rows.count {
            let p = out.pointer + i * g
            for j in 0..<g { p[j] = min((p[j] - mean[j]) * invStd[j], 10) }
        }
    }

    /// The encoder on the rows of `input` (n × G): four residual blocks and the final LayerNorm.
    /// `p` enters a parameter on `tape` (registered for gradients, or as a constant); `masks` gives
    /// the dropout masks (nil: no dropout).
    func encode(_ input: Var, _ tape: Tape, _ p: (Parameter) -> Var, masks: inout CICLDropoutMasks?) -> Var {
        let g = genes, ff = hyperparameters.feedForward
        var h = input
        for b in blocks {
            let o = tape.matmul(tape.matmul(h, p(b.value)), p(b.output))
            let a = tape.residualLayerNorm(h, o, gamma: nil, beta: nil)
            let x1 = tape.residualLayerNorm(h, a, mask: masks?.next(cols: g, tape: tape), gamma: p(b.norm1Gain), beta: p(b.norm1Bias))
            var hid = tape.linear(x1, p(b.hidden), p(b.hiddenBias), activation: .relu)
            if masks != nil { hid = tape.dropout(hid, mask: masks!.next(cols: ff, tape: tape)) }
            let f = tape.linear(hid, p(b.back), p(b.backBias))
            h = tape.residualLayerNorm(x1, f, mask: masks?.next(cols: g, tape: tape), gamma: p(b.norm2Gain), beta: p(b.norm2Bias))
        }
        return tape.layerNorm(h, gamma: p(finalGain), beta: p(finalBias))
    }

    /// h of dense rows without dropout or gradients (on the inference tape; valid until its next use).
    func encodeWithoutGradients(_ rows: Tensor) -> Tensor {
        inference.reset()
        inference.training = false
        var none: CICLDropoutMasks? = nil
        let t = inference
        return t.value(encode(t.constant(rows), t, { t.constant($0.value) }, masks: &none))
    }

    /// Nearest of the first k centres = argmax_j of the Student-t q_ij (α > 0).
    public func assign(_ h: Tensor) -> [Int32] {
        let kk = max(k, 1), d = h.cols
        return KMeans.assign(PointShard(values: h.scalars, count: h.rows, dim: d),
                             centres: Array(centres.value.scalars.prefix(kk * d)), k: kk).labels
    }

    /// Student-t soft assignment q (n × k) of embeddings `h` to the first k centres.
    public func softAssignment(_ h: Tensor) -> [Float] {
        SoftAssignment.studentT(h.scalars, n: h.rows, centres: Array(centres.value.scalars.prefix(k * h.cols)), k: k, dim: h.cols,
                                alpha: hyperparameters.alpha)
    }

    // MARK: TrainingTask

    public func loss(rows: [Int], context: StepContext, tape: Tape) throws -> (loss: Var, terms: [Float]) {
        let h = hyperparameters
        let b = rows.count, g = genes
        let ids = rows.map { cellIds[$0] }
        if b == 0 {
            let empty = tape.variable(Tensor(rows: 0, cols: h.projectionDim))
            _ = try tape.ciclContrastiveLoss(empty, ids: [], labels: [], temperature: h.temperature, lambda: h.lambda,
                                             negatives: h.negatives, comm: comm)
            return (tape.constant(Tensor.scalar(0)), [0, 0])
        }
        let clean = tape.alloc(b, g)
        input(rows, into: clean)
        // Pseudo-labels of the clean cells against the fixed centres (no gradient through the argmax).
        let labels = assign(encodeWithoutGradients(clean))
        for (i, r) in rows.enumerated() { currentLabels[r] = labels[i] }
        // Two noisy views, stacked: rows 0..<b view 1, b..<2b view 2.
        let views = tape.alloc(2 * b, g)
        CICLStreams.views(clean: clean, ids: ids, seed: context.seed, epoch: context.epoch, fraction: h.noiseFraction,
                          std: h.noiseStd, geneScale: noiseGeneScale, into: views)
        var masks: CICLDropoutMasks? = h.dropout > 0
            ? CICLDropoutMasks(seed: context.seed, epoch: context.epoch, ids: ids, views: 2, p: h.dropout) : nil
        let z = encode(tape.constant(views), tape, { tape.param($0) }, masks: &masks)
        let hidden = tape.linear(z, tape.param(head1), tape.param(head1Bias), activation: .relu)
        let u = tape.l2NormalizeRows(tape.linear(hidden, tape.param(head2), tape.param(head2Bias)))
        let (loss, ins, clu) = try tape.ciclContrastiveLoss(u, ids: ids, labels: labels, temperature: h.temperature,
                                                            lambda: h.lambda, negatives: h.negatives, comm: comm)
        return (loss, [ins, clu])
    }

    public func epochWillBegin(_ epoch: Int, trainer: Trainer) throws {
        if !centresReady { try initialiseCentres() }
        // state[3] = 1 + the last epoch whose centres were moved (checkpointed with the buffer, so a
        // run resumed inside an epoch does not move them twice).
        if hyperparameters.centreUpdate == .epoch && epoch > 0 && Int(state.value.pointer[3]) < epoch + 1 {
            try moveCentres()
            state.value.pointer[3] = Float(epoch + 1)
        }
    }

    /// Collective: Lloyd's iterations on the current embedding of every cell, from the current centres;
    /// returns this rank's cells' nearest moved centre.
    @discardableResult
    func moveCentres() throws -> [Int32] {
        let e = try embedding(comm: comm)
        let kk = k, d = genes
        let fit = try KMeans(k: kk, restarts: 1, seed: context.seed)
            .refine(PointShard(values: e.scalars, count: e.rows, dim: d), from: Array(centres.value.scalars.prefix(kk * d)), comm: comm)
        for i in 0..<(kk * d) { centres.value.pointer[i] = fit.centres[i] }
        Logger(label: "syncytium.cicl").debug("cicl: centres moved (\(fit.iterations) Lloyd iterations)")
        return fit.labels
    }

    /// Collective: K (given, or by Leiden stability, StableResolution) and the centres by k-means on the untrained encoder's
    /// embedding of every cell (10 restarts, as sklearn's KMeans(n_init=10) in the reference).
    public func initialiseCentres() throws {
        let e = try embedding(comm: comm)
        let pts = PointShard(values: e.scalars, count: e.rows, dim: e.cols)
        let chosen = try StableResolution.resolve(given: context.clusters, points: pts, maxClusters: context.maxClusters,
                                                      seed: context.seed, comm: comm)
        let kk = chosen.k
        if let est = chosen.choice {
            estimate = est
            Logger(label: "syncytium.cicl").info("cicl on the untrained encoder's embedding: \(StableResolution.describe(est))")
        }
        let km = try KMeans(k: kk, restarts: 10, seed: context.seed).fit(pts, comm: comm)
        let c = centres.value
        c.fill(0)
        for i in 0..<(kk * genes) { c.pointer[i] = km.centres[i] }
        state.value.pointer[0] = 1
        state.value.pointer[1] = Float(kk)
        state.value.pointer[2] = context.clusters == nil ? Float(kk) : 0
        previousLabels = km.labels
        initialLabels = km.labels
    }

    public func epochDidEnd(_ epoch: Int, trainer: Trainer) throws {
        var counts: [Int64] = [0, 0]
        for (now, before) in zip(currentLabels, previousLabels) where now >= 0 {
            counts[1] += 1
            if now != before { counts[0] += 1 }
        }
        try comm.allreduce(&counts, op: .sum)
        let change = Double(counts[0]) / Double(max(counts[1], 1))
        labelChanges.append(change)
        previousLabels = currentLabels
        Logger(label: "syncytium.cicl").info("cicl: epoch \(epoch + 1): \(String(format: "%.4f", change)) of pseudo-labels changed")
        if hyperparameters.tolerance > 0 && change < hyperparameters.tolerance { trainer.finishRequested = true }
    }

    public func checkpointShards() -> [String: Checkpoint.Shard] {
        var s: [String: Checkpoint.Shard] = [
            "labels_current": .init(ids: cellIds, width: 1, values: currentLabels.map(Float.init)),
            "labels_previous": .init(ids: cellIds, width: 1, values: previousLabels.map(Float.init)),
        ]
        if !initialLabels.isEmpty { s["labels_initial"] = .init(ids: cellIds, width: 1, values: initialLabels.map(Float.init)) }
        return s
    }

    public func restore(from checkpoint: URL, meta: CheckpointMeta) throws {
        func read(_ name: String) throws -> [Int32] {
            try Checkpoint.readShard(checkpoint, name, ranksWritten: meta.ranks, wanted: cellIds).values.map { Int32($0) }
        }
        currentLabels = try read("labels_current")
        previousLabels = try read("labels_previous")
        if meta.shards.contains("labels_initial") { initialLabels = try read("labels_initial") }
    }

    // MARK: Model

    /// In blocks placed by global cell id (`Tape.inferInBlocks(globalIds:)`): a cell's embedding does
    /// not depend on which other cells its rank holds.
    public func embedding(comm: Communicator) throws -> Tensor {
        let g = genes
        return Tape.inferInBlocks(globalIds: cellIds, cols: g) { rows, tape in
            let dense = tape.zeros(rows.count, g)
            input(rows, into: dense)
            var none: CICLDropoutMasks? = nil
            return encode(tape.constant(dense), tape, { tape.constant($0.value) }, masks: &none)
        }
    }

    public func clusterAssignment(comm: Communicator) throws -> (labels: [Int32], clusters: Int)? {
        guard hyperparameters.assignment == .centres else { return nil }
        if !centresReady { try initialiseCentres() }
        // Lloyd's final assignment is against the moved centres: the same nearest centres, without a second embedding pass.
        if hyperparameters.centreUpdate == .epoch { return (try moveCentres(), k) }
        return (assign(try embedding(comm: comm)), k)
    }

    public var pretrainedAssignment: [Int32]? { initialLabels.isEmpty ? nil : initialLabels }

    public var report: [(String, ReportValue)] {
        var r: [(String, ReportValue)] = [("clusters", .integer(k))]
        let est = Int(state.value.pointer[2])
        if est > 0 { r.append(("estimated_clusters", .integer(est))) }
        if let e = estimate { r.append(("estimated_resolution", .number(e.resolution))); r.append(("estimated_evidence", .text(StableResolution.evidence(e)))) }
        if let last = labelChanges.last { r.append(("last_label_change", .number(last))) }
        return r
    }
}
