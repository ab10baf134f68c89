// The run specs: one Codable struct per run, nested sections, every key declared once as a
// `@Setting` (here or in the section types of CellData, Training and each model). Loaded with
// `RunSpecs.resolve` from defaults ← YAML (`--config`) ← command-line options.
import CellData
import Logging
import Models
import Plot
import Settings
import Training

/// A number of clusters: `auto` (estimated without labels) or a count.
public enum ClusterCount: SettingValue, Equatable {
    case auto
    case fixed(Int)
    public static var kindDescription: String { "'auto' or a number of clusters" }
    public init?(settingText t: String) {
        let s = t.trimmingCharacters(in: .whitespaces).lowercased()
        if s == "auto" { self = .auto; return }
        guard let k = Int(s) else { return nil }
        self = .fixed(k)
    }
    public var settingText: String {
        switch self { case .auto: return "auto"; case .fixed(let k): return String(k) }
    }
    public var numericValue: Double? { if case .fixed(let k) = self { return Double(k) }; return nil }
    public static var isText: Bool { false }
    public var count: Int? { if case .fixed(let k) = self { return k }; return nil }
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let k = try? c.decode(Int.self) { self = .fixed(k); return }
        let s = try c.decode(String.self)
        guard let v = ClusterCount(settingText: s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "expected 'auto' or an integer, got '\(s)'")
        }
        self = v
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self { case .auto: try c.encode("auto"); case .fixed(let k): try c.encode(k) }
    }
}

public enum LogLevel: String, SettingChoice {
    case trace, debug, info, notice, warning, error
    public var level: Logger.Level { Logger.Level(rawValue: rawValue) ?? .info }
}

/// `clustering:` of `cluster`: how many clusters and how the final clustering is made.
public struct ClusteringSettings: SettingsSection, Equatable {
    @Setting("Clusters: a number ≥ 2, or 'auto' to choose K without labels (the most stable Leiden resolution on the kNN graph of the embedding: the pretrained one for models with a cluster head, the final one otherwise; Neighbors/StableResolution.swift).", min: 2)
    public var clusters = ClusterCount.auto
    @Setting("Largest K tried when clusters is 'auto'.", min: 2)
    public var maxClusters = 20
    @Setting("Models trained with seeds seed, seed+1, …; their embeddings (each scaled to unit mean norm) are concatenated and clustered by k-means (1: the model's own clusters).", min: 1)
    public var ensemble = 1
    @Setting("k-means restarts (best objective kept).", min: 1)
    public var restarts = 10
    @Setting("Final clustering: model (the model's own head; k-means on the embedding when it has none or with an ensemble), kmeans (k-means on the embedding), or leiden (Leiden, modularity, on the embedding's kNN connectivities, as scanpy's flavor='igraph').")
    public var clusterMethod = ClusterMethod.model
    @Setting("Leiden resolution (cluster_method leiden only). With clusters = K: where the search for exactly K communities starts (null: 1); with 'auto': the resolution used (null: the most stable resolution, as for K).")
    public var resolution: Double? = nil
    @Setting("Neighbours per cell of the kNN graph on the embedding written to obsp as scanpy's sc.pp.neighbors does (n_neighbors = this + 1, the cell itself; null: no graph, not allowed with leiden).", min: 1)
    public var neighbors: Int? = 14
    @Setting("How that kNN graph is searched: exact (GEMM blocks in a ring of ranks), approximate (distributed IVF), or auto (exact up to 100,000 cells, approximate above).")
    public var neighborsMethod = KNNMethod.auto
    @Setting("2-D layout of the kNN graph written to obsm['X_umap'] and uns['umap'] as scanpy's sc.tl.umap does: umap (UMAP's fuzzy-set cross-entropy by SGD with negative sampling, min_dist 0.5, spread 1, as sc.tl.umap) or none. Needs the kNN graph (neighbors).")
    public var layout = LayoutMethod.umap
    @Setting("Epochs of the UMAP layout (null: umap-learn's default, 500 for ≤ 10 000 cells, else 200; unused with layout none).", min: 1)
    public var layoutEpochs: Int? = nil
    public init() {}
    public func validate() throws {
        if let r = resolution, !(r > 0) {
            throw SettingsError(key: "clustering.resolution", "must be > 0 (got \(r))")
        }
        if resolution != nil && clusterMethod != .leiden {
            throw SettingsError(key: "clustering.resolution", "applies to cluster_method leiden only (cluster_method is \(clusterMethod.rawValue))")
        }
        if clusterMethod == .leiden && neighbors == nil {
            throw SettingsError(key: "clustering.neighbors", "leiden clusters the kNN graph: give a number of neighbours (e.g. 14)")
        }
    }
}

/// How `cluster` makes its final clustering.
public enum ClusterMethod: String, SettingChoice { case model, kmeans, leiden }

/// The 2-D layout `cluster` writes.
public enum LayoutMethod: String, SettingChoice { case umap, none }

/// `output:` of runs that write an .h5ad.
public struct OutputSettings: SettingsSection, Equatable {
    @Setting("Output .h5ad (null: none, only metrics are printed).")
    public var path: String? = nil
    @Setting("Allow the output to replace the input file (written completely first, then renamed over it).")
    public var overwriteInput = false
    public init() {}
}

