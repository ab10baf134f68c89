import Autograd
import CellData
import Clustering
import Collectives
import Foundation
import NN
import TensorCore
import TestSupport
import Training
import XCTest
@testable import Models

final class CICLOpTests: XCTestCase {
    let comm = Communicator.world  // a single-process test run: the world is one rank

    func rand(_ r: Int, _ c: Int, _ lo: Float = -1, _ hi: Float = 1, seed: UInt64) -> Tensor {
        var rng = RandomStream(seed: seed, purpose: .custom("cicl-test"))
        return Tensor.uniform(rows: r, cols: c, lo, hi, rng: &rng)
    }

    /// A dropout-like mask: entries 0 or 1/(1 − 0.3).
    func mask(_ r: Int, _ c: Int, seed: UInt64) -> Tensor {
        let m = rand(r, c, 0, 1, seed: seed)
        for i in 0..<m.count { m.pointer[i] = m.pointer[i] < 0.3 ? 0 : 1 / 0.7 }
        return m
    }

    func testResidualLayerNormGradients() {
        for (r, c) in [(1, 5), (3, 9), (4, 17)] {   // widths below, at and above the 8-lane blocks
            let m = mask(r, c, seed: UInt64(c))
            let affine = GradCheck.check([rand(r, c, seed: 1), rand(r, c, seed: 2), rand(1, c, 0.5, 1.5, seed: 3), rand(1, c, seed: 4)],
                                         kinds: [.variable, .variable, .parameter, .parameter]) { t, v in
                t.residualLayerNorm(v[0], v[1], mask: m, gamma: v[2], beta: v[3])
            }
            XCTAssertTrue(affine.passed, "affine \(r)×\(c): \(affine)")
            let plain = GradCheck.check([rand(r, c, seed: 5), rand(r, c, seed: 6)]) { t, v in
                t.residualLayerNorm(v[0], v[1], gamma: nil, beta: nil)
            }
            XCTAssertTrue(plain.passed, "plain \(r)×\(c): \(plain)")
        }
    }

    func testResidualLayerNormMatchesComposedOps() {
        let r = 3, c = 21
        let x = rand(r, c, seed: 7), y = rand(r, c, seed: 8), m = mask(r, c, seed: 9)
        let gm = rand(1, c, 0.5, 1.5, seed: 10), bt = rand(1, c, seed: 11)
        let t = Tape()
        let fused = t.value(t.residualLayerNorm(t.constant(x), t.constant(y), mask: m, gamma: t.constant(gm), beta: t.constant(bt)))
        let composed = t.value(t.layerNorm(t.add(t.constant(x), t.dropout(t.constant(y), mask: m)), gamma: t.constant(gm), beta: t.constant(bt)))
        XCTAssertLessThan(fused.maxAbsDifference(composed), 1e-5)
    }

    // MARK: contrastive losses

    /// The reference's `InfoNCELoss` and `CirculatePairConLoss` (learner/contrastive_utils.py), transcribed
    /// literally in Double: a loop over the clusters present, P = [u2_c; u3_c], N = [u2_¬c; u3_¬c].
    static func referenceLosses(_ u2: [[Double]], _ u3: [[Double]], _ y: [Int32], t: Double) -> (ins: Double, clu: Double) {
        func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
        let b = u2.count
        var ins = 0.0
        for i in 0..<b {
            let pos = dot(u2[i], u3[i]) / t
            var den = exp(pos)
            for j in 0..<b where j != i { den += exp(dot(u2[i], u3[j]) / t) }
            ins += log(den) - pos
        }
        var clu = 0.0
        for c in Set(y) {
            let eq = (0..<b).filter { y[$0] == c }, ne = (0..<b).filter { y[$0] != c }
            let p = eq.map { u2[$0] } + eq.map { u3[$0] }, n = ne.map { u2[$0] } + ne.map { u3[$0] }
            let pos = eq.map { exp(dot(u2[$0], u3[$0]) / t) }
            var l = 0.0
            for (row, f) in p.enumerated() {
                let ng = n.reduce(0.0) { $0 + exp(dot(f, $1) / t) }
                let pp = pos[row % eq.count]
                l += -log(pp / (ng + pp))
            }
            clu += l / Double(p.count)
        }
        return (ins / Double(b), clu)
    }

