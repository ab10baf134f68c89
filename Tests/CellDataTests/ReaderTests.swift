import XCTest
import Collectives
import HDF5IO
@testable import CellData

final class ReaderTests: XCTestCase {
    let comm = Communicator.world

    func checkShard(_ s: CellShard, equals m: [[Float]], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(s.nObs, m.count, file: file, line: line)
        XCTAssertEqual(s.nVars, m[0].count, file: file, line: line)
        XCTAssertEqual(s.rowIds, (0..<m.count).map { Int64($0) }, file: file, line: line)
        XCTAssertEqual(s.denseRows(), m.flatMap { $0 }, file: file, line: line)
    }

    func testCSRCSCDenseGiveSameShard() throws {
        let m = TestFiles.counts(rows: 37, cols: 11)
        for (name, layout) in [("csr", TestFiles.Layout.csr), ("csc", .csc), ("dense", .dense)] {
            let p = TestFiles.path("rt-\(name).h5ad")
            try TestFiles.writeH5ad(p, m, layout: layout, indexDType64: name == "csc", valuesAsDouble: name == "dense")
            let s = try CellReader.read(p, comm: comm)
            checkShard(s, equals: m)
            XCTAssertEqual(s.source.layout, name)
            XCTAssertEqual(s.obs.index[5], "cell5")
            XCTAssertEqual(s.vars.index[3], "G3")
            XCTAssertEqual(s.vars.indexName, "gene")
            XCTAssertEqual(s.vars["gene_ids"]?.stringValues[2], "ENSG2")
            XCTAssertEqual(s.obs.columnNames, ["cell_type", "n", "note"])
            XCTAssertEqual(s.obs["cell_type"], .categorical(codes: (0..<37).map { Int32($0 % 3) }, categories: ["B", "T", "NK"], ordered: false))
            XCTAssertEqual(s.obs["n"], .numeric((0..<37).map { Double($0) * 0.5 }))
            XCTAssertEqual(s.obs["note"]?.stringValues[36], "note-36")
        }
    }

    func testLegacyCategoriesLayout() throws {
        let m = TestFiles.counts(rows: 8, cols: 5)
        let p = TestFiles.path("legacy-cat.h5ad")
        try TestFiles.writeH5ad(p, m, legacy: true)
        let s = try CellReader.read(p, comm: comm)
        XCTAssertEqual(s.obs["batch"], .categorical(codes: [0, 0, 1, 1, 0, 0, 1, 1], categories: ["b0", "b1"], ordered: false))
    }

    func testCountsFromLayerAndMissingLayer() throws {
        let m = TestFiles.counts(rows: 6, cols: 4)
        let p = TestFiles.path("layer.h5ad")
        try TestFiles.writeH5ad(p, m) { root in
            let layers = try root.createGroup("layers")
            let d = try layers.writeDataset("counts", m.flatMap { $0 }.map { $0 * 2 }, shape: [6, 4])
            try TestFiles.setEnc(d, "array", "0.2.0")
        }
        var o = ReadOptions(); o.counts = .layer("counts")
        let s = try CellReader.read(p, comm: comm, options: o)
        checkShard(s, equals: m.map { $0.map { $0 * 2 } })
        o.counts = .layer("spliced")
        XCTAssertThrowsError(try CellReader.read(p, comm: comm, options: o)) { e in
            XCTAssertTrue("\(e)".contains("layers/spliced"), "\(e)")
            XCTAssertTrue("\(e)".contains("counts"), "should list available layers: \(e)")
        }
    }

    func testLegacyXYLayout() throws {
        let m = TestFiles.counts(rows: 9, cols: 4)
        let p = TestFiles.path("legacy-xy.h5")
        do {
            let f = try H5File.create(p)
            try f.root.writeDataset("X", m.flatMap { $0 }, shape: [9, 4], chunk: [3, 4], gzip: 4)
            try f.root.writeDataset("Y", (0..<9).map { Double($0 % 2) })
            try f.close()
        }
        let s = try CellReader.read(p, comm: comm)
        checkShard(s, equals: m)
        XCTAssertEqual(s.source.format, "legacy-xy")
        XCTAssertEqual(s.obs["Y"], .numeric((0..<9).map { Double($0 % 2) }))
    }

