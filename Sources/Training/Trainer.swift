import Autograd
import Collectives
import Foundation
import Logging
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
    /// True when the task's backward pass communicates (graph layers with halo rows, batch norm over
    /// all ranks): the trainer then runs the backward pass on every rank in every micro-batch, also
    /// where this rank has no rows (seeded with weight 0), so that no rank is left waiting.
    var collectiveBackward: Bool { get }
    /// Collective. After each optimiser step, with the learning rate it used: for parameters a task
    /// keeps outside the replicated store (per-cell parameters owned by the rank owning the cell).
    func stepDidEnd(learningRate: Float, trainer: Trainer) throws
}

extension TrainingTask {
    public func epochWillBegin(_ epoch: Int, trainer: Trainer) throws {}
    public func epochDidEnd(_ epoch: Int, trainer: Trainer) throws {}
    public func checkpointShards() -> [String: Checkpoint.Shard] { [:] }
    public func restore(from checkpoint: URL, meta: CheckpointMeta) throws {}
    public var collectiveBackward: Bool { false }
    public func stepDidEnd(learningRate: Float, trainer: Trainer) throws {}
}

/// Where a step is: epoch, step within it, optimiser steps so far, micro-batch.
public struct StepContext: Sendable {
    public let epoch: Int
    public let step: Int
    public let globalStep: Int
    public let microBatch: Int
    public let seed: UInt64
}

public enum TrainingOutcome: Equatable, Sendable {
    case completed
    /// Stopped by SIGTERM/SIGUSR1 after writing a checkpoint; exit with `StopSignal.exitCode`.
    case stopped(checkpoint: String)
}

/// Timings of the last steps, for benchmarks.
public struct StepTimings: Sendable {
    public var steps = 0
    public var total = 0.0            // wall time of whole steps
    public var reduceAndUpdate = 0.0  // after the backward pass: the rest of the reduction and the optimiser update
}

/// The data-parallel training loop.
///
/// Parameters are broadcast from rank 0. Every step each rank runs forward and backward on its cells
/// of the global batch (in `config.accumulation` micro-batches), the `GradientReducer` chosen by
/// `config.reduction` combines the gradients and applies the identical optimiser update everywhere.
/// The sampler gives every rank the same number of steps. SIGTERM/SIGUSR1 stop the run at the next
/// step boundary, all ranks together, after a checkpoint. `run()` reads as: epoch → step (forward,
/// backward, reduce, update) → epoch hooks → checkpoint.
public final class Trainer {
    public let task: TrainingTask
    public let config: TrainerConfig
    public let plan: TrainingPlan
    public let comm: Communicator
    public let layout: RowLayout
    public let sampler: GlobalBatchSampler
    public let schedule: LearningRateSchedule
    public private(set) var optimizer: Optimizer
    /// How gradients are combined; benchmarks may swap in a `ComputeOnlyReducer`.
    public var reducer: GradientReducer
    public private(set) var epoch = 0
    public private(set) var stepInEpoch = 0
    public private(set) var globalStep = 0
    public private(set) var timings = StepTimings()
    /// Global mean loss of each step run (rank-independent).
    public private(set) var lossHistory: [Double] = []
    /// Per epoch: the global mean loss and terms over its steps. Kept in checkpoints ("history"), so a
    /// resumed run holds the epochs before the stop too; an epoch resumed mid-way counts the steps run
    /// since the resume.
    public private(set) var epochHistory: [(epoch: Int, loss: Double, terms: [Double])] = []
    public var producer = "syncytium"
    /// Set (identically on every rank) by a task's `epochDidEnd` to end the run as completed after
    /// this epoch's checkpoint, e.g. when a convergence criterion is met.
    public var finishRequested = false

    private let tape = Tape()
    private var accumulator: [Float] = []
    private let progress: ProgressLog
    private var resumedFrom: URL?

