// scNAME (Wan, Chen, Deng 2022): mask-estimation + neighbourhood-contrastive autoencoder with a ZINB
// decoder and a soft k-means head (MODELS.md §2), as a data-parallel `Model`.
//
// Deviations from the reference code (aster-ww/scNAME), each deliberate:
// - Encoder sharing (measured on all five shared datasets, then decided): `sharedEncoder` true
//   (default) runs the clean x and the corrupted x̃ through ONE encoder+decoder trunk, as the
//   paper's figure suggests; false keeps the reference code's two independent trunks (clean →
//   z + ZINB heads, corrupted → z̃ + mask head). Default schedule, 1 rank, seed 0, true K, ARI
//   shared / separate: PBMC 0.744 / 0.679, kidney 0.681 / 0.779, worm 0.359 / 0.384, CITE-CBMC
//   0.550 / 0.514, Baron 0.896 / 0.495; mean ARI 0.646 / 0.570, mean NMI 0.742 / 0.724. Chosen by
//   the mean over all datasets (never one dataset's labels); single runs move by ±0.05–0.1 ARI
//   with float-rounding-level changes, so only the mean is meaningful. The ZINB heads are one
//   fused 256→3G layer; the mask head is separate in both cases.
// - Input scaling is folded into the first layer for the clean branch: (X_log ⊘ σ)·W − (μ ⊘ σ)·W, so
//   the sparse input is never densified (the corrupted batch is kept sparse the same way); σ is the population standard deviation (zero-variance
//   genes use σ = 1), no clipping (scanpy `scale` default as in the reference).
// - VIME corruption: per-entry Bernoulli(p_m) masks and the replacement rows are drawn from a stream
//   seeded by (seed, epoch, step, global cell id), so a batch is corrupted identically on any rank
//   count. The replacement value of a masked entry (i, j) is x[s, j] with s uniform over the global
//   batch (sampling the column with replacement) instead of an explicit per-column permutation:
//   each masked entry's distribution is the same, and it needs no per-gene permutation state.
//   The corruption is applied to the log-normalised values before the per-gene scaling.
// - Keras GaussianNoise(1.5) layers are omitted: the reference session never sets the learning
//   phase, so they were inactive there.
// - BCE is computed from logits (exact; Keras clips probabilities at 1e-7).
// - Size factors are library sizes over the selected genes / their median (the reference uses the
//   library size before gene selection).
// - The neighbourhood loss is computed exactly against the bank sharded over ranks (never replicated)
//   up to `exact_bank_limit` cells. Beyond, an exact denominator costs O(N) per cell and O(N²) per
//   epoch, so `bank_loss: sampled` takes the denominator from `bank_negatives` bank rows sampled per
//   step (plus the positives exactly) and the positives from the bank's kNN graph (the cell itself and
//   its k − 1 nearest bank rows by cosine), rebuilt by the approximate IVF search at the start of every
//   fine-tuning epoch: O(N·(M + k)) per epoch plus one kNN build.
// - Convergence labels come from the bank at the end of every `updateEpoch`-th fine-tune epoch
//   (the reference recomputes them after every step, but only compares every update_epoch epochs).
// - Schedule: the reference trains 500 + 1000 epochs at batch 128, lr 1e-4; the defaults here are
//   shorter (see `Hyperparameters`), `Hyperparameters.reference` restores the reference schedule.
// - K is given, or estimated without labels (silhouette on the pretrained bank), never from labels.
// - The reference schedule (500 + 1000 epochs, check every 50, batch 128, lr 1e-4) is the run spec
//   configs/scname-reference.yaml; the defaults here are shorter.
import Autograd
import Clustering
import Collectives
import CellData
import Foundation
import Logging
import NN
import Neighbors
import TensorCore
import Training