/// `output:` of `cluster`: by default the input file plus the results.
public struct ClusterOutputSettings: SettingsSection, Equatable {
    @Setting("Output .h5ad (null: none, only metrics are printed).")
    public var path: String? = nil
    @Setting("Allow the output to replace the input file (written completely first, then renamed over it).")
    public var overwriteInput = false
    @Setting("Write only the results (obs/obsm/obsp/uns of the run, the selected genes' var, no X) instead of the input file's whole content plus the results.")
    public var resultsOnly = false
    public init() {}
    public func validate() throws {
        if resultsOnly && path == nil {
            throw SettingsError(key: "output.results_only", "no output file to write: give --output FILE or drop --results-only")
        }
    }
}

/// `figures:` of `cluster`: pictures of the result, drawn by rank 0 from the written output.
public struct FigureSettings: SettingsSection, Equatable {
    @Setting("Write layout.png (the 2-D layout coloured by syncytium_cluster and the label key), training.png (per-epoch loss terms) and contingency.png (clusters vs labels, when labels exist) into this directory at the end (null: none; needs output.path).")
    public var plot: String? = nil
    @Setting("obsm key of the layout drawn by --plot (null: X_umap when the output has it, else the first two columns of X_syncytium).")
    public var plotBasis: String? = nil
    public init() {}
    public func validate() throws {
        if let d = plot {
            do { try RunFigures.validateDirectory(d) } catch let e as PlotError { throw SettingsError(key: "figures.plot", e.message) }
        }
    }
}

public enum ClusterDefaultModel: DefaultModel { public static let name = "scname" }
public enum TrainDefaultModel: DefaultModel { public static let name = "mlp-ae" }

/// `syncytium cluster`: read → preprocess → train a model → cluster → write.
public struct ClusterSpec: SettingsSection {
    @Setting("Seed for parameters, batches, augmentations and clustering.")
    public var seed: UInt64 = 0
    @Setting("Log level: trace, debug, info, notice, warning, error.")
    public var logLevel = LogLevel.info
    public var data = DataSettings()
    public var preprocess = PreprocessOptions()
    public var model = ModelSection<ClusterDefaultModel>()
    public var trainer = TrainerConfig()
    public var clustering = ClusteringSettings()
    public var output = ClusterOutputSettings()
    public var figures = FigureSettings()
    public func validate() throws {
        if figures.plot != nil && output.path == nil {
            throw SettingsError(key: "figures.plot", "draws from the written output: give --output FILE.h5ad too")
        }
    }
    public init() {
        // scNAME's reference: 1000 HVGs, normalised to the median library size.
        preprocess.topGenes = 1000
        preprocess.targetSum = nil
    }
}

/// `train:` outputs.
public struct TrainOutputSettings: SettingsSection, Equatable {
    @Setting("Write the final parameters here (rank 0; null: none).")
    public var saveParameters: String? = nil
    @Setting("Write the per-step global loss here as JSON (rank 0; null: none).")
    public var lossLog: String? = nil
    public init() {}
}

/// `syncytium train`: read → preprocess → train a model (the runtime's reference workload by default).
public struct TrainSpec: SettingsSection {
    @Setting("Seed for parameters, batches and clustering.")
    public var seed: UInt64 = 0
    @Setting("Log level: trace, debug, info, notice, warning, error.")
    public var logLevel = LogLevel.info
    public var data = DataSettings()
    public var preprocess = PreprocessOptions()
    public var model = ModelSection<TrainDefaultModel>()
    public var trainer = TrainerConfig()
    public var output = TrainOutputSettings()
    public init() {}
}

public enum KNNMethod: String, SettingChoice {
    case auto, exact, approximate
    /// auto: exact up to `exactLimit` cells, approximate above (the exact search's time grows as N²).
    public func resolved(cells: Int) -> KNNMethod {
        self == .auto ? (cells <= KNNMethod.exactLimit ? .exact : .approximate) : self
    }
    public static let exactLimit = 100_000
}
public enum EdgeWeights: String, SettingChoice { case umap, gauss }
public enum ClusterCountEstimator: String, SettingChoice { case spectral, silhouette }

/// `knn:` of `syncytium knn`.
public struct KNNSettings: SettingsSection, Equatable {
    @Setting("Neighbours per cell (scanpy's n_neighbors counts the cell itself: this is n_neighbors − 1).", min: 1)
    public var neighbors = 14
    @Setting("PCA components.", min: 1)
    public var pca = 50
    @Setting("Clip scaled values to ±this before the PCA.", min: 0)
    public var maxValue: Float = 10
    @Setting("exact (GEMM blocks in a ring of ranks), approximate (distributed IVF), or auto (exact up to 100,000 cells, approximate above).")
    public var method = KNNMethod.auto
    @Setting("Edge weights: umap (scanpy's default) or gauss.")
    public var weights = EdgeWeights.umap
    public init() {}
}