    /// Collective. `cellIds`: the global ids of this rank's cells in shard order (unique over ranks,
    /// in 0..<idSpace; gaps allowed, e.g. file rows removed by QC). Batches are drawn by global id, so
    /// they do not depend on how cells are spread over ranks.
    public init(task: TrainingTask, config: TrainerConfig, plan: TrainingPlan, cellIds: [Int64], idSpace: Int? = nil,
                comm: Communicator) throws {
        self.task = task; self.config = config; self.plan = plan; self.comm = comm
        layout = try RowLayout(comm: comm, localCount: cellIds.count)
        guard layout.total > 0 else { throw CollectiveUsageError("training needs at least one cell; every shard is empty") }
        let maxId = try comm.allreduce(value: cellIds.max() ?? -1, op: .max)
        let space = idSpace ?? Int(maxId + 1)
        guard maxId < Int64(space), cellIds.allSatisfy({ $0 >= 0 }) else {
            throw CollectiveUsageError("cell ids must lie in 0..<\(space); the largest is \(maxId)")
        }
        sampler = GlobalBatchSampler(total: space, ownedIds: cellIds, globalBatch: min(config.batchSize, space), seed: plan.seed)
        let store = task.store
        switch config.optimizer {
        case .adam: optimizer = Adam(store, weightDecay: config.weightDecay)
        case .adamw: optimizer = Adam.adamW(store, weightDecay: config.weightDecay)
        case .sgd: optimizer = SGD(store, momentum: config.momentum, weightDecay: config.weightDecay)
        }
        reducer = GradientReducers.make(config.reduction, store: store, bucketMiB: config.bucketMib, comm: comm)
        let total = max(1, plan.epochs * sampler.stepsPerEpoch)
        let spe = sampler.stepsPerEpoch
        var sch: LearningRateSchedule = plan.epochSchedule.map {
            .warmupCosine(peak: config.lr, warmupSteps: $0.warmupEpochs * spe, totalSteps: max(1, $0.cosineEpochs * spe))
        } ?? (config.schedule == .cosine
            ? .warmupCosine(peak: config.lr, warmupSteps: config.warmupSteps, totalSteps: total)
            : (config.warmupSteps > 0 ? .warmup(peak: config.lr, warmupSteps: config.warmupSteps) : .constant(config.lr)))
        if let c = plan.learningRateChange { sch = .changed(sch, atStep: c.epoch * sampler.stepsPerEpoch, factor: c.factor) }
        schedule = sch
        progress = try ProgressLog(comm: comm, metricsPath: config.metrics.map { URL(fileURLWithPath: $0) })
        // Identical replicas: rank 0's parameters and buffers everywhere.
        try comm.broadcast(UnsafeMutableBufferPointer(start: store.valuesPointer, count: store.count), root: 0)
        if store.stateCount > 0 {
            try comm.broadcast(UnsafeMutableBufferPointer(start: store.flatState.pointer, count: store.stateCount), root: 0)
        }
    }

    public var stepsPerEpoch: Int { sampler.stepsPerEpoch }

    /// The learning rate at optimiser step `s` (a pure function of the step).
    public func learningRate(at s: Int) -> Float { schedule(s) }

    // MARK: checkpoints

    /// Resumes from the newest complete checkpoint in the configured directory, if any. Returns it.
    @discardableResult
    public func resumeIfPossible() throws -> URL? {
        guard let dir = config.checkpointDir.map({ URL(fileURLWithPath: $0) }),
              let ck = Checkpoint.latest(in: dir) else { return nil }
        try resume(from: ck)
        return ck
    }

    public func resume(from ck: URL) throws {
        let meta = try Checkpoint.readMeta(ck)
        try task.store.load(serialized: Checkpoint.readBlob(ck, "parameters"))
        try optimizer.restore(state: Checkpoint.readBlob(ck, "optimizer"))
        epoch = meta.epoch; stepInEpoch = meta.stepInEpoch; globalStep = meta.globalStep
        finishRequested = meta.extra[Trainer.finishedKey] != nil
        if meta.ranks != comm.size {
            Logger(label: "syncytium.training").info("resuming from \(ck.lastPathComponent), written by \(meta.ranks) rank(s), on \(comm.size): per-cell state is re-sharded")
        }
        try task.restore(from: ck, meta: meta)
        // Checkpoints written before the history was kept have none: the history then starts here.
        let historyFile = ck.appendingPathComponent("history.bin").path
        epochHistory = FileManager.default.fileExists(atPath: historyFile)
            ? try Trainer.decodeHistory(Checkpoint.readBlob(ck, "history"), checkpoint: ck) : []
        resumedFrom = ck
    }

    /// The checkpoint's `extra` key that records a finish the task requested.
    static let finishedKey = "finish_requested"

    /// Collective. Writes a checkpoint of the current position.
    @discardableResult
    public func writeCheckpoint() throws -> URL? {
        guard let dirPath = config.checkpointDir else { return nil }
        let dir = URL(fileURLWithPath: dirPath)
        // A finish requested by the task (a convergence rule) travels with the checkpoint, so a resumed run ends too.
        let meta = CheckpointMeta(producer: producer, config: plan.runSpec, epoch: epoch, stepInEpoch: stepInEpoch,
                                  globalStep: globalStep, ranks: comm.size, seed: plan.seed,
                                  extra: finishRequested ? [Trainer.finishedKey: "requested by the task"] : [:])
        try reducer.gatherOptimizerState(optimizer)
        let blobs = comm.rank == 0 ? ["parameters": task.store.serialized(), "optimizer": optimizer.stateBlob(),
                                      "history": Trainer.encodeHistory(epochHistory)] : [:]
        try Checkpoint.write(to: dir, meta: meta, blobs: blobs, shards: task.checkpointShards(),
                             keep: config.keepCheckpoints, comm: comm)
        return dir.appendingPathComponent("ckpt-\(globalStep)")
    }

