// The pipelines called as library functions (no binary): a simulated file through `cluster`, and
// the printed spec fed back reproduces the run exactly.
import CellData
import Collectives
import Foundation
import Settings
import XCTest
@testable import Pipelines

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
}
