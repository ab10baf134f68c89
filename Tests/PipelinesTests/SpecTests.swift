// Run specs: YAML and options give the same spec, every key can be set, errors name the key,
// --print-config reads back to the same spec, and the model registry drives the model section.
import Models
import Settings
import Training
import XCTest
@testable import Pipelines

final class SpecTests: XCTestCase {
    /// Every key of `cluster`, each set to a value other than its default.
    let everyKey = """
        seed: 11
        log_level: debug
        data:
          input: in.h5ad
          counts: layers/counts
          label_key: cell_type
          batch_key: donor
        preprocess:
          min_counts: 2
          min_genes: 3
          min_cells: 4
          target_sum: 5000
          top_genes: 500
          flavor: cell_ranger
        model:
          name: scname
          mask_probability: 0.25
          neighbours: 7
          temperature: 0.5
          dims: [128, 32, 16]
          alpha: 0.5
          beta: 0.2
          gamma: 0.3
          ridge: 0.5
          pretrain_epochs: 3
          epochs: 4
          update_epoch: 2
          tolerance: 0.01
          shared_encoder: false
          finetune_lr_scale: 0.5
          bank_loss: sampled
          exact_bank_limit: 1000
          bank_negatives: 256
        trainer:
          batch_size: 64
          lr: 0.0005
          schedule: cosine
          warmup_steps: 10
          optimizer: sgd
          weight_decay: 0.01
          momentum: 0.5
          clip_norm: 1.5
          accumulation: 2
          reduction: bucketed
          bucket_mib: 2
          max_steps: 100
          checkpoint_dir: ck
          checkpoint_every: 2
          keep_checkpoints: 3
          resume: auto
          metrics: m.jsonl
        clustering:
          clusters: 9
          max_clusters: 12
          ensemble: 2
          restarts: 5
          cluster_method: leiden
          resolution: 0.8
          neighbors: 10
          neighbors_method: approximate
          layout: none
          layout_epochs: 50
        output:
          path: out.h5ad
          overwrite_input: true
          results_only: true
        figures:
          plot: figs
          plot_basis: X_pca
        """

    let everyOption = ["in.h5ad", "--seed", "11", "--log-level", "debug", "--counts", "layers/counts", "--label-key", "cell_type", "--batch-key", "donor",
                       "--min-counts", "2", "--min-genes", "3", "--min-cells", "4", "--target-sum", "5000", "--top-genes", "500",
                       "--flavor", "cell_ranger", "--model", "scname", "--mask-probability", "0.25", "--neighbours", "7",
                       "--temperature", "0.5", "--dims", "128,32,16", "--alpha", "0.5", "--beta", "0.2", "--gamma", "0.3",
                       "--ridge", "0.5", "--pretrain-epochs", "3", "--epochs", "4", "--update-epoch", "2", "--tolerance", "0.01",
                       "--no-shared-encoder", "--finetune-lr-scale", "0.5", "--bank-loss", "sampled",
                       "--exact-bank-limit", "1000", "--bank-negatives", "256", "--batch-size", "64", "--lr", "0.0005",
                       "--schedule", "cosine", "--warmup-steps", "10", "--optimizer", "sgd", "--weight-decay", "0.01",
                       "--momentum", "0.5", "--clip-norm", "1.5", "--accumulation", "2", "--reduction", "bucketed",
                       "--bucket-mib", "2", "--max-steps", "100", "--checkpoint-dir", "ck", "--checkpoint-every", "2",
                       "--keep-checkpoints", "3", "--resume", "auto", "--metrics", "m.jsonl", "--clusters", "9",
                       "--max-clusters", "12", "--ensemble", "2", "--restarts", "5", "--cluster-method", "leiden", "--resolution", "0.8",
                       "--neighbors", "10", "--neighbors-method", "approximate", "--layout", "none", "--layout-epochs", "50", "--output", "out.h5ad", "--overwrite-input", "--results-only",
                       "--plot", "figs", "--plot-basis", "X_pca"]

    func resolve(_ yaml: String? = nil, _ words: [String] = []) throws -> ClusterSpec {
        try SettingsResolver.resolve(ClusterSpec.self, yaml: yaml, file: "run.yaml", words: words, positionals: ["data.input"])
    }

