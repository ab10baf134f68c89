import XCTest
import Foundation
import Collectives
import HDF5IO
@testable import CellData

/// Every bad input gives a one-line CellDataError naming the file and the object.
final class BadInputTests: XCTestCase {
    let comm = Communicator.world

    func expectError(_ path: String, _ text: String, options: ReadOptions = ReadOptions(),
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try CellReader.read(path, comm: comm, options: options), file: file, line: line) { e in
            guard let c = e as? CellDataError else { return XCTFail("not a CellDataError: \(e)", file: file, line: line) }
            XCTAssertTrue(c.message.hasPrefix(path + ": "), "should name the file: \(c.message)", file: file, line: line)
            XCTAssertTrue(c.message.contains(text), "expected '\(text)' in: \(c.message)", file: file, line: line)
            XCTAssertFalse(c.message.contains("\n"), "one line: \(c.message)", file: file, line: line)
        }
    }

    /// A valid CSR .h5ad, then `edit` applied to its X group.
    func variant(_ name: String, _ edit: @escaping (H5Group) throws -> Void) throws -> String {
        let p = TestFiles.path("bad-\(name).h5ad")
        try TestFiles.writeH5ad(p, TestFiles.counts(rows: 10, cols: 6)) { root in try edit(try root.group("X")) }
        return p
    }

    func testFileLevelProblems() throws {
        let text = TestFiles.path("bad-text.h5ad")
        try "not hdf5".write(toFile: text, atomically: true, encoding: .utf8)
        expectError(text, "not an HDF5 file")
        let empty = TestFiles.path("bad-empty.h5ad")
        FileManager.default.createFile(atPath: empty, contents: Data())
        expectError(empty, "empty")
        expectError(TestFiles.path("bad-nonexistent.h5ad"), "does not exist")
        let good = TestFiles.path("bad-good.h5ad")
        try TestFiles.writeH5ad(good, TestFiles.counts(rows: 10, cols: 6))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        let trunc = TestFiles.path("bad-trunc.h5ad")
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: trunc))
        expectError(trunc, "truncated")
        var o = ReadOptions(); o.requiredObsKeys = ["donor"]
        expectError(good, "missing obs key", options: o)
    }

    func testMatrixProblems() throws {
        expectError(try variant("enc") { try $0.setAttribute("encoding-type", "coo_matrix") }, "unknown encoding-type 'coo_matrix'")
        expectError(try variant("nan") { x in
            let d = try x.dataset("data"); var v: [Float] = try d.readAll(); v[3] = .nan
            try d.writeAll(v)
        }, "NaN")
        expectError(try variant("neg") { x in
            let d = try x.dataset("data"); var v: [Float] = try d.readAll(); v[1] = -1
            try d.writeAll(v)
        }, "negative count")
        expectError(try variant("mono") { x in
            let d = try x.dataset("indptr"); var v: [Int32] = try d.readAll(); v[4] = v[10] + 1
            try d.writeAll(v)
        }, "non-monotone indptr")
        expectError(try variant("oob") { x in
            let d = try x.dataset("indices"); var v: [Int32] = try d.readAll(); v[0] = 99
            try d.writeAll(v)
        }, "out of range")
        expectError(try variant("shape") { try $0.setAttribute("shape", [Int64(12), 6]) }, "shape mismatch")
        let p = TestFiles.path("bad-noX.h5ad")
        do {
            let f = try H5File.create(p)
            try TestFiles.setEnc(f.root, "anndata", "0.1.0")
            _ = try f.root.createGroup("obs")
            try f.close()
        }
        expectError(p, "X: absent (the file stores X = None)")
    }

    func testSimulationDoesNotDependOnRowSplit() {
        var spec = SimulationSpec()
        spec.cells = 40; spec.genes = 30; spec.types = 3
        let model = Simulator.model(spec)
        let whole = Simulator.generate(spec, model: model, rows: 0..<40)
        let a = Simulator.generate(spec, model: model, rows: 0..<17), b = Simulator.generate(spec, model: model, rows: 17..<40)
        XCTAssertEqual(whole.denseRows(), a.denseRows() + b.denseRows())
        XCTAssertGreaterThan(whole.localNNZ, 0)
        XCTAssertTrue(whole.values.allSatisfy { $0 >= 1 && $0 == $0.rounded() })
    }

    func testInspectReportsLayoutAndCategories() throws {
        let p = TestFiles.path("inspect.h5ad")
        try TestFiles.writeH5ad(p, TestFiles.counts(rows: 9, cols: 4))
        let r = try CellReader.inspect(p)
        XCTAssertEqual(r.cells, 9); XCTAssertEqual(r.genes, 4); XCTAssertEqual(r.layout, "csr")
        XCTAssertTrue(r.looksLikeRawCounts)
        XCTAssertEqual(r.obsColumns.first?.categoryCounts, ["B": 3, "T": 3, "NK": 3])
    }
}
