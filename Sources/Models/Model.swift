import Collectives
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

/// A clustering model trained by the data-parallel `Trainer`.
///
/// A model is a `TrainingTask` (parameters in one `ParameterStore`, the per-batch MEAN loss recorded
/// on a tape, collective per-epoch hooks, per-cell checkpoint shards) plus what the `cluster` command
/// needs around training: a name, Codable hyperparameters whose defaults are the practical ones
/// (each documents the reference value), a phase schedule, the embedding of this rank's cells, and
/// the final cluster assignment.
///
/// How the five methods of MODELS.md fit:
/// - scNAME (`SCNAME`): pretrain = ZINB + mask, fine-tune adds the bank contrastive and soft k-means
///   terms; centres initialised by distributed k-means in `epochWillBegin` of the first fine-tune
///   epoch; assignment = argmin distance to the learnt centres.
/// - CICL: a single phase (`phase` always `.fineTune`); the fixed initial k-means centres are set in
///   `epochWillBegin(0)`; two views are drawn per batch like scNAME's corruption (seeded per cell).
/// - scDEFR / scSiameseClu: full-graph models become mini-batch over the sparse distributed kNN
///   graph (built before training, halo rows fetched inside `loss`); pretraining stages map onto
///   `.pretrain` epochs; DEC / Sinkhorn targets are refreshed in `epochWillBegin` (collective).
/// - CELLULAR: supervised; `clusterAssignment` returns the classifier's predictions; labels come in
///   through its initialiser (the only model allowed to see them).
public protocol Model: TrainingTask {
    associatedtype Hyperparameters: Codable & Sendable
    /// Short name used on the command line and in outputs (`scname`, `cicl`, …).
    static var name: String { get }
    var hyperparameters: Hyperparameters { get }
    /// Epochs of the whole schedule (all phases).
    var totalEpochs: Int { get }
    func phase(atEpoch epoch: Int) -> TrainingPhase
    /// Width of `embedding()`.
    var embeddingDim: Int { get }
    /// Collective. The embedding of this rank's cells (rows in shard order), without gradients.
    func embedding(comm: Communicator) throws -> Tensor
    /// Collective. The final cluster of each of this rank's cells (0..<K).
    func clusterAssignment(comm: Communicator) throws -> [Int32]
}
