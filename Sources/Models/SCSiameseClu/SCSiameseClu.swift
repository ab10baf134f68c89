// scSiameseClu ("Siamese clustering of single-cell data", Xu et al., IJCAI 2025; XPgogogo/scSiameseClu,
// MODELS.md §5) on the distributed sparse kNN graph: two augmented views (X̃₁, Am) and (X̃₂, Ad) through
// ONE autoencoder and ONE graph autoencoder, DFCN fusion with per-cell weights, the fusion attention,
// DCRN's correlation reduction, ZINB on the counts, and Sinkhorn optimal-transport cluster targets.
//
// Steps are full-graph (every cell in every step, the reference's semantics; the graph layers run
// across ranks by halo exchange); refused above `fullGraphLimit` cells. No n × n matrix anywhere.
//
// Deviations from the reference code, each deliberate:
// - Graph: exact (or IVF) kNN on the PCA of the log-normalised expression, the cell itself included,
//   symmetrised (A ∪ Aᵀ); A_norm = D⁻¹(A ∪ Aᵀ) for the graph AE layers, the fusion's z_l before Am
//   exists and the target A_norm·X, Â = D^−½ (A ∪ Aᵀ) D^−½ for the PPR diffusion, as the reference
//   (which keeps only the edges between cells of DIFFERENT true labels — label leakage and a bug —
//   and row-normalises by column sums).
// - Input X: the `pca` PCA scores scaled by one global factor so that PC1 has unit standard deviation
//   (the graph AE's last layer is tanh, which cannot reach raw PCA scores; the geometry is unchanged).
// - Ad·H = α(I − (1 − α)Â)⁻¹H by T power iterations Z ← (1 − α)ÂZ + αH, T = ⌈log tol / log(1 − α)⌉,
//   error ≤ 2·tol·‖H‖ (`pprTolerance`, default 1e-2; the reference's dense inverse is exact and O(n³)).
//   α is one value for every dataset (the reference sets it per dataset).
// - Am: computed once when training starts, from the pretrained graph AE's similarity
//   s_ij = (σ(z¹_i·z¹_j) + σ(z²_i·z²_j))/2 (views (X, A_norm) and (X, Ad)), restricted to the graph's edges:
//   each cell drops its round(rate·degree) lowest-similarity edges (never itself), rows renormalised
//   (the reference drops round(0.1·n) of all n columns of a dense matrix). The dropped neighbours are
//   per-cell checkpoint state.
// - L_N = 0.1·CR(S^ae) + 5·CR(S^gae) exactly, from d × d Gram matrices (`crossCorrelationReduction`);
//   the feature-level L_F is left out: the reference's readout averages contiguous chunks of the nodes
//   in STORAGE order and row-normalises a column, so S_F is a ±1 sign matrix that depends on the cell
//   order. L_R (KL between softmax(ÂZ) and softmax(Z) of the graph AE's layers) is not implemented.
// - The edge term MSE(Â, A_norm) over all n² pairs is restricted to the graph's edges with target 1
//   (the raw adjacency of the reference's graph AE stage), on the graph AE embedding of each view.
// - ZINB against the raw counts of the run's genes with the size factors, mean NOT detached, heads
//   Linear(128 → G) on the AE decoder's last hidden layer (the reference fits the ZINB to the PCA-100
//   features — negative values are not counts — and detaches μ·s, so it only trains θ and π).
// - Clustering: Student-t Q (α = 1) against trainable centres initialised by k-means (20 restarts) on
//   the fused embedding when training starts; target P = Sinkhorn(Q^λ) (log domain, Clustering's
//   Sinkhorn) with row marginals 1 and column marginals the CURRENT soft cluster sizes Σ_i q_ik,
//   recomputed every step (= every epoch: full-graph steps) and detached (the reference uses the
//   initial k-means counts and freezes P after epoch 9 by `epoch // 10 == 0`); L_CLU = KL(P‖Q) with
//   log Q (the reference passes Q where log Q belongs). λ_c = 1 (reference 50 on that non-KL).
// - When the fused stages start, the AE's latent is rescaled to the graph AE's rms by an exact
//   reparametrisation (last encoder layer × c, first decoder layer ÷ c; Adam's moments are kept): the
//   AE latent's scale is free and drifts in full-batch pretraining (rms 300 against 5 after 150
//   epochs on baron_mouse), which the 0.5/0.5 fusion cannot absorb.
// - Pretraining stages AE → graph AE → joint are `.pretrain` epochs of the same run on the clean view
//   (X, Â) (the reference's model_init(X, A_norm, X, A_norm)); one learning-rate change when
//   training starts. The final labels come from the last epoch (k-means on z, or argmax Q), never
//   from the epoch with the best accuracy against the labels.
// - Linear layers: torch's default initialisation U(±1/√fan_in) for weights and biases; the graph
//   layers Xavier without bias (as the reference's GNNLayer).
import Autograd
import CellData
import Clustering
import Collectives
import Foundation
import GraphLayers
import Logging
import NN
import Neighbors
import TensorCore
import Training

