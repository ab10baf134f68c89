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

/// scSiameseClu's ops against dense references computed here (PPR against the dense inverse, the
/// correlation reduction against the n × n matrix), finite differences of each new op, the per-cell
/// noise, and the model on a small real subset (every stage, Am, Sinkhorn targets, checkpoint).
final class SCSiameseCluTests: XCTestCase {
    var rng = RandomStream(seed: 17, purpose: .custom("scsiameseclu-tests"))
    let solo = Communicator.solo

    func rand(_ r: Int, _ c: Int, _ lo: Float = -1, _ hi: Float = 1) -> Tensor { Tensor.uniform(rows: r, cols: c, lo, hi, rng: &rng) }

    /// D^−½ (A ∪ Aᵀ) D^−½ of a random graph (each cell, itself and 3 others) on one rank, and as dense.
    func normalisedGraph(_ n: Int) throws -> (GraphOperator, [[Double]]) {
        var rp: [Int64] = [0], c: [Int64] = []
        for i in 0..<n {
            var row: Set<Int64> = [Int64(i)]
            while row.count < 4 { row.insert(Int64(rng.int(below: n))) }
            c.append(contentsOf: row.sorted()); rp.append(Int64(c.count))
        }
        let lay = RowLayout(counts: [n])
        var a = try GraphShard(rowPtr: rp, cols: c, values: [Float](repeating: 1, count: c.count)).symmetrized(.max, layout: lay, comm: solo)
        a.values = [Float](repeating: 1, count: a.nnz)
        let s = try a.symmetricNormalized(selfLoops: false, layout: lay, comm: solo)
        var dense = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for i in 0..<n { for e in Int(s.rowPtr[i])..<Int(s.rowPtr[i + 1]) { dense[i][Int(s.cols[e])] = Double(s.values[e]) } }
        return (try GraphOperator(graph: s, layout: lay, comm: solo), dense)
    }

    /// Solves M Y = B by Gaussian elimination with partial pivoting (M n × n, B n × w).
    func solve(_ m: [[Double]], _ b: [[Double]]) -> [[Double]] {
        var a = m, y = b
        let n = a.count
        for col in 0..<n {
            let piv = (col..<n).max { abs(a[$0][col]) < abs(a[$1][col]) }!
            a.swapAt(col, piv); y.swapAt(col, piv)
            for r in 0..<n where r != col {
                let f = a[r][col] / a[col][col]
                if f == 0 { continue }
                for j in col..<n { a[r][j] -= f * a[col][j] }
                for j in 0..<y[r].count { y[r][j] -= f * y[col][j] }
            }
        }
        return (0..<n).map { r in y[r].map { $0 / a[r][r] } }
    }

    /// The truncated power iteration is within its documented bound 2·tol·‖X‖ of α(I − (1 − α)Â)⁻¹X
    /// (and much closer at a tighter tolerance); its gradient is the adjoint of the truncated map.
    func testPPRPowerIterationMatchesTheDenseInverseWithinItsBound() throws {
        let n = 17, w = 3
        let (op, dense) = try normalisedGraph(n)
        let x = rand(n, w)
        for alpha: Float in [0.1, 0.3, 0.5] {
            var m = dense.map { $0.map { -Double(1 - alpha) * $0 } }
            for i in 0..<n { m[i][i] += 1 }
            let exact = solve(m, (0..<n).map { i in (0..<w).map { Double(alpha) * Double(x[i, $0]) } })
            let xNorm = (0..<x.count).reduce(0.0) { $0 + Double(x.pointer[$1] * x.pointer[$1]) }.squareRoot()
            var last = Double.infinity
            for tol: Float in [1e-2, 1e-3, 1e-5] {
                let t = Tape()
                let z = t.value(try t.personalizedPageRank(t.constant(x), op, alpha: alpha, iterations: pprIterations(alpha: alpha, tolerance: tol)))
                var err = 0.0
                for i in 0..<n { for j in 0..<w { err += pow(Double(z[i, j]) - exact[i][j], 2) } }
                err = err.squareRoot()
                XCTAssertLessThanOrEqual(err, 2 * Double(tol) * xNorm + 1e-6, "α \(alpha), tol \(tol)")
                // A tighter tolerance gets no farther (down to Float rounding, ~1e-7·‖X‖ over these sums).
                XCTAssertLessThanOrEqual(err, last + 1e-6 * xNorm, "α \(alpha), tol \(tol)")
                last = err
            }
        }
        XCTAssertEqual(pprIterations(alpha: 0.3, tolerance: 1e-2), 13)   // 0.7^13 = 0.0097
        let r = GradCheck.check([x]) { t, v in
            do { return try t.personalizedPageRank(v[0], op, alpha: 0.3, iterations: 5) } catch { preconditionFailure("\(error)") }
        }
        XCTAssertTrue(r.passed, "\(r)")
    }