    func testTenXV3Layout() throws {
        let m = TestFiles.counts(rows: 10, cols: 6) // cells × genes
        let p = TestFiles.path("tenx.h5")
        do {
            let f = try H5File.create(p)
            let g = try f.root.createGroup("matrix")
            var indptr: [Int64] = [0], idx: [Int64] = [], data: [Int32] = []
            for c in 0..<10 {
                for gene in 0..<6 where m[c][gene] != 0 { idx.append(Int64(gene)); data.append(Int32(m[c][gene])) }
                indptr.append(Int64(data.count))
            }
            try g.writeDataset("data", data, chunk: [8], gzip: 4)
            try g.writeDataset("indices", idx)
            try g.writeDataset("indptr", indptr)
            try g.writeDataset("shape", [Int32(6), 10])
            try g.writeStrings("barcodes", (0..<10).map { "AAAC-\($0)" }, fixedLength: 0)
            let feat = try g.createGroup("features")
            try feat.writeStrings("id", (0..<6).map { "ENSG\($0)" }, fixedLength: 0)
            try feat.writeStrings("name", (0..<6).map { "Gene\($0)" }, fixedLength: 0)
            try feat.writeStrings("feature_type", [String](repeating: "Gene Expression", count: 6), fixedLength: 0)
            try f.close()
        }
        let s = try CellReader.read(p, comm: comm)
        checkShard(s, equals: m)
        XCTAssertEqual(s.source.format, "10x-v3")
        XCTAssertEqual(s.obs.index[3], "AAAC-3")
        XCTAssertEqual(s.vars.index[1], "Gene1")
        XCTAssertEqual(s.vars["gene_ids"]?.stringValues[5], "ENSG5")
    }

    func testPartitionBalancesNNZAndCoversRows() {
        let indptr: [Int64] = [0, 100, 101, 102, 103, 104, 204, 205, 206]
        let b = RowPartition.balancedByNNZ(indptr: indptr, parts: 3)
        XCTAssertEqual(b.first, 0); XCTAssertEqual(b.last, 8)
        for r in 0..<3 { XCTAssertLessThan(b[r], b[r + 1]) }
        // Heavy rows 0 and 5 land on different ranks.
        XCTAssertEqual(b[1], 1)
        XCTAssertEqual(RowPartition.balancedByNNZ(indptr: [0, 0, 0, 0], parts: 3), [0, 1, 2, 3])
        let p = RowPartition.permutation(50, seed: 7)
        XCTAssertEqual(p.sorted(), (0..<50).map { Int64($0) })
        XCTAssertNotEqual(p, (0..<50).map { Int64($0) })
        XCTAssertEqual(p, RowPartition.permutation(50, seed: 7))
    }

    func testRealPBMCIfPresent() throws {
        let p = "/work/shared/data/pbmc_10x_4k_top2000.h5ad"
        guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("shared data not present") }
        var o = ReadOptions(); o.requiredObsKeys = ["cell_type"]
        let s = try CellReader.read(p, comm: comm, options: o)
        XCTAssertEqual(s.nObs, 4271); XCTAssertEqual(s.nVars, 2000)
        XCTAssertEqual(s.localNNZ, 870065)
        guard case .categorical(let codes, let cats, _)? = s.obs["cell_type"] else { return XCTFail() }
        XCTAssertEqual(cats.count, 8)
        XCTAssertEqual(codes.count, 4271)
        XCTAssertTrue(s.values.allSatisfy { $0 > 0 && $0 == $0.rounded() })
    }
}