public final class SCSiameseClu: Model {
    public typealias Hyperparameters = SCSiameseCluHyperparameters
    public static let name = "scsiameseclu"
    public static let summary = "Siamese AE + graph AE on two views (edge-dropped kNN, PPR diffusion) of the sparse graph, DFCN fusion, correlation reduction, ZINB, Sinkhorn targets (scSiameseClu)"
    public let hyperparameters: Hyperparameters
    public let context: ModelContext
    public let store = ParameterStore()
    public var lossTermNames: [String] { ["mse_x", "mse_ax", "edges", "cr_ae", "cr_gae", "zinb", "kl", "mse_z"] }
    public var totalEpochs: Int { pretrainEpochs + hyperparameters.epochs }
    public var pretrainEpochs: Int { hyperparameters.aePretrainEpochs + hyperparameters.gaePretrainEpochs + hyperparameters.jointPretrainEpochs }
    public var embeddingDim: Int { hyperparameters.aeDims.last! }
    public func phase(atEpoch epoch: Int) -> TrainingPhase { epoch < pretrainEpochs ? .pretrain : .fineTune }
    public var learningRateChange: (epoch: Int, factor: Float)? {
        hyperparameters.finetuneLrScale == 1 || hyperparameters.epochs == 0 ? nil : (pretrainEpochs, hyperparameters.finetuneLrScale)
    }
    public var collectiveBackward: Bool { true }
    public var learningRate: Float? { hyperparameters.lr }
    public var globalBatchSize: Int? { cells }

    enum Stage: String { case ae, gae, joint, train }
    func stage(atEpoch e: Int) -> Stage {
        let h = hyperparameters
        if e < h.aePretrainEpochs { return .ae }
        if e < h.aePretrainEpochs + h.gaePretrainEpochs { return .gae }
        if e < pretrainEpochs { return .joint }
        return .train
    }

    let comm: Communicator
    let graph: SCDEFRGraph
    public let cellIds: [Int64]
    let cells: Int
    /// The input X (n × p, scaled PCA), ÂX (the graph AE's target), the counts (n × G) and size factors.
    let input: Tensor, diffusedTarget: Tensor, counts: Tensor, sizeFactors: [Float]
    /// The union graph A ∪ Aᵀ (values 1) on this rank's rows, Â as an operator, its edges for L_edge.
    let union: GraphShard
    /// Â = D^−½ (A ∪ Aᵀ) D^−½ (the PPR diffusion) and A_norm = D⁻¹(A ∪ Aᵀ) (graph AE layers, fusion, targets).
    let adjNorm: GraphOperator
    let adjRow: GraphOperator
    let edges: GraphOperator
    public let pprSteps: Int
    /// Neighbours each cell drops in Am (global ids, −1 padded; width `dropWidth`).
    var dropped: [Float]
    let dropWidth: Int
    var amOperator: GraphOperator?
    let aeEncoder: [Linear], aeDecoder: [Linear], xHat: Linear, zinbHeads: Linear
    let gaeEncoder: [Linear], gaeDecoder: [Linear]
    let alpha: Parameter
    let centres: Parameter, state: Parameter
    let fusionA: OwnedParameter, fusionB: OwnedParameter
    private var cachedEmbedding: Tensor?
    private let debugNorms = ProcessInfo.processInfo.environment["SYNCYTIUM_DEBUG_SCSIAMESECLU"] != nil
    public private(set) var estimatedK: ResolutionChoice?
    public private(set) var initialLabels: [Int32] = []
    public private(set) var lastSinkhorn: (iterations: Int, error: Double)?

    public var k: Int { Int(state.value.pointer[1]) }
    public var centresReady: Bool { state.value.pointer[0] > 0 }
    public var amReady: Bool { state.value.pointer[2] > 0 }
    public var aeRescaled: Bool { state.value.pointer[3] > 0 }