    /// CR(U Vᵀ) from Gram matrices = mean((diag − 1)²) + mean(offdiag²) of the dense n × n matrix.
    func testCorrelationReductionIsTheDenseFormula() throws {
        let n = 13, d = 4
        let u = rand(n, d), v = rand(n, d)
        var diag = 0.0, off = 0.0
        for i in 0..<n { for j in 0..<n {
            let s = (0..<d).reduce(0.0) { $0 + Double(u[i, $1]) * Double(v[j, $1]) }
            if i == j { diag += (s - 1) * (s - 1) } else { off += s * s }
        } }
        let want = diag / Double(n) + off / Double(n * (n - 1))
        let t = Tape()
        let got = t.value(try t.crossCorrelationReduction(t.constant(u), t.constant(v), comm: solo)).scalar
        XCTAssertEqual(Double(got), want, accuracy: 1e-5 * want)
        let r = GradCheck.check([u, v]) { t, x in
            do { return try t.crossCorrelationReduction(t.l2NormalizeRows(x[0]), t.l2NormalizeRows(x[1]), comm: self.solo) } catch { preconditionFailure("\(error)") }
        }
        XCTAssertTrue(r.passed, "\(r)")
    }

    /// A cell's noise is a function of (seed, epoch, view, its global id), whatever rows are around it;
    /// the multiplier has mean 1 and standard deviation σ (within 5 standard errors).
    func testViewNoiseIsKeyedByCellId() {
        let x = Tensor(rows: 400, cols: 10, repeating: 1)
        let ids = (0..<400).map { Int64(1000 + $0) }
        let stream = RandomStream(seed: 3, purpose: .augmentation).split(7)
        let full = siameseNoise(x, sigma: 0.1, stream: stream, view: 1, ids: ids)
        let part = siameseNoise(Tensor(rows: 2, cols: 10, repeating: 1), sigma: 0.1, stream: stream, view: 1, ids: [ids[250], ids[3]])
        XCTAssertEqual(Array(part.scalars[0..<10]), Array(full.scalars[2500..<2510]))
        XCTAssertEqual(Array(part.scalars[10..<20]), Array(full.scalars[30..<40]))
        let other = siameseNoise(x, sigma: 0.1, stream: stream, view: 2, ids: ids)
        XCTAssertNotEqual(other.scalars, full.scalars, "the two views differ")
        let m = Double(full.count)
        let mean = full.scalars.reduce(0.0) { $0 + Double($1) } / m
        let sd = (full.scalars.reduce(0.0) { $0 + pow(Double($1) - mean, 2) } / (m - 1)).squareRoot()
        XCTAssertEqual(mean, 1, accuracy: 5 * 0.1 / m.squareRoot())
        XCTAssertEqual(sd, 0.1, accuracy: 5 * 0.1 / (2 * m).squareRoot())
    }

    // MARK: the model on a small real subset

    func small() -> SCSiameseClu.Hyperparameters {
        var h = SCSiameseClu.Hyperparameters()
        h.aeDims = [32, 16, 8]; h.gaeDims = [16, 8]; h.pca = 10
        h.aePretrainEpochs = 4; h.gaePretrainEpochs = 3; h.jointPretrainEpochs = 3; h.epochs = 4
        h.lr = 1e-3
        return h
    }

