import Pipelines
import ArgumentParser
import Collectives
import Foundation
import CellData
import Models
import TensorCore
import Training

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Training steps of a real model on a real file vs the same dense GEMMs called raw, interleaved in one run.",
        discussion: """
            --model scname: full Trainer steps (VIME corruption, both branches, ZINB + mask losses; in \
            the fine-tune phase also the bank contrastive loss over all bank rows and soft k-means; \
            gradient allreduce and Adam) at the given global batch. After each measured step the \
            dense GEMMs of one step (both branches' dense layers forward and backward, and in \
            fine-tuning the three batch × bank products) are run raw through sgemm, so 'sgemm' is \
            the time the same matrix products need without the rest (the clean branch's sparse \
            first layer is not included). cells/s is per rank: local cells per step / step time.
            --model cicl: full Trainer steps of CICL (clean pass for the pseudo-labels, two noisy views \
            through the encoder and projection head forward and backward, both contrastive losses, \
            gradient reduction and Adam), centres initialised beforehand; 'sgemm' runs every GEMM of \
            one step raw (encoder and head forward and backward, the three loss products). The default \
            input keeps all 2,000 genes of the PBMC file (--top-genes). Also prints this rank's peak \
            resident memory.
            """)

    enum Phase: String, ExpressibleByArgument, CaseIterable { case pretrain, finetune }

    @Option(help: "Model (default: scname).") var model = "scname"
    @Option(help: "Input .h5ad (default: the shared PBMC 4k file).") var input = "/work/shared/data/pbmc_10x_4k_top2000.h5ad"
    @Option(help: "Phase to time (default: pretrain).") var phase: Phase = .pretrain
    @Option(help: "Global batch (default: 256).") var batch = 256
    @Option(help: "Measured steps (default: 60).") var steps = 60
    @Option(help: "Warm-up steps (default: 5).") var warmup = 5
    @Option(help: "Clusters for the fine-tune phase (default: 10).") var clusters = 10
    @Flag(help: "Two encoder trunks (reference code) instead of one shared trunk (the default).") var separateEncoders = false
    @Option(help: "Highly variable genes kept (default: scname 1000, cicl 2000).") var topGenes: Int?

    func run() throws {
        if model == "cicl" { return try runCICL() }
        guard model == "scname" else { throw ValidationError("bench model: available models are 'scname' and 'cicl'") }
        let comm = Communicator.world
        keepAllocationsOnHeap()
        let out: String = comm.orAbort {
            var spec = ClusterSpec()   // the cluster command's preprocessing
            if let t = topGenes { spec.preprocess.topGenes = t }
            var source = spec.data; source.input = input
            let data = try Dataset.load(source, preprocess: spec.preprocess, comm: comm)
            var h = SCNAME.Hyperparameters()
            h.pretrainEpochs = phase == .pretrain ? 1_000 : 0
            h.epochs = 1_000; h.sharedEncoder = !separateEncoders
            let m = try SCNAME(input: data, hyperparameters: h, context: ModelContext(seed: 0, clusters: clusters, maxClusters: clusters),
                               comm: comm)
            if phase == .finetune {
                let z = try m.embedding(comm: comm)
                m.bank.update(localRows: Array(0..<z.rows), values: z)
                try m.initialiseCentres()
            }
            var cfg = TrainerConfig()
            cfg.batchSize = batch
            let trainer = try Trainer(task: m, config: cfg, plan: TrainingPlan(epochs: m.totalEpochs, seed: 0),
                                      cellIds: data.cellIds, idSpace: data.cells, comm: comm)
            // The dense GEMMs of one step: (m, n, k) per call.
            let b = max(1, data.x.rows * batch / max(data.cells, 1)), g = data.genes
            let dims = h.dims
            var shapes: [(Int, Int, Int)] = []
            func layer(_ i: Int, _ o: Int, inputGrad: Bool) {
                shapes.append((b, o, i)); shapes.append((i, o, b))
                if inputGrad { shapes.append((b, i, o)) }
            }
            let trunk = [(dims[2], dims[1]), (dims[1], dims[0])]
            // Both branches' first layers take sparse input (CSR × dense, not sgemm): not in the list.
            for branch in 0..<2 {
                layer(dims[0], dims[1], inputGrad: true); layer(dims[1], dims[2], inputGrad: true)
                for (i, o) in trunk { layer(i, o, inputGrad: true) }
                layer(dims[0], branch == 0 ? 3 * g : g, inputGrad: true)
            }
            let bankRows = data.x.rows
            if phase == .finetune {
                shapes.append((batch, bankRows, dims[2])); shapes.append((batch, bankRows, dims[2])); shapes.append((batch, dims[2], bankRows))
            }
            let (ms, rawMs, flops) = try stepsAgainstSgemm(trainer, shapes: shapes, warmup: warmup, steps: steps)
            return "scname \(phase.rawValue): \(comm.size) rank(s), global batch \(batch) (≈\(b) local), \(g) genes, \(data.cells) cells, "
                + "shared encoder \(!separateEncoders)\n"
                + "  step \(fmt(ms, 2)) ms  →  \(Int(Double(b) / (ms / 1000))) cells/s per rank\n"
                + "  raw sgemm of the same dense GEMMs \(fmt(rawMs, 2)) ms (\(fmt(flops / (rawMs / 1000) / 1e9, 1)) GFLOP/s)"
                + "  →  sgemm-bound limit \(Int(Double(b) / (rawMs / 1000))) cells/s\n"
        }
        if comm.rank == 0 { print(out, terminator: "") }
    }
}