    /// Collective.
    public init(input data: Dataset, hyperparameters h: Hyperparameters, context: ModelContext, comm: Communicator) throws {
        try h.validate()
        hyperparameters = h; self.context = context; self.comm = comm
        cellIds = data.cellIds; cells = data.cells
        guard cells <= h.fullGraphLimit else {
            throw CollectiveUsageError("scsiameseclu: \(cells) cells exceed model.full_graph_limit \(h.fullGraphLimit) (full-graph steps with an exact O(N²) fusion attention; mini-batches are not implemented)")
        }
        let t0 = Communicator.time()
        graph = try SCDEFRGraph.build(data, neighbours: h.neighbours, pca: h.pca, exactLimit: h.exactGraphLimit,
                                      symmetricTAG: true, seed: context.seed, comm: comm)
        let n = data.x.rows, p = graph.pcaDim, layout = graph.layout
        // X: PCA scores / std(PC1) over all cells (the scores are centred).
        var ss = [Double](repeating: 0, count: 1)
        for i in 0..<n { let v = Double(graph.pcs[i * p]); ss[0] += v * v }
        try comm.allreduce(&ss, op: .sum)
        let scale = Float(1 / max((ss[0] / Double(max(cells - 1, 1))).squareRoot(), 1e-12))
        input = Tensor(rows: n, cols: p, values: graph.pcs.map { $0 * scale })
        var u = try graph.adjacency.symmetrized(.max, layout: layout, comm: comm)
        u.values = [Float](repeating: 1, count: u.nnz)
        union = u
        adjNorm = graph.tag          // D^−½ (A ∪ Aᵀ) D^−½, symmetric
        adjRow = try GraphNormalization.rowNormalized(u, layout: layout, comm: comm)
        edges = try GraphOperator(graph: u, layout: layout, comm: comm)
        let dx = Tensor(rows: n, cols: p)
        adjRow.apply(input.pointer, halo: try adjRow.fetchHalo(input), width: p, into: dx.pointer)
        diffusedTarget = dx
        counts = data.counts.toDense(); sizeFactors = data.sizeFactors
        pprSteps = pprIterations(alpha: h.pprAlpha, tolerance: h.pprTolerance)
        var maxDrop = 0
        for i in 0..<n { maxDrop = max(maxDrop, Self.dropCount(degree: Int(u.rowPtr[i + 1] - u.rowPtr[i]), rate: h.edgeDropRate)) }
        dropWidth = max(1, Int(try comm.allreduce(value: Int64(maxDrop), op: .max)))
        dropped = [Float](repeating: -1, count: n * dropWidth)
        precondition(cells < 1 << 24, "scsiameseclu: dropped-edge ids are stored as Float (exact below 2²⁴ cells)")

        var rng = RandomStream(seed: context.seed, purpose: .initialization)
        let s = store
        let torchW = Initializer.kaimingUniform(gain: (1.0 / 3.0).squareRoot())    // torch Linear: U(±1/√fan_in)
        func linear(_ name: String, _ i: Int, _ o: Int, _ act: Tape.Activation) -> Linear {
            let l = Linear(s, name, inputs: i, outputs: o, activation: act, initializer: torchW, rng: &rng)
            let b = 1 / Float(i).squareRoot()
            rng.fillUniform(l.bias!.value, -b, b)
            return l
        }
        func gnn(_ name: String, _ i: Int, _ o: Int, _ act: Tape.Activation) -> Linear {
            Linear(s, name, inputs: i, outputs: o, bias: false, activation: act, initializer: .xavierUniform(), rng: &rng)
        }
        let leaky = Tape.Activation.leakyRelu(0.2)
        let ae = [p] + h.aeDims
        aeEncoder = (0..<h.aeDims.count).map { linear("ae.enc\($0 + 1)", ae[$0], ae[$0 + 1], $0 == h.aeDims.count - 1 ? .identity : leaky) }
        let aeBack = Array(ae.dropFirst().reversed())     // 20 → 512 → 256 → 128
        aeDecoder = (0..<(aeBack.count - 1)).map { linear("ae.dec\($0 + 1)", aeBack[$0], aeBack[$0 + 1], leaky) }
        xHat = linear("ae.x_bar", aeBack.last!, p, .identity)
        zinbHeads = linear("ae.zinb", aeBack.last!, 3 * data.genes, .identity)
        let ga = [p] + h.gaeDims
        gaeEncoder = (0..<h.gaeDims.count).map { gnn("gae.enc\($0 + 1)", ga[$0], ga[$0 + 1], $0 == h.gaeDims.count - 1 ? .identity : .tanh) }
        let gaBack = Array(ga.reversed())                 // 20 → 256 → 128 → p
        gaeDecoder = (0..<(gaBack.count - 1)).map { gnn("gae.dec\($0 + 1)", gaBack[$0], gaBack[$0 + 1], .tanh) }
        alpha = s.add("alpha", rows: 1, cols: 1, .zeros, rng: &rng)
        let d = h.aeDims.last!
        centres = s.add("cluster_centers", rows: context.clusters ?? context.maxClusters, cols: d, .zeros, rng: &rng)
        state = s.addBuffer("scsiameseclu_state", rows: 1, cols: 4, fill: 0)
        state.value.pointer[1] = Float(context.clusters ?? 0)
        fusionA = OwnedParameter("a", rows: n, width: d, fill: 0.5)
        fusionB = OwnedParameter("b", rows: n, width: d, fill: 0.5)
        let edgeCount = try comm.allreduce(value: Int64(u.nnz), op: .sum)
        Logger(label: "syncytium.scsiameseclu").info("scsiameseclu: kNN graph of \(cells) cells (k = \(h.neighbours), \(p) PCs, \(edgeCount) edges in A ∪ Aᵀ) in \(String(format: "%.1f", Communicator.time() - t0)) s; PPR α = \(h.pprAlpha) by \(pprSteps) iterations; \(h.aePretrainEpochs) + \(h.gaePretrainEpochs) + \(h.jointPretrainEpochs) pretraining + \(h.epochs) epochs")
    }

