import Clustering
import Collectives
import Foundation
import GraphLayers
import NN
import Neighbors
import TensorCore
import TestSupport
import Training
import XCTest
@testable import Autograd
@testable import CellData
@testable import Models

/// scDEFR's own ops against references computed here, and the model on a small real subset: graph
/// construction, sampled neighbourhoods, a short training run in both step modes, checkpoint round trip.
final class SCDEFRTests: XCTestCase {
    var rng = RandomStream(seed: 13, purpose: .custom("scdefr-tests"))
    let solo = Communicator.solo

    func rand(_ r: Int, _ c: Int, _ lo: Float = -1, _ hi: Float = 1) -> Tensor { Tensor.uniform(rows: r, cols: c, lo, hi, rng: &rng) }

    func studentT(_ z: Tensor, _ c: Tensor, k: Int) -> [[Double]] {
        (0..<z.rows).map { i in
            let u = (0..<k).map { j in 1 / (1 + (0..<z.cols).reduce(0.0) { $0 + pow(Double(z[i, $1] - c[j, $1]), 2) }) }
            let s = u.reduce(0, +)
            return u.map { $0 / s }
        }
    }

    /// Value against the reference's formulas (target_distribution, F.kl_div batchmean, element-mean
    /// BCE) and the gradient with the target held fixed (the backward pass detaches it).
    func testDECLossesMatchTheReferenceFormulas() throws {
        let n = 7, d = 3, k = 4
        let z = rand(n, d), c = rand(k + 1, d)   // one unused centre row
        let q = studentT(z, c, k: k)
        let f = (0..<k).map { j in q.reduce(0.0) { $0 + $1[j] } }
        let p: [[Double]] = q.map { row in
            let w = (0..<k).map { row[$0] * row[$0] / f[$0] }
            let s = w.reduce(0, +)
            return w.map { $0 / s }
        }
        // The distribution P matches Clustering's DEC target.
        let dec = try SoftAssignment.decTarget(q.flatMap { $0.map(Float.init) }, n: n, k: k, comm: solo)
        XCTAssertLessThan(zip(dec, p.flatMap { $0 }).map { abs(Double($0) - $1) }.max()!, 1e-6)
        var kl = 0.0, bce = 0.0
        for i in 0..<n { for j in 0..<k {
            kl += p[i][j] * (log(p[i][j]) - log(q[i][j]))
            bce -= p[i][j] * log(q[i][j]) + (1 - p[i][j]) * log(1 - q[i][j])
        } }
        for (kind, want) in [(DECLoss.kl, kl / Double(n)), (.bce, bce / Double(n * k))] {
            let t = Tape()
            let v = t.value(try t.decLoss(t.variable(z), centres: t.variable(c), k: k, loss: kind, comm: solo)).scalar
            XCTAssertEqual(Double(v), want, accuracy: 1e-5 * max(1, abs(want)), "\(kind)")
            let fixed = p.flatMap { $0 }
            let r = GradCheck.check([z, c]) { t, v in
                do { return try t.decLoss(v[0], centres: v[1], k: k, loss: kind, comm: self.solo, fixedTarget: fixed) } catch { preconditionFailure("\(error)") }
            }
            XCTAssertTrue(r.passed, "\(kind): \(r)")
        }
    }

    /// One logit matrix for the three heads = the three-head loss on [h, h, h]; its gradient is the sum.
    func testTiedZINBIsTheThreeHeadLossOnRepeatedLogits() throws {
        let b = 5, g = 19
        let h = rand(b, g, -2, 2)
        let x = Tensor(rows: b, cols: g)
        for e in 0..<x.count where rng.uniform() < 0.5 { x.pointer[e] = rng.uniform(0.1, 3) }   // log-normalised values
        let sf = [Float](repeating: 1, count: b)
        let t = Tape()
        let hv = t.variable(h)
        let tied = try sf.withUnsafeBufferPointer { t.zinbLossTied(hv, counts: x, sizeFactors: $0.baseAddress!, ridge: 0) }
        try t.backward(tied)
        let u = Tape()
        let hu = u.variable(h)
        let three = sf.withUnsafeBufferPointer { u.zinbLoss(u.concat([hu, hu, hu], axis: .columns), counts: x, sizeFactors: $0.baseAddress!, ridge: 0) }
        try u.backward(three)
        XCTAssertEqual(t.value(tied).scalar, u.value(three).scalar, accuracy: 1e-6 * abs(u.value(three).scalar))
        XCTAssertLessThan(t.grad(hv)!.maxAbsDifference(u.grad(hu)!), 1e-7)
    }