    func testYAMLSettingEveryKeyEqualsTheSameOptions() throws {
        let fromYAML = try resolve(everyKey)
        let fromOptions = try resolve(nil, everyOption)
        XCTAssertEqual(RunSpecs.yaml(fromYAML), RunSpecs.yaml(fromOptions))
        // Every key really is set: no resolved value equals its default.
        let defaults = SettingsSchema.leaves(of: ClusterSpec()), set = SettingsSchema.leaves(of: fromYAML)
        XCTAssertEqual(defaults.map(\.key), set.map(\.key))
        for (d, s) in zip(defaults, set) where d.key != "model.name" {
            XCTAssertNotEqual(d.defaultValue.settingText, s.defaultValue.settingText, "\(d.key) is not set by the fixture")
        }
        XCTAssertEqual(fromYAML.trainer.reduction, .bucketed)
        XCTAssertEqual(fromYAML.clustering.clusters, .fixed(9))
        let h = try XCTUnwrap(fromYAML.model.hyperparameters as? SCNAMEHyperparameters)
        XCTAssertEqual(h.dims, [128, 32, 16]); XCTAssertFalse(h.sharedEncoder)
    }

    func testPrintedSpecReadsBack() throws {
        for s in [try resolve(nil, ["in.h5ad"]), try resolve(everyKey)] {
            let text = RunSpecs.yaml(s)
            let back = try resolve(text)
            XCTAssertEqual(RunSpecs.yaml(back), text)
        }
    }