public final class SCNAME: Model {
    public typealias Hyperparameters = SCNAMEHyperparameters
    public static let name = "scname"
    public static let summary = "mask-estimation + neighbourhood-contrastive autoencoder, ZINB decoder, soft k-means head (Wan et al. 2022)"
    public let hyperparameters: Hyperparameters
    public let context: ModelContext
    public let store = ParameterStore()
    public var lossTermNames: [String] { ["zinb", "mask", "ncl", "kmeans"] }
    /// Epochs of each phase: as set, or by data size (`Hyperparameters.defaultEpochs`).
    public let pretrainEpochs: Int, fineTuneEpochs: Int
    public var totalEpochs: Int { pretrainEpochs + fineTuneEpochs }
    public var embeddingDim: Int { hyperparameters.dims.last! }
    public var learningRateChange: (epoch: Int, factor: Float)? {
        hyperparameters.finetuneLrScale == 1 ? nil : (pretrainEpochs, hyperparameters.finetuneLrScale)
    }
    public func phase(atEpoch epoch: Int) -> TrainingPhase { epoch < pretrainEpochs ? .pretrain : .fineTune }

    let comm: Communicator
    let genes: Int
    /// X_log ⊘ σ (CSR), the raw counts, size factors, global ids of this rank's cells.
    let xScaled: CSRMatrix
    let xLog: CSRMatrix
    let counts: CSRMatrix
    let sizeFactors: [Float]
    public let cellIds: [Int64]
    let mean: [Float], std: [Float], invStd: [Float]
    /// μ ⊘ σ as a 1×G row (the folded centering).
    let shift: Tensor

    let encoder: [Linear], trunk: [Linear]
    let encoderT: [Linear], trunkT: [Linear]
    let zinbHead: Linear, maskHead: Linear
    /// Cluster centres (capacity × d; the first `k` rows are used) and [centres ready, k].
    let centres: Parameter
    let state: Parameter
    /// Bank of raw clean embeddings (one row per local cell) and its unit-row copy.
    public let bank: MemoryBank
    var bankUnit: Tensor
    /// Sampled mode: each local cell's k − 1 bank neighbours (global cell ids, −1 = none) from the kNN
    /// graph of the bank built at the start of the current fine-tuning epoch (state slot 2 = that epoch + 1).
    public let sampledBank: Bool
    public private(set) var bankNeighbours: [Int64] = []
    let totalCells: Int
    let firstCellId: Int64, cellIdsContiguous: Bool
    let cellRowOf: [Int64: Int]
    /// Labels at the last convergence check (this rank's cells).
    public private(set) var previousLabels: [Int32]
    public private(set) var lastLabelChange: Double = .nan
    public private(set) var estimatedK: ResolutionChoice?
    /// k-means labels right after pretraining (this rank's cells), for reporting.
    public private(set) var initialLabels: [Int32] = []

    public var k: Int { Int(state.value.pointer[1]) }
    public var centresReady: Bool { state.value.pointer[0] > 0 }