    static func dropCount(degree: Int, rate: Float) -> Int {
        min(max(degree - 1, 0), Int((Float(degree) * rate).rounded()))
    }

    // MARK: the network

    enum ViewGraph { case plain(GraphOperator), diffusion }

    /// The graph AE's propagation of one layer's support: Â·H (or Am·H), or Ad·H by PPR.
    func propagate(_ hv: Var, _ g: ViewGraph, _ tape: Tape) throws -> Var {
        switch g {
        case .plain(let op): return try tape.propagate(hv, op)
        case .diffusion: return try tape.personalizedPageRank(hv, adjNorm, alpha: hyperparameters.pprAlpha, iterations: pprSteps)
        }
    }

    func aeEncode(_ x: Var, _ tape: Tape) -> Var {
        var hv = x
        for l in aeEncoder { hv = l(hv, tape) }
        return hv
    }

    func gaeEncode(_ x: Var, _ g: ViewGraph, _ tape: Tape) throws -> Var {
        var hv = x
        for l in gaeEncoder { hv = try propagate(l(hv, tape), g, tape) }
        return hv
    }

    /// AE decoder: x̂ and the ZINB logits (n × 3G).
    func aeDecode(_ z: Var, _ tape: Tape) -> (xHat: Var, zinb: Var) {
        var hv = z
        for l in aeDecoder { hv = l(hv, tape) }
        return (xHat(hv, tape), zinbHeads(hv, tape))
    }

    func gaeDecode(_ z: Var, _ tape: Tape) throws -> Var {
        var hv = z
        for l in gaeDecoder { hv = try tape.propagate(l(hv, tape), adjRow) }
        return hv
    }

    /// The graph of view 1: Am once built, A_norm before.
    var viewOneGraph: GraphOperator { amOperator ?? adjRow }

    struct Fused { var z: Var; var zAE: [Var]; var zGAE: [Var]; var zAEMean: Var; var zGAEMean: Var }

    /// Both views (or, with one input, the clean view on `graphs[0]`) through the shared encoders, the
    /// DFCN fusion z = z_l + α·softmax(z_l z_lᵀ) z_l with z_l = Am·(a ⊙ z_ae + b ⊙ z_gae).
    func fuse(views: [(Tensor, ViewGraph)], _ tape: Tape) throws -> Fused {
        var zAE: [Var] = [], zG: [Var] = []
        for (x, g) in views {
            let xv = tape.constant(x)
            zAE.append(aeEncode(xv, tape)); zG.append(try gaeEncode(xv, g, tape))
        }
        func mean(_ v: [Var]) -> Var { v.count == 1 ? v[0] : tape.scale(v.dropFirst().reduce(v[0]) { tape.add($0, $1) }, 1 / Float(v.count)) }
        let za = mean(zAE), zg = mean(zG)
        let idx = (0..<input.rows).map { Int32($0) }
        let zi = tape.add(tape.mul(try tape.ownedRows(fusionA, index: idx, halo: nil), za),
                          tape.mul(try tape.ownedRows(fusionB, index: idx, halo: nil), zg))
        let zl = try tape.propagate(zi, viewOneGraph)
        if debugNorms {
            func rms(_ v: Var) -> Float { let t = tape.value(v); var s: Float = 0; for e in 0..<t.count { s += t.pointer[e] * t.pointer[e] }; return (s / Float(max(t.rows, 1))).squareRoot() }
            Logger(label: "syncytium.scsiameseclu").info("norms: z_ae \(rms(za)) z_gae \(rms(zg)) z_i \(rms(zi)) z_l \(rms(zl))")
        }
        let att = try tape.globalSelfAttention(zl, comm: comm)
        return Fused(z: tape.add(zl, tape.mul(att, tape.param(alpha))), zAE: zAE, zGAE: zG, zAEMean: za, zGAEMean: zg)
    }

