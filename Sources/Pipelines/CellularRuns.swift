// `embed` and `annotate`: train a supervised embedding once (CELLULAR), save it, and apply it later to
// other files on any rank count — an embedding, then cell types, confidences, novelty and per-type
// representations.
import CellData
import Clustering
import Collectives
import Foundation
import Models
import Settings
import TensorCore
import Training

public enum EmbedDefaultModel: DefaultModel { public static let name = "cellular" }

/// `saved:` — where a trained model goes to or comes from.
public struct SavedModelSettings: SettingsSection, Equatable {
    @Setting("Write the trained model to this folder (null: do not save).")
    public var saveModel: String? = nil
    @Setting("Apply the model saved in this folder instead of training (null: train).")
    public var loadModel: String? = nil
    public init() {}
}

/// `syncytium embed`: train a model (default CELLULAR, supervised) and save it, or apply a saved one.
public struct EmbedSpec: SettingsSection {
    @Setting("Seed for parameters, batches, dropout and the validation split.")
    public var seed: UInt64 = 42
    @Setting("Log level: trace, debug, info, notice, warning, error.")
    public var logLevel = LogLevel.info
    public var data = DataSettings()
    public var preprocess = PreprocessOptions()
    public var model = ModelSection<EmbedDefaultModel>()
    public var trainer = TrainerConfig()
    public var saved = SavedModelSettings()
    public var output = OutputSettings()
    public init() {
        // CELLULAR's reference: 2,000 cell_ranger HVGs of log1p-normalised data, Adam with weight decay 5e-5.
        preprocess.flavor = .cellRanger
        trainer.weightDecay = 5e-5
    }
    public func validate() throws {
        if saved.saveModel != nil && saved.loadModel != nil {
            throw SettingsError(key: "saved.save_model", "give either --save-model (train) or --load-model (apply), not both")
        }
        if saved.loadModel == nil && saved.saveModel == nil && output.path == nil {
            throw SettingsError(key: "output.path", "nothing would be kept: give --output FILE and/or --save-model DIR")
        }
    }
}

/// `representations:` of `annotate`.
public struct RepresentationSettings: SettingsSection, Equatable {
    @Setting("Per predicted type: centroid, median (coordinate-wise) or medoid of the embedding (reference: centroid).")
    public var kind = CELLULARRepresentations.Kind.centroid
    @Setting("Also write them as CSV (one row per type) to this file (null: only uns).")
    public var csv: String? = nil
    public init() {}
}

/// `syncytium annotate`: cell types, confidences, novelty and representations from a saved model.
public struct AnnotateSpec: SettingsSection {
    @Setting("Seed of the classifier (parameters, batches, dropout).")
    public var seed: UInt64 = 42
    @Setting("Log level: trace, debug, info, notice, warning, error.")
    public var logLevel = LogLevel.info
    public var data = DataSettings()
    public var saved = SavedModelSettings()
    public var classifier = CELLULARClassifierSettings()
    public var trainer = TrainerConfig()
    public var representations = RepresentationSettings()
    public var output = OutputSettings()
    public init() { trainer.weightDecay = 5e-5 }
    public func validate() throws {
        if saved.loadModel == nil { throw SettingsError(key: "saved.load_model", "annotate needs a saved model (--load-model DIR)") }
        if saved.saveModel != nil { throw SettingsError(key: "saved.save_model", "annotate adds its classifier to the --load-model folder") }
    }
}

public struct EmbedResult: Sendable {
    public var completed: Bool
    public var cells: Int
    public var embedding: Tensor
    public var missingGenes: Int
    public var epochs: Int
    public var seconds: Double
    public var savedModel: String?
}

public struct AnnotateResult: Sendable {
    public var cells: Int
    public var types: [String]
    public var predicted: [Int32]
    public var scores: ClassificationMetrics.Scores?
    public var novelCells: Int
    /// The reference's dataset-level flag and the statistic behind it.
    public var novelTypeFlag: Bool
    public var minRescaledConfidence: Double
    public var noveltyScores: [Float]
    public var classifierTrained: Bool
    public var seconds: Double
}