    /// Collective. `input` as produced by `Dataset.load` (its gene moments give the input scaling).
    public init(input: Dataset, hyperparameters h: Hyperparameters, context: ModelContext, comm: Communicator) throws {
        hyperparameters = h
        self.context = context
        self.comm = comm
        pretrainEpochs = h.pretrainEpochs ?? SCNAMEHyperparameters.defaultEpochs(cells: input.cells)
        fineTuneEpochs = h.epochs ?? SCNAMEHyperparameters.defaultEpochs(cells: input.cells)
        guard pretrainEpochs + fineTuneEpochs >= 1 else { throw CollectiveUsageError("scname: pretrain_epochs + epochs must be ≥ 1") }
        genes = input.genes
        xLog = input.x; counts = input.counts; sizeFactors = input.sizeFactors; cellIds = input.cellIds
        let g = genes
        let mu = input.geneMean, sd = input.geneStd
        mean = mu; std = sd; invStd = sd.map { 1 / $0 }
        var vals = xLog.values
        for e in 0..<vals.count { vals[e] /= sd[Int(xLog.colIdx[e])] }
        xScaled = try CSRMatrix(rows: xLog.rows, cols: g, rowPtr: xLog.rowPtr, colIdx: xLog.colIdx, values: vals)
        shift = Tensor.row((0..<g).map { mu[$0] / sd[$0] })

        var rng = RandomStream(seed: context.seed, purpose: .initialization)
        let dims = [g] + h.dims
        let s = store
        func mlp(_ name: String, _ w: [Int], lastLinear: Bool) -> [Linear] {
            (0..<(w.count - 1)).map { l in
                Linear(s, "\(name)\(l)", inputs: w[l], outputs: w[l + 1],
                       activation: lastLinear && l == w.count - 2 ? .identity : .relu, initializer: .xavierUniform(), rng: &rng)
            }
        }
        let decW = Array(h.dims.reversed())
        encoder = mlp("encoder", dims, lastLinear: true)
        trunk = mlp("decoder", decW, lastLinear: false)
        if h.sharedEncoder { encoderT = encoder; trunkT = trunk } else {
            encoderT = mlp("encoder_corrupted", dims, lastLinear: true)
            trunkT = mlp("decoder_corrupted", decW, lastLinear: false)
        }
        let last = h.dims[0]
        zinbHead = Linear(s, "zinb_heads", inputs: last, outputs: 3 * g, initializer: .xavierUniform(), rng: &rng)
        maskHead = Linear(s, "mask_head", inputs: last, outputs: g, initializer: .xavierUniform(), rng: &rng)
        let cap = context.clusters ?? context.maxClusters
        centres = s.add("cluster_centres", rows: cap, cols: h.dims.last!, .zeros, rng: &rng)
        state = s.addBuffer("scname_state", rows: 1, cols: 3, fill: 0)
        state.value.pointer[1] = Float(context.clusters ?? 0)
        let d = h.dims.last!
        bank = try MemoryBank(initial: Tensor(rows: xLog.rows, cols: d), normalize: false, comm: comm)
        bankUnit = Tensor(rows: xLog.rows, cols: d)
        previousLabels = [Int32](repeating: -1, count: xLog.rows)
        totalCells = input.cells
        switch h.bankLoss {
        case .exact: sampledBank = false
        case .sampled: sampledBank = true
        case .auto: sampledBank = input.cells > h.exactBankLimit
        }
        firstCellId = cellIds.first ?? 0
        cellIdsContiguous = zip(cellIds, cellIds.dropFirst()).allSatisfy { $1 == $0 + 1 }
        cellRowOf = cellIdsContiguous ? [:] : Dictionary(uniqueKeysWithValues: cellIds.enumerated().map { ($1, $0) })
        if sampledBank && h.neighbours >= input.cells {
            throw CollectiveUsageError("scname: model.neighbours \(h.neighbours) needs more cells than that; there are \(input.cells)")
        }
    }

    /// The local row of a global cell id, nil when another rank owns it.
    @inline(__always) func localRow(_ id: Int64) -> Int? {
        if cellIdsContiguous {
            let r = id - firstCellId
            return r >= 0 && r < Int64(cellIds.count) ? Int(r) : nil
        }
        return cellRowOf[id]
    }

    /// Collective (sampled mode). The bank's kNN graph (cosine on unit rows = Euclidean), k − 1
    /// neighbours per cell by the approximate IVF search, translated from row positions to global
    /// cell ids by one request/answer exchange with the rows' owners.
    func rebuildBankGraph(epoch: Int) throws {
        let kk = hyperparameters.neighbours - 1
        state.value.pointer[2] = Float(epoch + 1)
        guard kk > 0 else { bankNeighbours = []; return }
        let knn = try ApproximateKNN(seed: context.seed &+ UInt64(epoch)).build(bankUnit, k: kk, comm: comm)
        let layout = try RowLayout(comm: comm, localCount: cellIds.count)
        var byOwner = [[Int64]](repeating: [], count: comm.size)
        var slot = [(Int, Int)](repeating: (0, 0), count: knn.indices.count)
        for (e, g) in knn.indices.enumerated() where g >= 0 {
            let (o, l) = layout.owner(ofGlobal: Int(g))
            slot[e] = (o, byOwner[o].count)
            byOwner[o].append(Int64(l))
        }
        let asked = try comm.alltoallv(byOwner.flatMap { $0 }, sendCounts: byOwner.map(\.count))
        let answers = try comm.alltoallv(asked.values.map { cellIds[Int($0)] }, sendCounts: asked.counts)
        var start = [Int](repeating: 0, count: comm.size)
        for r in 1..<max(comm.size, 1) { start[r] = start[r - 1] + byOwner[r - 1].count }
        bankNeighbours = knn.indices.enumerated().map { e, g in g >= 0 ? answers.values[start[slot[e].0] + slot[e].1] : -1 }
    }

