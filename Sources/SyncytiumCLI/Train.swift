import ArgumentParser
import CellData
import Clustering
import Collectives
import Foundation
import Models
import TensorCore
import Training

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model data-parallel on an .h5ad file (the runtime's reference workload).",
        discussion: """
            Reads INPUT (each rank its rows), preprocesses it (QC, normalize_total, log1p, highly \
            variable genes) and trains with a global batch that does not depend on the rank count, \
            so 1 and N ranks follow the same loss curve. SIGTERM or SIGUSR1 stop the run at the next \
            step boundary after a checkpoint, with exit status 75; `--resume auto` continues it.
            """)

    enum ModelName: String, ExpressibleByArgument, CaseIterable { case mlpAE = "mlp-ae" }

    @Argument(help: "Input .h5ad / 10x .h5 file.") var input: String
    @Option(help: "Model: mlp-ae (2000-1024-128-24-128-1024-2000 autoencoder).") var model: ModelName = .mlpAE
    @Option(help: "obs column with reference labels, for ARI/NMI after training (never used to train).") var labelKey: String?
    @Option(help: "Epochs.") var epochs = 10
    @Option(help: "Stop after this many optimiser steps.") var maxSteps: Int?
    @Option(help: "Cells per optimiser step over all ranks.") var globalBatch = 256
    @Option(help: "Learning rate (Adam).") var lr: Float = 1e-3
    @Option(help: "Seed for parameters, batches and clustering.") var seed: UInt64 = 0
    @Option(help: "Highly variable genes to keep (0 = all).") var topGenes = 2000
    @Option(help: "Micro-batches per step (gradient accumulation, one allreduce).") var accumulation = 1
    @Option(help: "Gradient bucket size, MiB.") var bucketMib: Double = 4
    @Flag(inversion: .prefixedNo, help: "Overlap the gradient allreduce with the backward pass.") var overlap = true
    @Option(help: "Checkpoint folder (written every epoch, at the end and on SIGTERM/SIGUSR1).") var checkpointDir: String?
    @Option(help: "'auto': continue from the newest complete checkpoint in --checkpoint-dir.") var resume: String?
    @Option(help: "Write the final parameters here (rank 0).") var saveParameters: String?
    @Option(help: "Write the per-step global loss here as JSON (rank 0).") var lossLog: String?
    @Option(help: "JSONL metrics log (rank 0).") var metrics: String?

    func validate() throws {
        if let r = resume, r != "auto" { throw ValidationError("--resume takes 'auto'") }
        if resume != nil && checkpointDir == nil { throw ValidationError("--resume auto needs --checkpoint-dir") }
    }

    func run() throws {
        let comm = Communicator.world
        StopSignal.install()
        let outcome: TrainingOutcome = comm.orAbort {
            var po = PreprocessOptions(); po.topGenes = topGenes; po.seed = seed
            let data = try InputPipeline.load(input, labelKey: labelKey, options: po, comm: comm)
            if comm.rank == 0 {
                writeStderr("\(input): \(data.cells) cells × \(data.genes) genes on \(comm.size) rank(s)\n")
            }
            let task = MLPAutoencoder(input: data.x, seed: seed)
            var cfg = TrainerConfig()
            cfg.epochs = epochs; cfg.maxSteps = maxSteps; cfg.globalBatch = globalBatch; cfg.learningRate = lr
            cfg.seed = seed; cfg.accumulation = accumulation; cfg.bucketMiB = bucketMib; cfg.overlap = overlap
            cfg.checkpointDirectory = checkpointDir; cfg.metricsPath = metrics
            cfg.runConfig = (try? jsonString(["input": input, "model": model.rawValue, "seed": "\(seed)",
                                              "global_batch": "\(globalBatch)", "lr": "\(lr)", "epochs": "\(epochs)"])) ?? "{}"
            let trainer = try Trainer(task: task, config: cfg, cellIds: data.cellIds, idSpace: data.cells, comm: comm)
            if resume == "auto", let ck = try trainer.resumeIfPossible(), comm.rank == 0 {
                writeStderr("resumed from \(ck.path) at epoch \(trainer.epoch + 1), step \(trainer.stepInEpoch + 1)\n")
            }
            let outcome = try trainer.run()
            if comm.rank == 0, let path = lossLog {
                let log: [String: [Double]] = ["loss": trainer.lossHistory]
                try writeAtomically(Data(try JSONEncoder().encode(log)), to: path)
            }
            if case .stopped(let ck) = outcome {
                if comm.rank == 0 { writeStderr("stopped by signal after checkpoint \(ck)\n") }
                return outcome
            }
            if comm.rank == 0, let path = saveParameters {
                try writeAtomically(Data(task.store.serialized()), to: path)
            }
            if let labels = data.labels {
                let z = task.embed()
                let k = Set(try comm.allgatherv(labels.filter { $0 >= 0 }).values).count
                let km = try KMeans(k: max(k, 2), restarts: 10, seed: seed).fit(PointShard(values: z.scalars, count: z.rows, dim: z.cols), comm: comm)
                let truth = try comm.allgatherv(labels.map(Int64.init)).values.map(Int.init)
                let pred = try comm.allgatherv(km.labels.map(Int64.init)).values.map(Int.init)
                if comm.rank == 0 {
                    let keep = truth.indices.filter { truth[$0] >= 0 }
                    let t = keep.map { truth[$0] }, p = keep.map { pred[$0] }
                    print("ARI \(fmt(ClusterMetrics.adjustedRandIndex(t, p), 4))  NMI \(fmt(ClusterMetrics.normalizedMutualInformation(t, p), 4))  (k-means, K = \(k), on the bottleneck)")
                }
            }
            return outcome
        }
        if case .stopped = outcome { comm.finalize(); throw ExitCode(StopSignal.exitCode) }
    }
}

/// Writes `data` to `path` through a temporary file in the same folder and an atomic rename(2).
func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    try data.write(to: tmp)
    guard rename(tmp.path, url.path) == 0 else {
        let err = String(cString: strerror(errno))
        try? FileManager.default.removeItem(at: tmp)
        throw ValidationError("cannot write \(path): \(err)")
    }
}
