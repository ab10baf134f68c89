// What every model trains on: this rank's cells after the standard preprocessing, with the raw
// counts, size factors and global per-gene moments computed once here and handed to the model.
import Logging
import Collectives
import Settings
import TensorCore

/// The `data:` section of a run: which file, where its counts are, which obs column holds labels.
public struct DataSettings: SettingsSection, Equatable {
    @Setting("Input .h5ad, 10x .h5 or legacy X/Y .h5 file.")
    public var input = ""
    @Setting("Where the raw counts are: X, raw (raw/X) or layers/NAME.")
    public var counts = "X"
    @Setting("obs column with reference labels, for ARI/NMI/ACC only; never used to train unsupervised models (null: none).")
    public var labelKey: String? = nil
    @Setting("obs column with batch (donor, sample) labels, for models that use them (null: none).")
    public var batchKey: String? = nil
    public init() {}

    /// The counts location as the reader takes it.
    public var countsSource: CountsSource {
        switch counts {
        case "X", "x": return .x
        case "raw", "raw/X": return .raw
        default: return .layer(String(counts.dropFirst("layers/".count)))
        }
    }

    public func validate() throws {
        if input.isEmpty { throw SettingsError(key: "data.input", "give the input file (the first argument, or data.input in the YAML)") }
        let ok = ["X", "x", "raw", "raw/X"].contains(counts) || (counts.hasPrefix("layers/") && counts.count > "layers/".count)
        if !ok { throw SettingsError(key: "data.counts", "expected X, raw or layers/NAME, got '\(counts)'") }
    }
}

/// The `preprocess:` section: QC filters, normalisation and gene selection with global statistics.
public struct PreprocessOptions: SettingsSection, Equatable {
    @Setting("Drop cells with fewer total counts (cells with no counts are always dropped).", min: 0)
    public var minCounts: Double = 1
    @Setting("Drop cells with fewer expressed genes.", min: 0)
    public var minGenes = 0
    @Setting("Drop genes expressed in fewer cells.", min: 0)
    public var minCells = 0
    @Setting("Normalise every cell to this total (null: the median library size).", min: 1e-12)
    public var targetSum: Double? = 10_000
    @Setting("Highly variable genes to keep (0: all genes).", min: 0)
    public var topGenes = 2000
    @Setting("HVG flavour: seurat, cell_ranger (log data) or seurat_v3 (raw counts).")
    public var flavor = HVGFlavor.seurat
    public init() {}
}

/// This rank's cells, preprocessed.
public struct Dataset: Sendable {
    /// log1p(normalised counts) over the selected genes (CSR, rows = local cells).
    public var x: CSRMatrix
    /// Raw counts of the same cells and genes (for count likelihoods such as ZINB).
    public var counts: CSRMatrix
    /// Size factors: library size over the selected genes / its median over all cells.
    public var sizeFactors: [Float]
    /// Global per-gene mean and population standard deviation of `x` (σ = 1 for constant genes).
    public var geneMean: [Float]
    public var geneStd: [Float]
    /// Global cell ids (0..<cells, after QC), one per local row.
    public var cellIds: [Int64]
    public var cells: Int
    public var genes: Int
    /// Reference labels when a label key was given (codes into `labelNames`; −1 missing). Never used
    /// for training by unsupervised models.
    public var labels: [Int32]?
    public var labelNames: [String]
    /// Batch codes when a batch key was given (codes into `batchNames`; −1 missing).
    public var batches: [Int32]? = nil
    public var batchNames: [String] = []
    /// The preprocessed shard (obs, var, source) for writing results.
    public var shard: CellShard
    public var removedCells: Int
    /// The input file's row of every local cell (results are written on these rows).
    public var sourceRows: [Int64] { shard.sourceRows }

