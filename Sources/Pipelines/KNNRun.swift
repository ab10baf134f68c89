// `knn`: read → preprocess → scale → distributed PCA → exact or approximate kNN graph → obsp, with
// optional distributed k-means on the PCA.
import CellData
import Clustering
import Collectives
import Neighbors
import TensorCore

public struct KNNRunResult: Sendable, Codable {
    public var output: String; public var cells: Int; public var neighbors: Int; public var method: String
    public var seconds: Double; public var graphSeconds: Double
    public var kmeansK: Int?; public var kmeansInertia: Double?; public var ari: Double?; public var nmi: Double?
}

public enum KNNRun {
    /// Collective. Runs the `knn` pipeline of `spec`.
    public static func run(_ spec: KNNSpec, comm: Communicator) throws -> KNNRunResult {
        try OutputCheck.verify(output: spec.output.path, input: spec.data.input, overwriteInput: spec.output.overwriteInput, comm: comm)
        let t0 = Communicator.time()
        let data = try Dataset.load(spec.data, preprocess: spec.preprocess, comm: comm)
        let k = spec.knn.neighbors
        try agreeing(comm) {
            if k >= data.cells {
                throw CellDataError(file: spec.data.input, object: "knn.neighbors", problem: "k = \(k) for \(data.cells) cells",
                                    fix: "pick 1 ≤ k < the number of cells")
            }
        }
        let s = data.shard
        // Scaled log-normalised values → PCA (the scanpy pipeline).
        var norm = s
        norm.values = data.x.values; norm.colIdx = data.x.colIdx; norm.rowPtr = data.x.rowPtr
        var scaled = try Preprocess.scale(norm, maxValue: spec.knn.maxValue, comm: comm).values
        let pc = try Preprocess.pca(&scaled, localRows: s.localRows, nVars: s.nVars, nComps: spec.knn.pca, nObs: s.nObs,
                                    seed: spec.seed, comm: comm)
        let x = Tensor(rows: s.localRows, cols: pc.nComps, values: pc.scores)
        let tg = Communicator.time()
        let method = spec.knn.method.resolved(cells: s.nObs)
        let knn = method == .exact ? try ExactKNN.build(x, k: k, comm: comm)
                                            : try ApproximateKNN(seed: spec.seed).build(x, k: k, comm: comm)
        let layout = try RowLayout(comm: comm, localCount: s.localRows)
        let conn = spec.knn.weights == .umap ? try Connectivities.umap(knn, layout: layout, comm: comm)
                                             : try Connectivities.gaussian(knn, layout: layout, comm: comm)
        let graphSeconds = try comm.allreduce(value: Communicator.time() - tg, op: .max)
        var req = WriteRequest(shard: s)
        req.embedding = pc.scores; req.embeddingDim = pc.nComps
        req.graph = ResultGraph(connectivities: conn.sparseRows, distances: GraphShard(knn: knn).sparseRows)
        var out = KNNRunResult(output: spec.output.path, cells: s.nObs, neighbors: k, method: method.rawValue, seconds: 0,
                            graphSeconds: graphSeconds, kmeansK: nil, kmeansInertia: nil, ari: nil, nmi: nil)
        var metrics: [(String, UnsValue)] = [("graph_seconds", .number(graphSeconds))]
        if let kspec = spec.clustering.kmeans {
            let points = PointShard(values: pc.scores, count: s.localRows, dim: pc.nComps)
            let kk: Int
            switch kspec {
            case .fixed(let v): kk = v
            case .auto:
                switch spec.clustering.estimator {
                case .spectral: kk = try SpectralClusterCount.estimate(conn, layout: layout, seed: spec.seed, comm: comm).k
                case .silhouette:
                    kk = try EstimateClusterCount.silhouette(points, range: 2...min(30, max(2, s.nObs - 1)), seed: spec.seed, comm: comm).best
                }
            }
            let km = try KMeans(k: kk, restarts: spec.clustering.restarts, seed: spec.seed).fit(points, comm: comm)
            req.clusters = km.labels
            out.kmeansK = kk; out.kmeansInertia = km.inertia
            metrics += [("kmeans_k", .integer(Int64(kk))), ("kmeans_inertia", .number(km.inertia))]
            if let labels = data.labels {
                let sc = try Scores.compute(truth: labels, pred: km.labels, comm: comm)
                out.ari = sc.ari; out.nmi = sc.nmi
                metrics += [("ari", .number(sc.ari)), ("nmi", .number(sc.nmi))]
            }
        }
        req.uns = [("version", .string(SyncytiumInfo.version)), ("spec", RunSpecs.uns(spec)), ("spec_yaml", .string(RunSpecs.yaml(spec))),
                   ("metrics", .dict(metrics))]
        req.unsTop = [("neighbors", EmbeddingGraph.uns(neighbors: k, method: spec.knn.weights.rawValue, keyAdded: nil,
                                                       useRep: "X_syncytium", seed: spec.seed))]
        try CellWriter.write(spec.output.path, req, comm: comm)
        out.seconds = Communicator.time() - t0
        return out
    }
}

extension GraphShard {
    /// The rows as the writer takes them.
    var sparseRows: SparseRows { SparseRows(rowPtr: rowPtr, colIdx: cols.map { Int32($0) }, values: values) }
}
