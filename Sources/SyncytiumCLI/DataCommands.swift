import ArgumentParser
import CellData
import Collectives
import Foundation
import Neighbors
import TensorCore

/// Runs a data command on every rank. Errors from CellData are agreed across ranks, so every
/// rank leaves with exit code 1 and rank 0 prints the one-line message; anything else aborts.
func runDataCommand(_ comm: Communicator, _ body: () throws -> Void) {
    do { try body() } catch let e as CellDataError {
        if comm.rank == 0 { writeStderr("error: \(e.message)\n") }
        exit(1)
    } catch { comm.abort("\(error)") }
}

func countsSource(layer: String?, raw: Bool) throws -> CountsSource {
    if layer != nil && raw { throw ValidationError("pass either --layer or --raw, not both") }
    if let l = layer { return .layer(l) }
    return raw ? .raw : .x
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a cell file's shape, layout, dtype, nnz, obs columns and whether X looks like raw counts.")

    @Argument(help: "An AnnData .h5ad, a 10x v3 .h5 or a legacy X/Y .h5.")
    var file: String

    @Option(help: "Inspect layers/<name> instead of X.")
    var layer: String?

    @Flag(help: "Inspect raw/X instead of X.")
    var raw = false

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let comm = Communicator.world
        let source = try countsSource(layer: layer, raw: raw)
        runDataCommand(comm) {
            let report = try agreeing(comm) { () -> InspectReport? in
                comm.rank == 0 ? try CellReader.inspect(file, counts: source) : nil
            }
            guard let r = report else { return }
            if json { print(try jsonString(r)); return }
            print("""
                file:     \(r.file)
                format:   \(r.format) (matrix '\(r.matrix)', \(r.layout), \(r.dtype))
                shape:    \(r.cells) cells × \(r.genes) genes
                nnz:      \(r.nnz) (density \(fmt(r.density, 4)))
                counts:   \(r.looksLikeRawCounts ? "looks like raw counts" : "NOT raw counts (non-integer or negative values)") (\(r.sampledValues) values sampled)
                zero cells: \(r.allZeroCellsInSample)
                layers:   \(r.layers.isEmpty ? "none" : r.layers.joined(separator: ", "))\(r.hasRaw ? "; raw/X present" : "")
                var columns: \(r.varColumns.isEmpty ? "none" : r.varColumns.joined(separator: ", "))
                obs columns:
                """)
            for c in r.obsColumns {
                if let order = c.categoryOrder, let counts = c.categoryCounts {
                    let shown = order.prefix(12).map { "\($0) \(counts[$0] ?? 0)" }.joined(separator: ", ")
                    print("  \(c.name): categorical, \(order.count) categories: \(shown)\(order.count > 12 ? ", …" : "")")
                } else {
                    print("  \(c.name): \(c.kind)")
                }
            }
        }
    }
}

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a simulated .h5ad: negative-binomial counts, K types (some rare), batches, library sizes.",
        discussion: "Ranks generate and write disjoint row blocks in parallel; the file does not depend on the rank count.")

    @Argument(help: "Output .h5ad path.")
    var output: String
    @Option(help: "Cells.") var cells = 2000
    @Option(help: "Genes.") var genes = 1000
    @Option(help: "Cell types.") var types = 5
    @Option(help: "How many of the types are rare.") var rareTypes = 1
    @Option(help: "Fraction of cells in each rare type.") var rareFraction = 0.01
    @Option(help: "Batches.") var batches = 2
    @Option(help: "Log-scale sd of per-batch gene effects.") var batchEffect = 0.3
    @Option(help: "NB dispersion φ (variance = μ + φμ²).") var dispersion = 0.2
    @Option(help: "Mean count per gene per cell (before effects).") var meanExpression = 0.3
    @Option(help: "Log-scale sd of library sizes.") var librarySd = 0.4
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "gzip level for X (chunked, as anndata's compression='gzip'); default uncompressed.") var gzip: Int?
    @Flag(help: "Print JSON instead of text.") var json = false

    struct Output: Codable { var file: String; var cells: Int; var genes: Int; var nnz: Int64; var seconds: Double; var ranks: Int }

    func run() throws {
        let comm = Communicator.world
        var spec = SimulationSpec()
        spec.cells = cells; spec.genes = genes; spec.types = types; spec.rareTypes = rareTypes
        spec.rareFraction = rareFraction; spec.batches = batches; spec.batchEffect = batchEffect
        spec.dispersion = dispersion; spec.meanExpression = meanExpression; spec.librarySD = librarySd; spec.seed = seed
        runDataCommand(comm) {
            try agreeing(comm) {
                guard cells >= comm.size, genes > 0, types > 0, rareTypes < types || rareTypes == 0, batches > 0 else {
                    throw CellDataError(file: output, object: "simulate", problem: "need cells ≥ ranks, genes > 0, 0 ≤ rare types < types, batches > 0",
                                        fix: "fix the options")
                }
            }
            let t0 = Communicator.time()
            let model = Simulator.model(spec)
            let bounds = RowPartition.equalRows(cells, parts: comm.size)
            let shard = Simulator.generate(spec, model: model, rows: bounds[comm.rank]..<bounds[comm.rank + 1])
            var req = WriteRequest(shard: shard)
            req.includeX = true
            req.xCompression = gzip
            req.uns = [("simulation", .dict([
                ("cells", .integer(Int64(cells))), ("genes", .integer(Int64(genes))), ("types", .integer(Int64(types))),
                ("rare_types", .integer(Int64(rareTypes))), ("rare_fraction", .number(rareFraction)),
                ("batches", .integer(Int64(batches))), ("batch_effect", .number(batchEffect)),
                ("dispersion", .number(dispersion)), ("mean_expression", .number(meanExpression)),
                ("library_sd", .number(librarySd)), ("seed", .integer(Int64(seed))),
            ]))]
            try CellWriter.write(output, req, comm: comm)
            let nnz = try comm.allreduce(value: Int64(shard.localNNZ), op: .sum)
            let secs = Communicator.time() - t0
            guard comm.rank == 0 else { return }
            let out = Output(file: output, cells: cells, genes: genes, nnz: nnz, seconds: secs, ranks: comm.size)
            if json { print(try jsonString(out)) } else {
                print("wrote \(output): \(cells) cells × \(genes) genes, nnz \(nnz), \(fmt(secs, 2)) s on \(comm.size) rank(s)")
            }
        }
    }
}

struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Read, filter, normalise, log1p, select HVGs and scale with global statistics; write an .h5ad.",
        discussion: """
            The output holds the input's obs (minus filtered cells) and var, obsm['X_syncytium'] = the scaled \
            values of the first --embedding-genes HVGs, and uns['syncytium'] (version, parameters, metrics). \
            With --clusters-from KEY the obs column KEY's codes are copied to obs['syncytium_cluster'] \
            (a check aid until the trainer writes real clusters). The output is the same for any rank count.
            """)

    @Argument(help: "Input file.") var input: String
    @Argument(help: "Output .h5ad.") var output: String
    @Option(help: "Counts from layers/<name>.") var layer: String?
    @Flag(help: "Counts from raw/X.") var raw = false
    @Option(help: "Drop cells with fewer total counts (all-zero cells are always dropped, with a warning).") var minCounts = 1.0
    @Option(help: "Drop cells with fewer expressed genes.") var minGenes = 0
    @Option(help: "Drop genes expressed in fewer cells.") var minCells = 0
    @Option(help: "Normalise each cell to this total (default: the median library size).") var targetSum: Double?
    @Option(help: "Number of highly variable genes (0 = keep all genes).") var hvg = 2000
    @Option(help: "HVG flavour: seurat, cell_ranger (log data) or seurat_v3 (raw counts).") var flavor = "seurat"
    @Option(help: "Clip scaled values to ±this.") var maxValue: Float = 10
    @Option(help: "Columns of obsm['X_syncytium'] (scaled values of the first HVGs).") var embeddingGenes = 50
    @Option(help: "Also write obsp connectivities (UMAP weights) and distances of the exact k-nearest-neighbour graph on obsm['X_syncytium'].") var neighbors: Int?
    @Option(help: "Put this many distributed-PCA components in obsm['X_syncytium'] instead (coordinates agree across rank counts to ~1e-5, not bitwise).") var pca: Int?
    @Option(help: "Copy this obs categorical's codes into obs['syncytium_cluster'].") var clustersFrom: String?
    @Option(help: "Give ranks a seeded random subset of cells instead of contiguous slabs.") var permuteSeed: UInt64?
    @Flag(help: "Print JSON instead of text.") var json = false

    struct Output: Codable {
        var output: String; var cellsIn: Int; var cellsOut: Int; var genesIn: Int; var hvg: Int
        var allZeroCellsDropped: Int; var medianTarget: Double; var seconds: Double; var ranks: Int
    }

    func run() throws {
        let comm = Communicator.world
        let source = try countsSource(layer: layer, raw: raw)
        guard let fl = HVGFlavor(rawValue: flavor) else {
            throw ValidationError("--flavor takes seurat, cell_ranger or seurat_v3")
        }
        runDataCommand(comm) {
            let t0 = Communicator.time()
            var opts = ReadOptions()
            opts.counts = source
            opts.permutationSeed = permuteSeed
            if let k = clustersFrom { opts.requiredObsKeys = [k] }
            var s = try CellReader.read(input, comm: comm, options: opts)
            let cellsIn = s.nObs, genesIn = s.nVars
            let nonInteger = s.values.contains { $0 != $0.rounded() }
            if try comm.allreduce(value: Int32(nonInteger ? 1 : 0), op: .max) == 1 && comm.rank == 0 {
                writeStderr("warning: \(input): \(source.path): non-integer values, this does not look like raw counts (pass --layer NAME or --raw if the file has them)\n")
            }
            let zeroLocal = (0..<s.localRows).filter { s.rowPtr[$0 + 1] == s.rowPtr[$0] }.count
            let zeroCells = Int(try comm.allreduce(value: Int64(zeroLocal), op: .sum))
            if zeroCells > 0 && comm.rank == 0 {
                writeStderr("warning: \(input): X: \(zeroCells) all-zero cells dropped before normalisation\n")
            }
            try Preprocess.filterCells(&s, minCounts: Swift.max(minCounts, Double.leastNonzeroMagnitude), minGenes: minGenes, comm: comm)
            if minCells > 0 { try Preprocess.filterGenes(&s, minCells: minCells, comm: comm) }
            // seurat_v3 ranks genes on the raw counts; the other flavours on log-normalised data.
            let selectGenes = hvg > 0 && hvg < s.nVars
            var hvgGenes: [Int]? = nil
            if selectGenes && fl == .seuratV3 {
                hvgGenes = try Preprocess.highlyVariableGenes(s, nTop: hvg, flavor: fl, comm: comm).genes
            }
            let median = try Preprocess.medianLibrarySize(s, comm: comm)
            try Preprocess.normalizeTotal(&s, targetSum: targetSum, comm: comm)
            Preprocess.log1p(&s)
            if selectGenes && hvgGenes == nil {
                hvgGenes = try Preprocess.highlyVariableGenes(s, nTop: hvg, flavor: fl, comm: comm).genes
            }
            if let g = hvgGenes { Preprocess.subsetGenes(&s, g) }
            let nHVG = s.nVars
            var scaled = try Preprocess.scale(s, maxValue: maxValue, comm: comm).values
            var d = Swift.min(embeddingGenes, s.nVars)
            var emb = [Float](repeating: 0, count: s.localRows * d)
            var pcaRatios: [Double] = []
            if let k = pca, k > 0 {
                let r = try Preprocess.pca(&scaled, localRows: s.localRows, nVars: s.nVars, nComps: k, nObs: s.nObs, comm: comm)
                emb = r.scores; d = r.nComps; pcaRatios = r.explainedVarianceRatio
            } else {
                for i in 0..<s.localRows { for j in 0..<d { emb[i * d + j] = scaled[i * s.nVars + j] } }
            }
            var req = WriteRequest(shard: s)
            req.embedding = emb
            req.embeddingDim = d
            if let k = neighbors, k > 0 {
                try agreeing(comm) {
                    if permuteSeed != nil {
                        throw CellDataError(file: input, object: "--neighbors", problem: "needs contiguous row shards",
                                            fix: "drop --permute-seed when writing a graph")
                    }
                    if k >= s.nObs {
                        throw CellDataError(file: input, object: "--neighbors", problem: "k = \(k) but only \(s.nObs) cells",
                                            fix: "pick k < the number of cells")
                    }
                }
                let knn = try ExactKNN.build(Tensor(rows: s.localRows, cols: d, values: emb), k: k, comm: comm)
                let layout = try RowLayout(comm: comm, localCount: s.localRows)
                let conn = try Connectivities.umap(knn, layout: layout, comm: comm)
                let dist = GraphShard(knn: knn)
                func rows(_ g: GraphShard) -> SparseRows {
                    SparseRows(rowPtr: g.rowPtr, colIdx: g.cols.map { Int32($0) }, values: g.values)
                }
                req.graph = ResultGraph(connectivities: rows(conn), distances: rows(dist))
            }
            if let k = clustersFrom {
                guard case .categorical(let codes, _, _)? = s.obs[k] else {
                    throw CellDataError(file: input, object: "obs/\(k)", problem: "not a categorical column",
                                        fix: "pass a categorical obs key to --clusters-from")
                }
                req.clusters = codes
            }
            req.uns = [
                ("version", .string(SyncytiumVersion.string)),
                ("params", .dict([
                    ("input", .string(input)), ("counts", .string(source.path)),
                    ("min_counts", .number(minCounts)), ("min_genes", .integer(Int64(minGenes))),
                    ("min_cells", .integer(Int64(minCells))),
                    ("target_sum", .number(targetSum ?? Double(median))), ("n_top_genes", .integer(Int64(hvg))),
                    ("flavor", .string(fl.rawValue)), ("max_value", .number(Double(maxValue))),
                    ("permute_seed", .integer(Int64(bitPattern: permuteSeed ?? 0))),
                ])),
                ("metrics", .dict([
                    ("cells_in", .integer(Int64(cellsIn))), ("cells_out", .integer(Int64(s.nObs))),
                    ("all_zero_cells", .integer(Int64(zeroCells))), ("genes_in", .integer(Int64(genesIn))),
                    ("hvg", .integer(Int64(nHVG))),
                ] + (pcaRatios.isEmpty ? [] : [("pca_variance_ratio_sum", .number(pcaRatios.reduce(0, +))),
                                               ("pca_variance_ratio_first", .number(pcaRatios[0]))]))),
            ]
            try CellWriter.write(output, req, comm: comm)
            let secs = Communicator.time() - t0
            guard comm.rank == 0 else { return }
            let out = Output(output: output, cellsIn: cellsIn, cellsOut: s.nObs, genesIn: genesIn, hvg: nHVG,
                             allZeroCellsDropped: zeroCells, medianTarget: Double(median), seconds: secs, ranks: comm.size)
            if json { print(try jsonString(out)) } else {
                print("wrote \(output): \(s.nObs) of \(cellsIn) cells, \(nHVG) HVGs of \(genesIn) genes, \(fmt(secs, 2)) s on \(comm.size) rank(s)")
            }
        }
    }
}
