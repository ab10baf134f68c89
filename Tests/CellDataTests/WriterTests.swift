import XCTest
import Foundation
import Collectives
import HDF5IO
@testable import CellData

final class WriterTests: XCTestCase {
    let comm = Communicator.world

    func testWriteThenReadBack() throws {
        let m = TestFiles.counts(rows: 12, cols: 5)
        let input = TestFiles.path("w-in.h5ad")
        try TestFiles.writeH5ad(input, m, legacy: true)
        let s = try CellReader.read(input, comm: comm)
        var req = WriteRequest(shard: s)
        req.clusters = (0..<12).map { Int32($0 % 4) }
        req.embeddingDim = 3
        req.embedding = (0..<36).map { Float($0) * 0.25 }
        // Each cell linked to the next one.
        req.graph = ResultGraph(rowPtr: (0...12).map { Int64($0) }, colIdx: (0..<12).map { Int32(($0 + 1) % 12) },
                                connectivities: [Float](repeating: 1, count: 12), distances: (0..<12).map { Float($0) })
        req.uns = [("version", .string("0.1.0")), ("params", .dict([("k", .integer(15)), ("lr", .number(0.001))]))]
        let out = TestFiles.path("w-out.h5ad")
        try? FileManager.default.removeItem(atPath: out)
        try CellWriter.write(out, req, comm: comm)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out))
        XCTAssertFalse(FileManager.default.fileExists(atPath: CellWriter.temporaryPath(for: out)))

        let f = try H5File.open(out)
        XCTAssertEqual(try f.root.stringAttribute("encoding-type"), "anndata")
        let obs = try f.root.group("obs")
        XCTAssertEqual(try obs.stringArrayAttribute("column-order"), ["cell_type", "n", "note", "batch", "syncytium_cluster"])
        XCTAssertEqual(try obs.dataset("_index").readStrings(), (0..<12).map { "cell\($0)" })
        XCTAssertEqual(try obs.group("syncytium_cluster").dataset("codes").readAll(as: Int32.self), req.clusters)
        XCTAssertEqual(try obs.group("syncytium_cluster").dataset("categories").readStrings(), ["0", "1", "2", "3"])
        XCTAssertEqual(try obs.dataset("note").readStrings()[7], "note-7")
        let emb = try f.root.group("obsm").dataset("X_syncytium")
        XCTAssertEqual(emb.shape, [12, 3])
        XCTAssertEqual(try emb.readAll(as: Float.self), req.embedding)
        let d = try f.root.group("obsp").group("distances")
        XCTAssertEqual(try d.stringAttribute("encoding-type"), "csr_matrix")
        XCTAssertEqual(try d.dataset("indptr").readAll(as: Int64.self), (0...12).map { Int64($0) })
        // One index type for indices and indptr (int32 at this size), as scipy keeps them: int64 indptr
        // beside int32 indices breaks `adata[rows].copy()` in scipy < 1.13. (indptr is contiguous.)
        XCTAssertEqual(try d.dataset("indptr").storageBytes, 13 * MemoryLayout<Int32>.size)
        XCTAssertEqual(try d.dataset("data").readAll(as: Float.self), (0..<12).map { Float($0) })
        let p = try f.root.group("uns").group("syncytium").group("params")
        XCTAssertEqual(try p.dataset("k").readAll(as: Int64.self), [15])
        try f.close()

        // Our own reader takes the output's obs back (X is absent: it is not a counts file).
        let back = try H5File.open(out)
        let frame = try CellReader.readFrame(try back.root.group("obs"), path: out, object: "obs", rows: 0..<12,
                                             expected: 12, columns: true)
        XCTAssertEqual(frame["cell_type"], s.obs["cell_type"])
        XCTAssertEqual(frame["batch"], s.obs["batch"])
        XCTAssertEqual(frame["n"], s.obs["n"])
    }

    func testMismatchedArgumentsLeaveNoFile() throws {
        let m = TestFiles.counts(rows: 6, cols: 3)
        let input = TestFiles.path("w-bad-in.h5ad")
        try TestFiles.writeH5ad(input, m)
        let s = try CellReader.read(input, comm: comm)
        var req = WriteRequest(shard: s)
        req.clusters = [0, 1]
        let out = TestFiles.path("w-bad-out.h5ad")
        try? FileManager.default.removeItem(atPath: out)
        XCTAssertThrowsError(try CellWriter.write(out, req, comm: comm)) { e in
            XCTAssertTrue("\(e)".contains("syncytium_cluster"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertFalse(FileManager.default.fileExists(atPath: CellWriter.temporaryPath(for: out)))
    }

    /// Output = input + results (issue 18): after filtering two zero-count cells (rowIds renumbered)
    /// and a redistribution, the results land on the input's rows (NaN / code −1 / empty graph rows
    /// for the removed cells, graph columns as input rows) and every input object keeps its bytes.
    func testKeepInputWritesResultsOnTheInputRows() throws {
        var m = TestFiles.counts(rows: 12, cols: 5)
        for i in [3, 10] { m[i] = [Float](repeating: 0, count: 5) }
        let zero = Set((0..<12).filter { m[$0].allSatisfy { $0 == 0 } })   // 3, 10 and any the fixture has
        let nk = 12 - zero.count
        let input = TestFiles.path("keep-in.h5ad")
        try TestFiles.writeH5ad(input, m) { root in
            let u = try root.createGroup("uns")
            try TestFiles.setEnc(u, "dict", "0.1.0")
            let old = try u.createGroup("neighbors")      // replaced by the run
            try TestFiles.setEnc(old, "dict", "0.1.0")
            try TestFiles.setEnc(try u.writeDataset("kept", [1.5, 2.5]), "array", "0.2.0")
        }
        var s = try CellReader.read(input, comm: comm)
        try Preprocess.filterCells(&s, minCounts: 1, comm: comm)
        s = try Redistribute.byOwner(s, owners: [Int](repeating: 0, count: s.localRows), comm: comm)
        let kept = (0..<12).filter { !zero.contains($0) }
        XCTAssertEqual(s.rowIds, (0..<nk).map { Int64($0) })
        XCTAssertEqual(s.sourceRows, kept.map { Int64($0) })
        XCTAssertEqual(s.sourceObs, 12)

        var req = WriteRequest(shard: s)
        req.keepInput = input
        req.clusters = (0..<nk).map { Int32($0 % 3) }
        req.embeddingDim = 2
        req.embedding = (0..<(2 * nk)).map { Float($0) }
        // Cell i (after filtering) linked to cell i + 1.
        XCTAssertGreaterThanOrEqual(zero.count, 2)
        req.graph = ResultGraph(rowPtr: (0...nk).map { Int64($0) }, colIdx: (0..<nk).map { Int32(($0 + 1) % nk) },
                                connectivities: [Float](repeating: 1, count: nk), distances: (0..<nk).map { Float($0) })
        req.shard.obs.set("leiden", .categorical(codes: (0..<nk).map { Int32($0 % 2) }, categories: ["0", "1"], ordered: false))
        req.resultObs = ["leiden"]
        req.uns = [("version", .string("test")), ("params", .dict([("k", .integer(15))]))]
        req.unsTop = [("neighbors", .dict([("connectivities_key", .string("connectivities"))]))]
        let out = TestFiles.path("keep-out.h5ad")
        try? FileManager.default.removeItem(atPath: out)
        try CellWriter.write(out, req, comm: comm)

        let a = try H5File.open(input), b = try H5File.open(out)
        for name in ["data", "indices", "indptr"] {
            XCTAssertEqual(try b.root.group("X").dataset(name).readAll(as: Float.self), try a.root.group("X").dataset(name).readAll(as: Float.self), name)
        }
        XCTAssertEqual(try b.root.group("X").numericAttribute("shape", as: Int64.self), [12, 5])
        XCTAssertEqual(try b.root.group("var").dataset("gene").readStrings(), (0..<5).map { "G\($0)" })
        let obs = try b.root.group("obs")
        XCTAssertEqual(try obs.dataset("_index").readStrings(), (0..<12).map { "cell\($0)" })
        XCTAssertEqual(try obs.dataset("note").readStrings()[10], "note-10")
        XCTAssertEqual(try obs.stringArrayAttribute("column-order"), ["cell_type", "n", "note", "syncytium_cluster", "leiden"])
        let codes = try obs.group("syncytium_cluster").dataset("codes").readAll(as: Int32.self)
        let leiden = try obs.group("leiden").dataset("codes").readAll(as: Int32.self)
        XCTAssertEqual(try obs.group("leiden").stringAttribute("encoding-type"), "categorical")
        for (k, row) in kept.enumerated() {
            XCTAssertEqual(codes[row], Int32(k % 3)); XCTAssertEqual(leiden[row], Int32(k % 2))
        }
        for row in zero { XCTAssertEqual(codes[row], -1); XCTAssertEqual(leiden[row], -1) }
        let emb = try b.root.group("obsm").dataset("X_syncytium")
        XCTAssertEqual(emb.shape, [12, 2])
        let z = try emb.readAll(as: Float.self)
        for (k, row) in kept.enumerated() { XCTAssertEqual(Array(z[(2 * row)..<(2 * row + 2)]), [Float(2 * k), Float(2 * k + 1)]) }
        for row in zero { XCTAssertTrue(z[2 * row].isNaN && z[2 * row + 1].isNaN) }
        let d = try b.root.group("obsp").group("distances")
        XCTAssertEqual(try d.numericAttribute("shape", as: Int64.self), [12, 12])
        let indptr = try d.dataset("indptr").readAll(as: Int64.self)
        XCTAssertEqual(indptr.count, 13)
        let cols = try d.dataset("indices").readAll(as: Int64.self), vals = try d.dataset("data").readAll(as: Float.self)
        for (k, row) in kept.enumerated() {
            XCTAssertEqual(indptr[row + 1] - indptr[row], 1)
            XCTAssertEqual(cols[Int(indptr[row])], Int64(kept[(k + 1) % nk]), "graph columns are input rows")
            XCTAssertEqual(vals[Int(indptr[row])], Float(k))
        }
        for row in zero { XCTAssertEqual(indptr[row + 1], indptr[row], "removed cell \(row) has an empty graph row") }
        let u = try b.root.group("uns")
        XCTAssertEqual(try u.dataset("kept").readAll(as: Double.self), [1.5, 2.5])
        XCTAssertEqual(try u.group("neighbors").dataset("connectivities_key").readStrings(), ["connectivities"])
        XCTAssertEqual(try u.group("syncytium").group("params").dataset("k").readAll(as: Int64.self), [15])
        XCTAssertEqual(try u.group("syncytium").stringAttribute("encoding-type"), "dict")
        try a.close(); try b.close()

        // Results only: the lean file (no X, the kept cells only).
        req.keepInput = nil
        let lean = TestFiles.path("keep-lean.h5ad")
        try? FileManager.default.removeItem(atPath: lean)
        try CellWriter.write(lean, req, comm: comm)
        let l = try H5File.open(lean)
        XCTAssertFalse(l.root.exists("X"))
        XCTAssertEqual(try l.root.group("obsm").dataset("X_syncytium").shape, [nk, 2])
        try l.close()
    }
}