    // MARK: forward pieces

    /// Clean branch: z of `rows` (sparse input, centering folded into the first layer).
    func encodeClean(_ x: CSRMatrix, _ tape: Tape) -> Var { encode(x, encoder, tape) }

    /// z of a sparse batch of X ⊘ σ through `layers`: (X ⊘ σ)·W + (b − (μ ⊘ σ)·W) in the first layer.
    func encode(_ x: CSRMatrix, _ layers: [Linear], _ tape: Tape) -> Var {
        let l0 = layers[0]
        let w = tape.param(l0.weight)
        let b = tape.sub(tape.param(l0.bias!), tape.matmul(tape.constant(shift), w))
        var h = tape.linear(x, w, b, activation: .relu)
        for l in layers.dropFirst() { h = l(h, tape) }
        return h
    }

    func trunkForward(_ z: Var, _ layers: [Linear], _ tape: Tape) -> Var {
        var h = z
        for l in layers { h = l(h, tape) }
        return h
    }

    /// The global batch's log rows, gathered (collective) and densified in global-id order.
    struct GatheredBatch { var ids: [Int64]; var dense: Tensor }

    func gatherBatch(_ rows: [Int], tape: Tape) throws -> GatheredBatch {
        var ids: [Int64] = [], nnz: [Int32] = [], cols: [Int32] = [], vals: [Float] = []
        ids.reserveCapacity(rows.count); nnz.reserveCapacity(rows.count)
        for r in rows {
            ids.append(cellIds[r])
            let lo = Int(xLog.rowPtr[r]), hi = Int(xLog.rowPtr[r + 1])
            nnz.append(Int32(hi - lo))
            cols.append(contentsOf: xLog.colIdx[lo..<hi]); vals.append(contentsOf: xLog.values[lo..<hi])
        }
        let allIds = try comm.allgatherv(ids).values
        let allNnz = try comm.allgatherv(nnz).values
        let allCols = try comm.allgatherv(cols).values
        let allVals = try comm.allgatherv(vals).values
        let order = allIds.indices.sorted { allIds[$0] < allIds[$1] }
        var start = [Int](repeating: 0, count: allIds.count + 1)
        for i in 0..<allIds.count { start[i + 1] = start[i] + Int(allNnz[i]) }
        let dense = tape.zeros(max(allIds.count, 1), genes)
        for (pos, i) in order.enumerated() {
            let row = dense.pointer + pos * genes
            for e in start[i]..<start[i + 1] { row[Int(allCols[e])] = allVals[e] }
        }
        return GatheredBatch(ids: order.map { allIds[$0] }, dense: dense)
    }

    /// VIME corruption of the cells `ownIds` (global ids, all in `batch`), a pure function of
    /// (seed, epoch, step, cell id, batch): returns x̃ (log values) and the mask label 1[x ≠ x̃].
    public static func corrupt(batchIds: [Int64], batchDense: Tensor, ownIds: [Int64], maskProbability: Float,
                               seed: UInt64, epoch: Int, step: Int, xTilde: Tensor, maskLabel: Tensor) {
        let g = batchDense.cols, bt = batchIds.count
        precondition(xTilde.rows == ownIds.count && xTilde.cols == g && maskLabel.rows == ownIds.count)
        let base = RandomStream(seed: seed, purpose: .augmentation).split(UInt64(epoch)).split(UInt64(step))
        let threshold = UInt32(min(Double(maskProbability) * 4_294_967_296, 4_294_967_295))
        for (r, id) in ownIds.enumerated() {
            guard let pos = binarySearch(batchIds, id) else { preconditionFailure("cell \(id) is not in the batch") }
            var rng = base.split(UInt64(bitPattern: id))
            let src = batchDense.pointer + pos * g
            let xt = xTilde.pointer + r * g, ml = maskLabel.pointer + r * g
            // Two mask decisions per 64-bit draw (its halves against p·2³²); a masked entry's source row
            // from another draw by multiply-shift (bias < bt / 2³², negligible).
            var j = 0
            while j < g {
                let r = rng.next()
                for half in 0..<2 where j < g {
                    var v = src[j]
                    if UInt32(truncatingIfNeeded: half == 0 ? r : r >> 32) < threshold {
                        let s = Int((UInt64(UInt32(truncatingIfNeeded: rng.next())) &* UInt64(bt)) >> 32)
                        v = batchDense.pointer[s * g + j]
                    }
                    xt[j] = v
                    ml[j] = v != src[j] ? 1 : 0
                    j += 1
                }
            }
        }
    }