/// `clustering:` of `syncytium knn`.
public struct KNNClusteringSettings: SettingsSection, Equatable {
    @Setting("Also run distributed k-means on the PCA with this many clusters, or 'auto' (null: no clustering).", min: 1)
    public var kmeans: ClusterCount? = nil
    @Setting("How kmeans: auto estimates K: spectral (eigengap of the normalised kNN graph) or silhouette (K = 2…30).")
    public var estimator = ClusterCountEstimator.spectral
    @Setting("k-means restarts.", min: 1)
    public var restarts = 10
    public init() {}
}

/// `output:` of runs whose output file is required.
public struct RequiredOutputSettings: SettingsSection, Equatable {
    @Setting("Output .h5ad.")
    public var path = ""
    @Setting("Allow the output to replace the input file (written completely first, then renamed over it).")
    public var overwriteInput = false
    public init() {}
    public func validate() throws {
        if path.isEmpty { throw SettingsError(key: "output.path", "give the output file (--output FILE)") }
    }
}

/// `syncytium knn`: PCA → kNN graph → obsp, optional k-means.
public struct KNNSpec: SettingsSection {
    @Setting("Seed (PCA, approximate search, k-means).")
    public var seed: UInt64 = 0
    @Setting("Log level: trace, debug, info, notice, warning, error.")
    public var logLevel = LogLevel.info
    public var data = DataSettings()
    public var preprocess = PreprocessOptions()
    public var knn = KNNSettings()
    public var clustering = KNNClusteringSettings()
    public var output = RequiredOutputSettings()
    public init() {}
}

/// `scaled:` of `syncytium preprocess`: what goes into obsm and obsp.
public struct ScaledOutputSettings: SettingsSection, Equatable {
    @Setting("Clip scaled values to ±this.", min: 0)
    public var maxValue: Float = 10
    @Setting("Columns of obsm['X_syncytium']: the scaled values of the first HVGs.", min: 1)
    public var embeddingGenes = 50
    @Setting("Put this many distributed-PCA components in obsm['X_syncytium'] instead (null: scaled genes).", min: 1)
    public var pca: Int? = nil
    @Setting("Also write the exact kNN graph with this many neighbours on obsm['X_syncytium'] into obsp (null: none).", min: 1)
    public var neighbors: Int? = nil
    @Setting("Copy this obs categorical's codes into obs['syncytium_cluster'] (null: none).")
    public var clustersFrom: String? = nil
    @Setting("Give ranks a seeded random subset of cells instead of contiguous slabs (null: contiguous).")
    public var permuteSeed: UInt64? = nil
    public init() {}
    public func validate() throws {
        if neighbors != nil && permuteSeed != nil {
            throw SettingsError(key: "scaled.neighbors", "needs contiguous row shards: drop scaled.permute_seed when writing a graph")
        }
    }
}

/// `syncytium preprocess`: QC, normalise, log1p, HVGs, scale with global statistics → .h5ad.
public struct PreprocessSpec: SettingsSection {
    @Setting("Seed (PCA).")
    public var seed: UInt64 = 0
    @Setting("Log level: trace, debug, info, notice, warning, error.")
    public var logLevel = LogLevel.info
    public var data = DataSettings()
    public var preprocess = PreprocessOptions()
    public var scaled = ScaledOutputSettings()
    public var output = RequiredOutputSettings()
    public init() { preprocess.targetSum = nil }
}

/// Resolving and writing out run specs.
public enum RunSpecs {
    /// The spec of a command from its words (`--config`, options, positionals).
    public static func resolve<Spec: SettingsSection>(_: Spec.Type, _ line: SettingsCommandLine, positionals: [String]) throws -> Spec {
        let yaml = try line.configPath.map { try SettingsResolver.readConfig($0) }
        return try SettingsResolver.resolve(Spec.self, yaml: yaml, file: line.configPath, words: line.words, positionals: positionals)
    }

    /// The resolved spec as YAML (what `--print-config` prints and checkpoints keep).
    public static func yaml<Spec: SettingsSection>(_ spec: Spec) -> String {
        (try? SettingsDocument.yaml(spec)) ?? ""
    }

    /// The resolved spec as nested mappings for `uns['syncytium']['spec']`.
    public static func uns<Spec: SettingsSection>(_ spec: Spec) -> UnsValue {
        func convert(_ t: SettingsTree) -> UnsValue {
            switch t {
            case .section(let items): return .dict(items.map { ($0.0, convert($0.1)) })
            case .value(let v):
                if v.isNull { return .string("null") }
                if let b = v as? Bool { return .string(b ? "true" : "false") }   // anndata uns has no portable boolean scalar here
                if let i = v as? Int { return .integer(Int64(i)) }
                if let u = v as? UInt64 { return .integer(Int64(bitPattern: u)) }
                if let o = v as? Int?, let i = o { return .integer(Int64(i)) }
                if let o = v as? UInt64?, let u = o { return .integer(Int64(bitPattern: u)) }
                if !type(of: v).isText, let x = v.numericValue, !(v is ClusterCount) { return .number(x) }
                return .string(v.settingText)
            }
        }
        return convert(SettingsDocument.tree(spec))
    }
}