    // MARK: TrainingTask

    public func loss(rows: [Int], context ctx: StepContext, tape: Tape) throws -> (loss: Var, terms: [Float]) {
        let h = hyperparameters
        guard rows.count == input.rows else {
            throw CollectiveUsageError("scsiameseclu: a full-graph step needs every cell (this rank got \(rows.count) of \(input.rows)); use trainer.accumulation 1")
        }
        try ensureAm()
        var terms = [Float](repeating: 0, count: lossTermNames.count)
        let x = tape.constant(input), ax = tape.constant(diffusedTarget)
        func mse(_ a: Var, _ b: Var, _ slot: Int) -> Var { let l = tape.mseLoss(a, b); terms[slot] = tape.value(l).scalar; return l }
        func edgeLoss(_ z: Var) throws -> Var { try tape.edgeReconstructionLoss(z, edges, targets: union.values) }
        func weighted(_ parts: [(Var, Float)]) -> Var {
            parts.dropFirst().reduce(tape.scale(parts[0].0, parts[0].1)) { tape.add($0, tape.scale($1.0, $1.1)) }
        }
        switch stage(atEpoch: ctx.epoch) {
        case .ae:
            let z = aeEncode(x, tape)
            return (tape.scale(mse(aeDecode(z, tape).xHat, x, 0), 10), terms)
        case .gae:
            let z = try gaeEncode(x, .plain(adjRow), tape)
            let le = try edgeLoss(z)
            terms[2] = tape.value(le).scalar
            return (weighted([(mse(try gaeDecode(z, tape), ax, 1), 1), (le, 0.5)]), terms)
        case .joint:
            let f = try fuse(views: [(input, .plain(adjRow))], tape)
            let le = try edgeLoss(f.zGAEMean)
            terms[2] = tape.value(le).scalar
            let total = weighted([(mse(aeDecode(f.z, tape).xHat, x, 0), 1), (mse(try gaeDecode(f.z, tape), ax, 1), 0.9),
                                  (le, 0.1), (mse(f.zAEMean, f.zGAEMean, 7), 0.1)])
            return (total, terms)
        case .train:
            let stream = RandomStream(seed: ctx.seed, purpose: .augmentation).split(UInt64(ctx.epoch))
            let x1 = siameseNoise(input, sigma: h.noise, stream: stream, view: 1, ids: cellIds)
            let x2 = siameseNoise(input, sigma: h.noise, stream: stream, view: 2, ids: cellIds)
            let f = try fuse(views: [(x1, .plain(viewOneGraph)), (x2, .diffusion)], tape)
            let dec = aeDecode(f.z, tape)
            let le = tape.scale(tape.add(try edgeLoss(f.zGAE[0]), try edgeLoss(f.zGAE[1])), 0.5)
            terms[2] = tape.value(le).scalar
            let crA = try tape.crossCorrelationReduction(tape.l2NormalizeRows(f.zAE[0]), tape.l2NormalizeRows(f.zAE[1]), comm: comm)
            let crG = try tape.crossCorrelationReduction(tape.l2NormalizeRows(f.zGAE[0]), tape.l2NormalizeRows(f.zGAE[1]), comm: comm)
            terms[3] = tape.value(crA).scalar; terms[4] = tape.value(crG).scalar
            let lz = sizeFactors.withUnsafeBufferPointer { tape.zinbLoss(dec.zinb, counts: counts, sizeFactors: $0.baseAddress!, ridge: 0) }
            terms[5] = tape.value(lz).scalar
            var parts: [(Var, Float)] = [(mse(dec.xHat, x, 0), 1), (mse(try gaeDecode(f.z, tape), ax, 1), 1), (le, h.edgeWeight),
                                         (crA, h.aeCorrelationWeight), (crG, h.gaeCorrelationWeight), (lz, h.zinbWeight)]
            if centresReady {
                let kl = try sinkhornKL(f.z, tape)
                terms[6] = tape.value(kl).scalar
                parts.append((kl, h.clusterWeight))
            }
            return (weighted(parts), terms)
        }
    }