    static func binarySearch(_ a: [Int64], _ x: Int64) -> Int? {
        var lo = 0, hi = a.count
        while lo < hi { let m = (lo + hi) / 2; if a[m] < x { lo = m + 1 } else { hi = m } }
        return lo < a.count && a[lo] == x ? lo : nil
    }

    // MARK: TrainingTask

    public func loss(rows: [Int], context: StepContext, tape: Tape) throws -> (loss: Var, terms: [Float]) {
        let h = hyperparameters
        let fine = phase(atEpoch: context.epoch) == .fineTune
        let d = embeddingDim
        let batch = try gatherBatch(rows, tape: tape)
        if rows.isEmpty {
            if fine {
                let zt = tape.variable(Tensor(rows: 0, cols: d))
                if sampledBank {
                    _ = try tape.sampledNeighbourContrastiveLoss(zt, bank: bankUnit, positives: [], k: h.neighbours,
                                                                 negatives: sampledNegatives(context), bankTotal: totalCells,
                                                                 localRow: localRow, temperature: h.temperature, comm: comm)
                } else {
                    _ = try tape.neighbourContrastiveLoss(zt, clean: Tensor(rows: 0, cols: d), bank: bankUnit, bankIds: cellIds,
                                                         k: h.neighbours, temperature: h.temperature, comm: comm)
                }
            }
            return (tape.constant(Tensor.scalar(0)), [0, 0, 0, 0])
        }
        let b = rows.count, g = genes
        // Corrupted input: x̃ (log) → scaled dense.
        let xt = tape.alloc(b, g), ml = tape.alloc(b, g)
        SCNAME.corrupt(batchIds: batch.ids, batchDense: batch.dense, ownIds: rows.map { cellIds[$0] },
                       maskProbability: h.maskProbability, seed: context.seed, epoch: context.epoch, step: context.step,
                       xTilde: xt, maskLabel: ml)
        // x̃ ⊘ σ as CSR (its density is that of x: replacements come from the same gene's column);
        // the centering is folded into the first layer as for the clean branch.
        var rp = [Int64](repeating: 0, count: b + 1), ci: [Int32] = [], vs: [Float] = []
        let expected = Int(Double(b * g) * xLog.density * 1.2) + 16
        ci.reserveCapacity(expected); vs.reserveCapacity(expected)
        invStd.withUnsafeBufferPointer { sp in
            for i in 0..<b {
                let r = xt.pointer + i * g
                for j in 0..<g where r[j] != 0 { ci.append(Int32(j)); vs.append(r[j] * sp[j]) }
                rp[i + 1] = Int64(vs.count)
            }
        }
        let xtScaled = try CSRMatrix(rows: b, cols: g, rowPtr: rp, colIdx: ci, values: vs)
        // Clean branch → z, ZINB.
        let z = encodeClean(xScaled.gatherRows(rows), tape)
        let heads = zinbHead(trunkForward(z, trunk, tape), tape)
        let cb = counts.gatherRows(rows)
        let cd = tape.alloc(b, g)
        cb.densify(into: cd)
        let sf = rows.map { sizeFactors[$0] }
        let lZinb = sf.withUnsafeBufferPointer { tape.zinbLoss(heads, counts: cd, sizeFactors: $0.baseAddress!, ridge: h.ridge) }
        // Corrupted branch → z̃, mask estimate.
        let zt = encode(xtScaled, encoderT, tape)
        let lMask = tape.maskBCE(maskHead(trunkForward(zt, trunkT, tape), tape), target: ml)
        // Bank rows of this batch ← clean z (owner-local), before the neighbourhood loss.
        let zv = tape.value(z)
        bank.update(localRows: rows, values: zv)
        let unit = tape.alloc(b, d)
        for (i, r) in rows.enumerated() {
            var s: Float = 0
            for c in 0..<d { s += zv[i, c] * zv[i, c] }
            let inv = s > 0 ? 1 / s.squareRoot() : 0
            for c in 0..<d { let v = zv.pointer[i * d + c] * inv; unit.pointer[i * d + c] = v; bankUnit.pointer[r * d + c] = v }
        }
        var total = tape.add(lZinb, tape.scale(lMask, h.alpha))
        var terms: [Float] = [tape.value(lZinb).scalar, tape.value(lMask).scalar, 0, 0]
        if fine {
            let lNcl: Var
            if sampledBank {
                let kk = h.neighbours - 1
                var pos = [Int64](repeating: -1, count: b * h.neighbours)
                for (i, r) in rows.enumerated() {
                    pos[i * h.neighbours] = cellIds[r]
                    for e in 0..<kk where !bankNeighbours.isEmpty { pos[i * h.neighbours + 1 + e] = bankNeighbours[r * kk + e] }
                }
                lNcl = try tape.sampledNeighbourContrastiveLoss(tape.l2NormalizeRows(zt), bank: bankUnit, positives: pos, k: h.neighbours,
                                                               negatives: sampledNegatives(context), bankTotal: totalCells,
                                                               localRow: localRow, temperature: h.temperature, comm: comm)
            } else {
                lNcl = try tape.neighbourContrastiveLoss(tape.l2NormalizeRows(zt), clean: unit, bank: bankUnit, bankIds: cellIds,
                                                         k: h.neighbours, temperature: h.temperature, comm: comm)
            }
            total = tape.add(total, tape.scale(lNcl, h.beta))
            terms[2] = tape.value(lNcl).scalar
            if centresReady {
                let lKm = tape.softKMeansLoss(z, centres: tape.param(centres), k: k)
                total = tape.add(total, tape.scale(lKm, h.gamma))
                terms[3] = tape.value(lKm).scalar
            }
        }
        return (total, terms)
    }

