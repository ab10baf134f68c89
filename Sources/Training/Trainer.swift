import Autograd
import Collectives
import Foundation
import NN
import TensorCore

/// What a model gives the data-parallel loop.
public protocol TrainingTask: AnyObject {
    var store: ParameterStore { get }
    /// Names of the loss terms `loss` reports (the same on every rank), for logs.
    var lossTermNames: [String] { get }
    /// Records on `tape` the loss of this rank's cells `rows` (local row indices) as the MEAN over
    /// those rows, and returns it with the named terms (also means over `rows`). `rows` may be empty
    /// on some ranks in some steps: the task must still make the same collective calls as on the
    /// other ranks, and may return any value (it is then ignored).
    func loss(rows: [Int], context: StepContext, tape: Tape) throws -> (loss: Var, terms: [Float])
    /// Per-epoch hooks (refresh bank neighbours, recompute targets, pseudo-labels, …). Collective:
    /// called on every rank.
    func epochWillBegin(_ epoch: Int, trainer: Trainer) throws
    func epochDidEnd(_ epoch: Int, trainer: Trainer) throws
    /// Per-cell state to checkpoint, and its restoration (possibly on another rank count).
    func checkpointShards() -> [String: Checkpoint.Shard]
    func restore(from checkpoint: URL, meta: CheckpointMeta) throws
}

extension TrainingTask {
    public func epochWillBegin(_ epoch: Int, trainer: Trainer) throws {}
    public func epochDidEnd(_ epoch: Int, trainer: Trainer) throws {}
    public func checkpointShards() -> [String: Checkpoint.Shard] { [:] }
    public func restore(from checkpoint: URL, meta: CheckpointMeta) throws {}
}

/// Where a step is: epoch, step within it, optimiser steps so far, micro-batch.
public struct StepContext: Sendable {
    public let epoch: Int
    public let step: Int
    public let globalStep: Int
    public let microBatch: Int
    public let seed: UInt64
}

public struct TrainerConfig: Codable, Sendable, Equatable {
    public var epochs = 10
    /// Cells per optimiser step over all ranks (the same whatever the rank count).
    public var globalBatch = 256
    public var learningRate: Float = 1e-3
    public var warmupSteps = 0
    public var cosine = false
    /// From this epoch on the learning rate is multiplied by `learningRateFactorAfter` (a model's second
    /// phase, e.g. scNAME's fine-tuning); nil = never.
    public var learningRateDropEpoch: Int? = nil
    public var learningRateFactorAfter: Float = 1
    public var optimizer = "adam"           // adam | adamw | sgd
    public var weightDecay: Float = 0
    public var momentum: Float = 0.9        // sgd
    public var clipNorm: Float? = nil
    /// Micro-batches per step (gradient accumulation with one allreduce).
    public var accumulation = 1
    /// Gradient bucket size (MiB); the first bucket is 1 MiB so communication starts early.
    public var bucketMiB: Double = 4
    public var overlap = true
    /// Sharded optimiser step (as ZeRO-1 / llm.c): gradients are reduce-scattered, each rank updates
    /// only its slice of the parameters (and optimiser state), and the slices are allgathered. Same
    /// communication volume as an allreduce, but the optimiser's work is split over the ranks.
    public var shardOptimizer = true
    /// Stop (as completed) after this many optimiser steps in all.
    public var maxSteps: Int? = nil
    public var seed: UInt64 = 0
    public var checkpointDirectory: String? = nil
    public var checkpointEveryEpochs = 1
    public var keepCheckpoints = 2
    public var metricsPath: String? = nil
    /// Resolved configuration of the whole run (JSON), kept in checkpoints.
    public var runConfig: String = "{}"
    public init() {}
}

public enum TrainingOutcome: Equatable, Sendable {
    case completed
    /// Stopped by SIGTERM/SIGUSR1 after writing a checkpoint; exit with `StopSignal.exitCode`.
    case stopped(checkpoint: String)
}

