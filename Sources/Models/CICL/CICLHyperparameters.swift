import Settings

/// Where the contrastive losses take their negatives from.
public enum NegativeScope: String, SettingChoice {
    /// All cells of the global batch (projections all-gathered): the loss, and so the run, do not
    /// depend on the rank count.
    case global
    /// Only the cells of the batch on this rank (the reference under DDP): the loss changes with the
    /// rank count (each rank contrasts B / ranks cells).
    case local
}

/// How `cluster` assigns cells after training.
public enum CICLAssignment: String, SettingChoice {
    /// Nearest of the fixed initial centres (argmax of the Student-t q; the reference's "model_score").
    case centres
    /// Distributed k-means on the trained embedding (the reference's "kmeans_score").
    case kmeans
}

/// What the view noise's standard deviation is relative to.
public enum CICLNoiseScale: String, SettingChoice {
    /// σ in the input's units (the reference, whose input is an externally normalised matrix).
    case absolute
    /// σ times each gene's global standard deviation (the same noise-to-spread ratio for every gene;
    /// identical to `absolute` under `scale_input`).
    case gene
}

/// Whether the cluster centres follow the encoder as it trains.
public enum CICLCentreUpdate: String, SettingChoice {
    /// The initial k-means centres of the untrained encoder, never moved (the reference: its centres
    /// get no gradient through the argmax).
    case fixed
    /// Before every epoch after the first, and once more for the final clustering, Lloyd's iterations
    /// on the current encoder's embedding of every cell, started from the current centres (cluster c
    /// stays the cluster nearest to where c was, so pseudo-labels keep their meaning).
    case epoch
}

/// CICL's hyperparameters (MODELS.md §4). Reference values (Alunethy/CICL, `--objective para`) are
/// in each help line; the defaults differ in the schedule (configs/cicl-reference.yaml restores it).
public struct CICLHyperparameters: ModelHyperparameters, Equatable {
    @Setting("Residual attention/feed-forward blocks (reference 4).", min: 1)
    public var layers = 4
    @Setting("Attention heads; the value projection has heads × value_dim outputs (reference 2).", min: 1)
    public var heads = 2
    @Setting("Value width per head (reference v_dim 512).", min: 1)
    public var valueDim = 512
    @Setting("Feed-forward width (reference fed_dim 1024).", min: 1)
    public var feedForward = 1024
    @Setting("Dropout after attention, inside and after the feed-forward network (reference 0.2).", min: 0, max: 0.99)
    public var dropout: Float = 0.2
    @Setting("Hidden width of the projection head (reference 2048).", min: 1)
    public var projectionHidden = 2048
    @Setting("Output width of the projection head, L2-normalised (reference 512).", min: 1)
    public var projectionDim = 512
    @Setting("Temperature of both contrastive losses (reference 0.5).", min: 1e-3)
    public var temperature: Float = 0.5
    @Setting("Weight λ of the cluster-aware pair loss (reference lam 0.1).", min: 0)
    public var lambda: Float = 0.1
    @Setting("Student-t degrees of freedom α of the soft assignment (reference 1.0).", min: 1e-6)
    public var alpha: Float = 1
    @Setting("Fraction of genes that get noise in each view (reference 0.8).", min: 0, max: 1)
    public var noiseFraction: Float = 0.8
    @Setting("Standard deviation of the Gaussian view noise (reference 0.5).", min: 0)
    public var noiseStd: Float = 0.5
    @Setting("View noise relative to: absolute (σ in the input's units, the reference) or gene (σ × each gene's global standard deviation).")
    public var noiseScale = CICLNoiseScale.absolute
    @Setting("Standardise every gene (global mean and standard deviation, clipped at 10, as scanpy's scale) before the encoder; false: log-normalised values (the reference reads an externally normalised matrix).")
    public var scaleInput = false
    @Setting("Negatives of the contrastive losses: global (all-gathered, rank-count independent) or local (per rank, as the reference under DDP).")
    public var negatives = NegativeScope.global
    @Setting("Learning rate as a multiple of trainer.lr (0.1: the reference's encoder rate 1e-4 at the trainer's default lr 1e-3; its head's rate is 1e-5).", min: 0)
    public var lrScale: Float = 0.1
    @Setting("Maximum epochs (reference max_iter 50, i.e. 51 epochs of one step each at batch 6000 per GPU).", min: 1)
    public var epochs = 20
    @Setting("Stop when fewer than this fraction of pseudo-labels changed over an epoch (0: run every epoch; the reference has no rule and picks its epoch by ARI against the labels).", min: 0, max: 1)
    public var tolerance: Double = 0
    @Setting("Final clustering: centres (nearest fixed centre, the model's head) or kmeans (k-means on the trained embedding).")
    public var assignment = CICLAssignment.centres
    @Setting("Cluster centres: fixed (the untrained encoder's k-means, the reference) or epoch (moved by Lloyd's iterations on the current embedding before each epoch and for the final clustering).")
    public var centreUpdate = CICLCentreUpdate.fixed
    public init() {}

    /// Width of the value projection (and input of the attention output projection).
    public var valueWidth: Int { heads * valueDim }
}
