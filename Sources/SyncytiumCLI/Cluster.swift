import ArgumentParser
import CellData
import Clustering
import Collectives
import Foundation
import Models
import TensorCore
import Training

/// Serves allocations below 256 MiB from the heap and keeps freed memory there: the per-step
/// batch arrays (a few hundred KiB each) would otherwise be mmapped and zero-faulted every step.
func keepAllocationsOnHeap() {
    #if os(Linux)
    _ = glibcMallopt(-3, 256 << 20)   // M_MMAP_THRESHOLD (malloc.h is not in the Glibc module)
    _ = glibcMallopt(-1, 512 << 20)   // M_TRIM_THRESHOLD
    #endif
}

#if os(Linux)
@_silgen_name("mallopt") func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32
#endif

/// The resolved settings of a `cluster` run: defaults ← YAML config file ← command-line options.
struct ClusterSettings: Codable {
    var model = "scname"
    var clusters = "auto"
    var labelKey: String? = nil
    var seed: UInt64 = 0
    var batchSize = 256
    var lr: Float = 1e-3
    /// Adam learning rate of the fine-tuning phase (nil = `lr`).
    var finetuneLr: Float? = nil
    var topGenes = 1000
    /// Independently trained members (seeds seed, seed + 1, …) whose embeddings are concatenated for
    /// the final k-means; 1 = a single model clustered by its own learned centres.
    var ensemble = 1
    var scname = SCNAME.Hyperparameters()

    /// Applies `key: value` (YAML keys use snake_case or kebab-case, as the options).
    mutating func set(_ rawKey: String, _ value: String) throws {
        let key = rawKey.replacingOccurrences(of: "-", with: "_").lowercased()
        func num<T: LosslessStringConvertible>(_ t: T.Type) throws -> T {
            guard let v = T(value) else { throw ValidationError("config: '\(rawKey)' needs a \(T.self), got '\(value)'") }
            return v
        }
        func flag() throws -> Bool {
            switch value.lowercased() { case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: throw ValidationError("config: '\(rawKey)' needs true or false, got '\(value)'") }
        }
        switch key {
        case "model": model = value
        case "clusters": clusters = value
        case "label_key": labelKey = value
        case "seed": seed = try num(UInt64.self)
        case "batch_size": batchSize = try num(Int.self)
        case "lr", "learning_rate": lr = try num(Float.self)
        case "finetune_lr": finetuneLr = try num(Float.self)
        case "top_genes": topGenes = try num(Int.self)
        case "ensemble": ensemble = try num(Int.self)
        case "pretrain_epochs": scname.pretrainEpochs = try num(Int.self)
        case "epochs": scname.epochs = try num(Int.self)
        case "update_epoch": scname.updateEpoch = try num(Int.self)
        case "tolerance": scname.tolerance = try num(Double.self)
        case "mask_probability", "p_m": scname.maskProbability = try num(Float.self)
        case "neighbours", "neighbors", "k": scname.neighbours = try num(Int.self)
        case "temperature": scname.temperature = try num(Float.self)
        case "alpha": scname.alpha = try num(Float.self)
        case "beta": scname.beta = try num(Float.self)
        case "gamma": scname.gamma = try num(Float.self)
        case "ridge": scname.ridge = try num(Float.self)
        case "max_clusters": scname.maxClusters = try num(Int.self)
        case "shared_encoder": scname.sharedEncoder = try flag()
        case "reference_schedule": if try flag() { applyReferenceSchedule() }
        default: throw ValidationError("config: unknown key '\(rawKey)'")
        }
    }

    mutating func applyReferenceSchedule() {
        let r = SCNAME.Hyperparameters.reference
        scname.pretrainEpochs = r.pretrainEpochs; scname.epochs = r.epochs; scname.updateEpoch = r.updateEpoch
        batchSize = 128; lr = 1e-4; finetuneLr = nil
    }