public enum CellularRuns {
    /// Collective: a query file as a model's input: its preprocessing, then its genes mapped by name.
    static func loadQuery(_ data: DataSettings, _ meta: CELLULARSavedModel, comm: Communicator) throws -> (Dataset, GeneMapping) {
        var source = data
        source.counts = data.counts == "X" ? meta.counts : data.counts
        var pre = meta.preprocess
        pre.topGenes = 0; pre.minCells = 0     // every gene; the model's are picked by name
        let ds = try Dataset.load(source, preprocess: pre, comm: comm)
        let mapped = try agreeing(comm) { try GeneMapping.map(ds.x, names: ds.shard.geneNames, onto: meta.genes, file: data.input) }
        if mapped.missing > 0 {
            log.warning("\(data.input): \(mapped.missing) of the model's \(meta.genes.count) genes are not in this file; their values are 0")
        }
        return (ds, mapped)
    }

    /// Collective: a saved model applied to `mapping`'s cells.
    static func loadModel(_ dir: String, _ meta: CELLULARSavedModel, mapping: GeneMapping, cellIds: [Int64], comm: Communicator) throws -> CELLULAR {
        let m = try CELLULAR(x: mapping.matrix, cellIds: cellIds, genes: meta.genes, labels: nil, labelNames: meta.labels, batches: nil,
                             batchNames: meta.batches, statistics: meta.statistics, hyperparameters: meta.hyperparameters, seed: meta.seed, comm: comm)
        try agreeing(comm) { try m.store.load(serialized: try CELLULARSavedModel.readBlob(dir, "parameters.bin")) }
        return m
    }

    public static func embed(_ spec: EmbedSpec, comm: Communicator) throws -> EmbedResult {
        if let out = spec.output.path {
            try OutputCheck.verify(output: out, input: spec.data.input, overwriteInput: spec.output.overwriteInput, comm: comm)
        }
        let t0 = Communicator.time()
        let runSpec = RunSpecs.yaml(spec)
        var shard: CellShard, embedding: Tensor, missing = 0, epochs = 0
        var completed = true
        let name: String
        if let dir = spec.saved.loadModel {
            let meta = try agreeing(comm) { try CELLULARSavedModel.read(dir) }
            let (ds, mapping) = try loadQuery(spec.data, meta, comm: comm)
            let model = try loadModel(dir, meta, mapping: mapping, cellIds: ds.cellIds, comm: comm)
            embedding = try model.embedding(comm: comm)
            shard = ds.shard; missing = mapping.missing; name = CELLULAR.name
        } else {
            let data = try Dataset.load(spec.data, preprocess: spec.preprocess, comm: comm)
            log.info("\(spec.data.input): \(data.cells) cells × \(data.genes) genes on \(comm.size) rank(s)")
            let entry = try spec.model.entry
            name = entry.name
            let context = ModelContext(seed: spec.seed, clusters: nil, maxClusters: 20)
            let model = try entry.make(input: data, hyperparameters: spec.model.hyperparameters, context: context, comm: comm)
            let (trainer, outcome) = try train(model, config: spec.trainer, seed: spec.seed, runSpec: runSpec, data: data, comm: comm)
            epochs = trainer.epoch
            if case .stopped = outcome {
                return EmbedResult(completed: false, cells: data.cells, embedding: Tensor(rows: 0, cols: 0), missingGenes: 0,
                                   epochs: epochs, seconds: Communicator.time() - t0, savedModel: nil)
            }
            embedding = try model.embedding(comm: comm)
            shard = data.shard
            if let dir = spec.saved.saveModel {
                guard let c = model as? CELLULAR else {
                    throw CellDataError("--save-model: saving is implemented for the cellular model (this run trained \(name))")
                }
                let meta = CELLULARSavedModel(version: SyncytiumInfo.version, genes: c.genes, labels: c.labelNames, batches: c.batchNames,
                                              hyperparameters: c.hyperparameters, preprocess: spec.preprocess, counts: spec.data.counts,
                                              statistics: c.statistics, seed: spec.seed, spec: runSpec, trainingInput: spec.data.input,
                                              labelKey: spec.data.labelKey ?? "", batchKey: spec.data.batchKey)
                try meta.write(to: dir, blobs: ["parameters.bin": c.store.serialized()], comm: comm)
                log.info("saved the model to \(dir)")
            }
        }
        let result = EmbedResult(completed: completed, cells: shard.nObs, embedding: embedding, missingGenes: missing, epochs: epochs,
                                 seconds: Communicator.time() - t0, savedModel: spec.saved.saveModel)
        if let out = spec.output.path {
            var req = WriteRequest(shard: shard)
            req.obsm = [("X_\(name)", embedding.scalars, embedding.cols)]
            req.uns = [("version", .string(SyncytiumInfo.version)), ("model", .string(name)), ("spec", RunSpecs.uns(spec)),
                       ("spec_yaml", .string(runSpec)), ("metrics", .dict([("missing_genes", .integer(Int64(missing))),
                                                                          ("epochs_run", .integer(Int64(epochs)))]))]
            try CellWriter.write(out, req, comm: comm)
            log.info("wrote \(out)")
        }
        completed = true
        return result
    }

