// `preprocess`: read → QC → normalise → log1p → HVGs → scale with global statistics → .h5ad with the
// scaled genes (or their PCA) in obsm, optionally the exact kNN graph in obsp.
import CellData
import Collectives
import Neighbors
import TensorCore

public struct PreprocessResult: Sendable, Codable {
    public var output: String; public var cellsIn: Int; public var cellsOut: Int; public var genesIn: Int; public var hvg: Int
    public var allZeroCellsDropped: Int; public var medianTarget: Double; public var seconds: Double; public var ranks: Int
}

public enum PreprocessRun {
    /// Collective. Runs the `preprocess` pipeline of `spec`.
    public static func run(_ spec: PreprocessSpec, comm: Communicator) throws -> PreprocessResult {
        let input = spec.data.input, p = spec.preprocess, o = spec.scaled
        try OutputCheck.verify(output: spec.output.path, input: input, overwriteInput: spec.output.overwriteInput, comm: comm)
        let t0 = Communicator.time()
        var opts = ReadOptions()
        opts.counts = spec.data.countsSource
        opts.permutationSeed = o.permuteSeed
        opts.requiredObsKeys = [o.clustersFrom, spec.data.labelKey].compactMap { $0 }
        var s = try CellReader.read(input, comm: comm, options: opts)
        let cellsIn = s.nObs, genesIn = s.nVars
        let nonInteger = s.values.contains { $0 != $0.rounded() }
        if try comm.allreduce(value: Int32(nonInteger ? 1 : 0), op: .max) == 1 {
            log.warning("\(input): \(opts.counts.path): non-integer values, this does not look like raw counts (set data.counts to raw or layers/NAME if the file has them)")
        }
        let zeroLocal = (0..<s.localRows).filter { s.rowPtr[$0 + 1] == s.rowPtr[$0] }.count
        let zeroCells = Int(try comm.allreduce(value: Int64(zeroLocal), op: .sum))
        if zeroCells > 0 { log.warning("\(input): X: \(zeroCells) all-zero cells dropped before normalisation") }
        try Preprocess.filterCells(&s, minCounts: Swift.max(p.minCounts, Double.leastNonzeroMagnitude), minGenes: p.minGenes, comm: comm)
        if p.minCells > 0 { try Preprocess.filterGenes(&s, minCells: p.minCells, comm: comm) }
        // seurat_v3 ranks genes on the raw counts; the other flavours on log-normalised data.
        let selectGenes = p.topGenes > 0 && p.topGenes < s.nVars
        var hvgGenes: [Int]? = nil
        if selectGenes && p.flavor == .seuratV3 {
            hvgGenes = try Preprocess.highlyVariableGenes(s, nTop: p.topGenes, flavor: p.flavor, comm: comm).genes
        }
        let median = try Preprocess.medianLibrarySize(s, comm: comm)
        try Preprocess.normalizeTotal(&s, targetSum: p.targetSum, comm: comm)
        Preprocess.log1p(&s)
        if selectGenes && hvgGenes == nil {
            hvgGenes = try Preprocess.highlyVariableGenes(s, nTop: p.topGenes, flavor: p.flavor, comm: comm).genes
        }
        if let g = hvgGenes { Preprocess.subsetGenes(&s, g) }
        let nHVG = s.nVars
        var scaled = try Preprocess.scale(s, maxValue: o.maxValue, comm: comm).values
        var d = Swift.min(o.embeddingGenes, s.nVars)
        var emb = [Float](repeating: 0, count: s.localRows * d)
        var pcaRatios: [Double] = []
        if let k = o.pca {
            let r = try Preprocess.pca(&scaled, localRows: s.localRows, nVars: s.nVars, nComps: k, nObs: s.nObs, seed: spec.seed, comm: comm)
            emb = r.scores; d = r.nComps; pcaRatios = r.explainedVarianceRatio
        } else {
            for i in 0..<s.localRows { for j in 0..<d { emb[i * d + j] = scaled[i * s.nVars + j] } }
        }
        var req = WriteRequest(shard: s)
        req.embedding = emb
        req.embeddingDim = d
        if let k = o.neighbors {
            try agreeing(comm) {
                if k >= s.nObs {
                    throw CellDataError(file: input, object: "scaled.neighbors", problem: "k = \(k) but only \(s.nObs) cells",
                                        fix: "pick k < the number of cells")
                }
            }
            let knn = try ExactKNN.build(Tensor(rows: s.localRows, cols: d, values: emb), k: k, comm: comm)
            let layout = try RowLayout(comm: comm, localCount: s.localRows)
            let conn = try Connectivities.umap(knn, layout: layout, comm: comm)
            req.graph = ResultGraph(connectivities: conn.sparseRows, distances: GraphShard(knn: knn).sparseRows)
            req.unsTop = [("neighbors", EmbeddingGraph.uns(neighbors: k, method: "umap", keyAdded: nil, useRep: "X_syncytium", seed: spec.seed))]
        }
        if let k = o.clustersFrom {
            guard case .categorical(let codes, _, _)? = s.obs[k] else {
                throw CellDataError(file: input, object: "obs/\(k)", problem: "not a categorical column",
                                    fix: "pass a categorical obs key to scaled.clusters_from")
            }
            req.clusters = codes
        }
        var metrics: [(String, UnsValue)] = [
            ("cells_in", .integer(Int64(cellsIn))), ("cells_out", .integer(Int64(s.nObs))),
            ("all_zero_cells", .integer(Int64(zeroCells))), ("genes_in", .integer(Int64(genesIn))),
            ("hvg", .integer(Int64(nHVG))), ("target_sum", .number(p.targetSum ?? Double(median))),
        ]
        if !pcaRatios.isEmpty {
            metrics += [("pca_variance_ratio_sum", .number(pcaRatios.reduce(0, +))), ("pca_variance_ratio_first", .number(pcaRatios[0]))]
        }
        req.uns = [("version", .string(SyncytiumInfo.version)), ("spec", RunSpecs.uns(spec)), ("spec_yaml", .string(RunSpecs.yaml(spec))),
                   ("metrics", .dict(metrics))]
        try CellWriter.write(spec.output.path, req, comm: comm)
        return PreprocessResult(output: spec.output.path, cellsIn: cellsIn, cellsOut: s.nObs, genesIn: genesIn, hvg: nHVG,
                                allZeroCellsDropped: zeroCells, medianTarget: Double(median), seconds: Communicator.time() - t0,
                                ranks: comm.size)
    }
}
