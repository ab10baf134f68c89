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
}
