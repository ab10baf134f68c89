import CellData
import Collectives
import Settings
import TensorCore
import Training

/// Where a model is in its schedule.
public enum TrainingPhase: String, Codable, Sendable {
    /// Representation learning without cluster terms (scNAME: ZINB + mask; scDEFR/scSiameseClu: AE/GAE
    /// pretraining; CICL: contrastive warm-up).
    case pretrain
    /// Joint training with the clustering objective (centres, DEC/Sinkhorn targets, pseudo-labels).
    case fineTune
}

/// A model's hyperparameters: a settings section (each `@Setting` documents the reference value).
public protocol ModelHyperparameters: SettingsSection {}

/// What a run tells a model besides its hyperparameters.
public struct ModelContext: Sendable {
    /// Seed for parameters, augmentations and the model's own clustering.
    public var seed: UInt64
    /// Clusters to find (nil: the model or the run estimates K without labels).
    public var clusters: Int?
    /// Upper end of the range searched when K is estimated.
    public var maxClusters: Int
    public init(seed: UInt64, clusters: Int?, maxClusters: Int) {
        self.seed = seed; self.clusters = clusters; self.maxClusters = maxClusters
    }
}

/// One named value a model reports after training (for the log and uns['syncytium']['metrics']).
public enum ReportValue: Sendable {
    case integer(Int), number(Double), text(String)
}

/// A model trained by the data-parallel `Trainer`.
///
/// A model is a `TrainingTask` (parameters in one `ParameterStore`, the per-batch MEAN loss recorded
/// on a tape, collective per-epoch hooks, per-cell checkpoint shards) plus what the runs need around
/// training: a registry name, hyperparameters, its schedule, the embedding of this rank's cells and,
/// when it has a cluster head, its own cluster assignment.
///
/// How the five methods of MODELS.md fit:
/// - scNAME (`SCNAME`): pretrain = ZINB + mask, fine-tune adds the bank contrastive and soft k-means
///   terms; centres initialised by distributed k-means when fine-tuning starts.
/// - CICL: one phase; the fixed initial k-means centres are set in `epochWillBegin(0)`; two views per
///   batch seeded per cell.
/// - scDEFR / scSiameseClu: mini-batch over the sparse distributed kNN graph; pretraining stages map
///   onto `.pretrain` epochs; DEC / Sinkhorn targets refreshed in `epochWillBegin` (collective).
/// - CELLULAR: supervised; labels come in through `Dataset` (the only model allowed to read them).
///
/// Adding a model: a folder `Sources/Models/NAME/` with the type and its hyperparameters, one line in
/// `ModelRegistry.entries`, and its tests.
public protocol Model: TrainingTask {
    associatedtype Hyperparameters: ModelHyperparameters
    /// Name on the command line and in outputs (`scname`, `cicl`, …).
    static var name: String { get }
    /// One line for `syncytium models`.
    static var summary: String { get }
    /// Collective. Builds the model for this rank's shard.
    init(input: Dataset, hyperparameters: Hyperparameters, context: ModelContext, comm: Communicator) throws
    var hyperparameters: Hyperparameters { get }
    /// Epochs of the whole schedule (all phases).
    var totalEpochs: Int { get }
    func phase(atEpoch epoch: Int) -> TrainingPhase
    /// A learning-rate change at a phase boundary (from `epoch` on, × `factor`), or nil.
    var learningRateChange: (epoch: Int, factor: Float)? { get }
    /// Width of `embedding()`.
    var embeddingDim: Int { get }
    /// Collective. The embedding of this rank's cells (rows in shard order), without gradients.
    func embedding(comm: Communicator) throws -> Tensor
    /// Collective. The model's own cluster of each of this rank's cells (0..<clusters), or nil when
    /// it has no cluster head (the run then clusters the embedding).
    func clusterAssignment(comm: Communicator) throws -> (labels: [Int32], clusters: Int)?
    /// This rank's cells' clusters right after pretraining (for reporting), if the model has them.
    var pretrainedAssignment: [Int32]? { get }
    /// Values to report after training, in order (e.g. K, the last label change).
    var report: [(String, ReportValue)] { get }
    /// The cells the Trainer draws batches from, as compact global ids (nil: every cell of the shard,
    /// by `Dataset.cellIds`); e.g. a supervised model's training split. `loss(rows:)` then gets indices
    /// into these ids.
    var trainingCells: (ids: [Int64], idSpace: Int)? { get }
    /// A learning-rate schedule in epochs (linear warm-up, then cosine decay to 0), or nil for the
    /// trainer section's own.
    var learningRateSchedulePlan: (warmupEpochs: Int, cosineEpochs: Int)? { get }
    /// Collective. Called once training has completed (e.g. restore the early-stopping best).
    func trainingDidEnd() throws
    /// Cells per optimiser step the model needs whatever `trainer.batch_size` says (e.g. every
    /// cell, for full-graph steps of a graph model), or nil to use the configured batch.
    var globalBatchSize: Int? { get }
    /// The peak learning rate the model trains at whatever `trainer.lr` says (its own hyperparameter),
    /// or nil to use the configured one.
    var learningRate: Float? { get }
    /// Collective. The cell graph the model trained on, for obsp (nil: none).
    func resultGraph(comm: Communicator) throws -> ResultGraph?
}

extension Model {
    public var learningRateChange: (epoch: Int, factor: Float)? { nil }
    public func clusterAssignment(comm: Communicator) throws -> (labels: [Int32], clusters: Int)? { nil }
    public var pretrainedAssignment: [Int32]? { nil }
    public var trainingCells: (ids: [Int64], idSpace: Int)? { nil }
    public var learningRateSchedulePlan: (warmupEpochs: Int, cosineEpochs: Int)? { nil }
    public func trainingDidEnd() throws {}
    public var report: [(String, ReportValue)] { [] }
    public var globalBatchSize: Int? { nil }
    public var learningRate: Float? { nil }
    public func resultGraph(comm: Communicator) throws -> ResultGraph? { nil }
}
