import NN
import Settings

/// How gradients are combined across ranks (each strategy is checked against a single-rank run in
/// the multi-rank checks).
public enum GradientReduction: String, SettingChoice {
    /// One allreduce of the flat gradient buffer after the backward pass.
    case allreduce
    /// Bucketed nonblocking allreduces started during the backward pass as buckets fill (as DDP).
    case bucketed
    /// Reduce-scatter, each rank updates its slice of parameters and optimiser state, allgather
    /// (as ZeRO-1 / llm.c): the allreduce's volume, the optimiser's work split over the ranks.
    case sharded
}

public enum OptimizerKind: String, SettingChoice { case adam, adamw, sgd }
public enum ScheduleKind: String, SettingChoice { case constant, cosine }
public enum ResumeMode: String, SettingChoice { case never, auto }

/// The `trainer:` section of a run: how to train, whatever the model.
///
/// What the model decides (epochs, phase changes of the learning rate) comes in a `TrainingPlan`.
public struct TrainerConfig: SettingsSection, Equatable {
    @Setting("Cells per optimiser step over all ranks (the same whatever the rank count).", min: 1)
    public var batchSize = 256
    @Setting("Peak learning rate.", min: 0)
    public var lr: Float = 1e-3
    @Setting("Learning-rate schedule after the warm-up: constant or cosine decay to 0 at the last step.")
    public var schedule = ScheduleKind.constant
    @Setting("Linear warm-up steps.", min: 0)
    public var warmupSteps = 0
    @Setting("Optimiser.")
    public var optimizer = OptimizerKind.adam
    @Setting("Weight decay (L2 for adam and sgd, decoupled for adamw).", min: 0)
    public var weightDecay: Float = 0
    @Setting("SGD momentum.", min: 0, max: 1)
    public var momentum: Float = 0.9
    @Setting("Clip the global gradient norm to this (null: no clipping).", min: 0)
    public var clipNorm: Float? = nil
    @Setting("Micro-batches per step (gradient accumulation; one reduction per step).", min: 1)
    public var accumulation = 1
    @Setting("Gradient reduction across ranks: allreduce, bucketed (overlaps the backward pass) or sharded (ZeRO-1).")
    public var reduction = GradientReduction.sharded
    @Setting("Bucket size of the bucketed reduction, MiB (the first bucket is at most 1 MiB).", min: 0.001, max: 1024)
    public var bucketMib: Double = 4
    @Setting("Stop after this many optimiser steps in all (null: run the whole schedule).", min: 1)
    public var maxSteps: Int? = nil
    @Setting("Checkpoint folder, written every checkpoint_every epochs and on SIGTERM/SIGUSR1 (null: none).")
    public var checkpointDir: String? = nil
    @Setting("Epochs between checkpoints.", min: 1)
    public var checkpointEvery = 1
    @Setting("Complete checkpoints kept.", min: 1)
    public var keepCheckpoints = 2
    @Setting("'auto': continue from the newest complete checkpoint in checkpoint_dir; 'never': start afresh.")
    public var resume = ResumeMode.never
    @Setting("JSONL metrics log written by rank 0 (null: none).")
    public var metrics: String? = nil

    public init() {}

    public func validate() throws {
        if resume == .auto && checkpointDir == nil {
            throw SettingsError(key: "trainer.resume", "'auto' needs trainer.checkpoint_dir (--checkpoint-dir)")
        }
        if optimizer != .sgd && momentum != 0.9 {
            throw SettingsError(key: "trainer.momentum", "applies to optimizer sgd only (optimizer is \(optimizer.rawValue))")
        }
    }
}

/// What the model and the run decide about training: the schedule's length, the seed, a learning-rate
/// change at a phase boundary, and the resolved run spec (kept in checkpoints).
public struct TrainingPlan: Sendable, Equatable {
    public var epochs: Int
    public var seed: UInt64
    /// From this epoch on the learning rate is multiplied by `factor` (e.g. scNAME's fine-tuning).
    public var learningRateChange: (epoch: Int, factor: Float)?
    /// The resolved run spec as YAML, stored in every checkpoint.
    public var runSpec: String
    /// A model's schedule in epochs (linear warm-up to trainer.lr, then cosine decay to 0 at
    /// `cosineEpochs`), replacing the trainer section's schedule; nil = the trainer section's.
    public var epochSchedule: (warmupEpochs: Int, cosineEpochs: Int)?
    public init(epochs: Int, seed: UInt64, learningRateChange: (epoch: Int, factor: Float)? = nil, runSpec: String = "",
                epochSchedule: (warmupEpochs: Int, cosineEpochs: Int)? = nil) {
        self.epochs = epochs; self.seed = seed; self.learningRateChange = learningRateChange; self.runSpec = runSpec
        self.epochSchedule = epochSchedule
    }
    public static func == (a: Self, b: Self) -> Bool {
        a.epochs == b.epochs && a.seed == b.seed && a.runSpec == b.runSpec
            && a.epochSchedule?.warmupEpochs == b.epochSchedule?.warmupEpochs && a.epochSchedule?.cosineEpochs == b.epochSchedule?.cosineEpochs
            && a.learningRateChange?.epoch == b.learningRateChange?.epoch && a.learningRateChange?.factor == b.learningRateChange?.factor
    }
}