    func unitRows(_ t: Tensor) -> [[Double]] {
        (0..<t.rows).map { i in
            let r = (0..<t.cols).map { Double(t[i, $0]) }
            let n = r.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return r.map { $0 / n }
        }
    }

    func testContrastiveLossValueMatchesReference() throws {
        let b = 11, d = 9
        let raw = rand(2 * b, d, seed: 12)
        let labels: [Int32] = [0, 2, 2, 5, 0, 2, 5, 5, 0, 7, 2]   // one singleton cluster (7)
        let ids = (0..<b).map { Int64($0 * 2) }
        for temperature: Float in [0.5, 0.1] {
            let t = Tape()
            let u = t.l2NormalizeRows(t.constant(raw))
            for scope in [NegativeScope.local, .global] {
                let (loss, ins, clu) = try t.ciclContrastiveLoss(u, ids: ids, labels: labels, temperature: temperature, lambda: 0.1,
                                                                 negatives: scope, comm: comm)
                let n = unitRows(raw)
                let ref = CICLOpTests.referenceLosses(Array(n[0..<b]), Array(n[b...]), labels, t: Double(temperature))
                XCTAssertEqual(Double(ins), ref.ins, accuracy: 1e-5 * max(1, ref.ins), "\(scope) T \(temperature)")
                XCTAssertEqual(Double(clu), ref.clu, accuracy: 1e-5 * max(1, ref.clu), "\(scope) T \(temperature)")
                XCTAssertEqual(Double(t.value(loss).scalar), ref.ins + 0.1 * ref.clu, accuracy: 1e-5 * max(1, ref.ins))
            }
        }
    }

    func testContrastiveLossGradient() {
        let b = 7, d = 5
        let raw = rand(2 * b, d, seed: 13)
        let labels: [Int32] = [1, 1, 0, 3, 0, 1, 3]
        let ids = (0..<b).map { Int64(100 - $0) }   // descending ids: the global path re-orders them
        for scope in [NegativeScope.local, .global] {
            // λ = 2 makes the pair loss's share of the gradient as large as the instance loss's.
            let report = GradCheck.check([raw], h: 1e-2) { t, v in
                try! t.ciclContrastiveLoss(t.l2NormalizeRows(v[0]), ids: ids, labels: labels, temperature: 0.5, lambda: 2,
                                           negatives: scope, comm: self.comm).loss
            }
            XCTAssertTrue(report.passed, "\(scope): \(report)")
        }
    }

    func testContrastiveLossBlocksAndSimulatedRanks() {
        // More anchors than one block (blockRows), split over three simulated ranks with arbitrary cell
        // subsets: the partial sums and gradients add up to the one-rank result.
        let bTotal = 150, d = 6
        var rng = RandomStream(seed: 14, purpose: .custom("ranks"))
        let raw = Tensor.uniform(rows: 2 * bTotal, cols: d, -1, 1, rng: &rng)
        for i in 0..<raw.rows {
            var s: Float = 0
            for c in 0..<d { s += raw[i, c] * raw[i, c] }
            for c in 0..<d { raw.pointer[i * d + c] /= s.squareRoot() }
        }
        let labels = (0..<bTotal).map { _ in Int32(rng.int(below: 6)) }
        let whole = Tensor(rows: 2 * bTotal, cols: d)
        let full = CICLContrastive.accumulate(features: raw.pointer, cells: bTotal, dim: d, labels: labels, anchors: Array(0..<bTotal),
                                              temperature: 0.5, lambda: 0.1, grad: whole.pointer)
        let parts = Tensor(rows: 2 * bTotal, cols: d)
        var ins = 0.0, clu = 0.0
        for part in 0..<3 {
            let anchors = (0..<bTotal).filter { ($0 * 7 + 3) % 3 == part }
            let p = CICLContrastive.accumulate(features: raw.pointer, cells: bTotal, dim: d, labels: labels, anchors: anchors,
                                               temperature: 0.5, lambda: 0.1, grad: parts.pointer)
            ins += p.instance; clu += p.cluster
        }
        XCTAssertEqual(ins, full.instance, accuracy: 1e-9 * max(1, abs(full.instance)))
        XCTAssertEqual(clu, full.cluster, accuracy: 1e-9 * max(1, abs(full.cluster)))
        XCTAssertLessThan(parts.maxAbsDifference(whole), 1e-5)
        let n = unitRows(raw)
        let ref = CICLOpTests.referenceLosses(Array(n[0..<bTotal]), Array(n[bTotal...]), labels, t: 0.5)
        XCTAssertEqual(full.instance, ref.ins, accuracy: 1e-5 * ref.ins)
        XCTAssertEqual(full.cluster, ref.clu, accuracy: 1e-5 * ref.clu)
    }

