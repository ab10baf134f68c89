// Multi-rank check of CICL training (Models/CICL; launch/tests.d/70-cicl runs it on 3 ranks): the
// same cells trained for several steps on P ranks and on one give the same parameters, centres and
// pseudo-labels. Everything random about a cell is keyed by its global id, the negatives are
// all-gathered and gradients reduced, so a rank count only reorders float32 sums.
import CellData
import Collectives
import Foundation
import Models
import TensorCore
import Training

func ciclChecks(comm: Communicator, path: String, expect: (Bool, String) -> Void) throws {
    let stride = 70, genes = 16, k = 3
    // Every 70th cell of the file (61 of pbmc's 4,271; split 31/30 on 2 ranks, 21/20/20 on 3),
    // renumbered 0..<n so that ids are contiguous.
    func data(_ c: Communicator) throws -> Dataset {
        var source = DataSettings(); source.input = path
        var po = PreprocessOptions(); po.topGenes = genes
        var d = try Dataset.load(source, preprocess: po, comm: c)
        let rows = d.cellIds.indices.filter { d.cellIds[$0] % Int64(stride) == 0 }
        d.x = d.x.gatherRows(rows); d.counts = d.counts.gatherRows(rows)
        d.sizeFactors = rows.map { d.sizeFactors[$0] }
        d.cellIds = rows.map { d.cellIds[$0] / Int64(stride) }
        d.cells = Int(try c.allreduce(value: Int64(rows.count), op: .sum))
        (d.geneMean, d.geneStd) = try Dataset.geneMoments(d.x, comm: c)
        return d
    }
    var h = CICLHyperparameters()
    h.layers = 2; h.heads = 2; h.valueDim = 4; h.feedForward = 16; h.projectionHidden = 10; h.projectionDim = 6
    h.epochs = 3; h.centreUpdate = .epoch
    var cfg = TrainerConfig()
    cfg.batchSize = 16; cfg.optimizer = .sgd; cfg.momentum = 0; cfg.lr = 0.05
    struct Run { var params: [Float]; var labels: [Int64: Int32]; var losses: [Double]; var steps: Int }
    func train(_ c: Communicator) throws -> Run {
        let d = try data(c)
        let m = try CICL(input: d, hyperparameters: h, context: ModelContext(seed: 4, clusters: k, maxClusters: k), comm: c)
        let t = try Trainer(task: m, config: cfg, plan: TrainingPlan(epochs: h.epochs, seed: 4), cellIds: d.cellIds, idSpace: d.cells, comm: c)
        _ = try t.run()
        let own = try m.clusterAssignment(comm: c)!
        let ids = try c.allgatherv(d.cellIds).values, labels = try c.allgatherv(own.labels).values
        return Run(params: Array(UnsafeBufferPointer(start: m.store.valuesPointer, count: m.store.count)),
                   labels: Dictionary(uniqueKeysWithValues: zip(ids, labels)), losses: t.lossHistory, steps: t.globalStep)
    }
    let mine = try train(comm), solo = try train(Communicator.solo)
    expect(mine.steps == solo.steps && mine.steps == 12, "cicl: \(mine.steps) steps on \(comm.size) ranks, \(solo.steps) on one (12 expected)")
    // Budget: the same sums in another order, a few float32 ulps per step, grown over 12 SGD steps;
    // 1e-4 of the largest parameter (centres included). A dropped shard, an unweighted rank or a
    // rank-dependent view is of order 1e-2 and more.
    let scale = solo.params.map(abs).max()!
    let diff = zip(mine.params, solo.params).map { abs($0 - $1) }.max()! / scale
    expect(mine.params.count == solo.params.count && diff <= 1e-4, "cicl: parameters after 12 steps differ from one rank by \(diff) of the largest")
    let ld = zip(mine.losses, solo.losses).map { abs($0 - $1) / abs($1) }.max()!
    expect(ld <= 1e-4, "cicl: step losses differ from one rank by \(ld)")
    expect(mine.labels == solo.labels, "cicl: final clusters differ from one rank")
    let initial = try CICL(input: try data(Communicator.solo), hyperparameters: h,
                           context: ModelContext(seed: 4, clusters: k, maxClusters: k), comm: Communicator.solo)
    let start = Array(UnsafeBufferPointer(start: initial.store.valuesPointer, count: initial.store.count))
    expect(zip(start, solo.params).contains { $0 != $1 }, "cicl: the steps changed the parameters")
}