    public func epochWillBegin(_ epoch: Int, trainer: Trainer) throws {
        guard phase(atEpoch: epoch) == .fineTune else { return }
        if !centresReady { try initialiseCentres() }
        // A run resumed inside this epoch restored the graph built at its start.
        if sampledBank && Int(state.value.pointer[2]) != epoch + 1 { try rebuildBankGraph(epoch: epoch) }
    }

    /// The step's sampled bank rows (global cell ids, uniform with replacement), the same on every
    /// rank and rank count: a stream keyed by (seed, epoch, step).
    func sampledNegatives(_ ctx: StepContext) -> [Int64] {
        var rng = RandomStream(seed: ctx.seed, purpose: .custom("scname-negatives")).split(UInt64(ctx.epoch)).split(UInt64(ctx.step))
        return (0..<hyperparameters.bankNegatives).map { _ in Int64(rng.int(below: totalCells)) }
    }

    /// Collective: K (given or estimated on the bank) and the centres by k-means++ on the bank.
    public func initialiseCentres() throws {
        let bv = bank.embeddings
        let pts = PointShard(values: bv.scalars, count: bv.rows, dim: bv.cols)
        let chosen = try StableResolution.resolve(given: context.clusters, points: pts, maxClusters: context.maxClusters,
                                                      seed: context.seed, comm: comm)
        if let est = chosen.choice { estimatedK = est; Logger(label: "syncytium.model").info("\(StableResolution.describe(est))") }
        let kk = chosen.k
        let km = try KMeans(k: kk, restarts: 10, seed: context.seed).fit(pts, comm: comm)
        let c = centres.value
        c.fill(0)
        for e in 0..<(kk * embeddingDim) { c.pointer[e] = km.centres[e] }
        state.value.pointer[0] = 1
        state.value.pointer[1] = Float(kk)
        previousLabels = km.labels
        initialLabels = km.labels
    }