    func testSameClusterCellsAreNeverNegatives() {
        // One pseudo-cluster for the whole batch: the pair loss has no negatives (L_clu = 0, no gradient).
        let b = 6, d = 4
        let raw = rand(2 * b, d, seed: 15)
        let t = Tape()
        let u = t.l2NormalizeRows(t.constant(raw))
        let g = Tensor(rows: 2 * b, cols: d)
        let r = CICLContrastive.accumulate(features: t.value(u).pointer, cells: b, dim: d, labels: [Int32](repeating: 3, count: b),
                                           anchors: Array(0..<b), temperature: 0.5, lambda: 1, grad: g.pointer)
        XCTAssertEqual(r.cluster, 0, accuracy: 1e-12)
        let onlyIns = Tensor(rows: 2 * b, cols: d)
        _ = CICLContrastive.accumulate(features: t.value(u).pointer, cells: b, dim: d, labels: [Int32](repeating: 3, count: b),
                                       anchors: Array(0..<b), temperature: 0.5, lambda: 0, grad: onlyIns.pointer)
        XCTAssertLessThan(g.maxAbsDifference(onlyIns), 1e-6)
    }

    // MARK: views and masks

    func testViewsNoiseExactlyTheReferenceFractionAndAreKeyedByCell() {
        let b = 40, g = 50
        let clean = rand(b, g, 0, 3, seed: 16)
        let ids = (0..<b).map { Int64($0 * 5 + 2) }
        let out = Tensor(rows: 2 * b, cols: g)
        CICLStreams.views(clean: clean, ids: ids, seed: 3, epoch: 1, fraction: 0.8, std: 0.5, into: out)
        var noise: [Double] = []
        for k in 0..<b {
            for v in 0..<2 {
                var changed = 0
                for j in 0..<g where out[v * b + k, j] != clean[k, j] {
                    changed += 1
                    noise.append(Double(out[v * b + k, j] - clean[k, j]))
                }
                XCTAssertEqual(changed, 40, "⌊0.8 · 50⌋ genes per view")
            }
            XCTAssertNotEqual(out.row(k), out.row(b + k), "two different views")
        }
        let mean = noise.reduce(0, +) / Double(noise.count)
        let sd = (noise.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(noise.count)).squareRoot()
        // 3200 draws: the standard error of the mean is 0.5/√3200 ≈ 0.009, of the sd ≈ 0.006.
        XCTAssertEqual(mean, 0, accuracy: 0.04)
        XCTAssertEqual(sd, 0.5, accuracy: 0.03)
        // A subset of the cells in another order (another rank's share) gets the same views; another
        // epoch other views.
        let sub = [7, 3, 30], subIds = sub.map { ids[$0] }
        let subClean = Tensor(rows: 3, cols: g)
        for (i, k) in sub.enumerated() { for j in 0..<g { subClean.pointer[i * g + j] = clean[k, j] } }
        let subOut = Tensor(rows: 6, cols: g)
        CICLStreams.views(clean: subClean, ids: subIds, seed: 3, epoch: 1, fraction: 0.8, std: 0.5, into: subOut)
        for (i, k) in sub.enumerated() {
            XCTAssertEqual(subOut.row(i), out.row(k))
            XCTAssertEqual(subOut.row(3 + i), out.row(b + k))
        }
        CICLStreams.views(clean: subClean, ids: subIds, seed: 3, epoch: 2, fraction: 0.8, std: 0.5, into: subOut)
        XCTAssertNotEqual(subOut.row(0), out.row(sub[0]))
    }