/// Timings of the last steps, for benchmarks.
public struct StepTimings: Sendable {
    public var steps = 0
    public var total = 0.0          // wall time of whole steps
    public var waitAllreduce = 0.0  // time blocked in the final wait for gradients
    public var optimizer = 0.0
}

/// The data-parallel training loop.
///
/// Parameters are broadcast from rank 0; every step each rank runs forward and backward on its cells
/// of the global batch, gradients (one flat buffer) are allreduced in buckets overlapping the
/// backward pass, and every rank applies the identical optimiser step. The sampler gives every rank
/// the same number of steps. SIGTERM/SIGUSR1 stop the run at the next step boundary, all ranks
/// together, after a checkpoint.
public final class Trainer {
    public let task: TrainingTask
    public let config: TrainerConfig
    public let comm: Communicator
    public let layout: RowLayout
    public let sampler: GlobalBatchSampler
    public private(set) var optimizer: Optimizer
    public private(set) var epoch = 0
    public private(set) var stepInEpoch = 0
    public private(set) var globalStep = 0
    public private(set) var timings = StepTimings()
    /// Global mean loss of each step run (rank-independent).
    public private(set) var lossHistory: [Double] = []
    public var producer = "syncytium"
    /// Called after each step with (globalStep, loss, terms) on every rank.
    public var onStep: ((Int, Double, [Double]) -> Void)?
    /// Benchmarks only: when false, steps skip every collective (each rank trains alone on its cells),
    /// which gives the compute-only time of the same step.
    public var communicate = true
    /// Set (identically on every rank) by a task's `epochDidEnd` to end the run as completed after
    /// this epoch's checkpoint, e.g. when a convergence criterion is met.
    public var finishRequested = false

    private let tape = Tape()
    /// Sharded optimiser: element counts per rank (multiples of 16, in order) and this rank's slice.
    private var shardCounts: [Int] = []
    private var shardRange: Range<Int> = 0..<0
    private var shardGrads = TensorStorage(zeroedCount: 0)
    private let buckets: GradientBuckets
    private var accumulator: [Float] = []
    private let progress: ProgressLog
    private var resumedFrom: URL?

    /// Collective. `cellIds`: the global ids of this rank's cells in shard order (unique over ranks,
    /// in 0..<idSpace; gaps allowed, e.g. file rows removed by QC). Batches are drawn by global id, so
    /// they do not depend on how cells are spread over ranks.
    public init(task: TrainingTask, config: TrainerConfig, cellIds: [Int64], idSpace: Int? = nil, comm: Communicator) throws {
        self.task = task; self.config = config; self.comm = comm
        layout = try RowLayout(comm: comm, localCount: cellIds.count)
        guard layout.total > 0 else { throw CollectiveUsageError("training needs at least one cell; every shard is empty") }
        let maxId = try comm.allreduce(value: cellIds.max() ?? -1, op: .max)
        let space = idSpace ?? Int(maxId + 1)
        guard maxId < Int64(space), cellIds.allSatisfy({ $0 >= 0 }) else {
            throw CollectiveUsageError("cell ids must lie in 0..<\(space); the largest is \(maxId)")
        }
        sampler = GlobalBatchSampler(total: space, ownedIds: cellIds, globalBatch: min(config.globalBatch, space),
                                     seed: config.seed)
        let store = task.store
        switch config.optimizer.lowercased() {
        case "adam": optimizer = Adam(store, weightDecay: config.weightDecay)
        case "adamw": optimizer = Adam.adamW(store, weightDecay: config.weightDecay)
        case "sgd": optimizer = SGD(store, momentum: config.momentum, weightDecay: config.weightDecay)
        default: throw CollectiveUsageError("unknown optimiser '\(config.optimizer)': use adam, adamw or sgd")
        }
        let elems = max(1, Int(config.bucketMiB * 1_048_576) / 4)
        buckets = GradientBuckets(store: store, bucketElements: elems, firstBucketElements: min(elems, 262_144), comm: comm)
        progress = try ProgressLog(comm: comm, metricsPath: config.metricsPath.map { URL(fileURLWithPath: $0) })
        if config.shardOptimizer {
            let n = store.count, p = comm.size
            let block = ((n + p - 1) / p + 15) / 16 * 16
            shardCounts = (0..<p).map { r in max(0, min(n, (r + 1) * block) - min(n, r * block)) }
            let lo = min(n, comm.rank * block)
            shardRange = lo..<(lo + shardCounts[comm.rank])
            shardGrads = TensorStorage(zeroedCount: max(shardCounts[comm.rank], 1))
        }
        // Identical replicas: rank 0's parameters and buffers everywhere.
        try comm.broadcast(UnsafeMutableBufferPointer(start: store.valuesPointer, count: store.count), root: 0)
        if store.stateCount > 0 {
            try comm.broadcast(UnsafeMutableBufferPointer(start: store.flatState.pointer, count: store.stateCount), root: 0)
        }
    }