    /// Collective: read `data.input` (each rank its rows), filter cells and genes, normalise, log1p,
    /// select highly variable genes, compute size factors and gene moments. Cells with zero counts
    /// are removed (min_counts ≥ 1), with a warning on rank 0.
    public static func load(_ data: DataSettings, preprocess options: PreprocessOptions, permutationSeed: UInt64? = nil,
                            comm: Communicator) throws -> Dataset {
        let path = data.input
        var ro = ReadOptions()
        ro.counts = data.countsSource
        ro.requiredObsKeys = [data.labelKey, data.batchKey].compactMap { $0 }
        ro.permutationSeed = permutationSeed
        var s = try CellReader.read(path, comm: comm, options: ro)
        let removed = try Preprocess.filterCells(&s, minCounts: max(options.minCounts, 1), minGenes: options.minGenes, comm: comm)
        if removed > 0 {
            Logger(label: "syncytium.data").warning("\(path): removed \(removed) cell(s) with fewer than \(Int(max(options.minCounts, 1))) counts or \(options.minGenes) genes")
        }
        if options.minCells > 0 { try Preprocess.filterGenes(&s, minCells: options.minCells, comm: comm) }
        var norm = s
        try Preprocess.normalizeTotal(&norm, targetSum: options.targetSum, comm: comm)
        Preprocess.log1p(&norm)
        if options.topGenes > 0 && options.topGenes < s.nVars {
            let genes = try Preprocess.highlyVariableGenes(norm, nTop: options.topGenes, flavor: options.flavor, comm: comm).genes
            Preprocess.subsetGenes(&norm, genes)
            Preprocess.subsetGenes(&s, genes)
        }
        // The reader balances stored entries (reading and the passes above cost per entry); training costs
        // per cell, so rows move to equal counts per rank here, after the gene subset: moving the whole
        // input's entries before it held a second copy of them (1M cells × 2,000 genes, 2 ranks: read-stage
        // peak 4,288 MiB per rank). Both shards hold the same rows, so they move alike; the normalised one
        // carries its obs index only.
        norm.obs = Frame(index: norm.obs.index)
        norm = try Redistribute.equalRows(norm, comm: comm)
        s = try Redistribute.equalRows(s, comm: comm)
        precondition(norm.rowIds == s.rowIds, "Dataset.load: the normalised and count shards moved differently")
        let median = try Preprocess.medianLibrarySize(s, comm: comm)
        let sf = Preprocess.librarySizes(s).map { median > 0 ? Float($0) / median : 1 }
        var labels: [Int32]? = nil
        var names: [String] = []
        if let key = data.labelKey, let col = s.obs[key] {
            (labels, names) = try codes(of: col, comm: comm)
        }
        let x = try CSRMatrix(rows: norm.localRows, cols: norm.nVars, rowPtr: norm.rowPtr, colIdx: norm.colIdx, values: norm.values)
        let c = try CSRMatrix(rows: s.localRows, cols: s.nVars, rowPtr: s.rowPtr, colIdx: s.colIdx, values: s.values)
        let (mu, sd) = try geneMoments(x, comm: comm)
        var out = Dataset(x: x, counts: c, sizeFactors: sf, geneMean: mu, geneStd: sd, cellIds: s.rowIds, cells: s.nObs,
                          genes: s.nVars, labels: labels, labelNames: names, shard: s, removedCells: removed)
        if let key = data.batchKey, let col = s.obs[key] {
            let (codes, bnames) = try codes(of: col, comm: comm)
            out.batches = codes; out.batchNames = bnames
        }
        return out
    }

    /// Collective: global mean and population standard deviation of each column of `x` (Double sums).
    public static func geneMoments(_ x: CSRMatrix, comm: Communicator) throws -> (mean: [Float], std: [Float]) {
        let g = x.cols
        var moments = [Double](repeating: 0, count: 2 * g + 1)
        for e in 0..<x.nnz {
            let j = Int(x.colIdx[e]), v = Double(x.values[e])
            moments[j] += v; moments[g + j] += v * v
        }
        moments[2 * g] = Double(x.rows)
        try comm.allreduce(&moments, op: .sum)
        let n = max(moments[2 * g], 1)
        var mu = [Float](repeating: 0, count: g), sd = [Float](repeating: 1, count: g)
        for j in 0..<g {
            let m = moments[j] / n
            let v = max(moments[g + j] / n - m * m, 0)
            mu[j] = Float(m); sd[j] = v > 1e-12 ? Float(v.squareRoot()) : 1
        }
        return (mu, sd)
    }

    /// Collective: integer codes of an obs column (categorical codes as stored; other columns by the
    /// sorted union of their values over all ranks), −1 for a missing value.
    public static func codes(of column: ObsColumn, comm: Communicator) throws -> (codes: [Int32], names: [String]) {
        if case .categorical(let codes, let cats, _) = column { return (codes, cats) }
        let values = column.stringValues
        let cats = try globalCategories(values, comm: comm)
        let index = Dictionary(uniqueKeysWithValues: cats.enumerated().map { ($1, Int32($0)) })
        return (values.map { $0.isEmpty ? -1 : index[$0]! }, cats)
    }

    /// The sorted union of the strings held by all ranks.
    public static func globalCategories(_ values: [String], comm: Communicator) throws -> [String] {
        let local = Array(Set(values.filter { !$0.isEmpty })).sorted()
        let bytes = Array(local.joined(separator: "\u{1}").utf8)
        let (all, counts) = try comm.allgatherv(bytes)
        var out = Set<String>()
        var off = 0
        for c in counts {
            if c > 0 { for s in String(decoding: all[off..<(off + c)], as: UTF8.self).split(separator: "\u{1}") { out.insert(String(s)) } }
            off += c
        }
        return out.sorted()
    }
}