    /// Every stage runs; each pretraining stage's loss falls; Am drops round(0.1·degree) edges per cell
    /// and its rows sum to 1; the Sinkhorn target has rows 1 and columns the current soft cluster
    /// sizes; L_CLU is KL(P‖Q) with log Q; labels are in 0..<K; a checkpoint restores Am, the per-cell
    /// weights and the embedding exactly.
    func testShortTrainingRun() throws {
        let data = try SCDEFRTests.subset(300)
        let h = small(), kk = 5
        let model = try SCSiameseClu(input: data, hyperparameters: h, context: ModelContext(seed: 2, clusters: kk, maxClusters: kk), comm: solo)
        XCTAssertEqual(model.totalEpochs, 14)
        XCTAssertEqual(model.pprSteps, pprIterations(alpha: 0.3, tolerance: 1e-2))
        var cfg = TrainerConfig()
        cfg.batchSize = model.globalBatchSize!; cfg.lr = 1e-3
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("scsiameseclu-test-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        cfg.checkpointDir = dir.path
        let trainer = try Trainer(task: model, config: cfg, plan: TrainingPlan(epochs: model.totalEpochs, seed: 2),
                                  cellIds: data.cellIds, idSpace: data.cells, comm: solo)
        XCTAssertEqual(trainer.stepsPerEpoch, 1)
        XCTAssertEqual(try trainer.run(), .completed)
        let hist = trainer.lossHistory
        XCTAssertLessThan(hist[3], hist[0], "AE stage: loss falls")
        XCTAssertLessThan(hist[6], hist[4], "graph AE stage: loss falls")
        XCTAssertLessThan(hist[9], hist[7], "joint stage: loss falls")
        XCTAssertTrue(model.amReady && model.centresReady)
        // The fusion weights step only from the joint stage on (epochs 7…13 of 14, one step each).
        XCTAssertEqual(model.fusionA.steps, 14 - h.aePretrainEpochs - h.gaePretrainEpochs)
        XCTAssertEqual(model.fusionA.steps, model.fusionSteps(afterGlobalStep: 14))
        // Am: per cell, the union graph's edges minus round(0.1·degree), never the cell itself.
        let am = try XCTUnwrap(model.amOperator), u = model.union
        for i in 0..<am.rows {
            let deg = Int(u.rowPtr[i + 1] - u.rowPtr[i])
            XCTAssertEqual(am.rowPtr[i + 1] - am.rowPtr[i], deg - SCSiameseClu.dropCount(degree: deg, rate: 0.1))
            XCTAssertEqual(am.values[am.rowPtr[i]..<am.rowPtr[i + 1]].reduce(0, +), 1, accuracy: 1e-5)
            let selfRow = Array(am.slot[am.rowPtr[i]..<am.rowPtr[i + 1]]); XCTAssertTrue(selfRow.contains(Int32(i)), "cell \(i) keeps itself")
        }
        XCTAssertGreaterThan(model.dropped.filter { $0 >= 0 }.count, 0)
        // Sinkhorn target: rows sum to 1, columns to Σ_i q_ik; the loss is Σ P(log P − log Q)/n.
        let z = try model.embedding(comm: solo)
        let p = try model.sinkhornTarget(z)
        let d = z.cols
        let q = SoftAssignment.studentT(z.scalars, n: z.rows, centres: Array(model.centres.value.scalars.prefix(kk * d)), k: kk, dim: d)
        var colP = [Double](repeating: 0, count: kk), colQ = colP, kl = 0.0
        for i in 0..<z.rows {
            XCTAssertEqual((0..<kk).reduce(0.0) { $0 + p[i * kk + $1] }, 1, accuracy: 1e-9)
            for c in 0..<kk {
                colP[c] += p[i * kk + c]; colQ[c] += Double(q[i * kk + c])
                if p[i * kk + c] > 0 { kl += p[i * kk + c] * (log(p[i * kk + c]) - log(Double(q[i * kk + c]))) }
            }
        }
        XCTAssertLessThanOrEqual(zip(colP, colQ).reduce(0.0) { $0 + abs($1.0 - $1.1) }, 1e-6 * 300 + 1e-4)
        let t = Tape()
        let lkl = t.value(try t.decLoss(t.constant(z), centres: t.constant(model.centres.value), k: kk, loss: .kl, comm: solo, fixedTarget: p)).scalar
        XCTAssertEqual(Double(lkl), kl / 300, accuracy: 1e-4 * max(1, kl / 300))
        let own = try XCTUnwrap(try model.clusterAssignment(comm: solo))
        XCTAssertEqual(own.clusters, kk)
        XCTAssertEqual(own.labels.count, 300)
        XCTAssertTrue(own.labels.allSatisfy { (0..<Int32(kk)).contains($0) })
        // Checkpoint round trip: a fresh model from the newest checkpoint has the same Am, weights, z.
        let ck = try XCTUnwrap(Checkpoint.latest(in: dir))
        let copy = try SCSiameseClu(input: data, hyperparameters: h, context: ModelContext(seed: 2, clusters: kk, maxClusters: kk), comm: solo)
        try copy.store.load(serialized: Checkpoint.readBlob(ck, "parameters"))
        try copy.restore(from: ck, meta: try Checkpoint.readMeta(ck))
        XCTAssertEqual(copy.dropped, model.dropped)
        XCTAssertFalse(model.initialLabels.isEmpty)
        XCTAssertEqual(copy.initialLabels, model.initialLabels, "the initial clustering comes back with the cells")
        XCTAssertEqual(copy.fusionA.state, model.fusionA.state); XCTAssertEqual(copy.fusionB.state, model.fusionB.state)
        XCTAssertEqual(copy.fusionA.steps, model.fusionA.steps)
        XCTAssertEqual(try copy.embedding(comm: solo).scalars, z.scalars)
    }
}
