// The pipelines called as library functions (no binary): a simulated file through `cluster`, and
// the printed spec fed back reproduces the run exactly.
import CellData
import Clustering
import Collectives
import Foundation
import Neighbors
import Settings
import XCTest
@testable import Pipelines

/// A small deterministic generator for test data.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9; z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class RunTests: XCTestCase {
    let comm = Communicator.world

    func simulated() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pipelines-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("sim.h5ad").path
        var s = SimulationSpec()
        s.cells = 300; s.genes = 150; s.types = 3; s.rareTypes = 0; s.batches = 1; s.seed = 4
        _ = try SimulateRun.run(s, output: path, gzip: nil, comm: comm)
        return path
    }

    /// Scores from the summed contingency table equal the metrics of the gathered labels (sklearn's
    /// definitions, ClusterMetrics): codes with gaps, missing labels (−1) and a cluster without cells.
    func testScoresFromTheTableEqualTheGatheredLabels() throws {
        var rng = SplitMix(seed: 11)
        for trial in 0..<20 {
            let n = 50 + trial * 37
            let truth = (0..<n).map { _ in rng.next() % 9 == 0 ? Int32(-1) : Int32([0, 2, 3, 7][Int(rng.next() % 4)]) }
            let pred = (0..<n).map { i in truth[i] >= 0 && rng.next() % 3 != 0 ? truth[i] / 2 : Int32(rng.next() % 5) }
            let got = try Scores.compute(truth: truth, pred: pred, comm: comm)
            let keep = (0..<n).filter { truth[$0] >= 0 && pred[$0] >= 0 }
            let t = keep.map { Int(truth[$0]) }, p = keep.map { Int(pred[$0]) }
            XCTAssertEqual(got.ari, ClusterMetrics.adjustedRandIndex(t, p), accuracy: 1e-12, "trial \(trial)")
            XCTAssertEqual(got.nmi, ClusterMetrics.normalizedMutualInformation(t, p), accuracy: 1e-12, "trial \(trial)")
            XCTAssertEqual(got.acc, ClusterMetrics.accuracy(t, p), accuracy: 1e-12, "trial \(trial)")
        }
        let perfect = try Scores.compute(truth: [4, 4, 9, 9, 1], pred: [0, 0, 3, 3, 1], comm: comm)
        XCTAssertEqual(perfect, Scores(ari: 1, nmi: 1, acc: 1))
    }

    func testClusterRunAndItsPrintedSpecReproduceEachOther() throws {
        let input = try simulated()
        let out = input.replacingOccurrences(of: "sim.h5ad", with: "out.h5ad")
        let words = [input, "--clusters", "3", "--pretrain-epochs", "2", "--epochs", "2", "--batch-size", "64", "--top-genes", "100",
                     "--label-key", "cell_type", "--output", out, "--dims", "32,8"]
        let spec = try SettingsResolver.resolve(ClusterSpec.self, words: words, positionals: ["data.input"])
        let a = try ClusterRun.run(spec, comm: comm)
        XCTAssertTrue(a.completed)
        XCTAssertEqual(a.clusters, 3)
        XCTAssertEqual(a.embedding.cols, 8)
        XCTAssertEqual(a.assignment.count, 300)
        XCTAssertTrue(a.assignment.allSatisfy { (0..<3).contains($0) })
        XCTAssertNotNil(a.scores)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out))
        let again = try SettingsResolver.resolve(ClusterSpec.self, yaml: RunSpecs.yaml(spec), file: "printed.yaml")
        let b = try ClusterRun.run(again, comm: comm)
        XCTAssertEqual(a.assignment, b.assignment)
        XCTAssertEqual(a.embedding.scalars, b.embedding.scalars)
        // The output's input guard: the result may not replace the input.
        var onto = spec; onto.output.path = input
        XCTAssertThrowsError(try ClusterRun.run(onto, comm: comm)) { e in
            XCTAssertTrue("\(e)".contains("is the input file"), "\(e)")
        }
    }

    /// clusters auto without a model head (kmeans) and with Leiden: K and the resolution are the
    /// Leiden-stability choice on the final embedding (StableResolution), recomputed here from it.
    func testClustersAutoTakesTheStableResolutionOfTheEmbedding() throws {
        let input = try simulated()
        for method in ["kmeans", "leiden"] {
            let out = input.replacingOccurrences(of: "sim.h5ad", with: "auto-\(method).h5ad")
            let words = [input, "--clusters", "auto", "--pretrain-epochs", "2", "--epochs", "0", "--batch-size", "64", "--top-genes", "100",
                         "--cluster-method", method, "--output", out, "--dims", "32,8", "--layout", "none"]
            let spec = try SettingsResolver.resolve(ClusterSpec.self, words: words, positionals: ["data.input"])
            let a = try ClusterRun.run(spec, comm: comm)
            let z = a.embedding
            let choice = try StableResolution.choose(points: PointShard(values: z.scalars, count: z.rows, dim: z.cols),
                                                     maxClusters: spec.clustering.maxClusters, seed: spec.seed, comm: comm)
            XCTAssertEqual(a.clusters, choice.clusters, "\(method): \(StableResolution.describe(choice))")
            XCTAssertEqual(Set(a.assignment).count, a.clusters, method)
            if method == "leiden" { XCTAssertEqual(a.leiden?.resolution, choice.resolution) }
        }
    }
}