    /// Collective. KL(P‖Q) with Q the Student-t assignment of z to the first k centres and P the
    /// Sinkhorn plan of Q^λ with rows 1 and columns the current soft cluster sizes (detached).
    func sinkhornKL(_ z: Var, _ tape: Tape) throws -> Var {
        let target = try sinkhornTarget(tape.value(z))
        return try tape.decLoss(z, centres: tape.param(centres), k: k, loss: .kl, comm: comm, fixedTarget: target)
    }

    /// Collective. P = Sinkhorn(Q^λ) for this rank's rows of z (n × k, rows summing to 1).
    func sinkhornTarget(_ zv: Tensor) throws -> [Double] {
        let n = zv.rows, d = zv.cols, kk = k
        let q = SoftAssignment.studentT(zv.scalars, n: n, centres: Array(centres.value.scalars.prefix(kk * d)), k: kk, dim: d)
        var sizes = [Double](repeating: 0, count: kk)
        for i in 0..<n { for c in 0..<kk { sizes[c] += Double(q[i * kk + c]) } }
        try comm.allreduce(&sizes, op: .sum)
        let lambda = Double(hyperparameters.sinkhornPower)
        let scores = q.map { lambda * Foundation.log(max(Double($0), 1e-300)) }
        let solver = Sinkhorn(maxIterations: hyperparameters.sinkhornIterations, tolerance: 1e-6 * Double(cells))
        let r = try solver.solve(scores: scores, n: n, k: kk, rowMass: [Double](repeating: 1, count: n), colMass: sizes, comm: comm)
        lastSinkhorn = (r.iterations, r.marginalError)
        return r.plan
    }

    public func stepDidEnd(learningRate: Float, trainer: Trainer) throws {
        // The fusion weights take part from the joint stage on; an Adam step in the AE stages (no
        // gradient) would only advance their step count and weaken the bias correction when they start.
        if stage(atEpoch: trainer.epoch) == .joint || stage(atEpoch: trainer.epoch) == .train {
            fusionA.step(lr: learningRate)
            fusionB.step(lr: learningRate)
        }
        cachedEmbedding = nil
    }

    /// Adam steps the fusion weights have taken after `globalStep` steps: full-graph steps, one per
    /// epoch, counted from the joint stage.
    func fusionSteps(afterGlobalStep globalStep: Int) -> Int {
        max(0, globalStep - (hyperparameters.aePretrainEpochs + hyperparameters.gaePretrainEpochs))
    }

    /// Collective. When training starts: Am from the pretrained graph AE, then the centres.
    public func epochWillBegin(_ epoch: Int, trainer: Trainer) throws {
        let st = stage(atEpoch: epoch)
        if (st == .joint || st == .train) && !aeRescaled { try rescaleAE() }
        guard st == .train else { return }
        if !amReady { try buildAm() }
        if !centresReady { try initialiseCentres() }
    }

    /// Collective, once when the fused stages start: the AE's latent scale is arbitrary (its decoder
    /// undoes any scale) and grows in pretraining, while the fusion a ⊙ z_ae + b ⊙ z_gae adds it to the
    /// graph AE's. Exact reparametrisation z_ae → c·z_ae (last encoder layer × c, first decoder layer's
    /// weight × 1/c: the same AE function) with c = rms(z_gae)/rms(z_ae) over all cells.
    func rescaleAE() throws {
        let tape = Tape()
        tape.training = false
        let x = tape.constant(input)
        let za = tape.value(aeEncode(x, tape)), zg = tape.value(try gaeEncode(x, .plain(adjRow), tape))
        var ss = [0.0, 0.0]
        for e in 0..<za.count { ss[0] += Double(za.pointer[e] * za.pointer[e]) }
        for e in 0..<zg.count { ss[1] += Double(zg.pointer[e] * zg.pointer[e]) }
        try comm.allreduce(&ss, op: .sum)
        let c = ss[0] > 0 && ss[1] > 0 ? Float((ss[1] / ss[0]).squareRoot()) : 1
        let last = aeEncoder.last!, first = aeDecoder.first!
        for e in 0..<last.weight.count { last.weight.value.pointer[e] *= c }
        if let b = last.bias { for e in 0..<b.count { b.value.pointer[e] *= c } }
        for e in 0..<first.weight.count { first.weight.value.pointer[e] /= c }
        state.value.pointer[3] = 1
        cachedEmbedding = nil
        Logger(label: "syncytium.scsiameseclu").info("scsiameseclu: AE latent rescaled by \(c) (rms z_ae \((ss[0] / Double(max(cells, 1))).squareRoot()), z_gae \((ss[1] / Double(max(cells, 1))).squareRoot()))")
    }