extension BenchModel {
    /// `--model cicl`: CICL training steps next to the raw sgemm of the same GEMMs.
    func runCICL() throws {
        let comm = Communicator.world
        keepAllocationsOnHeap()
        let out: String = comm.orAbort {
            var spec = ClusterSpec()
            spec.preprocess.topGenes = topGenes ?? 2000
            var source = spec.data; source.input = input
            let data = try Dataset.load(source, preprocess: spec.preprocess, comm: comm)
            var h = CICL.Hyperparameters()
            h.epochs = 1_000
            let m = try CICL(input: data, hyperparameters: h, context: ModelContext(seed: 0, clusters: clusters, maxClusters: clusters),
                             comm: comm)
            try m.initialiseCentres()
            var cfg = TrainerConfig()
            cfg.batchSize = batch
            cfg.lr = 1e-4
            let trainer = try Trainer(task: m, config: cfg, plan: TrainingPlan(epochs: m.totalEpochs, seed: 0),
                                      cellIds: data.cellIds, idSpace: data.cells, comm: comm)
            // The GEMMs of one step, (m, n, k) per call, for b local and B global cells.
            let b = max(1, data.x.rows * batch / max(data.cells, 1)), bg = min(batch, data.cells), g = data.genes
            let vw = h.valueWidth, ff = h.feedForward, ph = h.projectionHidden, pd = h.projectionDim
            var shapes: [(Int, Int, Int)] = []
            let blockLayers = [(g, vw), (vw, g), (g, ff), (ff, g)]
            for _ in 0..<h.layers { for (i, o) in blockLayers { shapes.append((b, o, i)) } }       // clean pass
            for l in 0..<h.layers {
                for (n, (i, o)) in blockLayers.enumerated() {
                    shapes.append((2 * b, o, i)); shapes.append((i, o, 2 * b))                      // forward, dW
                    if !(l == 0 && n == 0) { shapes.append((2 * b, i, o)) }                         // dX (not of the data)
                }
            }
            for (i, o) in [(g, ph), (ph, pd)] { shapes.append((2 * b, o, i)); shapes.append((i, o, 2 * b)); shapes.append((2 * b, i, o)) }
            let anchors = 2 * b, columns = h.negatives == .global ? 2 * bg : 2 * b   // own anchors against the gathered batch
            shapes.append((anchors, columns, pd)); shapes.append((columns, pd, anchors)); shapes.append((anchors, pd, columns))
            let (ms, rawMs, flops) = try stepsAgainstSgemm(trainer, shapes: shapes, warmup: warmup, steps: steps)
            return "cicl: \(comm.size) rank(s), global batch \(batch) (≈\(b) local), \(g) genes, \(data.cells) cells, "
                + "\(m.store.parameterCount) parameters, negatives \(h.negatives.rawValue)\n"
                + "  step \(fmt(ms, 2)) ms  →  \(Int(Double(b) / (ms / 1000))) cells/s per rank\n"
                + "  raw sgemm of the same GEMMs \(fmt(rawMs, 2)) ms (\(fmt(flops / (rawMs / 1000) / 1e9, 1)) GFLOP/s)"
                + "  →  sgemm-bound limit \(Int(Double(b) / (rawMs / 1000))) cells/s; step / sgemm = \(fmt(ms / rawMs, 3))\n"
                + "  peak resident memory of rank \(comm.rank): \(ProcessMemory.read().peak / 1_048_576) MiB\n"
        }
        if comm.rank == 0 { print(out, terminator: "") }
    }
}

/// Interleaved: `steps` optimiser steps and, after each, raw sgemm of `shapes` (m, n, k) — the same
/// GEMMs on buffers of the largest sizes. Median step ms, median sgemm ms, the GEMMs' FLOPs.
func stepsAgainstSgemm(_ trainer: Trainer, shapes: [(Int, Int, Int)], warmup: Int, steps: Int) throws -> (Double, Double, Double) {
    let maxA = shapes.map { $0.0 * $0.2 }.max()!, maxB = shapes.map { $0.2 * $0.1 }.max()!, maxC = shapes.map { $0.0 * $0.1 }.max()!
    var rng = RandomStream(seed: 1)
    let A = Tensor.uniform(rows: 1, cols: maxA, rng: &rng), B = Tensor.uniform(rows: 1, cols: maxB, rng: &rng)
    let C = Tensor(rows: 1, cols: maxC)
    func raw() {
        for (mm, nn, kk) in shapes {
            Linalg.sgemm(transA: false, transB: false, m: mm, n: nn, k: kk, alpha: 1, a: A.pointer, lda: kk,
                         b: B.pointer, ldb: nn, beta: 0, c: C.pointer, ldc: nn)
        }
    }
    for _ in 0..<warmup { _ = try trainer.step(); raw() }
    var stepT: [Double] = [], rawT: [Double] = []
    for _ in 0..<steps {
        let t0 = Communicator.time()
        _ = try trainer.step()
        let t1 = Communicator.time()
        raw()
        let t2 = Communicator.time()
        stepT.append(t1 - t0); rawT.append(t2 - t1)
    }
    let flops = shapes.reduce(0.0) { $0 + 2 * Double($1.0) * Double($1.1) * Double($1.2) }
    return (median(stepT) * 1000, median(rawT) * 1000, flops)
}

