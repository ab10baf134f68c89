import CellData
import Collectives
import TensorCore

/// What a model trains on: this rank's cells after the standard preprocessing, as a sparse matrix of
/// log-normalised expression over the selected genes, with everything needed to write results back.
public struct ModelInput: Sendable {
    /// This rank's cells: log1p(normalised counts) over the selected genes (CSR, rows = local cells).
    public var x: CSRMatrix
    /// Raw counts of the same cells and genes (for count likelihoods such as ZINB).
    public var counts: CSRMatrix
    /// Size factors: library size / median library size.
    public var sizeFactors: [Float]
    /// Global cell ids (0..<cells, after QC), one per local row.
    public var cellIds: [Int64]
    public var cells: Int
    public var genes: Int
    /// Reference labels when a label key was given (codes into `labelNames`; −1 missing). Never used
    /// for training by unsupervised models.
    public var labels: [Int32]?
    public var labelNames: [String]
    /// The preprocessed shard (obs, var, source) for writing results.
    public var shard: CellShard
    public var removedCells: Int
}

public struct PreprocessOptions: Sendable, Codable, Equatable {
    public var minCounts: Double = 1
    public var minGenes = 0
    public var minCellsPerGene = 0
    /// Highly variable genes to keep (0: keep all genes).
    public var topGenes = 2000
    public var flavor = HVGFlavor.seurat
    /// Library-size target (nil: the median library size).
    public var targetSum: Double? = 10_000
    public var counts: CountsSource = .x
    public var permuteRows = false
    public var seed: UInt64 = 0
    public init() {}

    enum CodingKeys: String, CodingKey { case minCounts, minGenes, minCellsPerGene, topGenes, flavor, targetSum, seed }
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        minCounts = try c.decodeIfPresent(Double.self, forKey: .minCounts) ?? 1
        minGenes = try c.decodeIfPresent(Int.self, forKey: .minGenes) ?? 0
        minCellsPerGene = try c.decodeIfPresent(Int.self, forKey: .minCellsPerGene) ?? 0
        topGenes = try c.decodeIfPresent(Int.self, forKey: .topGenes) ?? 2000
        flavor = try c.decodeIfPresent(HVGFlavor.self, forKey: .flavor) ?? .seurat
        targetSum = try c.decodeIfPresent(Double.self, forKey: .targetSum)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0
    }
    public func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(minCounts, forKey: .minCounts); try c.encode(minGenes, forKey: .minGenes)
        try c.encode(minCellsPerGene, forKey: .minCellsPerGene); try c.encode(topGenes, forKey: .topGenes)
        try c.encode(flavor, forKey: .flavor); try c.encodeIfPresent(targetSum, forKey: .targetSum)
        try c.encode(seed, forKey: .seed)
    }
}

public enum InputPipeline {
    /// Collective: read `path` (each rank its rows), filter cells and genes, normalise, log1p, select
    /// highly variable genes. Cells with zero counts are removed (minCounts ≥ 1), with a warning on rank 0.
    public static func load(_ path: String, labelKey: String?, options: PreprocessOptions,
                            comm: Communicator) throws -> ModelInput {
        var ro = ReadOptions()
        ro.counts = options.counts
        ro.requiredObsKeys = labelKey.map { [$0] } ?? []
        ro.permutationSeed = options.permuteRows ? options.seed : nil
        var s = try CellReader.read(path, comm: comm, options: ro)
        let removed = try Preprocess.filterCells(&s, minCounts: max(options.minCounts, 1), minGenes: options.minGenes, comm: comm)
        if removed > 0 && comm.rank == 0 {
            writeStderr("warning: \(path): removed \(removed) cell(s) with fewer than \(Int(max(options.minCounts, 1))) counts or \(options.minGenes) genes\n")
        }
        if options.minCellsPerGene > 0 { try Preprocess.filterGenes(&s, minCells: options.minCellsPerGene, comm: comm) }
        var norm = s
        let factors = try Preprocess.normalizeTotal(&norm, targetSum: options.targetSum, comm: comm)
        Preprocess.log1p(&norm)
        if options.topGenes > 0 && options.topGenes < s.nVars {
            let hvg = try Preprocess.highlyVariableGenes(norm, nTop: options.topGenes, flavor: options.flavor, comm: comm)
            let genes = hvg.genes
            Preprocess.subsetGenes(&norm, genes)
            Preprocess.subsetGenes(&s, genes)
        }
        // Size factors relative to the median library size (for count likelihoods).
        let median = try Preprocess.medianLibrarySize(s, comm: comm)
        let lib = Preprocess.librarySizes(s)
        let sf = lib.map { median > 0 ? Float($0) / median : 1 }
        _ = factors
        var labels: [Int32]? = nil
        var names: [String] = []
        if let key = labelKey, let col = s.obs[key] {
            switch col {
            case .categorical(let codes, let cats, _): labels = codes; names = cats
            default:
                let values = col.stringValues
                let cats = try globalCategories(values, comm: comm)
                let index = Dictionary(uniqueKeysWithValues: cats.enumerated().map { ($1, Int32($0)) })
                labels = values.map { $0.isEmpty ? -1 : index[$0]! }; names = cats
            }
        }
        let x = try CSRMatrix(rows: norm.localRows, cols: norm.nVars, rowPtr: norm.rowPtr, colIdx: norm.colIdx, values: norm.values)
        let c = try CSRMatrix(rows: s.localRows, cols: s.nVars, rowPtr: s.rowPtr, colIdx: s.colIdx, values: s.values)
        return ModelInput(x: x, counts: c, sizeFactors: sf, cellIds: s.rowIds, cells: s.nObs, genes: s.nVars,
                          labels: labels, labelNames: names, shard: s, removedCells: removed)
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