    public var stepsPerEpoch: Int { sampler.stepsPerEpoch }

    /// The learning rate at optimiser step `s` (a pure function of the step).
    public func learningRate(at s: Int) -> Float {
        let total = max(1, config.epochs * stepsPerEpoch)
        var lr = config.learningRate
        if config.warmupSteps > 0 && s < config.warmupSteps { return lr * Float(s + 1) / Float(config.warmupSteps) }
        if config.cosine {
            let p = Float(s - config.warmupSteps) / Float(max(1, total - config.warmupSteps))
            lr *= 0.5 * (1 + cos(Float.pi * min(max(p, 0), 1)))
        }
        if let e = config.learningRateDropEpoch, s >= e * stepsPerEpoch { lr *= config.learningRateFactorAfter }
        return lr
    }

    // MARK: checkpoints

    /// Resumes from the newest complete checkpoint in the configured directory, if any. Returns it.
    @discardableResult
    public func resumeIfPossible() throws -> URL? {
        guard let dir = config.checkpointDirectory.map({ URL(fileURLWithPath: $0) }),
              let ck = Checkpoint.latest(in: dir) else { return nil }
        try resume(from: ck)
        return ck
    }

    public func resume(from ck: URL) throws {
        let meta = try Checkpoint.readMeta(ck)
        try task.store.load(serialized: Checkpoint.readBlob(ck, "parameters"))
        try optimizer.restore(state: Checkpoint.readBlob(ck, "optimizer"))
        epoch = meta.epoch; stepInEpoch = meta.stepInEpoch; globalStep = meta.globalStep
        if meta.ranks != comm.size && comm.rank == 0 {
            writeStderr("resuming from \(ck.lastPathComponent), written by \(meta.ranks) rank(s), on \(comm.size): per-cell state is re-sharded\n")
        }
        try task.restore(from: ck, meta: meta)
        resumedFrom = ck
    }

    /// Collective. Writes a checkpoint of the current position.
    @discardableResult
    public func writeCheckpoint() throws -> URL? {
        guard let dirPath = config.checkpointDirectory else { return nil }
        let dir = URL(fileURLWithPath: dirPath)
        let meta = CheckpointMeta(producer: producer, config: config.runConfig, epoch: epoch, stepInEpoch: stepInEpoch,
                                  globalStep: globalStep, ranks: comm.size, seed: config.seed)
        if config.shardOptimizer && comm.size > 1 {
            // Each rank's optimiser state is current only on its slice: gather the slices first.
            for b in optimizer.stateBuffers() { try comm.allgatherInPlace(b, counts: shardCounts) }
        }
        let blobs = comm.rank == 0 ? ["parameters": task.store.serialized(), "optimizer": optimizer.stateBlob()] : [:]
        try Checkpoint.write(to: dir, meta: meta, blobs: blobs, shards: task.checkpointShards(),
                             keep: config.keepCheckpoints, comm: comm)
        return dir.appendingPathComponent("ckpt-\(globalStep)")
    }