    func testGeneScaledViewNoiseIsTheAbsoluteNoiseTimesEachGenesScale() {
        let b = 12, g = 30
        let clean = rand(b, g, 0, 3, seed: 21)
        let ids = (0..<b).map { Int64($0 * 3 + 1) }
        let absolute = Tensor(rows: 2 * b, cols: g), scaled = Tensor(rows: 2 * b, cols: g)
        CICLStreams.views(clean: clean, ids: ids, seed: 5, epoch: 2, fraction: 0.8, std: 0.5, into: absolute)
        // Gene j's scale is j / 10 (gene 0 gets no noise at all); the same genes and draws otherwise.
        let scale = (0..<g).map { Float($0) / 10 }
        CICLStreams.views(clean: clean, ids: ids, seed: 5, epoch: 2, fraction: 0.8, std: 0.5, geneScale: scale, into: scaled)
        var noised = 0
        for r in 0..<(2 * b) {
            let k = r % b
            XCTAssertEqual(scaled[r, 0], clean[k, 0])
            for j in 0..<g {
                let a = absolute[r, j] - clean[k, j], s = scaled[r, j] - clean[k, j]
                if a != 0 { noised += 1 }
                // Both are clean + σ·z (·scale) in float: the difference of two roundings of values ≤ ~5.
                XCTAssertEqual(s, a * scale[j], accuracy: 4e-6 * (1 + abs(clean[k, j]) + abs(a)))
            }
        }
        XCTAssertEqual(noised, 2 * b * 24, "⌊0.8 · 30⌋ genes per view noised")
        let ones = Tensor(rows: 2 * b, cols: g)
        CICLStreams.views(clean: clean, ids: ids, seed: 5, epoch: 2, fraction: 0.8, std: 0.5,
                          geneScale: [Float](repeating: 1, count: g), into: ones)
        XCTAssertEqual(ones.scalars, absolute.scalars, "scale 1 for every gene is the absolute noise")
    }

    func testDropoutMasksKeyedByCell() {
        let ids: [Int64] = [4, 9, 1, 12]
        var all = CICLDropoutMasks(seed: 2, epoch: 0, ids: ids, views: 2, p: 0.2)
        let t = Tape()
        _ = all.next(cols: 33, tape: t)
        let second = all.next(cols: 1000, tape: t)
        var dropped = 0
        for v in second.scalars { XCTAssertTrue(v == 0 || abs(v - 1.25) < 1e-6); if v == 0 { dropped += 1 } }
        // 8000 draws: the standard error of the dropped fraction is 0.0045.
        XCTAssertEqual(Double(dropped) / 8000, 0.2, accuracy: 0.02)
        var one = CICLDropoutMasks(seed: 2, epoch: 0, ids: [9], views: 2, p: 0.2)
        _ = one.next(cols: 33, tape: t)
        let mine = one.next(cols: 1000, tape: t)
        XCTAssertEqual(mine.row(0), second.row(1))
        XCTAssertEqual(mine.row(1), second.row(4 + 1))
    }
}

