// `cluster`: read → preprocess → train the model (data-parallel) → cluster → write the .h5ad.
import CellData
import Clustering
import Collectives
import Foundation
import Models
import Neighbors
import Plot
import TensorCore
import Training

/// What a `cluster` run produced.
public struct ClusterResult: Sendable {
    /// False when a stop signal ended training (a checkpoint was written; nothing else was).
    public var completed: Bool
    public var clusters: Int
    public var epochs: Int
    public var seconds: Double
    public var scores: Scores?
    /// Scores of the k-means clustering right after pretraining (single models with a head).
    public var pretrainedScores: Scores?
    public var report: [(String, ReportValue)]
    /// Leiden's outcome when clustering.cluster_method is leiden.
    public var leiden: LeidenOutcome?
    public var output: String?
    /// This rank's clusters and embedding (shard order).
    public var assignment: [Int32]
    public var embedding: Tensor
}

public enum ClusterRun {
    /// Collective. Runs the whole `cluster` pipeline of `spec`.
    public static func run(_ spec: ClusterSpec, comm: Communicator) throws -> ClusterResult {
        if let out = spec.output.path {
            try OutputCheck.verify(output: out, input: spec.data.input, overwriteInput: spec.output.overwriteInput, comm: comm)
        }
        let t0 = Communicator.time()
        var clock = StageClock()
        let data = try Dataset.load(spec.data, preprocess: spec.preprocess, comm: comm)
        log.info("\(spec.data.input): \(data.cells) cells × \(data.genes) genes on \(comm.size) rank(s)")
        // The output will hold a copy of the input: room for it is checked now, not after training.
        if let out = spec.output.path, !spec.output.resultsOnly,
           try CellWriter.keepableInput(spec.data.input, data.shard, comm: comm) == nil {
            try OutputCheck.verifySpace(output: out, keeping: spec.data.input, comm: comm)
        }
        try clock.mark("read + preprocess", comm: comm)
        let entry = try spec.model.entry
        let runSpec = RunSpecs.yaml(spec)
        let members = spec.clustering.ensemble
        // Only the first member's model and trainer are kept (its K, epochs and own assignment);
        // the others are released after their embedding is taken.
        var first: (model: any Model, trainer: Trainer)?
        var embeddings: [Tensor] = []
        for member in 0..<members {
            let seed = spec.seed &+ UInt64(member)
            let context = ModelContext(seed: seed, clusters: spec.clustering.clusters.count, maxClusters: spec.clustering.maxClusters)
            let model = try entry.make(input: data, hyperparameters: spec.model.hyperparameters, context: context, comm: comm)
            try clock.mark("model setup", comm: comm)
            var config = spec.trainer
            if members > 1, let dir = config.checkpointDir { config.checkpointDir = "\(dir)/member-\(member)" }
            if members > 1 { log.info("ensemble member \(member + 1) of \(members), seed \(seed)") }
            let (trainer, outcome) = try train(model, config: config, seed: seed, runSpec: runSpec, data: data, comm: comm)
            try clock.mark("train", comm: comm)
            if case .stopped = outcome {
                return ClusterResult(completed: false, clusters: 0, epochs: trainer.epoch, seconds: Communicator.time() - t0,
                                     scores: nil, pretrainedScores: nil, report: [], output: nil, assignment: [],
                                     embedding: Tensor(rows: 0, cols: 0))
            }
            embeddings.append(try model.embedding(comm: comm))
            try clock.mark("embedding", comm: comm)
            if first == nil { first = (model, trainer) }
        }
        let (model, trainer) = first!
        let z = members == 1 ? embeddings[0] : try EnsembleEmbedding.concatenate(embeddings, comm: comm)
        var k = spec.clustering.clusters.count
        var pred: [Int32]
        let method = spec.clustering.clusterMethod
        // scanpy's neighbours on the embedding (obsp + uns), and Leiden on them when asked for.
        // Built only when something uses it: the output file (obsp, the layout) or Leiden.
        var graph: EmbeddingGraph?
        if let kn = spec.clustering.neighbors, spec.output.path != nil || method == .leiden {
            // Fewer cells than neighbours + 1: no graph (an error only when Leiden needs it).
            if kn >= data.cells && method != .leiden {
                log.warning("clustering.neighbors = \(kn) for \(data.cells) cells: no kNN graph written")
            } else {
                graph = try EmbeddingGraph.build(z, k: kn, method: spec.clustering.neighborsMethod, seed: spec.seed, comm: comm)
                try clock.mark("kNN graph", comm: comm)
            }
        }
        var leiden: LeidenOutcome?
        // clusters auto (issue 16): the Leiden-stability choice on the learnt embedding, unless the
        // model's own head chose K already or a resolution is given.
        var auto: ResolutionChoice?
        // Collective: the model's own clusters (nil on every rank for a model without a head).
        let own = method == .model && members == 1 ? try model.clusterAssignment(comm: comm) : nil
        if k == nil, own == nil, !(method == .leiden && spec.clustering.resolution != nil) {
            if method == .leiden, let g = graph {
                auto = try StableResolution.choose(g.connectivities, layout: g.layout, maxClusters: spec.clustering.maxClusters,
                                                   seed: spec.seed, comm: comm)
            } else if method != .leiden {
                auto = try StableResolution.choose(points: PointShard(values: z.scalars, count: z.rows, dim: z.cols),
                                                   maxClusters: spec.clustering.maxClusters, seed: spec.seed, comm: comm)
            }
            if let a = auto { log.info("\(StableResolution.describe(a))") }
        }
        if method == .leiden, let g = graph {
            let start = spec.clustering.resolution ?? auto?.resolution ?? 1
            let target: Leiden.Target = k.map { .clusters($0, start: start) } ?? .resolution(start)
            let r = try Leiden.run(g.connectivities, layout: g.layout, target: target, seed: spec.seed, comm: comm)
            let outcome = LeidenOutcome(resolution: r.resolution, modularity: r.modularity, clusters: r.clusters, exact: r.exact,
                                        trials: r.trials.count)
            if let want = k {
                if r.exact {
                    log.info("Leiden: \(r.clusters) communities at resolution \(r.resolution) (\(r.trials.count) trials), modularity \(r.modularity)")
                } else {
                    let tried = r.trials.map { "\($0.resolution)→\($0.clusters)" }.joined(separator: ", ")
                    log.warning("Leiden: no resolution gave exactly \(want) communities; nearest \(r.clusters) at resolution \(r.resolution) (tried \(tried))")
                }
            } else {
                log.info("Leiden: \(r.clusters) communities at resolution \(r.resolution), modularity \(r.modularity)")
            }
            (pred, k, leiden) = (r.labels, r.clusters, outcome)
        } else if let own {
            (pred, k) = (own.labels, own.clusters)
        } else {
            let points = PointShard(values: z.scalars, count: z.rows, dim: z.cols)
            let kk: Int
            if let given = k { kk = given } else if let a = auto { kk = a.clusters } else {
                kk = try StableResolution.choose(points: points, maxClusters: spec.clustering.maxClusters, seed: spec.seed, comm: comm).clusters
            }
            pred = try KMeans(k: kk, restarts: spec.clustering.restarts, seed: spec.seed).fit(points, comm: comm).labels
            k = kk
        }
        let seconds = Communicator.time() - t0
        var scores: Scores? = nil, pretrained: Scores? = nil
        if let labels = data.labels {
            scores = try Scores.compute(truth: labels, pred: pred, comm: comm)
            // Collective: the ranks agree whether every cell has an initial assignment (a rank without
            // cells has none to give, which must not keep the others waiting in Scores.compute).
            let initial = model.pretrainedAssignment ?? (labels.isEmpty ? [] : nil)
            let usable = members == 1 && initial?.count == labels.count
            if try comm.allreduce(value: Int32(usable ? 1 : 0), op: .min) == 1, let initial {
                pretrained = try Scores.compute(truth: labels, pred: initial, comm: comm)
            }
        }
        try clock.mark("cluster", comm: comm)
        var result = ClusterResult(completed: true, clusters: k ?? 0, epochs: trainer.epoch, seconds: seconds, scores: scores,
                                   pretrainedScores: pretrained, report: model.report, leiden: leiden, output: nil, assignment: pred,
                                   embedding: z)
        if let out = spec.output.path {
            var req = WriteRequest(shard: data.shard)
            // The input's whole content plus the results, unless output.results_only (issue 18).
            req.keepInput = spec.output.resultsOnly ? nil : spec.data.input
            req.clusters = pred
            req.embedding = z.scalars
            req.embeddingDim = z.cols
            if members == 1 { req.graph = try model.resultGraph(comm: comm) }
            if let g = graph {
                // A model's own graph (scDEFR's) keeps obsp connectivities/distances; the embedding's
                // neighbours then go under scanpy's key_added names.
                let keyAdded = try comm.allreduce(value: Int32(req.graph == nil ? 0 : 1), op: .max) == 1 ? "syncytium_neighbors" : nil
                let names = EmbeddingGraph.keys(keyAdded)
                if keyAdded == nil {
                    req.graph = ResultGraph(connectivities: g.connectivities.sparseRows, distances: g.distances.sparseRows)
                } else {
                    req.obsp = [(names.connectivities, g.connectivities.sparseRows), (names.distances, g.distances.sparseRows)]
                }
                req.unsTop.append((names.uns, g.uns(keyAdded: keyAdded, useRep: "X_syncytium", seed: spec.seed)))
            }
            // The 2-D layout of that graph (obsm['X_umap'], uns['umap'], as sc.tl.umap writes them).
            var umap: EmbeddingLayout?
            if let g = graph, spec.clustering.layout == .umap {
                let u = try EmbeddingLayout.compute(g, embedding: z, epochs: spec.clustering.layoutEpochs, seed: spec.seed, comm: comm)
                let score = u.preservation.map { String(format: ", neighbourhood preservation %.4f", $0) } ?? ""
                log.info("UMAP layout in \(String(format: "%.1f", u.seconds)) s\(score)")
                req.obsm.append((name: "X_umap", values: u.coordinates, width: 2))
                req.unsTop.append(("umap", u.uns(seed: spec.seed)))
                umap = u
                try clock.mark("layout", comm: comm)
            } else if spec.clustering.layout == .umap {
                log.info("no kNN graph (clustering.neighbors): no UMAP layout written")
            }
            if let l = leiden {
                req.shard.obs.set("leiden", .categorical(codes: pred, categories: (0..<l.clusters).map(String.init), ordered: false))
                req.resultObs.append("leiden")
                req.unsTop.append(("leiden", .dict([("params", .dict([("resolution", .number(l.resolution)),
                                                                       ("random_state", .integer(Int64(bitPattern: spec.seed))),
                                                                       ("n_iterations", .integer(Int64(Leiden.defaultIterations)))]))])))
            }
            var metrics: [(String, UnsValue)] = [("clusters", .integer(Int64(result.clusters))),
                                                 ("epochs_run", .integer(Int64(trainer.epoch))), ("seconds", .number(seconds))]
            metrics += model.report.filter { $0.0 != "clusters" }.map { ($0.0, $0.1.uns) }
            if let s = scores { metrics += [("ari", .number(s.ari)), ("nmi", .number(s.nmi)), ("acc", .number(s.acc))] }
            metrics.append(("cluster_method", .string(method.rawValue)))
            if let u = umap {
                metrics.append(("layout_seconds", .number(u.seconds)))
                if let p = u.preservation { metrics.append(("layout_preservation", .number(p))) }
            }
            if let a = auto {
                metrics += [("auto_resolution", .number(a.resolution)), ("auto_clusters", .integer(Int64(a.clusters))),
                            ("auto_seconds", .number(a.seconds)), ("auto_cells", .integer(Int64(a.cells))),
                            ("auto_candidate_resolutions", .array(a.candidates.map(\.resolution), width: 0)),
                            ("auto_candidate_clusters", .array(a.candidates.map { Double($0.clusters) }, width: 0)),
                            ("auto_candidate_stability", .array(a.candidates.map(\.stability), width: 0))]
            }
            if let l = leiden {
                metrics += [("leiden_resolution", .number(l.resolution)), ("leiden_modularity", .number(l.modularity)),
                            ("leiden_exact_count", .string(l.exact ? "true" : "false")), ("leiden_trials", .integer(Int64(l.trials)))]
            }
            req.uns = [("version", .string(SyncytiumInfo.version)), ("model", .string(entry.name)), ("spec", RunSpecs.uns(spec)),
                       ("spec_yaml", .string(runSpec)), ("metrics", .dict(metrics)), ("ranks", .integer(Int64(comm.size)))]
            if let h = epochHistory(trainer) { req.uns.append(("history", h)) }
            // The stages up to the layout (the file is written after its uns: write's own time is in the log).
            req.uns.append(("stages", clock.uns))
            try CellWriter.write(out, req, comm: comm)
            try clock.mark("write", comm: comm)
            log.info("wrote \(out)")
            result.output = out
            // The layout of this run (an X_umap kept from the input would be another run's).
            let basis = spec.figures.plotBasis ?? (req.obsm.contains { $0.name == "X_umap" } ? "X_umap" : "X_syncytium")
            if let dir = spec.figures.plot {
                try drawFigures(out, dir: dir, basis: basis, spec: spec, comm: comm)
                try clock.mark("figures", comm: comm)
            }
        }
        for line in clock.lines(ranks: comm.size) { log.info("\(line)") }
        return result
    }