    /// Collective. s_ij = (σ(z¹_i·z¹_j) + σ(z²_i·z²_j))/2 on the union graph's edges, z^v the pretrained
    /// graph AE embedding of view (X, Â) and (X, Ad); each cell drops its lowest-similarity edges.
    func buildAm() throws {
        let tape = Tape()
        tape.training = false
        let x = tape.constant(input)
        let z1 = tape.value(try gaeEncode(x, .plain(adjRow), tape)), z2 = tape.value(try gaeEncode(x, .diffusion, tape))
        let h1 = try edges.fetchHalo(z1), h2 = try edges.fetchHalo(z2)
        let n = input.rows, d = z1.cols, first = graph.first
        func dot(_ z: Tensor, _ halo: [Float], _ i: Int, _ s: Int) -> Float {
            var acc: Float = 0
            if s < n { for t in 0..<d { acc += z.pointer[i * d + t] * z.pointer[s * d + t] } }
            else { let b = (s - n) * d; for t in 0..<d { acc += z.pointer[i * d + t] * halo[b + t] } }
            return acc
        }
        dropped = [Float](repeating: -1, count: n * dropWidth)
        for i in 0..<n {
            let lo = edges.rowPtr[i], hi = edges.rowPtr[i + 1]
            var cand: [(Float, Int64)] = []
            for e in lo..<hi {
                let g = union.cols[e]
                if g == Int64(first + i) { continue }
                let s = Int(edges.slot[e])
                cand.append(((SigmoidFn.apply(dot(z1, h1, i, s)) + SigmoidFn.apply(dot(z2, h2, i, s))) / 2, g))
            }
            cand.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            for (j, c) in cand.prefix(Self.dropCount(degree: hi - lo, rate: hyperparameters.edgeDropRate)).enumerated() {
                dropped[i * dropWidth + j] = Float(c.1)
            }
        }
        try assembleAm()
        state.value.pointer[2] = 1
        cachedEmbedding = nil
    }

    /// Collective. Am = D⁻¹ (A ∪ Aᵀ without each row's dropped edges) from `dropped`.
    func assembleAm() throws {
        let n = input.rows
        var rp: [Int64] = [0], cols: [Int64] = []
        for i in 0..<n {
            let drop = Set(dropped[(i * dropWidth)..<((i + 1) * dropWidth)].filter { $0 >= 0 }.map { Int64($0) })
            for e in Int(union.rowPtr[i])..<Int(union.rowPtr[i + 1]) where !drop.contains(union.cols[e]) { cols.append(union.cols[e]) }
            rp.append(Int64(cols.count))
        }
        let kept = GraphShard(rowPtr: rp, cols: cols, values: [Float](repeating: 1, count: cols.count))
        amOperator = try GraphNormalization.rowNormalized(kept, layout: graph.layout, comm: comm)
    }

    /// Collective (every rank reaches it at the same point): rebuilds Am after a restore.
    func ensureAm() throws {
        if amReady && amOperator == nil { try assembleAm() }
    }

    /// Collective: K (given, or estimated by silhouette on z), k-means (20 restarts) on the fused
    /// embedding, the centres as its cluster means.
    public func initialiseCentres() throws {
        let z = try embedding(comm: comm)
        let kk = try clusterCount(z)
        let labels = try KMeans(k: kk, restarts: 20, seed: context.seed).fit(PointShard(values: z.scalars, count: z.rows, dim: z.cols), comm: comm).labels
        let means = try KMeans.clusterMeans(PointShard(values: z.scalars, count: z.rows, dim: z.cols), labels: labels, k: kk, comm: comm)
        let cv = centres.value
        cv.fill(0)
        for e in 0..<means.count { cv.pointer[e] = means[e] }
        state.value.pointer[0] = 1
        state.value.pointer[1] = Float(kk)
        initialLabels = labels
    }

