// AnnData / 10x / legacy readers, preprocessing with global statistics, writer (issue 4).
import Collectives
import HDF5IO
import TensorCore

/// Bad input or a failed read/write: a one-line message naming the file, the object and what to do.
public struct CellDataError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// True when every rank of the communicator has this error (thrown by `agreeing`): the job may
    /// then end cleanly on every rank instead of aborting.
    public var agreedByAllRanks = false
    public init(_ message: String) { self.message = message }
    public init(file: String, object: String, problem: String, fix: String) {
        message = "\(file): \(object): \(problem) — \(fix)"
    }
    public var description: String { message }
}

/// A per-rank warning printed once by rank 0 (e.g. all-zero cells dropped).
public struct CellDataWarning: Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// One obs (or var) column for this rank's rows.
public enum ObsColumn: Sendable, Equatable {
    /// Codes index `categories`; -1 is missing.
    case categorical(codes: [Int32], categories: [String], ordered: Bool)
    case numeric([Double])
    case strings([String])
    case bools([Bool])

    public var count: Int {
        switch self {
        case .categorical(let c, _, _): return c.count
        case .numeric(let v): return v.count
        case .strings(let v): return v.count
        case .bools(let v): return v.count
        }
    }

    /// Values as strings (categories resolved; numbers formatted).
    public var stringValues: [String] {
        switch self {
        case .categorical(let codes, let cats, _):
            return codes.map { $0 >= 0 && Int($0) < cats.count ? cats[Int($0)] : "" }
        case .numeric(let v): return v.map { $0 == $0.rounded() && abs($0) < 1e15 ? String(Int64($0)) : String($0) }
        case .strings(let v): return v
        case .bools(let v): return v.map { $0 ? "True" : "False" }
        }
    }

    /// The elements at `idx` (local positions).
    public func subset(_ idx: [Int]) -> ObsColumn {
        switch self {
        case .categorical(let c, let cats, let o): return .categorical(codes: idx.map { c[$0] }, categories: cats, ordered: o)
        case .numeric(let v): return .numeric(idx.map { v[$0] })
        case .strings(let v): return .strings(idx.map { v[$0] })
        case .bools(let v): return .bools(idx.map { v[$0] })
        }
    }
}

/// A table of named columns, all of one length, in a fixed order.
public struct Frame: Sendable, Equatable {
    public var index: [String]
    public var indexName: String = "_index"
    public private(set) var columnNames: [String] = []
    public private(set) var columns: [String: ObsColumn] = [:]

    public init(index: [String]) { self.index = index }

    public subscript(_ name: String) -> ObsColumn? { columns[name] }

    public mutating func set(_ name: String, _ column: ObsColumn) {
        if columns[name] == nil { columnNames.append(name) }
        columns[name] = column
    }

    public mutating func remove(_ name: String) {
        columns[name] = nil
        columnNames.removeAll { $0 == name }
    }

    public func subset(_ idx: [Int]) -> Frame {
        var f = Frame(index: idx.map { index[$0] })
        f.indexName = indexName
        for n in columnNames { f.set(n, columns[n]!.subset(idx)) }
        return f
    }
}

/// Where the reader took counts from, and how X was stored.
public struct SourceInfo: Sendable, Codable, Equatable {
    public var file: String
    /// "anndata", "10x-v3", "legacy-xy", "legacy-exprs".
    public var format: String
    /// Path of the matrix read, e.g. "X", "layers/counts", "raw/X", "matrix".
    public var matrixPath: String
    /// "csr", "csc" or "dense".
    public var layout: String
    /// Element type as stored, e.g. "float32".
    public var dtype: String
    public var nnz: Int64
    public init(file: String, format: String, matrixPath: String, layout: String, dtype: String, nnz: Int64) {
        self.file = file; self.format = format; self.matrixPath = matrixPath; self.layout = layout; self.dtype = dtype; self.nnz = nnz
    }
}

/// This rank's rows of a cells × genes matrix in CSR form, with their obs rows and all of var.
///
/// Memory scales with the shard: `rowPtr`/`colIdx`/`values` hold only this rank's rows. `rowIds`
/// are the global row numbers (ascending) in the file's order.
public struct CellShard: Sendable {
    /// Global number of cells and genes.
    public var nObs: Int
    public var nVars: Int
    /// Global row ids of the local rows, ascending.
    public var rowIds: [Int64]
    /// rowPtr[i]..<rowPtr[i+1] are local row i's entries; rowPtr.count == rows + 1, rowPtr[0] == 0.
    public var rowPtr: [Int64]
    public var colIdx: [Int32]
    public var values: [Float]
    /// obs for the local rows (index = cell names).
    public var obs: Frame
    /// var for all genes (replicated on every rank).
    public var vars: Frame
    public var source: SourceInfo
    /// The input file's row of every local row (ascending, as `rowIds`): set at read, kept through
    /// cell filtering (which renumbers `rowIds`) and redistribution, so results can be written on
    /// the input's rows.
    public var sourceRows: [Int64]
    /// Rows of the input file (nObs before any cell filtering).
    public var sourceObs: Int

    public var localRows: Int { rowIds.count }
    public var localNNZ: Int { values.count }
    /// Bytes held by the matrix arrays.
    public var matrixBytes: Int { rowIds.count * 8 + rowPtr.count * 8 + colIdx.count * 4 + values.count * 4 }

