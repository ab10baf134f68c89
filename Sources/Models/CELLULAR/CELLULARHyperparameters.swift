import Settings

/// CELLULAR's hyperparameters (MODELS.md §6; PyPI CELLULAR-CL 0.0.4). Reference values in each help line.
public struct CELLULARHyperparameters: ModelHyperparameters, Equatable {
    @Setting("Hidden widths of the encoder (reference [1000, 500]).")
    public var hidden = [1000, 500]
    @Setting("Embedding width (reference 100).", min: 2)
    public var latent = 100
    @Setting("Dropout after the first hidden layer (reference 0.2).", min: 0, max: 0.95)
    public var dropout: Float = 0.2
    @Setting("Maximum epochs (reference 50).", min: 1)
    public var epochs = 50
    @Setting("Linear learning-rate warm-up epochs before the cosine decay over `epochs` (reference 4).", min: 0)
    public var warmupEpochs = 4
    @Setting("Early stopping: epochs without a better validation loss (reference 20).", min: 1)
    public var patience = 20
    @Setting("Fraction of each cell type held out (label-stratified, seeded) for early stopping (reference 0.2).", min: 0.01, max: 0.5)
    public var validationFraction = 0.2
    @Setting("Initial learnable temperature of the cell-type term (reference 0.25).", min: 0.01)
    public var temperature: Float = 0.25
    @Setting("Lower clamp of the learnable temperature (reference 0.1).", min: 0.001)
    public var minTemperature: Float = 0.1
    @Setting("Upper clamp of the learnable temperature (reference 2.0).", min: 0.001)
    public var maxTemperature: Float = 2.0
    @Setting("Fixed temperature of the batch-mixing term (reference 0.5).", min: 0.01)
    public var batchTemperature: Float = 0.5
    @Setting("Weight of the cell-type term with batches (reference 0.9; 1 without batches).", min: 0)
    public var targetWeight: Double = 0.9
    @Setting("Weight of the batch-mixing term (reference 0.1).", min: 0)
    public var batchWeight: Double = 0.1
    @Setting("Weight of the centroid-distance term (reference 1.0).", min: 0)
    public var centroidWeight: Double = 1.0
    @Setting("PCA components of the centroid-distance targets (reference 100).", min: 2)
    public var pcaComponents = 100
    @Setting("Cells (at most) the PCA of the centroid targets is fitted on, a seeded subsample (reference: all).", min: 100)
    public var pcaCells = 20_000
    public init() {}

    public func validate() throws {
        if hidden.isEmpty || hidden.contains(where: { $0 < 1 }) { throw SettingsError(key: "model.hidden", "needs positive widths") }
        if minTemperature > maxTemperature { throw SettingsError(key: "model.min_temperature", "must be ≤ model.max_temperature") }
        if !(minTemperature...maxTemperature).contains(temperature) {
            throw SettingsError(key: "model.temperature", "must lie in model.min_temperature…model.max_temperature")
        }
    }
}