    /// A flat YAML mapping (`key: value` per line, `#` comments, optional quotes).
    static func parseYAML(_ text: String) throws -> [(String, String)] {
        var out: [(String, String)] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = String(raw)
            if let h = line.firstIndex(of: "#") { line = String(line[..<h]) }
            line = line.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line == "---" { continue }
            guard let c = line.firstIndex(of: ":") else { throw ValidationError("config line \(n + 1): expected 'key: value'") }
            let k = line[..<c].trimmingCharacters(in: .whitespaces)
            var v = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces)
            if v.count >= 2, let f = v.first, (f == "\"" || f == "'"), v.last == f { v = String(v.dropFirst().dropLast()) }
            guard !k.isEmpty, !v.isEmpty else { throw ValidationError("config line \(n + 1): expected 'key: value'") }
            out.append((k, v))
        }
        return out
    }
}

struct Cluster: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a clustering model and cluster the cells of an .h5ad file.",
        discussion: """
            Reads INPUT (each rank its rows), preprocesses it (cells with no counts removed; \
            normalize_total to the median library size; log1p; highly variable genes; per-gene \
            scaling folded into the first layer), trains the model data-parallel (the global batch \
            does not depend on the rank count), clusters the embedding and writes OUTPUT: the input's \
            obs/var plus obs['syncytium_cluster'] (categorical), obsm['X_syncytium'] (float32) and \
            uns['syncytium'] (resolved parameters and metrics). With --label-key, ARI / NMI / ACC \
            against that column are printed; labels never influence training or the choice of K.

            Settings are resolved as: defaults ← --config FILE.yaml (flat 'key: value' lines whose \
            keys mirror the options, e.g. 'pretrain_epochs: 60', plus the model's hyperparameters \
            'mask_probability', 'neighbours', 'temperature', 'alpha', 'beta', 'gamma', 'ridge', \
            'update_epoch', 'tolerance', 'max_clusters', 'shared_encoder', 'reference_schedule', 'ensemble', 'finetune_lr') ← \
            command-line options.

            scNAME defaults (reference values in brackets): 1000 HVGs [1000], batch 256 [128], \
            Adam lr 1e-3 [1e-4], 40 pretraining epochs [500], at most 40 fine-tuning epochs [1000] \
            with the label-change check every 5 epochs [50], p_m 0.3, k 10, T 0.7, α 1, β 0.1, γ 0.1, \
            one encoder trunk shared by both branches (shared_encoder: false for the reference code's two). \
            --reference-schedule restores the bracketed schedule.

            SIGTERM or SIGUSR1 stop the run at the next step boundary after a checkpoint (exit \
            status 75); rerun with --resume auto to continue.
            """)

    @Argument(help: "Input .h5ad / 10x .h5 file.") var input: String
    @Option(help: "Model (default: scname).") var model: String?
    @Option(help: "Output .h5ad (default: none, only metrics are printed).") var output: String?
    @Option(help: "Number of clusters, or 'auto' to estimate it by silhouette on the pretrained embedding (default: auto).")
    var clusters: String?
    @Option(help: "obs column with reference labels, for ARI/NMI/ACC only (default: none).") var labelKey: String?
    @Option(help: "YAML file of settings; options given here override it (default: none).") var config: String?
    @Option(help: "Seed for parameters, batches, corruption and clustering (default: 0).") var seed: UInt64?
    @Option(help: "Pretraining epochs (default: 40; reference 500).") var pretrainEpochs: Int?
    @Option(help: "Maximum fine-tuning epochs (default: 40; reference 1000).") var epochs: Int?
    @Option(help: "Cells per optimiser step over all ranks (default: 256; reference 128).") var batchSize: Int?
    @Option(help: "Adam learning rate (default: 1e-3; reference 1e-4).") var lr: Float?
    @Option(help: "Adam learning rate of the fine-tuning phase (default: the --lr value; reference 1e-4).") var finetuneLr: Float?
    @Option(help: "Highly variable genes (default: 1000).") var topGenes: Int?
    @Option(help: ArgumentHelp("Models trained with seeds S, S+1, …; their embeddings (each scaled to unit mean norm) are concatenated and clustered by k-means (default: 1).",
                               discussion: "Averages out the run-to-run variation of a single model at R times the training cost. With 1 the model's own learned centres give the clusters."))
    var ensemble: Int?
    @Flag(help: "Use the reference schedule: 500 + 1000 epochs, batch 128, lr 1e-4, check every 50 epochs.")
    var referenceSchedule = false
    @Option(help: "Checkpoint folder (written every epoch and on SIGTERM/SIGUSR1) (default: none).") var checkpointDir: String?
    @Option(help: "'auto': continue from the newest complete checkpoint in --checkpoint-dir (default: none).") var resume: String?
    @Option(help: "JSONL metrics log, rank 0 (default: none).") var metrics: String?

    func validate() throws {
        if let r = resume, r != "auto" { throw ValidationError("--resume takes 'auto'") }
        if resume != nil && checkpointDir == nil { throw ValidationError("--resume auto needs --checkpoint-dir") }
    }

    func resolve() throws -> ClusterSettings {
        var s = ClusterSettings()
        if let path = config {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            for (k, v) in try ClusterSettings.parseYAML(text) { try s.set(k, v) }
        }
        if referenceSchedule { s.applyReferenceSchedule() }
        if let v = model { s.model = v }
        if let v = clusters { s.clusters = v }
        if let v = labelKey { s.labelKey = v }
        if let v = seed { s.seed = v }
        if let v = pretrainEpochs { s.scname.pretrainEpochs = v }
        if let v = epochs { s.scname.epochs = v }
        if let v = batchSize { s.batchSize = v }
        if let v = lr { s.lr = v }
        if let v = finetuneLr { s.finetuneLr = v }
        if let v = topGenes { s.topGenes = v }
        if let v = ensemble { s.ensemble = v }
        guard s.ensemble >= 1 else { throw ValidationError("--ensemble takes an integer ≥ 1") }
        guard s.model.lowercased() == SCNAME.name else { throw ValidationError("unknown model '\(s.model)': available: scname") }
        if s.clusters.lowercased() == "auto" { s.scname.clusters = 0 } else {
            guard let k = Int(s.clusters), k >= 2 else { throw ValidationError("--clusters takes an integer ≥ 2 or 'auto'") }
            s.scname.clusters = k
        }
        s.scname.seed = s.seed
        return s
    }

    func run() throws {
        let comm = Communicator.world
        StopSignal.install()
        keepAllocationsOnHeap()
        let settings = try resolve()
        let stopped: Bool = comm.orAbort {
            let t0 = Communicator.time()
            var po = PreprocessOptions(); po.topGenes = settings.topGenes; po.seed = settings.seed; po.targetSum = nil
            let data = try InputPipeline.load(input, labelKey: settings.labelKey, options: po, comm: comm)
            if comm.rank == 0 {
                writeStderr("\(input): \(data.cells) cells × \(data.genes) genes on \(comm.size) rank(s)\n")
            }
            let json = String(decoding: try JSONEncoder().encode(settings), as: UTF8.self)
            // Only the first member's model and trainer are kept (for K, the epoch count and a single
            // model's own assignment); the others are released after their embedding is taken.
            var first: (model: SCNAME, trainer: Trainer)?
            var embeddings: [Tensor] = []
            for member in 0..<settings.ensemble {
                var h = settings.scname
                h.seed = settings.seed &+ UInt64(member)
                let model = try SCNAME(input: data, hyperparameters: h, comm: comm)
                var cfg = TrainerConfig()
                cfg.epochs = model.totalEpochs; cfg.globalBatch = settings.batchSize; cfg.learningRate = settings.lr
                cfg.seed = h.seed; cfg.metricsPath = metrics
                if let f = settings.finetuneLr, f != settings.lr {
                    cfg.learningRateDropEpoch = h.pretrainEpochs; cfg.learningRateFactorAfter = f / settings.lr
                }
                cfg.checkpointDirectory = checkpointDir.map { settings.ensemble > 1 ? "\($0)/member-\(member)" : $0 }
                cfg.runConfig = json
                if settings.ensemble > 1 && comm.rank == 0 { writeStderr("ensemble member \(member + 1) of \(settings.ensemble), seed \(h.seed)\n") }
                let trainer = try Trainer(task: model, config: cfg, cellIds: data.cellIds, idSpace: data.cells, comm: comm)
                if resume == "auto", let ck = try trainer.resumeIfPossible(), comm.rank == 0 {
                    writeStderr("resumed from \(ck.path) at epoch \(trainer.epoch + 1), step \(trainer.stepInEpoch + 1)\n")
                }
                let outcome = try trainer.run()
                if case .stopped(let ck) = outcome {
                    if comm.rank == 0 { writeStderr("stopped by signal after checkpoint \(ck)\n") }
                    return true
                }
                embeddings.append(try model.embedding(comm: comm))
                if first == nil { first = (model, trainer) }
            }
            let (model, trainer) = first!
            let z: Tensor, pred: [Int32]
            if embeddings.count == 1 {
                z = embeddings[0]
                pred = try model.clusterAssignment(comm: comm)
            } else {
                z = try EnsembleEmbedding.concatenate(embeddings, comm: comm)
                if !model.centresReady { try model.initialiseCentres() }
                let km = try KMeans(k: model.k, restarts: 10, seed: settings.seed)
                    .fit(PointShard(values: z.scalars, count: z.rows, dim: z.cols), comm: comm)
                pred = km.labels
            }
            let seconds = Communicator.time() - t0
            var metricsUns: [(String, UnsValue)] = [("clusters", .integer(Int64(model.k))),
                                                    ("epochs_run", .integer(Int64(trainer.epoch))),
                                                    ("seconds", .number(seconds))]
            if !model.lastLabelChange.isNaN { metricsUns.append(("last_label_change", .number(model.lastLabelChange))) }
            if let est = model.estimatedK {
                metricsUns.append(("estimated_clusters", .integer(Int64(est.best))))
                if comm.rank == 0 { writeStderr("estimated K = \(est.best) (silhouette)\n") }
            }
            if let labels = data.labels {
                let truth = try comm.allgatherv(labels.map(Int64.init)).values.map(Int.init)
                let all = try comm.allgatherv(pred.map(Int64.init)).values.map(Int.init)
                let init0 = try comm.allgatherv(model.initialLabels.map(Int64.init)).values.map(Int.init)
                let keep = truth.indices.filter { truth[$0] >= 0 }
                let t = keep.map { truth[$0] }, p = keep.map { all[$0] }
                let ari = ClusterMetrics.adjustedRandIndex(t, p), nmi = ClusterMetrics.normalizedMutualInformation(t, p)
                let acc = ClusterMetrics.accuracy(t, p)
                metricsUns += [("ari", .number(ari)), ("nmi", .number(nmi)), ("acc", .number(acc))]
                if comm.rank == 0 {
                    if init0.count == truth.count && embeddings.count == 1 {
                        let pi = keep.map { init0[$0] }
                        print("pretrained k-means: ARI \(fmt(ClusterMetrics.adjustedRandIndex(t, pi), 4))  NMI \(fmt(ClusterMetrics.normalizedMutualInformation(t, pi), 4))")
                    }
                    print("ARI \(fmt(ari, 4))  NMI \(fmt(nmi, 4))  ACC \(fmt(acc, 4))  (scNAME\(embeddings.count > 1 ? " ensemble of \(embeddings.count)" : ""), K = \(model.k), \(trainer.epoch) epochs, \(fmt(seconds, 1)) s)")
                }
            } else if comm.rank == 0 {
                print("K = \(model.k), \(trainer.epoch) epochs, \(fmt(seconds, 1)) s")
            }
            if let out = output {
                var req = WriteRequest(shard: data.shard)
                req.clusters = pred
                req.embedding = z.scalars
                req.embeddingDim = z.cols
                req.uns = [("model", .string(SCNAME.name)), ("params", .string(json)), ("metrics", .dict(metricsUns)),
                           ("ranks", .integer(Int64(comm.size)))]
                try CellWriter.write(out, req, comm: comm)
                if comm.rank == 0 { writeStderr("wrote \(out)\n") }
            }
            return false
        }
        if stopped { comm.finalize(); throw ExitCode(StopSignal.exitCode) }
    }
}