    // MARK: the loop

    public func run() throws -> TrainingOutcome {
        let steps = stepsPerEpoch
        var stepSeconds = 0.0
        var cellsPerSecond = 0.0
        while epoch < config.epochs {
            if stepInEpoch == 0 || resumedFrom != nil { try task.epochWillBegin(epoch, trainer: self) }
            resumedFrom = nil
            while stepInEpoch < steps {
                if let m = config.maxSteps, globalStep >= m {
                    if config.checkpointDirectory != nil { try writeCheckpoint() }
                    return .completed
                }
                if let s = Self.testStopStep, globalStep == s { StopSignal.simulate() }
                if try StopSignal.anyRank(comm) {
                    let ck = try writeCheckpoint()
                    return .stopped(checkpoint: ck?.path ?? "")
                }
                let t0 = Communicator.time()
                let (loss, terms) = try step()
                let dt = Communicator.time() - t0
                stepSeconds = stepSeconds == 0 ? dt : 0.9 * stepSeconds + 0.1 * dt
                cellsPerSecond = Double(layout.total) / Double(steps) / max(stepSeconds, 1e-9)
                lossHistory.append(loss)
                onStep?(globalStep, loss, terms)
                var fields: [String: Any] = ["epoch": epoch, "step": stepInEpoch, "global_step": globalStep,
                                             "loss": loss, "lr": Double(learningRate(at: globalStep - 1)),
                                             "seconds": dt, "cells_per_s": cellsPerSecond]
                for (n, v) in zip(task.lossTermNames, terms) { fields[n] = v }
                progress.record(fields)
                stepInEpoch += 1
                let remaining = (config.epochs - epoch - 1) * steps + (steps - stepInEpoch)
                progress.show(epoch: epoch, epochs: config.epochs, step: stepInEpoch - 1, steps: steps,
                              terms: [("loss", loss)] + zip(task.lossTermNames, terms).map { ($0, $1) },
                              cellsPerSecond: cellsPerSecond, remainingSteps: remaining, secondsPerStep: stepSeconds,
                              force: stepInEpoch == steps)
            }
            try task.epochDidEnd(epoch, trainer: self)
            epoch += 1; stepInEpoch = 0
            if config.checkpointDirectory != nil && (epoch % max(config.checkpointEveryEpochs, 1) == 0 || epoch == config.epochs) {
                try writeCheckpoint()
            }
            if finishRequested {
                if config.checkpointDirectory != nil && epoch % max(config.checkpointEveryEpochs, 1) != 0 && epoch != config.epochs {
                    try writeCheckpoint()
                }
                return .completed
            }
        }
        return .completed
    }