    // MARK: the model on a small real subset

    static func subset(_ n: Int) throws -> Dataset {
        let path = "/work/shared/data/pbmc_10x_4k_top2000.h5ad"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("shared dataset not present") }
        var source = DataSettings(); source.input = path; source.labelKey = "cell_type"
        var po = PreprocessOptions(); po.topGenes = 300; po.targetSum = nil
        let full = try Dataset.load(source, preprocess: po, comm: Communicator.solo)
        var data = full
        let m = min(n, full.cells)
        data.x = full.x.gatherRows(Array(0..<m)); data.counts = full.counts.gatherRows(Array(0..<m))
        data.sizeFactors = Array(full.sizeFactors.prefix(m)); data.cellIds = Array(full.cellIds.prefix(m))
        data.labels = Array(full.labels!.prefix(m)); data.cells = m
        return data
    }

    func small(_ training: GraphTraining) -> SCDEFR.Hyperparameters {
        var h = SCDEFR.Hyperparameters()
        h.dims = [32, 16, 8]; h.pca = 10; h.training = training; h.pretrainEpochs = 3; h.epochs = 2
        return h
    }

    func testGraphAndSampledNeighbourhoods() throws {
        let data = try Self.subset(150)
        var h = small(.minibatch)
        h.fanout = 4
        let m = try SCDEFR(input: data, hyperparameters: h, context: ModelContext(seed: 1, clusters: 4, maxClusters: 4), comm: solo)
        let a = m.graph.adjacency
        for i in 0..<a.rows {
            XCTAssertEqual(a.row(i).cols.count, 10); XCTAssertTrue(a.row(i).cols.contains(Int64(i)), "row \(i) holds the cell itself")
        }
        // A/k rows sum to one.
        let adj = m.graph.adjn
        for i in 0..<adj.rows { XCTAssertEqual(adj.values[adj.rowPtr[i]..<adj.rowPtr[i + 1]].reduce(0, +), 1, accuracy: 1e-6) }
        // All neighbours (evaluation): the seed's rows are its full-graph rows.
        let seeds = [3, 40, 77]
        let full = try m.egoBatch(seeds: seeds, sample: nil)
        for e in seeds.indices {
            let r = Int(full.lossRows![e])
            XCTAssertEqual(full.adjn.rowPtr[r + 1] - full.adjn.rowPtr[r], 10)
            XCTAssertEqual(full.edges.rowPtr[e + 1] - full.edges.rowPtr[e], 10)
            XCTAssertTrue(full.edgeWeights![Int(full.edges.rowPtr[e])..<Int(full.edges.rowPtr[e + 1])].allSatisfy { $0 == 1 })
            // Â of the neighbourhood: symmetric, D^−½ W D^−½ with the neighbourhood's degrees.
            let lo = Int(full.lossRows![e]), hi = e + 1 < seeds.count ? Int(full.lossRows![e + 1]) : full.tag.rows
            var w = [[Float]](repeating: [Float](repeating: 0, count: hi - lo), count: hi - lo)
            for i in lo..<hi { for p in full.tag.rowPtr[i]..<full.tag.rowPtr[i + 1] { w[i - lo][Int(full.tag.slot[p]) - lo] = full.tag.values[p] } }
            for i in 0..<(hi - lo) { for j in 0..<(hi - lo) { XCTAssertEqual(w[i][j], w[j][i], accuracy: 1e-6, "Â symmetric") } }
            let deg = (0..<(hi - lo)).map { i in Float(w[i].filter { $0 > 0 }.count) }
            for j in 0..<(hi - lo) where w[0][j] > 0 { XCTAssertEqual(w[0][j], 1 / (deg[0] * deg[j]).squareRoot(), accuracy: 1e-6) }
        }
        // Sampled: 1 + fanout cells per seed, the same draw for the same (epoch, step), another for another step.
        let b1 = try m.egoBatch(seeds: seeds, sample: (0, 0, 0)), b2 = try m.egoBatch(seeds: seeds, sample: (0, 0, 0))
        let b3 = try m.egoBatch(seeds: seeds, sample: (0, 1, 0))
        XCTAssertEqual(b1.x.rows, seeds.count * 5)
        XCTAssertEqual(b1.fusionIndex, b2.fusionIndex)
        XCTAssertNotEqual(b1.fusionIndex, b3.fusionIndex)
        XCTAssertEqual(b1.edges.rowPtr[1] - b1.edges.rowPtr[0], 5, "the seed and its 4 sampled neighbours")
        // Unbiased at any fanout: the self edge (always kept) weighs 1, each of the 4 sampled others
        // stands for 9/4 of the 9 others, so the weights add up to the row's 10 edges.
        for e in seeds.indices {
            let range = Int(b1.edges.rowPtr[e])..<Int(b1.edges.rowPtr[e + 1])
            let seedPosition = Int(b1.lossRows![e])
            for p in range {
                let isSelf = Int(b1.edges.slot[p]) == seedPosition
                XCTAssertEqual(b1.edgeWeights![p], isSelf ? 1 : 9 / 4, accuracy: 1e-6)
            }
            XCTAssertEqual(b1.edgeWeights![range].reduce(0, +), 10, accuracy: 1e-5)
        }
    }

    /// A few epochs in each step mode: the pretraining loss falls, the fine-tune terms appear, every
    /// cell gets one of K clusters, and a checkpoint's per-cell state restores exactly.
    func testShortTrainingInBothModes() throws {
        let data = try Self.subset(300)
        for mode in [GraphTraining.full, .minibatch] {
            let h = small(mode)
            let model = try SCDEFR(input: data, hyperparameters: h, context: ModelContext(seed: 2, clusters: 5, maxClusters: 5), comm: solo)
            XCTAssertEqual(model.training, mode)
            XCTAssertEqual(model.attention, mode == .full ? .exact : .neighbours)
            var cfg = TrainerConfig()
            cfg.batchSize = model.globalBatchSize ?? 64; cfg.lr = 1e-3
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("scdefr-test-\(mode.rawValue)-\(getpid())")
            defer { try? FileManager.default.removeItem(at: dir) }
            cfg.checkpointDir = dir.path
            let trainer = try Trainer(task: model, config: cfg, plan: TrainingPlan(epochs: model.totalEpochs, seed: 2),
                                      cellIds: data.cellIds, idSpace: data.cells, comm: solo)
            XCTAssertEqual(trainer.stepsPerEpoch, mode == .full ? 1 : 5)
            XCTAssertEqual(try trainer.run(), .completed)
            let hist = trainer.lossHistory, spe = trainer.stepsPerEpoch
            let firstPre = hist.prefix(spe).reduce(0, +), lastPre = hist[(2 * spe)..<(3 * spe)].reduce(0, +)
            XCTAssertLessThan(lastPre, firstPre, "\(mode): pretraining loss falls")
            XCTAssertTrue(model.centresReady)
            let own = try XCTUnwrap(try model.clusterAssignment(comm: solo))
            XCTAssertEqual(own.clusters, 5)
            XCTAssertTrue(own.labels.allSatisfy { (0..<5).contains($0) })
            XCTAssertEqual(own.labels.count, 300)
            // The per-cell fusion weights moved, and the newest checkpoint restores them and their moments.
            XCTAssertNotEqual(model.fusionA.values, [Float](repeating: 0.5, count: model.fusionA.values.count))
            let ck = try XCTUnwrap(Checkpoint.latest(in: dir))
            let copy = try SCDEFR(input: data, hyperparameters: h, context: ModelContext(seed: 2, clusters: 5, maxClusters: 5), comm: solo)
            try copy.restore(from: ck, meta: try Checkpoint.readMeta(ck))
            XCTAssertEqual(copy.fusionA.state, model.fusionA.state); XCTAssertEqual(copy.fusionB.state, model.fusionB.state)
            XCTAssertEqual(copy.fusionA.steps, trainer.globalStep)
            // … and the initial clustering the centres came from.
            XCTAssertEqual(copy.pretrainedAssignment?.count, 300)
            XCTAssertEqual(copy.pretrainedAssignment, model.pretrainedAssignment)
        }
    }
}