final class CICLModelTests: XCTestCase {
    /// A model on the first `cells` cells and `genes` most variable genes of a shared dataset.
    func tinyModel(_ h: CICLHyperparameters, cells: Int = 30, genes: Int = 12, clusters: Int = 3) throws -> (CICL, Dataset) {
        let path = "/work/shared/data/baron_mouse.h5ad"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: path), "shared dataset not present")
        let comm = Communicator.world
        var source = DataSettings(); source.input = path
        var po = PreprocessOptions(); po.topGenes = genes
        var data = try Dataset.load(source, preprocess: po, comm: comm)
        let rows = Array(0..<cells)
        data.x = data.x.gatherRows(rows); data.counts = data.counts.gatherRows(rows)
        data.sizeFactors = Array(data.sizeFactors.prefix(cells)); data.cellIds = Array(data.cellIds.prefix(cells)); data.cells = cells
        (data.geneMean, data.geneStd) = try Dataset.geneMoments(data.x, comm: comm)
        let m = try CICL(input: data, hyperparameters: h, context: ModelContext(seed: 1, clusters: clusters, maxClusters: clusters),
                         comm: comm)
        return (m, data)
    }

    func small() -> CICLHyperparameters {
        var h = CICLHyperparameters()
        h.layers = 2; h.heads = 2; h.valueDim = 4; h.feedForward = 16; h.projectionHidden = 10; h.projectionDim = 6
        return h
    }

    func testBlockEqualsReferenceAttentionWithQueryAndKey() throws {
        // The reference's MY_MultiHeadAttention on a length-1 sequence, with random W_Q and W_K:
        // softmax over one key is 1, so context = V and the block output is LN(x + W_fc·W_V·x).
        let (m, _) = try tinyModel(small())
        let g = 12, heads = 2, dk = 3, dv = 4
        var rng = RandomStream(seed: 22, purpose: .custom("attn"))
        let xs = Tensor.uniform(rows: 5, cols: g, -1, 1, rng: &rng)
        let wq = Tensor.uniform(rows: g, cols: heads * dk, -1, 1, rng: &rng), wk = Tensor.uniform(rows: g, cols: heads * dk, -1, 1, rng: &rng)
        let wv = m.blocks[0].value.value, wo = m.blocks[0].output.value
        let q = Linalg.matmul(xs, wq), k = Linalg.matmul(xs, wk), v = Linalg.matmul(xs, wv)
        let context = Tensor(rows: 5, cols: heads * dv)
        for i in 0..<5 {
            for hd in 0..<heads {
                // scores over the single position: [q·k/√d_k]; softmax of one score.
                var s: Float = 0
                for c in 0..<dk { s += q[i, hd * dk + c] * k[i, hd * dk + c] }
                s /= Float(dk).squareRoot()
                let attn = Foundation.exp(s - s) / Foundation.exp(s - s)
                for c in 0..<dv { context.pointer[i * heads * dv + hd * dv + c] = attn * v[i, hd * dv + c] }
            }
        }
        let o = Linalg.matmul(context, wo)
        let t = Tape()
        let ref = t.value(t.layerNorm(t.add(t.constant(xs), t.constant(o)), gamma: nil, beta: nil))
        let ours = t.value(t.residualLayerNorm(t.constant(xs), t.matmul(t.matmul(t.constant(xs), t.constant(wv)), t.constant(wo)),
                                               gamma: nil, beta: nil))
        XCTAssertLessThan(ours.maxAbsDifference(ref), 1e-5)
        // The blocks start identical (the reference deep-copies one initialised layer).
        XCTAssertEqual(m.blocks[0].value.value.scalars, m.blocks[1].value.value.scalars)
        XCTAssertEqual(m.blocks[0].hidden.value.scalars, m.blocks[1].hidden.value.scalars)
    }

    func testNearestCentreIsArgmaxOfStudentT() throws {
        let (m, _) = try tinyModel(small())
        try m.initialiseCentres()
        let h = try m.embedding(comm: Communicator.world)
        let q = m.softAssignment(h)
        let labels = m.assign(h)
        for i in 0..<h.rows {
            let row = q[(i * m.k)..<((i + 1) * m.k)]
            XCTAssertEqual(Int32(row.firstIndex(of: row.max()!)! - i * m.k), labels[i])
        }
    }

    func testEncoderGradient() throws {
        // The whole encoder (dropout masks fixed) against finite differences, for a few parameters.
        var h = small()
        h.layers = 1
        let (m, data) = try tinyModel(h, cells: 4, genes: 6)
        let dense = Tensor(rows: 4, cols: 6)
        data.x.densify(into: dense)
        let params = [m.blocks[0].value, m.blocks[0].output, m.blocks[0].norm1Gain, m.blocks[0].hidden, m.blocks[0].backBias, m.finalBias]
        let masks = CICLDropoutMasks(seed: 5, epoch: 0, ids: [0, 1], views: 2, p: 0.2)
        let report = GradCheck.check(params.map { $0.value.copy() }, kinds: params.map { _ in .parameter }) { t, v in
            var mk: CICLDropoutMasks? = masks
            var lookup: [ObjectIdentifier: Var] = [:]
            for (p, vv) in zip(params, v) { lookup[ObjectIdentifier(p)] = vv }
            return m.encode(t.constant(dense), t, { lookup[ObjectIdentifier($0)] ?? t.constant($0.value) }, masks: &mk)
        }
        XCTAssertTrue(report.passed, "\(report)")
    }

    func testTrainingStepsRunAndCheckpointState() throws {
        var h = small()
        h.epochs = 3
        let (m, data) = try tinyModel(h)
        var cfg = TrainerConfig()
        cfg.batchSize = 8; cfg.lr = 1e-3
        let trainer = try Trainer(task: m, config: cfg, plan: TrainingPlan(epochs: m.totalEpochs, seed: 1), cellIds: data.cellIds,
                                  idSpace: data.cells, comm: Communicator.world)
        XCTAssertEqual(try trainer.run(), TrainingOutcome.completed)
        XCTAssertTrue(m.centresReady)
        XCTAssertEqual(m.k, 3)
        XCTAssertEqual(m.labelChanges.count, 3)
        XCTAssertTrue(m.currentLabels.allSatisfy { (0..<3).contains($0) }, "every cell got a pseudo-label in each epoch")
        XCTAssertTrue(trainer.lossHistory.allSatisfy(\.isFinite))
        let own = try XCTUnwrap(try m.clusterAssignment(comm: Communicator.world))
        XCTAssertEqual(own.labels.count, 30)
        XCTAssertEqual(Set(m.checkpointShards().keys), ["labels_current", "labels_previous", "labels_initial"])
    }

    func testEpochCentreUpdateMovesCentresOncePerEpoch() throws {
        var h = small()
        h.epochs = 3
        h.centreUpdate = .epoch
        let (m, data) = try tinyModel(h)
        var cfg = TrainerConfig()
        cfg.batchSize = 8; cfg.lr = 1e-2
        let trainer = try Trainer(task: m, config: cfg, plan: TrainingPlan(epochs: m.totalEpochs, seed: 1), cellIds: data.cellIds,
                                  idSpace: data.cells, comm: Communicator.world)
        try m.epochWillBegin(0, trainer: trainer)
        let initial = Array(m.centres.value.scalars.prefix(3 * m.genes))
        XCTAssertEqual(m.state.value.pointer[3], 0, "epoch 0 keeps the k-means centres it just fitted")
        XCTAssertEqual(try trainer.run(), TrainingOutcome.completed)
        XCTAssertEqual(m.state.value.pointer[3], 3, "moved before epochs 1 and 2")
        let trained = Array(m.centres.value.scalars.prefix(3 * m.genes))
        XCTAssertNotEqual(trained, initial, "the centres followed the encoder")
        // Calling the hook again for an epoch already begun (a resume inside it) does not move them again.
        try m.epochWillBegin(2, trainer: trainer)
        XCTAssertEqual(Array(m.centres.value.scalars.prefix(3 * m.genes)), trained)
        // The final clustering moves them once more, onto the final embedding: a Lloyd fixed point.
        let own = try XCTUnwrap(try m.clusterAssignment(comm: Communicator.world))
        let e = try m.embedding(comm: Communicator.world)
        let means = try KMeans.clusterMeans(PointShard(values: e.scalars, count: e.rows, dim: e.cols), labels: own.labels, k: 3,
                                            comm: Communicator.world)
        let c = Array(m.centres.value.scalars.prefix(3 * m.genes))
        let used = Set(own.labels)
        for j in used { for i in 0..<m.genes { XCTAssertEqual(c[Int(j) * m.genes + i], means[Int(j) * m.genes + i], accuracy: 1e-4) } }
    }
}