    /// Collective: trains the classifier and novelty model on the training file recorded in the saved
    /// model, and adds them to the model directory.
    static func trainClassifier(_ dir: String, _ meta: CELLULARSavedModel, spec: AnnotateSpec, comm: Communicator) throws -> CELLULARSavedModel {
        var source = DataSettings()
        source.input = meta.trainingInput; source.counts = meta.counts; source.labelKey = meta.labelKey
        log.info("training the classifier on \(meta.trainingInput) (once; saved with the model)")
        let (ds, mapping) = try loadQuery(source, meta, comm: comm)
        guard let labels = ds.labels else { throw CellDataError("\(meta.trainingInput): obs/\(meta.labelKey) is missing") }
        // Label codes of this file in the model's label order.
        let index = Dictionary(uniqueKeysWithValues: meta.labels.enumerated().map { ($1, Int32($0)) })
        let codes = labels.map { $0 >= 0 ? index[ds.labelNames[Int($0)]] ?? -1 : -1 }
        let model = try loadModel(dir, meta, mapping: mapping, cellIds: ds.cellIds, comm: comm)
        let e = try model.embedding(comm: comm)
        let types = meta.labels.count
        let validation = try StratifiedSplit.validationMask(ids: ds.cellIds, labels: codes, types: types,
                                                            fraction: meta.hyperparameters.validationFraction, seed: meta.seed, comm: comm)
        let clf = try CELLULARClassifier(embedding: e, cellIds: ds.cellIds, labels: codes, types: types, validation: validation,
                                         settings: spec.classifier, seed: spec.seed, comm: comm)
        let plan = TrainingPlan(epochs: spec.classifier.epochs, seed: spec.seed, runSpec: RunSpecs.yaml(spec),
                                epochSchedule: (spec.classifier.warmupEpochs, spec.classifier.epochs))
        var config = spec.trainer
        config.checkpointDir = nil; config.resume = .never
        let trainer = try Trainer(task: clf, config: config, plan: plan, cellIds: clf.trainingCells.ids, idSpace: clf.trainingCells.idSpace, comm: comm)
        _ = try trainer.run()
        clf.restoreBest()
        let train = zip(codes, validation).map { $0 >= 0 && !$1 }
        let novelty = try CELLULARNovelty.fit(embedding: e, labels: codes, types: types, train: train, validation: validation,
                                              quantile: spec.classifier.noveltyQuantile, comm: comm)
        var updated = meta
        updated.classifier = spec.classifier; updated.novelty = novelty
        try updated.write(to: dir, blobs: ["classifier.bin": clf.store.serialized()], comm: comm)
        return updated
    }