    /// uns['syncytium']['history']: the first member's per-epoch mean loss and terms (float64 arrays).
    static func epochHistory(_ trainer: Trainer) -> UnsValue? {
        let h = trainer.epochHistory
        guard !h.isEmpty else { return nil }
        var cols: [(String, UnsValue)] = [("epoch", .array(h.map { Double($0.epoch + 1) }, width: 0)),
                                         ("loss", .array(h.map(\.loss), width: 0))]
        for (i, name) in trainer.task.lossTermNames.enumerated() where !["epoch", "loss"].contains(name) {
            cols.append((name, .array(h.map { i < $0.terms.count ? $0.terms[i] : .nan }, width: 0)))
        }
        cols.append(("terms", .string(cols.dropFirst().map(\.0).joined(separator: ","))))
        return .dict(cols)
    }

    /// Collective: rank 0 draws the figures from the written output; the others wait for its outcome.
    static func drawFigures(_ out: String, dir: String, basis: String, spec: ClusterSpec, comm: Communicator) throws {
        let failure = try agreeing(comm) { () -> String? in
            guard comm.rank == 0 else { return nil }
            do {
                let t0 = Communicator.time()
                let files = try RunFigures.write(file: out, directory: dir, basis: basis,
                                                 labelKey: spec.data.labelKey, seed: spec.seed)
                log.info("figures (\(String(format: "%.2f", Communicator.time() - t0)) s): \(files.joined(separator: ", "))")
                return nil
            } catch { return "\(error)" }
        }
        // A figure that cannot be drawn does not undo the run's output: rank 0 says why.
        if let m = failure, comm.rank == 0 { log.error("figures not written: \(m)") }
    }
}

/// What Leiden gave in a `cluster` run.
public struct LeidenOutcome: Sendable {
    public var resolution: Double
    public var modularity: Double
    public var clusters: Int
    /// False when clusters = K was asked for and no resolution gave exactly K (the nearest count is used).
    public var exact: Bool
    public var trials: Int
}

/// The product's version, for outputs.
public enum SyncytiumInfo {
    public static let version = "0.2.0"
}
