import Settings

/// How the neighbourhood loss sees the memory bank.
public enum BankLoss: String, SettingChoice {
    /// `exact` up to `exact_bank_limit` cells, `sampled` beyond.
    case auto
    /// Every bank row in every step's denominator, positives by an exact scan (the reference; O(N) per cell).
    case exact
    /// `bank_negatives` sampled rows in the denominator, positives from the bank's kNN graph rebuilt each
    /// fine-tuning epoch (O(N·bank_negatives) for the loss, O(N^1.5) for the IVF rebuild of √N lists; docs/SCALING.md).
    case sampled
}

/// scNAME's hyperparameters (MODELS.md §2). Reference values (aster-ww/scNAME) are in each help
/// line; the defaults differ only in the schedule (configs/scname-reference.yaml restores it).
public struct SCNAMEHyperparameters: ModelHyperparameters, Equatable {
    @Setting("Mask probability p_m of the VIME corruption (reference 0.3).", min: 0, max: 1)
    public var maskProbability: Float = 0.3
    @Setting("Positives per cell in the neighbourhood loss (reference 10).", min: 1)
    public var neighbours = 10
    @Setting("Temperature of the neighbourhood loss (reference 0.7).", min: 1e-6)
    public var temperature: Float = 0.7
    @Setting("Encoder widths after the input (reference [256, 64, 32]).")
    public var dims = [256, 64, 32]
    @Setting("Weight α of the mask loss (reference 1.0).", min: 0)
    public var alpha: Float = 1.0
    @Setting("Weight β of the neighbourhood loss (reference 0.1).", min: 0)
    public var beta: Float = 0.1
    @Setting("Weight γ of the soft k-means loss (reference 0.1).", min: 0)
    public var gamma: Float = 0.1
    @Setting("Ridge on π in the ZINB loss (reference 1.0).", min: 0)
    public var ridge: Float = 1.0
    @Setting("Pretraining epochs (reference 500; null: by data size, 40 up to 50,000 cells, then a budget of 2,000,000 cells per phase, at least 2).", min: 0)
    public var pretrainEpochs: Int? = nil
    @Setting("Maximum fine-tuning epochs (reference 1000; null: by data size, as pretrain_epochs' default).", min: 0)
    public var epochs: Int? = nil
    @Setting("Fine-tuning epochs between label-change checks (reference 50).", min: 1)
    public var updateEpoch = 5
    @Setting("Stop when fewer than this fraction of labels changed between checks (reference 0.001).", min: 0, max: 1)
    public var tolerance: Double = 0.001
    @Setting("One encoder for the clean and corrupted branches (paper figure) or two (reference code: false).")
    public var sharedEncoder = true
    @Setting("Learning rate during fine-tuning, as a multiple of trainer.lr (reference 1: the same).", min: 0)
    public var finetuneLrScale: Float = 1
    @Setting("Neighbourhood loss against the bank: auto (exact up to exact_bank_limit cells), exact (reference), sampled.")
    public var bankLoss = BankLoss.auto
    @Setting("Largest bank that `auto` scans exactly on every step.", min: 1)
    public var exactBankLimit = 50_000
    @Setting("Bank rows sampled per step for the denominator in `sampled` mode.", min: 1)
    public var bankNegatives = 4096
    public init() {}

    public func validate() throws {
        if dims.isEmpty || dims.contains(where: { $0 < 1 }) {
            throw SettingsError(key: "model.dims", "needs one or more positive widths, got [\(dims.map(String.init).joined(separator: ", "))]")
        }
        if let p = pretrainEpochs, let e = epochs, p + e < 1 { throw SettingsError(key: "model.epochs", "pretrain_epochs + epochs must be ≥ 1") }
    }

    /// The default epochs of a phase for `cells` cells: 40 (measured on the shared datasets, 4k–9k cells)
    /// up to 50,000 cells, then as many as 2,000,000 cell visits allow (the work of 40 epochs at 50,000
    /// cells: ≈ 7,800 steps of 256), at least 2: 200k cells → 10, 1M → 2.
    public static func defaultEpochs(cells: Int) -> Int {
        min(40, max(2, Int((2_000_000.0 / Double(max(cells, 1))).rounded())))
    }
}