    public func epochDidEnd(_ epoch: Int, trainer: Trainer) throws {
        let h = hyperparameters
        guard phase(atEpoch: epoch) == .fineTune, centresReady else { return }
        let fe = epoch - pretrainEpochs + 1
        guard fe % max(h.updateEpoch, 1) == 0 else { return }
        let labels = assign(bank.embeddings)
        var changed = [Int64(zip(labels, previousLabels).filter { $0 != $1 }.count), Int64(labels.count)]
        try comm.allreduce(&changed, op: .sum)
        previousLabels = labels
        lastLabelChange = Double(changed[0]) / Double(max(changed[1], 1))
        Logger(label: "syncytium.scname").info("scname: epoch \(epoch + 1): \(String(format: "%.4f", lastLabelChange)) of labels changed")
        if lastLabelChange < h.tolerance { trainer.finishRequested = true }
    }

    /// argmin_j ‖e_i − μ_j‖² over the first k centres.
    public func assign(_ e: Tensor) -> [Int32] {
        let kk = max(k, 1), d = e.cols
        return KMeans.assign(PointShard(values: e.scalars, count: e.rows, dim: d),
                             centres: Array(centres.value.scalars.prefix(kk * d)), k: kk).labels
    }

    public func checkpointShards() -> [String: Checkpoint.Shard] {
        var shards: [String: Checkpoint.Shard] = [
            "bank": .init(ids: cellIds, width: embeddingDim, values: bank.embeddings.scalars),
            "labels": .init(ids: cellIds, width: 1, values: previousLabels.map(Float.init))]
        if sampledBank {
            // Neighbour ids as two exact Float halves of id + 1 (20 low bits, the rest high): ids < 2⁴⁴.
            let kk = hyperparameters.neighbours - 1
            var v = [Float](repeating: 0, count: cellIds.count * 2 * kk)
            if bankNeighbours.count == cellIds.count * kk {
                for (e, id) in bankNeighbours.enumerated() {
                    let u = id + 1
                    v[2 * e] = Float(u >> 20); v[2 * e + 1] = Float(u & 0xFFFFF)
                }
            }
            shards["bank_graph"] = .init(ids: cellIds, width: 2 * kk, values: v)
        }
        return shards
    }

    public func restore(from checkpoint: URL, meta: CheckpointMeta) throws {
        let b = try Checkpoint.readShard(checkpoint, "bank", ranksWritten: meta.ranks, wanted: cellIds)
        let d = embeddingDim
        bank.update(localRows: Array(0..<cellIds.count), values: Tensor(rows: cellIds.count, cols: d, values: b.values))
        for i in 0..<cellIds.count {
            var s: Float = 0
            for c in 0..<d { s += b.values[i * d + c] * b.values[i * d + c] }
            let inv = s > 0 ? 1 / s.squareRoot() : 0
            for c in 0..<d { bankUnit.pointer[i * d + c] = b.values[i * d + c] * inv }
        }
        let l = try Checkpoint.readShard(checkpoint, "labels", ranksWritten: meta.ranks, wanted: cellIds)
        previousLabels = l.values.map { Int32($0) }
        if sampledBank && state.value.pointer[2] > 0 && hyperparameters.neighbours > 1 {
            let g = try Checkpoint.readShard(checkpoint, "bank_graph", ranksWritten: meta.ranks, wanted: cellIds).values
            bankNeighbours = (0..<(g.count / 2)).map { e in (Int64(g[2 * e]) << 20 | Int64(g[2 * e + 1])) - 1 }
        }
    }

    // MARK: Model

    public func embedding(comm: Communicator) throws -> Tensor {
        Tape.inferInBlocks(globalIds: cellIds, cols: embeddingDim) { encodeClean(xScaled.gatherRows($0), $1) }
    }

    public func clusterAssignment(comm: Communicator) throws -> (labels: [Int32], clusters: Int)? {
        if !centresReady { try initialiseCentres() }
        return (assign(try embedding(comm: comm)), k)
    }

    public var pretrainedAssignment: [Int32]? { initialLabels.isEmpty ? nil : initialLabels }

    public var report: [(String, ReportValue)] {
        var r: [(String, ReportValue)] = [("clusters", .integer(k))]
        if let e = estimatedK { r.append(("estimated_clusters", .integer(e.clusters))); r.append(("estimated_resolution", .number(e.resolution))); r.append(("estimated_evidence", .text(StableResolution.evidence(e)))) }
        if !lastLabelChange.isNaN { r.append(("last_label_change", .number(lastLabelChange))) }
        return r
    }
}