final class LegacyExprsTests: XCTestCase {
    /// The seed methods' `exprs`/`obs`/`var` h5 (MODELS.md §2.1): CSR exprs group with a shape
    /// dataset, obs/var groups of fixed-length byte-string or numeric columns, obs_names/var_names.
    func testExprsObsVarLayout() throws {
        let m = TestFiles.counts(rows: 7, cols: 5)
        let p = TestFiles.path("legacy-exprs.h5")
        do {
            let f = try H5File.create(p)
            let e = try f.root.createGroup("exprs")
            var indptr: [Int64] = [0], idx: [Int32] = [], data: [Double] = []
            for r in m { for (j, v) in r.enumerated() where v != 0 { idx.append(Int32(j)); data.append(Double(v)) }; indptr.append(Int64(data.count)) }
            try e.writeDataset("data", data); try e.writeDataset("indices", idx); try e.writeDataset("indptr", indptr)
            try e.writeDataset("shape", [Int64(7), 5])
            let obs = try f.root.createGroup("obs")
            try obs.writeStrings("cell_type1", (0..<7).map { $0 % 2 == 0 ? "alpha" : "beta" }, fixedLength: 0)
            try obs.writeDataset("n_genes", (0..<7).map { Int32($0) })
            _ = try f.root.createGroup("var")
            _ = try f.root.createGroup("uns")
            try f.root.writeStrings("obs_names", (0..<7).map { "c\($0)" }, fixedLength: 0)
            try f.root.writeStrings("var_names", (0..<5).map { "g\($0)" }, fixedLength: 0)
            try f.close()
        }
        var o = ReadOptions(); o.requiredObsKeys = ["cell_type1"]
        let s = try CellReader.read(p, comm: Communicator.world, options: o)
        XCTAssertEqual(s.source.format, "legacy-exprs")
        XCTAssertEqual(s.denseRows(), m.flatMap { $0 })
        XCTAssertEqual(s.obs.index, (0..<7).map { "c\($0)" })
        XCTAssertEqual(s.vars.index, (0..<5).map { "g\($0)" })
        XCTAssertEqual(s.obs["cell_type1"]?.stringValues, (0..<7).map { $0 % 2 == 0 ? "alpha" : "beta" })
        XCTAssertEqual(s.obs["n_genes"], .numeric((0..<7).map { Double($0) }))
    }
}

final class RawCountsTests: XCTestCase {
    /// Counts from raw/X take var from raw/var (raw may hold more genes than X).
    func testRawXWithRawVar() throws {
        let m = TestFiles.counts(rows: 8, cols: 4)
        let rawM = TestFiles.counts(rows: 8, cols: 6, seed: 9)
        let p = TestFiles.path("raw.h5ad")
        try TestFiles.writeH5ad(p, m) { root in
            let raw = try root.createGroup("raw")
            try TestFiles.setEnc(raw, "raw", "0.1.0")
            let x = try raw.writeDataset("X", rawM.flatMap { $0 }, shape: [8, 6])
            try TestFiles.setEnc(x, "array", "0.2.0")
            let v = try raw.createGroup("var")
            try TestFiles.setEnc(v, "dataframe", "0.2.0")
            try v.setAttribute("_index", "_index")
            try v.setAttribute("column-order", [String]())
            try v.writeStrings("_index", (0..<6).map { "R\($0)" })
        }
        var o = ReadOptions(); o.counts = .raw
        let s = try CellReader.read(p, comm: Communicator.world, options: o)
        XCTAssertEqual(s.nVars, 6)
        XCTAssertEqual(s.denseRows(), rawM.flatMap { $0 })
        XCTAssertEqual(s.vars.index, (0..<6).map { "R\($0)" })
        XCTAssertEqual(s.source.matrixPath, "raw/X")
        let sf = try Preprocess.sizeFactors(s, comm: Communicator.world)
        let lib = Preprocess.librarySizes(s).sorted()
        let median = (lib[3] + lib[4]) / 2
        XCTAssertEqual(Double(sf[0]), Preprocess.librarySizes(s)[0] / median, accuracy: 1e-6)
    }
}

final class BridgeTests: XCTestCase {
    func testShardAsTensorCoreCSR() throws {
        let m = TestFiles.counts(rows: 9, cols: 5)
        let p = TestFiles.path("bridge.h5ad")
        try TestFiles.writeH5ad(p, m)
        let s = try CellReader.read(p, comm: Communicator.world)
        let csr = try s.localMatrix()
        XCTAssertEqual(csr.rows, 9); XCTAssertEqual(csr.cols, 5); XCTAssertEqual(csr.nnz, s.localNNZ)
        XCTAssertEqual(s.denseTensor().scalars, m.flatMap { $0 })
    }
}