    public init(nObs: Int, nVars: Int, rowIds: [Int64], rowPtr: [Int64], colIdx: [Int32], values: [Float],
                obs: Frame, vars: Frame, source: SourceInfo, sourceRows: [Int64]? = nil, sourceObs: Int? = nil) {
        self.nObs = nObs; self.nVars = nVars; self.rowIds = rowIds; self.rowPtr = rowPtr
        self.colIdx = colIdx; self.values = values; self.obs = obs; self.vars = vars; self.source = source
        self.sourceRows = sourceRows ?? rowIds
        self.sourceObs = sourceObs ?? nObs
    }

    /// Gene symbols: var['feature_name'] (CELLxGENE) when present, else the var index.
    public var geneNames: [String] { vars["feature_name"]?.stringValues ?? vars.index }
    /// Gene ids: var['gene_ids'] (scanpy/10x) or var['gene_id'], else the var index.
    public var geneIDs: [String] { (vars["gene_ids"] ?? vars["gene_id"])?.stringValues ?? vars.index }

    /// Local row i as (column, value) pairs.
    public func row(_ i: Int) -> (cols: ArraySlice<Int32>, vals: ArraySlice<Float>) {
        let a = Int(rowPtr[i]), b = Int(rowPtr[i + 1])
        return (colIdx[a..<b], values[a..<b])
    }

    /// Dense local rows (row-major, localRows × nVars); for tests and small data.
    public func denseRows() -> [Float] {
        var out = [Float](repeating: 0, count: localRows * nVars)
        for i in 0..<localRows {
            for k in Int(rowPtr[i])..<Int(rowPtr[i + 1]) { out[i * nVars + Int(colIdx[k])] = values[k] }
        }
        return out
    }
}

// MARK: - Rank agreement

/// Runs `body` on every rank; if it throws on any rank, every rank throws the error of the lowest
/// failing rank (its message travels by broadcast), so no rank is left waiting in a collective.
public func agreeing<R>(_ comm: Communicator, _ body: () throws -> R) throws -> R {
    var result: R?
    var failure: Error?
    do { result = try body() } catch { failure = error }
    let flag = Int32(failure == nil ? comm.size : comm.rank)
    let first = Int(try comm.allreduce(value: flag, op: .min))
    if first == comm.size { return result! }
    let text = comm.rank == first ? Array("\(failure!)".utf8) : []
    let bytes = try comm.broadcast(array: text, root: first)
    let message = String(decoding: bytes, as: UTF8.self)
    if comm.rank == first, var e = failure as? CellDataError { e.agreedByAllRanks = true; throw e }
    var e = CellDataError(message)
    e.agreedByAllRanks = true
    throw e
}

// MARK: - Row partitions

public enum RowPartition {
    /// Row boundaries (size+1 values) splitting rows so every rank holds about nnz/size entries
    /// and at least one row. `indptr` has nObs+1 entries.
    public static func balancedByNNZ(indptr: [Int64], parts: Int) -> [Int] {
        let n = indptr.count - 1
        precondition(parts >= 1 && n >= parts)
        let total = indptr[n]
        var bounds = [Int](repeating: 0, count: parts + 1)
        bounds[parts] = n
        for r in 1..<parts {
            let target = total == 0 ? Int64(n * r / parts) : total * Int64(r) / Int64(parts)
            // First row whose start offset reaches the target.
            var lo = 0, hi = n
            if total == 0 {
                lo = Int(target)
            } else {
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if indptr[mid] < target { lo = mid + 1 } else { hi = mid }
                }
            }
            bounds[r] = Swift.min(Swift.max(lo, bounds[r - 1] + 1), n - (parts - r))
        }
        return bounds
    }

    /// Collective: `balancedByNNZ` of the whole indptr, from the slices the ranks hold (this rank's
    /// starts at entry `from`; together they cover entries 0…rows, monotone): the same cuts, with one
    /// allreduce of parts − 1 values instead of the whole indptr on every rank.
    public static func balancedByNNZ(indptrSlice p: [Int64], from: Int, rows n: Int, nnz total: Int64, parts: Int,
                                     comm: Communicator) throws -> [Int] {
        precondition(parts >= 1 && n >= parts)
        // For each cut, the first row (< n) whose start offset reaches the target, in this slice (n if none).
        var first = [Int64](repeating: Int64(n), count: Swift.max(parts - 1, 1))
        if total > 0 {
            for r in 1..<Swift.max(parts, 1) {
                let target = total * Int64(r) / Int64(parts)
                var lo = 0, hi = p.count
                while lo < hi { let mid = (lo + hi) / 2; if p[mid] < target { lo = mid + 1 } else { hi = mid } }
                if lo < p.count && from + lo < n { first[r - 1] = Int64(from + lo) }
            }
        }
        if parts > 1 { try comm.allreduce(&first, op: .min) }
        var bounds = [Int](repeating: 0, count: parts + 1)
        bounds[parts] = n
        for r in 1..<Swift.max(parts, 1) {
            let lo = total == 0 ? n * r / parts : Int(first[r - 1])
            bounds[r] = Swift.min(Swift.max(lo, bounds[r - 1] + 1), n - (parts - r))
        }
        return bounds
    }

    /// Equal row counts (size+1 boundaries).
    public static func equalRows(_ n: Int, parts: Int) -> [Int] {
        (0...parts).map { n * $0 / parts }
    }

    /// A seeded permutation of 0..<n (Fisher–Yates on a TensorCore `RandomStream`: the same on
    /// every rank and platform for the same seed).
    public static func permutation(_ n: Int, seed: UInt64) -> [Int64] {
        var rng = RandomStream(seed: seed, purpose: .custom("row-permutation"))
        return rng.permutation(n).map { Int64($0) }
    }
}