    func oneLineError(_ yaml: String?, _ words: [String] = [], naming parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try resolve(yaml, words), file: file, line: line) { e in
            let text = "\(e)"
            XCTAssertFalse(text.contains("\n"), text, file: file, line: line)
            for p in parts { XCTAssertTrue(text.contains(p), "'\(text)' lacks '\(p)'", file: file, line: line) }
        }
    }

    func testBadSettingsGiveOneLineErrorsNamingTheKey() {
        oneLineError("trainer:\n  batch_sise: 3\n", naming: ["run.yaml:2", "unknown key 'trainer.batch_sise'"])
        oneLineError("trainer:\n  batch_size: many\n", naming: ["run.yaml:2", "trainer.batch_size", "expected an integer"])
        oneLineError("model:\n  epochs: -2\n", naming: ["run.yaml:2", "model.epochs", "must be ≥ 0", "-2"])
        oneLineError(nil, ["in.h5ad", "--epochs", "-2"], naming: ["--epochs -2", "model.epochs", "must be ≥ 0"])
        oneLineError(nil, ["in.h5ad", "--batch-size", "0"], naming: ["trainer.batch_size", "must be ≥ 1"])
        oneLineError(nil, ["in.h5ad", "--clusters", "1"], naming: ["clustering.clusters", "must be ≥ 2"])
        oneLineError(nil, ["in.h5ad", "--clusters", "many"], naming: ["clustering.clusters", "'auto' or a number"])
        oneLineError(nil, ["in.h5ad", "--plot", "figs"], naming: ["figures.plot", "--output"])
        oneLineError(nil, ["in.h5ad", "--output", "o.h5ad", "--plot", "/proc/version"], naming: ["figures.plot", "not a directory"])
        oneLineError(nil, ["in.h5ad", "--resume", "auto"], naming: ["trainer.resume", "checkpoint_dir"])
        oneLineError(nil, ["in.h5ad", "--model", "nosuch"], naming: ["model.name", "unknown model 'nosuch'", "scname"])
        oneLineError(nil, [], naming: ["data.input", "give the input file"])
        oneLineError(nil, ["in.h5ad", "--lr", "inf"], naming: ["trainer.lr", "finite"])
        oneLineError(nil, ["in.h5ad", "--cluster-method", "louvain"], naming: ["clustering.cluster_method", "model, kmeans, leiden"])
        oneLineError(nil, ["in.h5ad", "--resolution", "0.5"], naming: ["clustering.resolution", "leiden only"])
        oneLineError(nil, ["in.h5ad", "--cluster-method", "leiden", "--resolution", "-1"], naming: ["clustering.resolution", "must be > 0"])
        oneLineError(nil, ["in.h5ad", "--cluster-method", "leiden", "--neighbors", "null"], naming: ["clustering.neighbors", "leiden"])
        oneLineError(nil, ["in.h5ad", "--neighbors", "0"], naming: ["clustering.neighbors", "must be ≥ 1"])
        XCTAssertNoThrow(try resolve(nil, ["in.h5ad", "--cluster-method", "leiden", "--clusters", "8"]))
        XCTAssertNoThrow(try resolve(nil, ["in.h5ad", "--neighbors", "null"]))
    }

    func testModelSectionFollowsTheRegistry() throws {
        let names = ModelRegistry.entries.map(\.name)
        XCTAssertEqual(Set(names).count, names.count)
        let mlp = try resolve(nil, ["in.h5ad", "--model", "mlp-ae", "--hidden", "64,8"])
        XCTAssertTrue(mlp.model.hyperparameters is MLPAutoencoder.Hyperparameters)
        XCTAssertTrue(RunSpecs.yaml(mlp).contains("hidden: [64, 8]"))
        XCTAssertFalse(RunSpecs.yaml(mlp).contains("mask_probability"))
        // scNAME's keys do not exist for another model.
        oneLineError(nil, ["in.h5ad", "--model", "mlp-ae", "--mask-probability", "0.2"], naming: ["--mask-probability", "unknown option"])
        XCTAssertEqual(try resolve(nil, ["in.h5ad"]).model.name, "scname")
        let train = try SettingsResolver.resolve(TrainSpec.self, words: ["in.h5ad"], positionals: ["data.input"])
        XCTAssertEqual(train.model.name, "mlp-ae")
    }

    func testEverySpecHasASchemaAndDefaultsValidate() throws {
        for (name, leaves) in [("cluster", SettingsSchema.leaves(of: ClusterSpec())), ("train", SettingsSchema.leaves(of: TrainSpec())),
                               ("knn", SettingsSchema.leaves(of: KNNSpec())), ("preprocess", SettingsSchema.leaves(of: PreprocessSpec()))] {
            XCTAssertEqual(Set(leaves.map(\.key)).count, leaves.count, "\(name): a key declared twice")
            XCTAssertTrue(leaves.allSatisfy { !$0.help.isEmpty }, "\(name): every key has help")
        }
        // The options the scripts and tests use are unambiguous in their command.
        _ = try SettingsResolver.resolve(KNNSpec.self, words: ["a.h5ad", "--output", "b.h5ad", "--kmeans", "auto", "--neighbors", "9"],
                                         positionals: ["data.input"])
        let p = try SettingsResolver.resolve(PreprocessSpec.self, words: ["a.h5ad", "b.h5ad", "--pca", "30", "--neighbors", "15",
                                                                          "--clusters-from", "cell_type", "--top-genes", "5"],
                                             positionals: ["data.input", "output.path"])
        XCTAssertEqual(p.output.path, "b.h5ad"); XCTAssertEqual(p.scaled.pca, 30)
    }

    /// The kNN graphs' default search: exact up to KNNMethod.exactLimit cells, approximate above; an
    /// explicit choice is kept at any size.
    func testAutoKNNMethodSwitchesAtItsLimit() throws {
        XCTAssertEqual(ClusterSpec().clustering.neighborsMethod, .auto)
        XCTAssertEqual(KNNSpec().knn.method, .auto)
        let limit = KNNMethod.exactLimit
        XCTAssertEqual(KNNMethod.auto.resolved(cells: limit), .exact)
        XCTAssertEqual(KNNMethod.auto.resolved(cells: limit + 1), .approximate)
        XCTAssertEqual(KNNMethod.exact.resolved(cells: 10 * limit), .exact)
        XCTAssertEqual(KNNMethod.approximate.resolved(cells: 10), .approximate)
    }

    func testReferenceScheduleFile() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../configs/scname-reference.yaml")
        let s = try resolve(try SettingsResolver.readConfig(url.path), ["in.h5ad"])
        let h = try XCTUnwrap(s.model.hyperparameters as? SCNAMEHyperparameters)
        XCTAssertEqual([h.pretrainEpochs, h.epochs, h.updateEpoch, s.trainer.batchSize], [500, 1000, 50, 128])
        XCTAssertEqual(s.trainer.lr, 1e-4)
    }
}
