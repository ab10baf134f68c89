import Collectives
import HDF5IO

/// What `syncytium inspect` prints about a file (read on one rank, metadata plus a sample).
public struct InspectReport: Sendable, Codable {
    public struct Column: Sendable, Codable {
        public var name: String
        /// "categorical", "numeric", "string", "bool".
        public var kind: String
        /// Category → number of cells (categorical columns only), in category order.
        public var categoryCounts: [String: Int]?
        public var categoryOrder: [String]?
        public var missing: Int?
    }
    public var file: String
    public var format: String
    public var matrix: String
    public var layout: String
    public var dtype: String
    public var cells: Int
    public var genes: Int
    public var nnz: Int64
    public var density: Double
    public var obsColumns: [Column]
    public var varColumns: [String]
    public var layers: [String]
    public var hasRaw: Bool
    /// All sampled values are non-negative integers.
    public var looksLikeRawCounts: Bool
    public var sampledValues: Int
    /// Sum of the sampled values (all of X's stored values when `sampledValues` equals nnz).
    public var sampleSum: Double
    public var allZeroCellsInSample: Int
}

extension CellReader {
    /// Describes a file (call on one rank; errors are CellDataError one-liners).
    public static func inspect(_ path: String, counts: CountsSource = .x, sampleLimit: Int = 1 << 20) throws -> InspectReport {
        let file = try openInput(path, communicator: nil)
        let root = file.root
        if counts == .x, !root.exists("X"), root.kind(of: "obs") != nil, root.kind(of: "var") != nil {
            return try inspectWithoutX(root, path: path)
        }
        let L = try describe(file, path: path, counts: counts)
        try checkGeneCount(L, path: path)
        // nnz and a value sample.
        var nnz: Int64 = L.nnz ?? 0
        var sample: [Float] = []
        var zeroCells = 0
        switch L.layout {
        case "dense":
            let d = try root.dataset(L.dataPath)
            let blockRows = Swift.max(1, (1 << 22) / Swift.max(L.nVars, 1))
            var r = 0
            nnz = 0
            while r < L.nObs {
                let e = Swift.min(r + blockRows, L.nObs)
                let block: [Float] = try readOrExplain(path, L.dataPath) { try d.read(rows: r..<e) }
                for i in 0..<(e - r) {
                    var rowNZ = 0
                    for j in 0..<L.nVars where block[i * L.nVars + j] != 0 { rowNZ += 1 }
                    if rowNZ == 0 { zeroCells += 1 }
                    nnz += Int64(rowNZ)
                }
                if sample.count < sampleLimit { sample.append(contentsOf: block.prefix(sampleLimit - sample.count)) }
                r = e
            }
        default:
            let d = try root.dataset(L.dataPath)
            let n = Swift.min(d.count, sampleLimit)
            sample = try readOrExplain(path, L.dataPath) { try d.read(rows: 0..<n) }
            if L.layout == "csr" {
                let p: [Int64] = try readOrExplain(path, L.indptrPath!) { try root.dataset(L.indptrPath!).readAll() }
                try validateIndptr(p, nnz: L.nnz ?? 0, path: path, object: L.indptrPath!)
                for i in 0..<(p.count - 1) where p[i + 1] == p[i] { zeroCells += 1 }
            }
        }
        for x in sample where !x.isFinite {
            throw CellDataError(file: path, object: L.dataPath, problem: "\(x.isNaN ? "NaN" : "Inf") values",
                                fix: "counts must be finite; clean the matrix first")
        }
        let raw = sample.allSatisfy { $0 >= 0 && $0 == $0.rounded() }
        // obs summary.
        var columns: [InspectReport.Column] = []
        var varCols: [String] = []
        if let op = L.obsPath {
            let frame = try readFrame(root, op, path: path, rows: 0..<L.nObs, expected: L.nObs, columns: true)
            columns = frame.columnNames.map { summary($0, frame[$0]!) }
        } else if L.format == "legacy-xy" {
            columns.append(.init(name: "Y", kind: "numeric"))
        }
        if let vp = L.varPath {
            varCols = try readFrame(root, vp, path: path, rows: 0..<L.nVars, expected: L.nVars, columns: true).columnNames
        }
        let layers = root.kind(of: "layers") == .group ? try root.group("layers").memberNames() : []
        return InspectReport(file: path, format: L.format, matrix: L.matrixPath, layout: L.layout, dtype: L.dtype.name,
                             cells: L.nObs, genes: L.nVars, nnz: nnz,
                             density: L.nObs > 0 && L.nVars > 0 ? Double(nnz) / (Double(L.nObs) * Double(L.nVars)) : 0,
                             obsColumns: columns, varColumns: varCols, layers: layers, hasRaw: root.exists("raw/X") || root.exists("raw.X"),
                             looksLikeRawCounts: raw, sampledValues: sample.count,
                             sampleSum: sample.reduce(0.0) { $0 + Double($1) }, allZeroCellsInSample: zeroCells)
    }

    /// An AnnData file whose X is None (anndata writes no X then): shape and annotations only.
    static func inspectWithoutX(_ root: H5Group, path: String) throws -> InspectReport {
        guard let nObs = try readOrExplain(path, "obs", { try frameLength(root, "obs") }),
              let nVars = try readOrExplain(path, "var", { try frameLength(root, "var") }) else {
            throw CellDataError(file: path, object: "obs", problem: "no X and no obs/var index", fix: "re-write the file with anndata")
        }
        let obs = try readFrame(root, "obs", path: path, rows: 0..<nObs, expected: nObs, columns: true)
        let vars = try readFrame(root, "var", path: path, rows: 0..<nVars, expected: nVars, columns: true)
        let layers = root.kind(of: "layers") == .group ? try root.group("layers").memberNames() : []
        return InspectReport(file: path, format: "anndata", matrix: "none", layout: "none", dtype: "none",
                             cells: nObs, genes: nVars, nnz: 0, density: 0,
                             obsColumns: obs.columnNames.map { summary($0, obs[$0]!) }, varColumns: vars.columnNames,
                             layers: layers, hasRaw: root.exists("raw/X") || root.exists("raw.X"), looksLikeRawCounts: false, sampledValues: 0,
                             sampleSum: 0, allZeroCellsInSample: 0)
    }

    static func summary(_ name: String, _ column: ObsColumn) -> InspectReport.Column {
        switch column {
        case .categorical(let codes, let cats, _):
            var counts = [Int](repeating: 0, count: cats.count)
            var missing = 0
            for c in codes { if c >= 0 { counts[Int(c)] += 1 } else { missing += 1 } }
            return .init(name: name, kind: "categorical", categoryCounts: Dictionary(uniqueKeysWithValues: zip(cats, counts)),
                         categoryOrder: cats, missing: missing)
        case .numeric(let v): return .init(name: name, kind: "numeric", missing: v.filter { $0.isNaN }.count)
        case .strings: return .init(name: name, kind: "string")
        case .bools: return .init(name: name, kind: "bool")
        }
    }
}