    func clusterCount(_ z: Tensor) throws -> Int {
        let chosen = try StableResolution.resolve(given: context.clusters ?? (k > 0 ? k : nil),
                                                      points: PointShard(values: z.scalars, count: z.rows, dim: z.cols),
                                                      maxClusters: context.maxClusters, seed: context.seed, comm: comm)
        if let est = chosen.choice { estimatedK = est; Logger(label: "syncytium.model").info("\(StableResolution.describe(est))") }
        return chosen.k
    }

    public func checkpointShards() -> [String: Checkpoint.Shard] {
        let d = embeddingDim
        // The initial clustering (−1 before the centres exist) goes with the cell, so a resumed run
        // reports the same "initial clustering" scores (as scDEFR).
        let initial = initialLabels.isEmpty ? [Float](repeating: -1, count: cellIds.count) : initialLabels.map(Float.init)
        return ["fusion_a": .init(ids: cellIds, width: 3 * d, values: fusionA.state),
                "fusion_b": .init(ids: cellIds, width: 3 * d, values: fusionB.state),
                "am_dropped": .init(ids: cellIds, width: dropWidth, values: dropped),
                "initial_labels": .init(ids: cellIds, width: 1, values: initial)]
    }

    public func restore(from checkpoint: URL, meta: CheckpointMeta) throws {
        let a = try Checkpoint.readShard(checkpoint, "fusion_a", ranksWritten: meta.ranks, wanted: cellIds)
        let b = try Checkpoint.readShard(checkpoint, "fusion_b", ranksWritten: meta.ranks, wanted: cellIds)
        let m = try Checkpoint.readShard(checkpoint, "am_dropped", ranksWritten: meta.ranks, wanted: cellIds)
        fusionA.restore(state: a.values, steps: fusionSteps(afterGlobalStep: meta.globalStep))
        fusionB.restore(state: b.values, steps: fusionSteps(afterGlobalStep: meta.globalStep))
        dropped = m.values
        let initial = try Checkpoint.readShard(checkpoint, "initial_labels", ranksWritten: meta.ranks, wanted: cellIds).values
        initialLabels = initial.contains(where: { $0 < 0 }) ? [] : initial.map { Int32($0) }
        amOperator = nil
        try ensureAm()
        cachedEmbedding = nil
    }

    // MARK: Model

    /// Collective. The fused z of every local cell on the clean input: both views' graphs (Am and Ad)
    /// once Am exists, the pretraining view (X, Â) before.
    public func embedding(comm: Communicator) throws -> Tensor {
        if let z = cachedEmbedding { return z }
        try ensureAm()
        let tape = Tape()
        tape.training = false
        let views: [(Tensor, ViewGraph)] = amReady ? [(input, .plain(viewOneGraph)), (input, .diffusion)] : [(input, .plain(adjRow))]
        let z = tape.value(try fuse(views: views, tape).z).copy()
        cachedEmbedding = z
        return z
    }

    public func clusterAssignment(comm: Communicator) throws -> (labels: [Int32], clusters: Int)? {
        let z = try embedding(comm: comm)
        let kk = try clusterCount(z)
        if hyperparameters.labels == .head && centresReady {
            let d = z.cols
            let q = SoftAssignment.studentT(z.scalars, n: z.rows, centres: Array(centres.value.scalars.prefix(kk * d)), k: kk, dim: d)
            return ((0..<z.rows).map { i in Int32((0..<kk).max { q[i * kk + $0] < q[i * kk + $1] }!) }, kk)
        }
        let labels = try KMeans(k: kk, restarts: 20, seed: context.seed).fit(PointShard(values: z.scalars, count: z.rows, dim: z.cols), comm: comm).labels
        return (labels, kk)
    }

    public var pretrainedAssignment: [Int32]? { initialLabels.isEmpty ? nil : initialLabels }

    public var report: [(String, ReportValue)] {
        var r: [(String, ReportValue)] = [("clusters", .integer(k)), ("ppr_iterations", .integer(pprSteps))]
        if let e = estimatedK { r.append(("estimated_clusters", .integer(e.clusters))); r.append(("estimated_resolution", .number(e.resolution))); r.append(("estimated_evidence", .text(StableResolution.evidence(e)))) }
        else if context.clusters == nil && centresReady { r.append(("estimated_clusters", .integer(k))) }
        if let s = lastSinkhorn { r += [("sinkhorn_iterations", .integer(s.iterations)), ("sinkhorn_marginal_error", .number(s.error))] }
        return r
    }

    /// obsp: the symmetrised kNN graph and its distances.
    public func resultGraph(comm: Communicator) throws -> ResultGraph? { try graph.resultGraph(comm: comm) }
}
