import ArgumentParser
import CellData
import Clustering
import Collectives
import Foundation
import Models
import Neighbors
import TensorCore

/// `syncytium knn`: the kNN graph of a file's cells into obsp, as `sc.pp.neighbors` would write it.
struct KNNCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knn",
        abstract: "Build the kNN graph of the cells (PCA of the preprocessed data) and write it into obsp.",
        discussion: """
            Reads INPUT (each rank its rows), preprocesses it (QC, normalize_total, log1p, HVGs, \
            scale), computes a distributed PCA and the k-nearest-neighbour graph on it — exact (GEMM \
            blocks in a ring of ranks) or approximate (distributed IVF) — and writes OUTPUT with \
            obsm['X_syncytium'] (the PCA), obsp['distances'] and obsp['connectivities'] (UMAP or \
            Gaussian weights, as scanpy's). With --kmeans K it also clusters the PCA by distributed \
            k-means into obs['syncytium_cluster'] and reports the k-means objective.
            """)

    enum Method: String, ExpressibleByArgument, CaseIterable { case exact, approximate }
    enum Weights: String, ExpressibleByArgument, CaseIterable { case umap, gauss }

    @Argument(help: "Input .h5ad / 10x .h5.") var input: String
    @Option(name: .shortAndLong, help: "Output .h5ad.") var output: String
    @Option(help: "Neighbours per cell (scanpy's n_neighbors counts the cell itself: this is n_neighbors − 1).") var neighbors = 14
    @Option(help: "PCA components.") var pca = 50
    @Option(help: "Highly variable genes (0 = all).") var topGenes = 2000
    @Option(help: "exact or approximate.") var method: Method = .exact
    @Option(help: "Edge weights: umap (scanpy's default) or gauss.") var weights: Weights = .umap
    @Option(help: "Also run distributed k-means with this many clusters on the PCA ('auto': estimate it, see --estimator).") var kmeans: String?
    enum Estimator: String, ExpressibleByArgument, CaseIterable { case spectral, silhouette }
    @Option(help: "How --kmeans auto estimates K: spectral (eigengap of the normalised kNN graph) or silhouette (k-means for K = 2…30).") var estimator: Estimator = .spectral
    @Option(help: "obs column with reference labels (for ARI/NMI of --kmeans).") var labelKey: String?
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Flag(help: "Print JSON.") var json = false

    struct Output: Codable {
        var output: String; var cells: Int; var neighbors: Int; var method: String; var seconds: Double
        var graphSeconds: Double; var kmeansK: Int?; var kmeansInertia: Double?; var ari: Double?; var nmi: Double?
    }

    func run() throws {
        let comm = Communicator.world
        runDataCommand(comm) {
            let t0 = Communicator.time()
            var po = PreprocessOptions(); po.topGenes = topGenes; po.seed = seed
            let data = try InputPipeline.load(input, labelKey: labelKey, options: po, comm: comm)
            try agreeing(comm) {
                if neighbors < 1 || neighbors >= data.cells {
                    throw CellDataError(file: input, object: "--neighbors", problem: "k = \(neighbors) for \(data.cells) cells",
                                        fix: "pick 1 ≤ k < the number of cells")
                }
            }
            var s = data.shard
            // Scaled log-normalised values → PCA (the scanpy pipeline).
            var norm = s
            norm.values = data.x.values; norm.colIdx = data.x.colIdx; norm.rowPtr = data.x.rowPtr
            var scaled = try Preprocess.scale(norm, maxValue: 10, comm: comm).values
            let pc = try Preprocess.pca(&scaled, localRows: s.localRows, nVars: s.nVars, nComps: pca, nObs: s.nObs, seed: seed, comm: comm)
            let x = Tensor(rows: s.localRows, cols: pc.nComps, values: pc.scores)
            let tg = Communicator.time()
            let knn = method == .exact ? try ExactKNN.build(x, k: neighbors, comm: comm)
                                       : try ApproximateKNN(seed: seed).build(x, k: neighbors, comm: comm)
            let layout = try RowLayout(comm: comm, localCount: s.localRows)
            let conn = weights == .umap ? try Connectivities.umap(knn, layout: layout, comm: comm)
                                        : try Connectivities.gaussian(knn, layout: layout, comm: comm)
            let graphSeconds = try comm.allreduce(value: Communicator.time() - tg, op: .max)
            func rows(_ g: GraphShard) -> SparseRows { SparseRows(rowPtr: g.rowPtr, colIdx: g.cols.map { Int32($0) }, values: g.values) }
            var req = WriteRequest(shard: s)
            req.embedding = pc.scores; req.embeddingDim = pc.nComps
            req.graph = ResultGraph(connectivities: rows(conn), distances: rows(GraphShard(knn: knn)))
            var out = Output(output: output, cells: s.nObs, neighbors: neighbors, method: method.rawValue, seconds: 0,
                             graphSeconds: graphSeconds, kmeansK: nil, kmeansInertia: nil, ari: nil, nmi: nil)
            if let kspec = kmeans {
                let points = PointShard(values: pc.scores, count: s.localRows, dim: pc.nComps)
                let k: Int
                if kspec == "auto" {
                    switch estimator {
                    case .spectral: k = try SpectralClusterCount.estimate(conn, layout: layout, seed: seed, comm: comm).k
                    case .silhouette:
                        k = try EstimateClusterCount.silhouette(points, range: 2...min(30, max(2, s.nObs - 1)), seed: seed, comm: comm).best
                    }
                } else {
                    guard let v = Int(kspec), v >= 1 else { throw ValidationError("--kmeans takes a number of clusters or 'auto'") }
                    k = v
                }
                let km = try KMeans(k: k, restarts: 10, seed: seed).fit(points, comm: comm)
                req.clusters = km.labels
                out.kmeansK = k; out.kmeansInertia = km.inertia
                if let labels = data.labels {
                    let (ari, nmi, _) = try gatheredScores(truth: labels, pred: km.labels, comm: comm)
                    out.ari = ari; out.nmi = nmi
                }
            }
            req.uns = [("version", .string(SyncytiumVersion.string)),
                       ("params", .dict([("input", .string(input)), ("n_neighbors", .integer(Int64(neighbors))),
                                         ("method", .string(method.rawValue)), ("weights", .string(weights.rawValue)),
                                         ("n_pcs", .integer(Int64(pc.nComps))), ("seed", .integer(Int64(bitPattern: seed)))]))]
            try CellWriter.write(output, req, comm: comm)
            out.seconds = Communicator.time() - t0
            s = data.shard
            guard comm.rank == 0 else { return }
            if json { print(try jsonString(out)); return }
            print("wrote \(output): \(out.cells) cells, \(neighbors)-NN graph (\(method.rawValue), \(weights.rawValue) weights) in \(fmt(graphSeconds, 2)) s, total \(fmt(out.seconds, 2)) s on \(comm.size) rank(s)")
            if let k = out.kmeansK, let inertia = out.kmeansInertia {
                print("k-means K = \(k): objective \(fmt(inertia, 3))" + (out.ari.map { "  ARI \(fmt($0, 4))  NMI \(fmt(out.nmi!, 4))" } ?? ""))
            }
        }
    }
}

