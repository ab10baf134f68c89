import Settings

/// Which clustering gives the final labels.
public enum SiameseLabels: String, SettingChoice {
    /// k-means (20 restarts) on the fused embedding of the last epoch (the reference's evaluation).
    case kmeans
    /// argmax of the Student-t assignment Q against the trained centres.
    case head
}

/// scSiameseClu's hyperparameters (MODELS.md §5). Reference values (XPgogogo/scSiameseClu, opt.py and
/// the run log) are in each help line.
public struct SCSiameseCluHyperparameters: ModelHyperparameters, Equatable {
    @Setting("Neighbours per cell in the kNN graph, the cell itself included (reference: top-10 heat kernel, label-filtered — a bug; here a proper kNN on PCA).", min: 2)
    public var neighbours = 10
    @Setting("PCA components: the model's input X and the space the kNN graph is built in (reference n_input 100).", min: 2)
    public var pca = 50
    @Setting("AE encoder widths after the input; the last is the embedding (reference [128, 256, 512, 20]).")
    public var aeDims = [128, 256, 512, 20]
    @Setting("Graph AE encoder widths after the input; the last must equal the AE's (reference [128, 256, 20]).")
    public var gaeDims = [128, 256, 20]
    @Setting("PPR teleport α of the diffusion view Ad = α(I − (1 − α)Â)⁻¹ (reference per dataset 0.1–0.5; 0.3 here, never per dataset).", min: 0.01, max: 1)
    public var pprAlpha: Float = 0.3
    @Setting("PPR power iteration: iterations T = ⌈log(tol)/log(1 − α)⌉, so ‖Z_T − Ad·X‖ ≤ 2·tol·‖X‖ (reference: the dense inverse, exact).", min: 1e-8, max: 0.5)
    public var pprTolerance: Float = 1e-2
    @Setting("Fraction of each cell's graph edges dropped in the view Am, the lowest pretrained similarity first (reference remove_rate 0.1, over all n columns).", min: 0, max: 0.9)
    public var edgeDropRate: Float = 0.1
    @Setting("Standard deviation of the multiplicative Gaussian feature noise N(1, σ²) of each view (reference 0.1).", min: 0)
    public var noise: Float = 0.1
    @Setting("AE pretraining epochs, loss 10·MSE(x̂, x) (reference 100 epochs of batch 256; here full-graph steps: past ~100 the AE's latent scale drifts and its decoder becomes unstable under fusion).", min: 0)
    public var aePretrainEpochs = 50
    @Setting("Graph AE pretraining epochs, MSE(ẑ, A_norm X) + 0.5·L_edge (reference 50).", min: 0)
    public var gaePretrainEpochs = 50
    @Setting("Joint pretraining epochs, MSE(x̂,x) + 0.9·MSE(ẑ,A_norm X) + 0.1·L_edge + 0.1·MSE(z_ae, z_gae) (reference 200).", min: 0)
    public var jointPretrainEpochs = 50
    @Setting("Training epochs with both views and the clustering term (reference 50).", min: 0)
    public var epochs = 100
    @Setting("Learning rate of the pretraining stages (reference 5e-4 for AE and graph AE, 1e-4 joint).", min: 0)
    public var lr: Float = 5e-4
    @Setting("Learning rate of the training stage as a multiple of lr (reference per dataset 1e-4…9e-3; 0.2 gives 1e-4).", min: 0)
    public var finetuneLrScale: Float = 0.2
    @Setting("Weight of the AE correlation reduction CR(S_N^ae) (reference 0.1).", min: 0)
    public var aeCorrelationWeight: Float = 0.1
    @Setting("Weight of the graph AE correlation reduction CR(S_N^gae) (reference 5).", min: 0)
    public var gaeCorrelationWeight: Float = 5
    @Setting("Weight of the edge reconstruction term in training (reference 0.1·MSE(Â, A_norm) over all n² pairs).", min: 0)
    public var edgeWeight: Float = 0.1
    @Setting("Weight β of the ZINB likelihood of the counts (reference β = 5 on a detached PCA target, which trains only θ and π).", min: 0)
    public var zinbWeight: Float = 0.5
    @Setting("Weight λ_c of KL(P‖Q) to the Sinkhorn targets (reference 50 on Σ P(log P − Q), not a KL).", min: 0)
    public var clusterWeight: Float = 1
    @Setting("Sharpening power λ of the Sinkhorn kernel Q^λ, i.e. ε = 1/λ (reference opt_parameter 5).", min: 0.1)
    public var sinkhornPower: Float = 5
    @Setting("Sinkhorn iterations at most (reference 1000, no tolerance); stops when the column sums are within 1e-6·n.", min: 1)
    public var sinkhornIterations = 1000
    @Setting("Final labels: kmeans (on the last epoch's embedding, the reference's evaluation) or head (argmax Q).")
    public var labels = SiameseLabels.kmeans
    @Setting("kNN graph by exact search up to this many cells, approximate (IVF) beyond.", min: 1)
    public var exactGraphLimit = 1_000_000
    @Setting("Full-graph steps (the reference's semantics) are refused above this many cells (the exact fusion attention is O(N²) per step).", min: 1)
    public var fullGraphLimit = 100_000
    public init() {}

    public func validate() throws {
        if aeDims.isEmpty || aeDims.contains(where: { $0 < 1 }) || gaeDims.isEmpty || gaeDims.contains(where: { $0 < 1 }) {
            throw SettingsError(key: "model.ae_dims", "needs one or more positive widths for ae_dims and gae_dims")
        }
        // The AE latent is rescaled through its last encoder and first decoder layer when fusion starts.
        if aeDims.count < 2 {
            throw SettingsError(key: "model.ae_dims", "needs at least two widths (hidden layers, then the embedding)")
        }
        if aeDims.last != gaeDims.last {
            throw SettingsError(key: "model.gae_dims", "the last width (\(gaeDims.last!)) must equal ae_dims' (\(aeDims.last!)): the two embeddings are fused")
        }
    }
}