    /// One optimiser step on the global batch (epoch, stepInEpoch). Returns the global mean loss and terms.
    public func step() throws -> (Double, [Double]) {
        let t0 = Communicator.time()
        let store = task.store
        let rows = sampler.localRows(epoch: epoch, step: stepInEpoch)
        // Cells of this global batch that exist (ids may have gaps): one small allreduce.
        let batch = communicate ? Double(try comm.allreduce(value: Int64(rows.count), op: .sum)) : Double(rows.count)
        guard batch > 0 else { return (0, [Double](repeating: 0, count: task.lossTermNames.count)) }
        let k = max(1, config.accumulation)
        let nTerms = task.lossTermNames.count
        var sums = [Double](repeating: 0, count: 1 + nTerms)
        buckets.beginStep()
        let sharded = config.shardOptimizer && comm.size > 1 && communicate
        let overlap = config.overlap && k == 1 && comm.size > 1 && communicate && !sharded
        for mb in 0..<k {
            let lo = rows.count * mb / k, hi = rows.count * (mb + 1) / k
            let chunk = Array(rows[lo..<hi])
            tape.reset()
            tape.training = true
            if overlap {
                let base = store.gradsPointer
                tape.onParameterGradientReady = { [buckets] grad in
                    try? buckets.markReady(offset: grad.pointer - base, count: grad.count)
                }
            } else {
                tape.onParameterGradientReady = nil
            }
            // The task is called even with no rows here, so that collectives inside it (memory-bank
            // retrieval, global statistics) are entered by every rank alike.
            let ctx = StepContext(epoch: epoch, step: stepInEpoch, globalStep: globalStep, microBatch: mb, seed: config.seed)
            let (lossVar, terms) = try task.loss(rows: chunk, context: ctx, tape: tape)
            if chunk.isEmpty || !tape.requiresGrad(lossVar) {
                store.zeroGrad()
            } else {
                let w = Double(chunk.count) / batch
                sums[0] += w * Double(tape.value(lossVar).scalar)
                for (i, t) in terms.prefix(nTerms).enumerated() { sums[1 + i] += w * Double(t) }
                tape.backward(lossVar, seed: Tensor.scalar(Float(w)))
            }
            if k > 1 {
                if accumulator.count != store.count { accumulator = [Float](repeating: 0, count: store.count) }
                let g = store.gradsPointer
                if mb == 0 { accumulator.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: g, count: store.count) } }
                else { accumulator.withUnsafeMutableBufferPointer { a in for i in 0..<store.count { a[i] += g[i] } } }
                if mb == k - 1 { accumulator.withUnsafeBufferPointer { g.update(from: $0.baseAddress!, count: store.count) } }
            }
        }
        tape.onParameterGradientReady = nil
        let tw = Communicator.time()
        var tOpt = tw
        if sharded {
            // Reduce-scatter the gradients, update this rank's slice, allgather the parameters.
            let n = store.count
            try comm.reduceScatter(UnsafeBufferPointer(start: store.gradsPointer, count: n),
                                   into: UnsafeMutableBufferPointer(start: shardGrads.pointer, count: shardGrads.count),
                                   counts: shardCounts, op: .sum)
            try comm.allreduce(&sums, op: .sum)
            tOpt = Communicator.time()
            let g = shardGrads.pointer, m = shardRange.count
            if let c = config.clipNorm {
                var sq = 0.0
                for i in 0..<m { sq += Double(g[i]) * Double(g[i]) }
                let norm = (try comm.allreduce(value: sq, op: .sum)).squareRoot()
                if norm > Double(c) { let f = Float(Double(c) / (norm + 1e-6)); for i in 0..<m { g[i] *= f } }
            }
            optimizer.step(lr: learningRate(at: globalStep), range: shardRange, gradients: g)
            try comm.allgatherInPlace(UnsafeMutableBufferPointer(start: store.valuesPointer, count: n), counts: shardCounts)
        } else {
            if comm.size > 1 && communicate {
                if overlap { try buckets.finish() } else {
                    try comm.allreduce(UnsafeMutableBufferPointer(start: store.gradsPointer, count: store.count), op: .sum)
                }
                try comm.allreduce(&sums, op: .sum)
            }
            tOpt = Communicator.time()
            if let c = config.clipNorm { _ = clipGradNorm(store, maxNorm: c) }
            optimizer.step(lr: learningRate(at: globalStep))
        }
        globalStep += 1
        let t1 = Communicator.time()
        timings.steps += 1
        timings.total += t1 - t0
        timings.waitAllreduce += tOpt - tw
        timings.optimizer += t1 - tOpt
        return (sums[0], Array(sums.dropFirst()))
    }

    public func resetTimings() { timings = StepTimings() }

    /// Test hook: `SYNCYTIUM_TEST_STOP_AT_STEP=n` acts as if SIGUSR1 arrived before optimiser step n.
    static let testStopStep: Int? = getenv("SYNCYTIUM_TEST_STOP_AT_STEP").flatMap { Int(String(cString: $0)) }
}