/// ARI, NMI and ACC of local predictions against local labels, over all ranks (labels < 0 ignored).
func gatheredScores(truth: [Int32], pred: [Int32], comm: Communicator) throws -> (ari: Double, nmi: Double, acc: Double) {
    let t = try comm.allgatherv(truth.map(Int64.init)).values
    let p = try comm.allgatherv(pred.map(Int64.init)).values
    let keep = t.indices.filter { t[$0] >= 0 && p[$0] >= 0 }
    let tt = keep.map { Int(t[$0]) }, pp = keep.map { Int(p[$0]) }
    return (ClusterMetrics.adjustedRandIndex(tt, pp), ClusterMetrics.normalizedMutualInformation(tt, pp), ClusterMetrics.accuracy(tt, pp))
}

/// `syncytium evaluate`: compare an obs column with reference labels.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score an obs column (e.g. syncytium_cluster) against reference labels: ARI, NMI, ACC.")

    @Argument(help: "An .h5ad file.") var input: String
    @Option(help: "obs column holding the clustering.") var key = "syncytium_cluster"
    @Option(help: "obs column holding the reference labels.") var labelKey = "cell_type"
    @Flag(help: "Print JSON.") var json = false

    struct Output: Codable { var cells: Int; var clusters: Int; var classes: Int; var ari: Double; var nmi: Double; var acc: Double }

    func run() throws {
        let comm = Communicator.world
        runDataCommand(comm) {
            let (cells, obs) = try CellReader.readObs(input, columns: [key, labelKey], comm: comm)
            func codes(_ name: String) throws -> [Int32] {
                guard let col = obs[name] else { throw CellDataError(file: input, object: "obs/\(name)", problem: "missing", fix: "pass an existing obs column") }
                if case .categorical(let c, _, _) = col { return c }
                let values = col.stringValues
                let cats = try InputPipeline.globalCategories(values, comm: comm)
                let index = Dictionary(uniqueKeysWithValues: cats.enumerated().map { ($1, Int32($0)) })
                return values.map { $0.isEmpty ? -1 : index[$0]! }
            }
            let pred = try codes(key), truth = try codes(labelKey)
            let (ari, nmi, acc) = try gatheredScores(truth: truth, pred: pred, comm: comm)
            let nClusters = Set(try comm.allgatherv(pred.filter { $0 >= 0 }).values).count
            let nClasses = Set(try comm.allgatherv(truth.filter { $0 >= 0 }).values).count
            guard comm.rank == 0 else { return }
            let out = Output(cells: cells, clusters: nClusters, classes: nClasses, ari: ari, nmi: nmi, acc: acc)
            if json { print(try jsonString(out)); return }
            print("\(input): obs['\(key)'] (\(nClusters) clusters) vs obs['\(labelKey)'] (\(nClasses) classes), \(cells) cells")
            print("ARI \(fmt(ari, 4))  NMI \(fmt(nmi, 4))  ACC \(fmt(acc, 4))")
        }
    }
}
