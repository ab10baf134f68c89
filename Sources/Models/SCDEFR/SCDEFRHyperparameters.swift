import Settings

/// How a training step sees the graph.
public enum GraphTraining: String, SettingChoice {
    /// Full-graph steps up to `fullGraphLimit` cells, mini-batches beyond.
    case auto
    /// Every cell in every step (the reference's semantics), graph layers across ranks by halo exchange.
    case full
    /// Seed cells of the global batch, each with its sampled neighbourhood.
    case minibatch
}

/// How the fusion attention softmax(z zᵀ)·z is computed.
public enum FusionAttention: String, SettingChoice {
    /// Exact in full-graph steps up to `exactAttentionLimit` cells, graph neighbours otherwise.
    case auto
    /// Against every cell, by row blocks (full-graph steps only).
    case exact
    /// Restricted to each cell's graph neighbours.
    case neighbours
}

/// Which edges TAGConv propagates along.
public enum TAGEdges: String, SettingChoice {
    /// The directed kNN edges source → target with PyG's in-degree normalisation (the reference).
    case directed
    /// Both directions (the union A ∪ Aᵀ), D^−½ W D^−½.
    case symmetric
}

/// Which clustering gives the final labels (and the initial centres).
public enum SCDEFRClustering: String, SettingChoice {
    /// The candidate with the higher mean silhouette on the PCA coordinates the graph is built on.
    case auto
    /// k-means on the embedding.
    case kmeans
    /// Spectral clustering of the kNN graph.
    case spectral
}

/// scDEFR's hyperparameters (MODELS.md §3). Reference values (DARKpmm/scDEFR) are in each help line.
public struct SCDEFRHyperparameters: ModelHyperparameters, Equatable {
    @Setting("Neighbours per cell in the kNN graph, the cell itself included (reference 10).", min: 2)
    public var neighbours = 10
    @Setting("PCA components the kNN graph is built on (reference 50).", min: 1)
    public var pca = 50
    @Setting("Widths of both encoders after the input (reference [1024, 128, 24]).")
    public var dims = [1024, 128, 24]
    @Setting("Hops K of every TAGConv (reference 3, PyTorch Geometric's default).", min: 0, max: 10)
    public var hops = 3
    @Setting("Edges of TAGConv: directed (reference: kNN edges source → target, in-degree normalisation) or symmetric (A ∪ Aᵀ).")
    public var tagEdges = TAGEdges.symmetric
    @Setting("Weight σ of the MLP encoder in the layer-wise fusion (1 − σ)·h_G + σ·h_L (reference 0.1).", min: 0, max: 1)
    public var sigma: Float = 0.1
    @Setting("Dropout after every encoder and decoder layer (reference 0.01).", min: 0, max: 0.9)
    public var dropout: Float = 0.01
    @Setting("Pretraining epochs, loss L_A + 0.5·L_ZINB (reference 250 full-graph steps; null: 60 in full-graph steps, 12 in mini-batches).", min: 0)
    public var pretrainEpochs: Int? = nil
    @Setting("Training epochs with the clustering terms (reference 250; null: 20 in full-graph steps, 4 in mini-batches).", min: 0)
    public var epochs: Int? = nil
    @Setting("Peak learning rate of this model, in place of trainer.lr (reference 5e-5 full-graph; null: trainer.lr).", min: 0)
    public var lr: Float? = 1e-4
    @Setting("Learning rate of the training stage as a multiple of the pretraining one (reference 1e-8 / 5e-5 = 2e-4, which leaves the pretrained model unchanged).", min: 0)
    public var finetuneLrScale: Float = 0.1
    @Setting("Weight of the edge loss L_A in pretraining (reference 1).", min: 0)
    public var pretrainEdgeWeight: Float = 1
    @Setting("Weight of L_ZINB in pretraining (reference 0.5).", min: 0)
    public var pretrainZinbWeight: Float = 0.5
    @Setting("Weight of L_A in training (reference 0.3).", min: 0)
    public var edgeWeight: Float = 0.3
    @Setting("Weight of L_ZINB in training (reference 0.1).", min: 0)
    public var zinbWeight: Float = 0.1
    @Setting("Weight of KL(P‖Q) of the fused embedding in training (reference 0.5).", min: 0)
    public var klWeight: Float = 0.5
    @Setting("Weight of BCE(Q_G, P(Q_G)) of the TAGConv encoder in training (reference 0.1).", min: 0)
    public var gnnWeight: Float = 0.1
    @Setting("Weight of BCE(Q_L, P(Q_L)) of the MLP encoder in training (reference 0.1).", min: 0)
    public var dnnWeight: Float = 0.1
    @Setting("Steps: full (every cell, the reference), minibatch (seed cells with sampled neighbourhoods), auto (full up to full_graph_limit cells in all, whatever the rank count).")
    public var training = GraphTraining.auto
    @Setting("With training: auto, full-graph steps up to this many cells in all (memory ≈ 0.5 MB per cell and rank count in full-graph steps).", min: 1)
    public var fullGraphLimit = 10_000
    @Setting("Neighbours sampled per seed cell in mini-batch steps (≥ neighbours − 1: all of them).", min: 1)
    public var fanout = 9
    @Setting("Fusion attention softmax(z zᵀ)·z: exact (every cell, by row blocks; full-graph steps), neighbours (graph neighbours), auto.")
    public var attention = FusionAttention.auto
    @Setting("With attention: auto, exact up to this many cells; attention exact is refused above it (O(N²) per step).", min: 1)
    public var exactAttentionLimit = 100_000
    @Setting("Final clustering: kmeans (embedding), spectral (kNN graph), auto (the higher mean silhouette over the PCA and the embedding; the reference picks with the labels).")
    public var clustering = SCDEFRClustering.auto
    @Setting("kNN graph by exact search up to this many cells, approximate (IVF) beyond.", min: 1)
    public var exactGraphLimit = 1_000_000
    public init() {}

    public func validate() throws {
        if dims.isEmpty || dims.contains(where: { $0 < 1 }) {
            throw SettingsError(key: "model.dims", "needs one or more positive widths, got [\(dims.map(String.init).joined(separator: ", "))]")
        }
        if training == .minibatch && attention == .exact {
            throw SettingsError(key: "model.attention", "'exact' needs full-graph steps (model.training full); mini-batches attend to graph neighbours")
        }
    }
}
