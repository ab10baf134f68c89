import Foundation
import HDF5IO
@testable import CellData

/// Small files written with HDF5IO in a temp dir, in anndata's on-disk layout.
enum TestFiles {
    static func tempDir() -> String {
        let d = NSTemporaryDirectory() + "celldata-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    static func path(_ name: String) -> String { tempDir() + "/" + name }

    /// A deterministic small count matrix (rows × cols) with some all-zero structure.
    static func counts(rows: Int, cols: Int, seed: UInt64 = 1) -> [[Float]] {
        var s = seed
        func next() -> UInt64 { s = s &* 6364136223846793005 &+ 1442695040888963407; return s >> 33 }
        return (0..<rows).map { _ in (0..<cols).map { _ in next() % 3 == 0 ? Float(next() % 7 + 1) : 0 } }
    }

    enum Layout { case csr, csc, dense }

    static func setEnc(_ o: H5Object, _ type: String, _ version: String) throws {
        try o.setAttribute("encoding-type", type)
        try o.setAttribute("encoding-version", version)
    }

    /// Writes an .h5ad with X in `layout`, obs (index, categorical `cell_type`, numeric `n`,
    /// string `note`, legacy categorical `batch` when `legacy`), var index.
    static func writeH5ad(_ path: String, _ m: [[Float]], layout: Layout = .csr, legacy: Bool = false,
                          indexDType64: Bool = false, valuesAsDouble: Bool = false,
                          customize: ((H5Group) throws -> Void)? = nil) throws {
        let f = try H5File.create(path)
        let root = f.root
        try setEnc(root, "anndata", "0.1.0")
        let nObs = m.count, nVars = m.first?.count ?? 0
        switch layout {
        case .dense:
            let flat = m.flatMap { $0 }
            if valuesAsDouble {
                let d = try root.writeDataset("X", flat.map(Double.init), shape: [nObs, nVars])
                try setEnc(d, "array", "0.2.0")
            } else {
                let d = try root.writeDataset("X", flat, shape: [nObs, nVars])
                try setEnc(d, "array", "0.2.0")
            }
        case .csr, .csc:
            let csr = layout == .csr
            let major = csr ? nObs : nVars, minor = csr ? nVars : nObs
            var indptr: [Int64] = [0], idx: [Int64] = [], data: [Float] = []
            for a in 0..<major {
                for b in 0..<minor {
                    let v = csr ? m[a][b] : m[b][a]
                    if v != 0 { idx.append(Int64(b)); data.append(v) }
                }
                indptr.append(Int64(data.count))
            }
            let g = try root.createGroup("X")
            try setEnc(g, csr ? "csr_matrix" : "csc_matrix", "0.1.0")
            try g.setAttribute("shape", [Int64(nObs), Int64(nVars)])
            // Chunked + gzip like anndata writes.
            let chunk = [Swift.max(1, data.count / 3)]
            if valuesAsDouble { try g.writeDataset("data", data.map(Double.init), chunk: chunk, gzip: 4) }
            else { try g.writeDataset("data", data, chunk: chunk, gzip: 4) }
            if indexDType64 { try g.writeDataset("indices", idx, chunk: chunk, gzip: 4) }
            else { try g.writeDataset("indices", idx.map { Int32($0) }, chunk: chunk, gzip: 4) }
            try g.writeDataset("indptr", indptr.map { Int32($0) })
        }
        let obs = try root.createGroup("obs")
        try setEnc(obs, "dataframe", "0.2.0")
        try obs.setAttribute("_index", "_index")
        let ix = try obs.writeStrings("_index", (0..<nObs).map { "cell\($0)" })
        try setEnc(ix, "string-array", "0.2.0")
        var order = ["cell_type", "n", "note"]
        let ct = try obs.createGroup("cell_type")
        try setEnc(ct, "categorical", "0.2.0")
        try ct.setBoolAttribute("ordered", false)
        try ct.writeStrings("categories", ["B", "T", "NK"])
        try ct.writeDataset("codes", (0..<nObs).map { Int8($0 % 3) })
        let n = try obs.writeDataset("n", (0..<nObs).map { Double($0) * 0.5 })
        try setEnc(n, "array", "0.2.0")
        let note = try obs.writeStrings("note", (0..<nObs).map { "note-\($0)" })
        try setEnc(note, "string-array", "0.2.0")
        if legacy {
            let lc = try obs.createGroup("__categories")
            try lc.writeStrings("batch", ["b0", "b1"], fixedLength: 0)
            try obs.writeDataset("batch", (0..<nObs).map { Int8(($0 / 2) % 2) })
            order.append("batch")
        }
        try obs.setAttribute("column-order", order)
        let v = try root.createGroup("var")
        try setEnc(v, "dataframe", "0.2.0")
        try v.setAttribute("_index", "gene")
        try v.setAttribute("column-order", ["gene_ids"])
        try v.writeStrings("gene", (0..<nVars).map { "G\($0)" })
        try v.writeStrings("gene_ids", (0..<nVars).map { "ENSG\($0)" })
        try customize?(root)
        try f.close()
    }
}