    public static func annotate(_ spec: AnnotateSpec, comm: Communicator) throws -> AnnotateResult {
        if let out = spec.output.path {
            try OutputCheck.verify(output: out, input: spec.data.input, overwriteInput: spec.output.overwriteInput, comm: comm)
        }
        let t0 = Communicator.time()
        let dir = spec.saved.loadModel!
        var meta = try agreeing(comm) { try CELLULARSavedModel.read(dir) }
        let trained = meta.classifier == nil
        if trained { meta = try trainClassifier(dir, meta, spec: spec, comm: comm) }
        let (ds, mapping) = try loadQuery(spec.data, meta, comm: comm)
        let model = try loadModel(dir, meta, mapping: mapping, cellIds: ds.cellIds, comm: comm)
        let e = try model.embedding(comm: comm)
        let types = meta.labels.count
        let settings = meta.classifier!
        let clf = try CELLULARClassifier(embedding: e, cellIds: ds.cellIds, labels: [Int32](repeating: -1, count: e.rows), types: types,
                                         validation: [Bool](repeating: false, count: e.rows), settings: settings, seed: spec.seed, comm: comm)
        try agreeing(comm) { try clf.store.load(serialized: try CELLULARSavedModel.readBlob(dir, "classifier.bin")) }
        let p = clf.probabilities()
        var predicted = [Int32](repeating: 0, count: e.rows), confidence = [Double](repeating: 0, count: e.rows)
        var minRescaled = Double.infinity
        let c = Double(types)
        for i in 0..<e.rows {
            var best = 0
            for k in 1..<types where p[i, k] > p[i, best] { best = k }
            predicted[i] = Int32(best); confidence[i] = Double(p[i, best])
            minRescaled = min(minRescaled, (confidence[i] - 1 / c) / (1 - 1 / c))
        }
        minRescaled = try comm.allreduce(value: minRescaled, op: .min)
        let flag = minRescaled < settings.noveltyFlagThreshold
        let novelty = meta.novelty!
        let scores = novelty.scores(e)
        let novel = scores.map { Double($0) > novelty.threshold }
        let nNovel = Int(try comm.allreduce(value: Int64(novel.filter { $0 }.count), op: .sum))
        var metrics: ClassificationMetrics.Scores? = nil
        if let labels = ds.labels {
            let index = Dictionary(uniqueKeysWithValues: meta.labels.enumerated().map { ($1, Int32($0)) })
            // Query types unknown to the model get a code no prediction has: wrong by definition, counted.
            let truth = labels.map { $0 >= 0 ? index[ds.labelNames[Int($0)]] ?? Int32(types) : -1 }
            var m = ClassificationMetrics.confusion(truth: truth.map(Int.init), predicted: predicted.map(Int.init), classes: types + 1)
            try comm.allreduce(&m, op: .sum)
            metrics = ClassificationMetrics.scores(confusion: m, classes: types + 1)
        }
        let reps = try CELLULARRepresentations.compute(e, groups: predicted, groupCount: types, kind: spec.representations.kind, comm: comm)
        let d = e.cols
        if let csv = spec.representations.csv, comm.rank == 0 {
            var text = "cell_type," + (0..<d).map { "dim\($0)" }.joined(separator: ",") + "\n"
            for k in 0..<types where !reps[k * d].isNaN {
                text += "\"\(meta.labels[k])\"," + (0..<d).map { String(reps[k * d + $0]) }.joined(separator: ",") + "\n"
            }
            try writeAtomically(Data(text.utf8), to: csv)
        }
        if let out = spec.output.path {
            var shard = ds.shard
            shard.obs.set("predicted_cell_type", .categorical(codes: predicted, categories: meta.labels, ordered: false))
            shard.obs.set("prediction_confidence", .numeric(confidence))
            shard.obs.set("novelty_score", .numeric(scores.map(Double.init)))
            shard.obs.set("novel_cell", .bools(novel))
            var req = WriteRequest(shard: shard)
            req.obsm = [("X_cellular", e.scalars, d), ("cellular_probabilities", p.scalars, types)]
            var repDict: [(String, UnsValue)] = []
            for k in 0..<types where !reps[k * d].isNaN { repDict.append((meta.labels[k], .array(reps[(k * d)..<((k + 1) * d)].map(Double.init), width: 0))) }
            var m: [(String, UnsValue)] = [("novel_cells", .integer(Int64(nNovel))), ("novelty_threshold", .number(novelty.threshold)),
                                           ("novel_type_flag", .string(flag ? "true" : "false")),
                                           ("min_rescaled_confidence", .number(minRescaled)), ("missing_genes", .integer(Int64(mapping.missing)))]
            if let s = metrics { m += [("accuracy", .number(s.accuracy)), ("balanced_accuracy", .number(s.balancedAccuracy)), ("weighted_f1", .number(s.weightedF1))] }
            req.uns = [("version", .string(SyncytiumInfo.version)), ("model", .string(CELLULAR.name)), ("spec", RunSpecs.uns(spec)),
                       ("spec_yaml", .string(RunSpecs.yaml(spec))), ("metrics", .dict(m)),
                       ("representations", .dict([("kind", .string(spec.representations.kind.rawValue)), ("vectors", .dict(repDict))]))]
            try CellWriter.write(out, req, comm: comm)
            log.info("wrote \(out)")
        }
        return AnnotateResult(cells: ds.cells, types: meta.labels, predicted: predicted, scores: metrics, novelCells: nNovel,
                              novelTypeFlag: flag, minRescaledConfidence: minRescaled, noveltyScores: scores, classifierTrained: trained,
                              seconds: Communicator.time() - t0)
    }
}
