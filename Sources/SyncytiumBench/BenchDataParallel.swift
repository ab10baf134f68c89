import Pipelines
import ArgumentParser
import Collectives
import Foundation
import Models
import TensorCore
import Training

/// The data-parallel cost of a training step: full steps (gradient allreduce in buckets, overlapping
/// the backward pass) next to compute-only steps (the same work, no collectives), interleaved.
struct BenchDataParallel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dp",
        abstract: "Data-parallel overhead of the MLP autoencoder step: full step vs compute-only step, same run.",
        discussion: "Run on several ranks: `launch/run 2 bench dp`. Per-rank batch --batch; medians over --steps.")

    @Option(help: "Cells per rank per step.") var batch = 256
    @Option(help: "Measured steps of each kind.") var steps = 40
    @Option(help: "Input genes.") var genes = 2000
    @Option(help: "Fraction of non-zero inputs (sparse first layer).") var density = 0.1
    @Option(help: "Gradient bucket size, MiB (bucketed reduction).") var bucketMib: Double = 4
    @Option(help: "Gradient reduction: allreduce, bucketed (overlapping the backward pass) or sharded (ZeRO-1).") var reduction: GradientReduction = .sharded
    @Option(help: "BLAS threads per rank.") var threads = 1
    @Flag(help: "Print JSON.") var json = false

    struct Output: Codable {
        var benchmark = "dp"
        var ranks: Int; var batchPerRank: Int; var parameters: Int; var gradientMiB: Double
        var fullStepMs: Double; var computeStepMs: Double; var overheadFraction: Double
        var allreduceWaitMs: Double; var cellsPerSecondPerRank: Double
    }

    func run() throws {
        BLASLibrary.setThreads(threads)
        let comm = Communicator.world
        comm.orAbort {
            // Synthetic log-normalised input; every rank holds `batch × 4` cells, ids in rank order.
            let rowsPerRank = batch * 4
            var rng = RandomStream(seed: 7, rank: comm.rank, purpose: .simulation)
            var rowPtr: [Int64] = [0], cols: [Int32] = [], vals: [Float] = []
            for _ in 0..<rowsPerRank {
                for j in 0..<genes where rng.uniformDouble() < density { cols.append(Int32(j)); vals.append(rng.uniform() * 3) }
                rowPtr.append(Int64(vals.count))
            }
            let x = try CSRMatrix(rows: rowsPerRank, cols: genes, rowPtr: rowPtr, colIdx: cols, values: vals)
            let task = MLPAutoencoder(input: x, seed: 1)
            var cfg = TrainerConfig()
            cfg.batchSize = batch * comm.size; cfg.bucketMib = bucketMib; cfg.reduction = reduction
            let first = Int64(comm.rank * rowsPerRank)
            let trainer = try Trainer(task: task, config: cfg, plan: TrainingPlan(epochs: 1_000_000, seed: 0),
                                      cellIds: (0..<rowsPerRank).map { first + Int64($0) }, comm: comm)
            // Compute-only steps: the same forward, backward and local optimiser work (for the sharded
            // reduction only this rank's slice, as in its full step), no collective.
            let real = trainer.reducer
            let computeOnly = ComputeOnlyReducer(mirroring: real, store: task.store)
            var full: [Double] = [], compute: [Double] = [], wait: [Double] = []
            for i in 0..<(2 * steps + 10) {
                let communicate = i % 2 == 0
                trainer.reducer = communicate ? real : computeOnly
                try comm.barrier()
                let before = trainer.timings
                let t0 = Communicator.time()
                _ = try trainer.step()
                var dt = Communicator.time() - t0
                dt = try comm.allreduce(value: dt, op: .max)
                if i >= 10 {
                    if communicate { full.append(dt); wait.append(trainer.timings.reduceAndUpdate - before.reduceAndUpdate) }
                    else { compute.append(dt) }
                }
            }
            trainer.reducer = real
            guard comm.rank == 0 else { return }
            let f = median(full), c = median(compute)
            let out = Output(ranks: comm.size, batchPerRank: batch, parameters: task.store.parameterCount,
                             gradientMiB: Double(task.store.count * 4) / 1_048_576, fullStepMs: f * 1e3, computeStepMs: c * 1e3,
                             overheadFraction: (f - c) / f, allreduceWaitMs: median(wait) * 1e3,
                             cellsPerSecondPerRank: Double(batch) / f)
            if json { print(try jsonString(out)); return }
            print("""
                MLP autoencoder \(task.widths.map(String.init).joined(separator: "-")), \(comm.size) rank(s) × \(batch) cells, \
                \(out.parameters) parameters (\(fmt(out.gradientMiB, 1)) MiB of gradients), medians of \(steps)
                full step (\(reduction.rawValue) reduction): \(fmt(out.fullStepMs, 2)) ms
                compute-only step:      \(fmt(out.computeStepMs, 2)) ms
                data-parallel overhead: \(fmt(100 * out.overheadFraction, 1)) % of the full step (reduction and update after the backward pass \(fmt(out.allreduceWaitMs, 2)) ms)
                throughput: \(Int(out.cellsPerSecondPerRank)) cells/s per rank
                """)
        }
    }
}
extension GradientReduction: ExpressibleByArgument {}