    /// The epoch history as little-endian float64s: count, then per epoch (epoch, loss, term count, terms…).
    static func encodeHistory(_ h: [(epoch: Int, loss: Double, terms: [Double])]) -> [UInt8] {
        var v: [Double] = [Double(h.count)]
        for e in h { v += [Double(e.epoch), e.loss, Double(e.terms.count)] + e.terms }
        return v.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } }
    }

    static func decodeHistory(_ bytes: [UInt8], checkpoint: URL) throws -> [(epoch: Int, loss: Double, terms: [Double])] {
        let bad = CheckpointError(description: "\(checkpoint.path)/history.bin: damaged; remove this checkpoint folder to resume from the one before it, or start afresh with --resume never")
        guard bytes.count % 8 == 0 else { throw bad }
        let v = (0..<(bytes.count / 8)).map { i in
            Double(bitPattern: bytes[(i * 8)..<(i * 8 + 8)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        }
        guard let n = v.first, n >= 0, n == n.rounded() else { throw bad }
        var out: [(epoch: Int, loss: Double, terms: [Double])] = [], at = 1
        for _ in 0..<Int(n) {
            guard at + 3 <= v.count, v[at + 2] >= 0, at + 3 + Int(v[at + 2]) <= v.count else { throw bad }
            let t = Int(v[at + 2])
            out.append((Int(v[at]), v[at + 1], Array(v[(at + 3)..<(at + 3 + t)])))
            at += 3 + t
        }
        guard at == v.count else { throw bad }
        return out
    }

    // MARK: the loop

    public func run() throws -> TrainingOutcome {
        defer { progress.endLine() }
        let steps = stepsPerEpoch
        var stepSeconds = 0.0
        var cellsPerSecond = 0.0
        let checkpointing = config.checkpointDir != nil
        // Resumed from a checkpoint written when the task asked to finish: training is over.
        if finishRequested { return .completed }
        while epoch < plan.epochs {
            if stepInEpoch == 0 || resumedFrom != nil { try task.epochWillBegin(epoch, trainer: self) }
            resumedFrom = nil
            var epochSums = [Double](repeating: 0, count: 1 + task.lossTermNames.count), epochSteps = 0
            while stepInEpoch < steps {
                if let m = config.maxSteps, globalStep >= m {
                    if checkpointing { try writeCheckpoint() }
                    return .completed
                }
                if try StopSignal.anyRank(comm, beforeStep: globalStep) {
                    let ck = try writeCheckpoint()
                    return .stopped(checkpoint: ck?.path ?? "")
                }
                let t0 = Communicator.time()
                let (loss, terms) = try step()
                let dt = Communicator.time() - t0
                stepSeconds = stepSeconds == 0 ? dt : 0.9 * stepSeconds + 0.1 * dt
                cellsPerSecond = Double(layout.total) / Double(steps) / max(stepSeconds, 1e-9)
                lossHistory.append(loss)
                epochSums[0] += loss
                for (i, t) in terms.prefix(epochSums.count - 1).enumerated() { epochSums[1 + i] += t }
                epochSteps += 1
                var fields: [String: Any] = ["epoch": epoch, "step": stepInEpoch, "global_step": globalStep,
                                             "loss": loss, "lr": Double(learningRate(at: globalStep - 1)),
                                             "seconds": dt, "cells_per_s": cellsPerSecond]
                for (n, v) in zip(task.lossTermNames, terms) { fields[n] = v }
                progress.record(fields)
                stepInEpoch += 1
                let remaining = (plan.epochs - epoch - 1) * steps + (steps - stepInEpoch)
                progress.show(epoch: epoch, epochs: plan.epochs, step: stepInEpoch - 1, steps: steps,
                              terms: [("loss", loss)] + zip(task.lossTermNames, terms).map { ($0, $1) },
                              cellsPerSecond: cellsPerSecond, remainingSteps: remaining, secondsPerStep: stepSeconds,
                              force: stepInEpoch == steps)
            }
            if epochSteps > 0 {
                let m = epochSums.map { $0 / Double(epochSteps) }
                epochHistory.append((epoch, m[0], Array(m.dropFirst())))
            }
            try task.epochDidEnd(epoch, trainer: self)
            epoch += 1; stepInEpoch = 0
            let due = epoch % config.checkpointEvery == 0 || epoch == plan.epochs
            if checkpointing && (due || finishRequested) { try writeCheckpoint() }
            if finishRequested { return .completed }
        }
        return .completed
    }

    /// One optimiser step on the global batch (epoch, stepInEpoch). Returns the global mean loss and terms.
    public func step() throws -> (Double, [Double]) {
        let t0 = Communicator.time()
        let store = task.store
        let placed = sampler.placedRows(epoch: epoch, step: stepInEpoch)
        let rows = placed.map(\.row)
        let local = reducer is LocalReducer || reducer is ComputeOnlyReducer
        // Cells of this global batch that exist (ids may have gaps): one small allreduce.
        let batch = local ? Double(rows.count) : Double(try comm.allreduce(value: Int64(rows.count), op: .sum))
        guard batch > 0 else { return (0, [Double](repeating: 0, count: task.lossTermNames.count)) }
        let k = config.accumulation
        let nTerms = task.lossTermNames.count
        var sums = [Double](repeating: 0, count: 1 + nTerms)
        reducer.beginStep()
        let base = store.gradsPointer
        // Micro-batch mb holds the cells at global batch positions [mb·B/k, (mb+1)·B/k): the same cells
        // on any rank count, which losses with global batch statistics (gathered negatives, batch norm
        // over all ranks) need. `placed` is in position order.
        let positions = sampler.batchSize(step: stepInEpoch)
        var cut = [Int](repeating: placed.count, count: k + 1)
        cut[0] = 0
        var next = 1
        for (i, p) in placed.enumerated() {
            while next < k && p.position >= positions * next / k { cut[next] = i; next += 1 }
        }
        for mb in 0..<k {
            let chunk = Array(rows[cut[mb]..<cut[mb + 1]])
            tape.reset()
            tape.training = true
            // Overlap only without accumulation: with micro-batches a parameter's gradient is final only
            // after the last one is added (the reducer then starts every bucket when the step ends).
            if k == 1, let ready = reducer.gradientReady {
                tape.onParameterGradientReady = { grad in try ready(grad.pointer - base, grad.count) }
            } else {
                tape.onParameterGradientReady = nil
            }
            // The task is called even with no rows here, so that collectives inside it (memory-bank
            // retrieval, global statistics) are entered by every rank alike.
            let ctx = StepContext(epoch: epoch, step: stepInEpoch, globalStep: globalStep, microBatch: mb, seed: plan.seed)
            let (lossVar, terms) = try task.loss(rows: chunk, context: ctx, tape: tape)
            if mb > 0 { saveAccumulated(store) }
            if (chunk.isEmpty && !task.collectiveBackward) || !tape.requiresGrad(lossVar) {
                store.zeroGrad()
            } else {
                let w = Double(chunk.count) / batch
                if !chunk.isEmpty {
                    sums[0] += w * Double(tape.value(lossVar).scalar)
                    for (i, t) in terms.prefix(nTerms).enumerated() { sums[1 + i] += w * Double(t) }
                }
                try tape.backward(lossVar, seed: Tensor.scalar(Float(w)))
            }
            if mb > 0 { addAccumulated(store) }
        }
        tape.onParameterGradientReady = nil
        let tw = Communicator.time()
        let lr = learningRate(at: globalStep)
        try reducer.reduceAndUpdate(sums: &sums, lr: lr, clipNorm: config.clipNorm, optimizer: optimizer)
        globalStep += 1
        try task.stepDidEnd(learningRate: lr, trainer: self)
        let t1 = Communicator.time()
        timings.steps += 1
        timings.total += t1 - t0
        timings.reduceAndUpdate += t1 - tw
        return (sums[0], Array(sums.dropFirst()))
    }

    /// Micro-batch accumulation: the gradients so far are kept aside while the next micro-batch's
    /// backward pass overwrites the store's buffer, then added back.
    private func saveAccumulated(_ store: ParameterStore) {
        if accumulator.count != store.count { accumulator = [Float](repeating: 0, count: store.count) }
        let g = store.gradsPointer
        accumulator.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: g, count: store.count) }
    }

    private func addAccumulated(_ store: ParameterStore) {
        let g = store.gradsPointer
        accumulator.withUnsafeBufferPointer { a in for i in 0..<store.count { g[i] += a[i] } }
    }

    public func resetTimings() { timings = StepTimings() }
}
