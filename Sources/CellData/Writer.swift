import Collectives
import HDF5IO
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value stored under `uns['syncytium']` (anndata's string / numeric-scalar / dict encodings).
public indirect enum UnsValue: Sendable, Equatable {
    case string(String)
    case number(Double)
    case integer(Int64)
    case dict([(String, UnsValue)])
    /// A 1-D float64 array, or 2-D (rows × `width`) when `width` > 0.
    case array([Double], width: Int)

    public static func == (a: UnsValue, b: UnsValue) -> Bool {
        switch (a, b) {
        case (.array(let x, let w), .array(let y, let v)): return x == y && w == v
        case (.string(let x), .string(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.integer(let x), .integer(let y)): return x == y
        case (.dict(let x), .dict(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }
}

/// Rows of a sparse cells × cells matrix a rank owns (CSR, columns are global cell ids), in the
/// order of the shard's rows.
public struct SparseRows: Sendable {
    public var rowPtr: [Int64]
    public var colIdx: [Int32]
    public var values: [Float]
    public init(rowPtr: [Int64], colIdx: [Int32], values: [Float]) {
        self.rowPtr = rowPtr; self.colIdx = colIdx; self.values = values
    }
}

/// A cell graph for obsp: connectivities (e.g. symmetrised UMAP weights) and distances (the
/// directed kNN distances), each with its own sparsity, as scanpy stores them.
public struct ResultGraph: Sendable {
    public var connectivities: SparseRows
    public var distances: SparseRows
    public init(connectivities: SparseRows, distances: SparseRows) {
        self.connectivities = connectivities; self.distances = distances
    }
    /// Both matrices on one sparsity pattern.
    public init(rowPtr: [Int64], colIdx: [Int32], connectivities: [Float], distances: [Float]) {
        self.connectivities = SparseRows(rowPtr: rowPtr, colIdx: colIdx, values: connectivities)
        self.distances = SparseRows(rowPtr: rowPtr, colIdx: colIdx, values: distances)
    }
}

/// What goes into the output .h5ad besides the input's obs and var (all arrays are this rank's
/// rows, in `shard.rowIds` order).
public struct WriteRequest: Sendable {
    public var shard: CellShard
    public var clusters: [Int32]?
    public var embedding: [Float]?
    public var embeddingDim: Int = 0
    /// Further obsm arrays (name, this rank's rows × width values, width), e.g. X_cellular; the same
    /// names and widths on every rank. (Further obs columns go into `shard.obs`.)
    public var obsm: [(name: String, values: [Float], width: Int)] = []
    public var graph: ResultGraph?
    /// Further obsp matrices (name, this rank's rows), e.g. a second neighbour graph under scanpy's
    /// `key_added` names; the same names on every rank, none named connectivities or distances when
    /// `graph` is set.
    public var obsp: [(name: String, rows: SparseRows)] = []
    /// Entries of uns['syncytium'] (e.g. version, params, metrics).
    public var uns: [(String, UnsValue)] = []
    /// Further top-level uns entries beside 'syncytium' (e.g. scanpy's 'neighbors', 'leiden').
    public var unsTop: [(String, UnsValue)] = []
    /// Also write the shard's matrix as X (CSR, float32 values, uncompressed).
    public var includeX = false
    /// gzip level for X's data/indices (chunked; parallel filtered writes are collective), or nil.
    public var xCompression: Int? = nil
    /// The input file whose whole content the output keeps (X, layers, raw, obs, var, obsm, obsp,
    /// uns byte for byte), the results written on its rows (`shard.sourceRows`); nil: the lean
    /// results-only file. Inputs that cannot be kept faithfully fall back to the lean file with a
    /// notice (see `CellWriter.keepableInput`).
    public var keepInput: String? = nil
    /// Columns of `shard.obs` that are results (e.g. 'leiden'): with `keepInput` only these (and
    /// obs['syncytium_cluster']) are written, the input's own columns stay as they were.
    public var resultObs: [String] = []
    public init(shard: CellShard) { self.shard = shard }
}

/// Writes the result .h5ad: every rank writes its own rows of the numeric datasets collectively
/// through MPI-IO; rank 0 then adds the strings and anndata's encoding attributes serially (HDF5
/// cannot write variable-length strings in parallel). The file is written under a temporary
/// name and renamed by rank 0 once every rank has finished, so it appears atomically.
public enum CellWriter {

    public static func temporaryPath(for path: String) -> String {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        return "\(dir)/.\(base).partial"
    }

    static func runs(_ ids: [Int64]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        for id in ids.map(Int.init) {
            if let last = out.last, last.upperBound == id { out[out.count - 1] = last.lowerBound..<(id + 1) }
            else { out.append(id..<(id + 1)) }
        }
        return out
    }

    public static func write(_ path: String, _ req: WriteRequest, comm: Communicator) throws {
        let s = req.shard
        let tmp = temporaryPath(for: path)
        let rowRuns = runs(s.rowIds)
        // Arguments agree across ranks and with the shard.
        let dim = try agreeing(comm) { () -> Int in
            for m in req.obsm where m.values.count != s.localRows * m.width {
                throw CellDataError(file: path, object: "obsm/\(m.name)", problem: "\(m.values.count) values for \(s.localRows) rows × \(m.width)",
                                    fix: "pass localRows × width values")
            }
            if let c = req.clusters, c.count != s.localRows {
                throw CellDataError(file: path, object: "obs/syncytium_cluster", problem: "\(c.count) labels for \(s.localRows) rows",
                                    fix: "pass one cluster per local cell")
            }
            if let e = req.embedding, e.count != s.localRows * req.embeddingDim {
                throw CellDataError(file: path, object: "obsm/X_syncytium",
                                    problem: "\(e.count) values for \(s.localRows) rows × \(req.embeddingDim)",
                                    fix: "pass localRows × embeddingDim values")
            }
            let sparse = (req.graph.map { [$0.connectivities, $0.distances] } ?? []) + req.obsp.map(\.rows)
            if sparse.contains(where: {
                $0.rowPtr.count != s.localRows + 1 || $0.colIdx.count != $0.values.count
                    || Int($0.rowPtr.last ?? 0) != $0.values.count }) {
                throw CellDataError(file: path, object: "obsp", problem: "graph arrays do not match the local rows",
                                    fix: "pass CSR rows for the local cells")
            }
            return req.embedding == nil ? 0 : req.embeddingDim
        }
        let dims = try comm.allgather(value: Int64(dim))
        let hasGraph = try comm.allreduce(value: Int32(req.graph == nil ? 0 : 1), op: .min) == 1
        let hasClusters = try comm.allreduce(value: Int32(req.clusters == nil ? 0 : 1), op: .min) == 1
        try agreeing(comm) {
            if Set(dims).count != 1 {
                throw CellDataError(file: path, object: "obsm/X_syncytium", problem: "embedding widths differ across ranks (\(dims))",
                                    fix: "every rank must pass the same embeddingDim")
            }
        }
        let nClusters = hasClusters ? Int(try comm.allreduce(value: (req.clusters ?? []).max() ?? -1, op: .max)) + 1 : 0
        if let input = req.keepInput {
            if let why = try keepableInput(input, s, comm: comm) {
                if comm.rank == 0 { noticeOnStderr("\(path): results only (\(input) is kept only when written by anndata ≥ 0.8: \(why))") }
            } else {
                try writeKeepingInput(path, input: input, req, dim: dim, hasGraph: hasGraph, hasClusters: hasClusters,
                                      nClusters: nClusters, comm: comm)
                return
            }
        }

        // Sparse row blocks (X, graphs): every row's start offset needs all rows' lengths.
        let xPlan = req.includeX ? try SparsePlan(rowPtr: s.rowPtr, rowIds: s.rowIds, nObs: s.nObs, rowRuns: rowRuns, comm: comm) : nil
        let connPlan = hasGraph ? try SparsePlan(rowPtr: req.graph!.connectivities.rowPtr, rowIds: s.rowIds, nObs: s.nObs,
                                                 rowRuns: rowRuns, comm: comm) : nil
        let distPlan = hasGraph ? try SparsePlan(rowPtr: req.graph!.distances.rowPtr, rowIds: s.rowIds, nObs: s.nObs,
                                                 rowRuns: rowRuns, comm: comm) : nil
        let extraPlans = try req.obsp.map { try SparsePlan(rowPtr: $0.rows.rowPtr, rowIds: s.rowIds, nObs: s.nObs, rowRuns: rowRuns, comm: comm) }

        // Phase A: all ranks, MPI-IO, collective writes of the numeric datasets. On failure the
        // temporary file is removed so no partial output is left behind.
        do { try phaseA() } catch { try collectiveFailure(error, path: path, tmp: tmp, comm: comm) }
        func phaseA() throws { try agreeing(comm) {
            let f: H5File
            do { f = try H5File.create(tmp, communicator: comm) } catch {
                throw CellDataError(file: path, object: "output", problem: "cannot create \(tmp) (\(error))",
                                    fix: "check that the directory exists and is writable")
            }
            // Objects opened inside the closure are released before the (collective) close.
            try { () throws -> Void in
                if let plan = xPlan {
                    try plan.write(into: try f.root.createGroup("X"), values: s.values, colIdx: s.colIdx,
                                   nObs: s.nObs, gzip: req.xCompression)
                }
            let obs = try f.root.createGroup("obs")
            for name in s.obs.columnNames where name != "syncytium_cluster" {
                switch s.obs[name]! {
                case .numeric(let v):
                    try obs.createDataset(name, of: Double.self, shape: [s.nObs]).write(v, runs: rowRuns)
                case .categorical(let codes, _, _):
                    try obs.createGroup(name).createDataset("codes", of: Int32.self, shape: [s.nObs]).write(codes, runs: rowRuns)
                default: break
                }
            }
            if hasClusters {
                try obs.createGroup("syncytium_cluster").createDataset("codes", of: Int32.self, shape: [s.nObs])
                    .write(req.clusters ?? [], runs: rowRuns)
            }
            let obsm = try f.root.createGroup("obsm")
            if dim > 0 {
                try obsm.createDataset("X_syncytium", of: Float.self, shape: [s.nObs, dim])
                    .write(req.embedding ?? [], runs: rowRuns)
            }
            for m in req.obsm {
                try obsm.createDataset(m.name, of: Float.self, shape: [s.nObs, m.width]).write(m.values, runs: rowRuns)
            }
            let obsp = try f.root.createGroup("obsp")
            if hasGraph, let cp = connPlan, let dp = distPlan {
                let g = req.graph!
                try cp.write(into: try obsp.createGroup("connectivities"), values: g.connectivities.values,
                             colIdx: g.connectivities.colIdx, nObs: s.nObs, gzip: nil)
                try dp.write(into: try obsp.createGroup("distances"), values: g.distances.values,
                             colIdx: g.distances.colIdx, nObs: s.nObs, gzip: nil)
            }
            for (m, plan) in zip(req.obsp, extraPlans) {
                try plan.write(into: try obsp.createGroup(m.name), values: m.rows.values, colIdx: m.rows.colIdx, nObs: s.nObs, gzip: nil)
            }
                for name in ["var", "uns", "layers", "varm", "varp"] { _ = try f.root.createGroup(name) }
            }()
            try f.close()
        } }

        // Strings and booleans travel to rank 0 (variable-length strings cannot be written in parallel).
        let gathered = try gatherStringColumns(s, comm: comm)

        // Phase B: rank 0 adds strings and encoding attributes serially.
        try agreeing(comm) {
            guard comm.rank == 0 else { return }
            do {
                try finish(tmp, s, gathered: gathered, hasClusters: hasClusters, nClusters: nClusters, dim: dim,
                           obsm: req.obsm.map(\.name), hasGraph: hasGraph, obsp: req.obsp.map(\.name), uns: req.uns,
                           unsTop: req.unsTop, includeX: req.includeX)
            } catch { throw serialFailure(error, path: path, tmp: tmp) }
        }
        try renameIntoPlace(tmp: tmp, path: path, comm: comm)
    }

    /// A collective phase failed on some rank (the error is agreed, every rank is here): rank 0 says in
    /// plain words what the file system refused, before the partial file is removed and frees its
    /// space, and every rank throws the same message.
    static func collectiveFailure(_ error: Error, path: String, tmp: String, comm: Communicator) throws -> Never {
        let plain = comm.rank == 0 ? FileSystemCheck.diagnose(folderOf: path) ?? "" : ""
        if comm.rank == 0 { unlink(tmp) }
        let said = String(decoding: try comm.broadcast(array: Array(plain.utf8), root: 0), as: UTF8.self)
        guard !said.isEmpty else { throw error }
        var e = CellDataError("\(path): \(said) — \(error)")
        e.agreedByAllRanks = true
        throw e
    }

    /// Rank 0's serial phase failed: the partial file goes, and the error says why in plain words.
    static func serialFailure(_ error: Error, path: String, tmp: String) -> Error {
        let plain = FileSystemCheck.diagnose(folderOf: path)
        unlink(tmp)
        if let plain { return CellDataError("\(path): \(plain) — \(error)") }
        return CellDataError(file: path, object: "output", problem: "writing failed (\(error))", fix: "check free space and permissions")
    }

    /// Collective: after every rank's part is written, rank 0 renames the temporary file into place
    /// (atomic on one file system); a failure removes it and reaches every rank.
    static func renameIntoPlace(tmp: String, path: String, comm: Communicator) throws {
        try comm.barrier()
        try agreeing(comm) {
            guard comm.rank == 0 else { return }
            if rename(tmp, path) != 0 {
                unlink(tmp)
                throw CellDataError(file: path, object: "output", problem: "cannot rename \(tmp) into place (\(String(cString: strerror(errno))))",
                                    fix: "check the directory's permissions")
            }
        }
    }

    struct Gathered {
        var index: [String] = []
        var strings: [String: [String]] = [:]
        var bools: [String: [Bool]] = [:]
    }

    /// On rank 0: obs index and string/bool columns of all cells in global row order. Only rank 0
    /// receives them (an all-to-all whose only non-empty blocks go to rank 0).
    static func gatherStringColumns(_ s: CellShard, comm: Communicator) throws -> Gathered {
        func toRoot<T: CollectiveScalar>(_ v: [T]) throws -> [T] {
            var counts = [Int](repeating: 0, count: comm.size)
            counts[0] = v.count
            return try comm.alltoallv(v, sendCounts: counts).values
        }
        let ids = try toRoot(s.rowIds)
        var order = Array(0..<ids.count)
        order.sort { ids[$0] < ids[$1] }
        func gatherStrings(_ v: [String]) throws -> [String] {
            let allLens = try toRoot(v.map { Int64($0.utf8.count) })
            let allBytes = try toRoot(v.flatMap { Array($0.utf8) })
            guard comm.rank == 0 else { return [] }
            var out: [String] = []
            out.reserveCapacity(allLens.count)
            var off = 0
            for l in allLens { out.append(String(decoding: allBytes[off..<(off + Int(l))], as: UTF8.self)); off += Int(l) }
            return order.map { out[$0] }
        }
        var g = Gathered()
        g.index = try gatherStrings(s.obs.index)
        for name in s.obs.columnNames {
            switch s.obs[name]! {
            case .strings(let v): g.strings[name] = try gatherStrings(v)
            case .bools(let v):
                let all = try toRoot(v.map { UInt8($0 ? 1 : 0) })
                g.bools[name] = comm.rank == 0 ? order.map { all[$0] != 0 } : []
            default: break
            }
        }
        return g
    }

    static func enc(_ o: H5Object, _ type: String, _ version: String) throws {
        try o.setAttribute("encoding-type", type)
        try o.setAttribute("encoding-version", version)
    }

    static func writeColumn(_ g: H5Group, _ name: String, _ c: ObsColumn, existing: Bool) throws {
        switch c {
        case .numeric(let v):
            let d = existing ? try g.dataset(name) : try g.writeDataset(name, v)
            try enc(d, "array", "0.2.0")
        case .categorical(let codes, let cats, let ordered):
            let cg = existing ? try g.group(name) : try g.createGroup(name)
            if !existing { try cg.writeDataset("codes", codes) }
            try enc(cg, "categorical", "0.2.0")
            try cg.setBoolAttribute("ordered", ordered)
            try enc(try cg.dataset("codes"), "array", "0.2.0")
            try enc(try cg.writeStrings("categories", cats), "string-array", "0.2.0")
        case .strings(let v):
            try enc(try g.writeStrings(name, v), "string-array", "0.2.0")
        case .bools(let v):
            try enc(try g.writeBools(name, v), "array", "0.2.0")
        }
    }

    static func writeUns(_ g: H5Group, _ entries: [(String, UnsValue)]) throws {
        for (k, v) in entries {
            switch v {
            case .string(let x): try enc(try g.writeScalarString(k, x), "string", "0.2.0")
            case .number(let x): try enc(try g.writeScalar(k, x), "numeric-scalar", "0.2.0")
            case .integer(let x): try enc(try g.writeScalar(k, x), "numeric-scalar", "0.2.0")
            case .dict(let d):
                let sub = try g.createGroup(k)
                try enc(sub, "dict", "0.1.0")
                try writeUns(sub, d)
            case .array(let x, let w):
                try enc(try g.writeDataset(k, x, shape: w > 0 ? [x.count / w, w] : [x.count]), "array", "0.2.0")
            }
        }
    }

    static func finish(_ tmp: String, _ s: CellShard, gathered: Gathered, hasClusters: Bool, nClusters: Int, dim: Int,
                       obsm extraObsm: [String] = [], hasGraph: Bool, obsp extraObsp: [String] = [], uns: [(String, UnsValue)],
                       unsTop: [(String, UnsValue)] = [], includeX: Bool) throws {
        let f = try H5File.open(tmp, writable: true)
        if includeX {
            let x = try f.root.group("X")
            try enc(x, "csr_matrix", "0.1.0")
            try x.setAttribute("shape", [Int64(s.nObs), Int64(s.nVars)])
        }
        try finishBody(f.root, s, gathered: gathered, hasClusters: hasClusters, nClusters: nClusters, dim: dim,
                       obsm: extraObsm, hasGraph: hasGraph, obsp: extraObsp, uns: uns, unsTop: unsTop)
        try f.close()
    }

    static func finishBody(_ root: H5Group, _ s: CellShard, gathered: Gathered, hasClusters: Bool, nClusters: Int,
                           dim: Int, obsm extraObsm: [String] = [], hasGraph: Bool, obsp extraObsp: [String] = [],
                           uns: [(String, UnsValue)], unsTop: [(String, UnsValue)] = []) throws {
        try enc(root, "anndata", "0.1.0")
        // obs
        let obs = try root.group("obs")
        try enc(obs, "dataframe", "0.2.0")
        let indexName = s.obs.columnNames.contains(s.obs.indexName) || s.obs.indexName == "syncytium_cluster"
            ? "_index" : s.obs.indexName
        try obs.setAttribute("_index", indexName)
        try enc(try obs.writeStrings(indexName, gathered.index), "string-array", "0.2.0")
        var order: [String] = []
        for name in s.obs.columnNames where name != "syncytium_cluster" {
            let c = s.obs[name]!
            switch c {
            case .strings: try writeColumn(obs, name, .strings(gathered.strings[name] ?? []), existing: false)
            case .bools: try writeColumn(obs, name, .bools(gathered.bools[name] ?? []), existing: false)
            default: try writeColumn(obs, name, c, existing: true)
            }
            order.append(name)
        }
        if hasClusters {
            try writeColumn(obs, "syncytium_cluster",
                            .categorical(codes: [], categories: (0..<nClusters).map(String.init), ordered: false), existing: true)
            order.append("syncytium_cluster")
        }
        try obs.setAttribute("column-order", order)
        // var (replicated on every rank; rank 0 writes it)
        let v = try root.group("var")
        try enc(v, "dataframe", "0.2.0")
        let vIndex = s.vars.columnNames.contains(s.vars.indexName) ? "_index" : s.vars.indexName
        try v.setAttribute("_index", vIndex)
        try enc(try v.writeStrings(vIndex, s.vars.index), "string-array", "0.2.0")
        for name in s.vars.columnNames { try writeColumn(v, name, s.vars[name]!, existing: false) }
        try v.setAttribute("column-order", s.vars.columnNames)
        // obsm / obsp / dicts
        let obsm = try root.group("obsm")
        try enc(obsm, "dict", "0.1.0")
        if dim > 0 { try enc(try obsm.dataset("X_syncytium"), "array", "0.2.0") }
        for name in extraObsm { try enc(try obsm.dataset(name), "array", "0.2.0") }
        let obsp = try root.group("obsp")
        try enc(obsp, "dict", "0.1.0")
        for name in (hasGraph ? ["connectivities", "distances"] : []) + extraObsp {
            let m = try obsp.group(name)
            try enc(m, "csr_matrix", "0.1.0")
            try m.setAttribute("shape", [Int64(s.nObs), Int64(s.nObs)])
        }
        for name in ["layers", "varm", "varp"] { try enc(try root.group(name), "dict", "0.1.0") }
        let u = try root.group("uns")
        try enc(u, "dict", "0.1.0")
        if !uns.isEmpty { try writeUns(u, [("syncytium", .dict(uns))]) }
        try writeUns(u, unsTop.filter { $0.0 != "syncytium" })
    }
}

/// Where a rank's sparse rows go in a global CSR (data/indices/indptr), computed collectively.
struct SparsePlan {
    var nnz: Int64
    var entryRuns: [Range<Int>] = []
    var indptrRuns: [Range<Int>] = []
    var indptr: [Int64] = []

    /// Collective. Where this rank's rows (`rowIds`, global; CSR `rowPtr`) go in the file's matrix of
    /// `nObs` rows. Rows in ascending blocks (`RowBlocks`) take their offsets from a prefix of the
    /// ranks' entry counts; any other placement from every row's length allreduced (N Int64s per rank).
    init(rowPtr: [Int64], rowIds: [Int64], nObs: Int, rowRuns: [Range<Int>], comm: Communicator) throws {
        let local = (rowPtr.last ?? 0) - (rowPtr.first ?? 0)
        let blocks = try RowBlocks(ids: rowIds, value: local, comm: comm)
        if blocks.ordered {
            let base = blocks.before(comm.rank), first = rowPtr.first ?? 0
            nnz = blocks.total
            if local > 0 { entryRuns = [Int(base)..<Int(base + local)] }
            indptr = rowIds.indices.map { base + rowPtr[$0] - first }
        } else {
            var lens = [Int64](repeating: 0, count: nObs)
            for (i, id) in rowIds.enumerated() { lens[Int(id)] = rowPtr[i + 1] - rowPtr[i] }
            try comm.allreduce(&lens, op: .sum)
            var offset = [Int64](repeating: 0, count: nObs + 1)
            for i in 0..<nObs { offset[i + 1] = offset[i] + lens[i] }
            nnz = offset[nObs]
            for (i, id) in rowIds.enumerated() {
                let a = Int(offset[Int(id)]), n = Int(rowPtr[i + 1] - rowPtr[i])
                if n == 0 { continue }
                if let last = entryRuns.last, last.upperBound == a { entryRuns[entryRuns.count - 1] = last.lowerBound..<(a + n) }
                else { entryRuns.append(a..<(a + n)) }
            }
            indptr = rowIds.map { offset[Int($0)] }
        }
        indptrRuns = rowRuns
        if rowIds.last == Int64(nObs - 1) {
            indptrRuns[indptrRuns.count - 1] = indptrRuns[indptrRuns.count - 1].lowerBound..<(nObs + 1)
            indptr.append(nnz)
        }
    }

    /// Collective: creates data/indices/indptr in `g` and writes this rank's part.
    func write(into g: H5Group, values: [Float], colIdx: [Int32], nObs: Int, gzip: Int?) throws {
        let chunk = gzip == nil ? nil : [Swift.max(1, Swift.min(Int(nnz), 1 << 18))]
        try g.createDataset("data", of: Float.self, shape: [Int(nnz)], chunk: chunk, gzip: gzip).write(values, runs: entryRuns)
        // indices and indptr in one integer type, as scipy keeps them and anndata writes them: int32
        // while nnz fits, int64 beyond. (int64 indptr beside int32 indices reads, but row subsetting
        // `adata[rows].copy()` fails in scipy < 1.13 with "Output dtype not compatible with inputs".)
        // nnz is global, so every rank picks the same type.
        if nnz <= Int64(Int32.max) {
            try g.createDataset("indices", of: Int32.self, shape: [Int(nnz)], chunk: chunk, gzip: gzip).write(colIdx, runs: entryRuns)
            try g.createDataset("indptr", of: Int32.self, shape: [nObs + 1]).write(indptr.map { Int32($0) }, runs: indptrRuns)
        } else {
            try g.createDataset("indices", of: Int64.self, shape: [Int(nnz)], chunk: chunk, gzip: gzip).write(colIdx.map(Int64.init), runs: entryRuns)
            try g.createDataset("indptr", of: Int64.self, shape: [nObs + 1]).write(indptr, runs: indptrRuns)
        }
    }
}

/// What the file system refuses, in plain words, for error messages.
public enum FileSystemCheck {
    /// Why files cannot be written in the folder of `path` (full, read-only, not writable), or nil.
    public static func diagnose(folderOf path: String) -> String? {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) }.map { $0.isEmpty ? "/" : $0 } ?? "."
        var vfs = statvfs()
        if statvfs(dir, &vfs) == 0 {
            if (vfs.f_flag & UInt(ST_RDONLY)) != 0 { return "read-only file system (\(dir))" }
            let free = Double(vfs.f_bavail) * Double(vfs.f_frsize)
            // A failed write that leaves less than 64 KiB free ran out of space.
            if free < 65_536 { return "no space left on device (\(Int(free / 1024)) KiB free in \(dir))" }
        }
        if access(dir, W_OK) != 0 { return "permission denied (cannot create files in \(dir))" }
        return nil
    }
}
