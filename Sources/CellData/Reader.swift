import Collectives
import HDF5IO
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which matrix of an .h5ad holds the counts.
public enum CountsSource: Sendable, Equatable, CustomStringConvertible {
    case x
    case layer(String)
    case raw
    public var path: String {
        switch self {
        case .x: return "X"
        case .layer(let n): return "layers/\(n)"
        case .raw: return "raw/X"
        }
    }
    public var description: String { path }
}

public struct ReadOptions: Sendable {
    public var counts: CountsSource = .x
    /// Negative values are an error (NaN/Inf always are).
    public var requireCounts = true
    /// obs columns that must exist (e.g. the label key).
    public var requiredObsKeys: [String] = []
    /// When set, ranks get a seeded random subset of rows instead of contiguous slabs.
    public var permutationSeed: UInt64? = nil
    /// Read obs columns (the index is always read).
    public var readObsColumns = true
    /// Open the input through MPI-IO (all ranks together) instead of each rank opening it
    /// read-only with the POSIX driver. Independent POSIX reads of one large slab per rank are
    /// faster with Open MPI's OMPIO here; MPI-IO helps on parallel file systems.
    public var mpiIO = false
    /// Read obs and var at all (off: index = row/gene numbers; for benchmarks of X alone).
    public var readFrames = true
    public init() {}
}

/// How a file's matrix is laid out, found from its metadata only.
public struct MatrixLayout: Sendable {
    public var format: String
    public var matrixPath: String
    /// "csr", "csc", "dense". 10x's matrix is stored cells-as-columns CSC, which is our CSR.
    public var layout: String
    public var nObs: Int
    public var nVars: Int
    public var dtype: H5TypeClass
    public var nnz: Int64?
    var dataPath: String
    var indicesPath: String?
    var indptrPath: String?
    /// Where obs and var live (anndata groups), or nil for other formats.
    var obsPath: String?
    var varPath: String?
}

/// Readers for AnnData .h5ad, 10x Genomics v3 .h5 and the legacy benchmark layouts.
/// Every rank calls `read` together; each reads only its own rows.
public enum CellReader {

    /// Reads this rank's rows. Errors are agreed across ranks: every rank throws the same
    /// `CellDataError` (no rank hangs).
    public static func read(_ path: String, comm: Communicator, options: ReadOptions = ReadOptions()) throws -> CellShard {
        let file = try agreeing(comm) { try openInput(path, communicator: options.mpiIO && comm.size > 1 ? comm : nil) }
        let layout = try agreeing(comm) { try describe(file, path: path, counts: options.counts) }
        try agreeing(comm) {
            if layout.nObs == 0 || layout.nVars == 0 {
                throw CellDataError(file: path, object: layout.matrixPath,
                                    problem: "empty matrix (\(layout.nObs) cells × \(layout.nVars) genes)",
                                    fix: "pass a file with at least one cell and one gene")
            }
            try checkGeneCount(layout, path: path)
            if layout.nObs < comm.size {
                throw CellDataError(file: path, object: layout.matrixPath,
                                    problem: "more ranks (\(comm.size)) than cells (\(layout.nObs))",
                                    fix: "run with at most \(layout.nObs) ranks")
            }
        }
        var shard: CellShard
        var slab: Range<Int>
        switch layout.layout {
        case "csr": (shard, slab) = try readCSR(file, layout, path: path, comm: comm, options: options)
        case "csc": (shard, slab) = try readCSC(file, layout, path: path, comm: comm, options: options)
        default: (shard, slab) = try readDense(file, layout, path: path, comm: comm, options: options)
        }
        let (obs, vars) = try agreeing(comm) { () -> (Frame, Frame) in
            guard options.readFrames else {
                return (Frame(index: slab.map { String($0) }), Frame(index: (0..<layout.nVars).map { String($0) }))
            }
            return try readFrames(file, layout, path: path, rows: slab, options: options)
        }
        shard.obs = obs
        shard.vars = vars
        if let seed = options.permutationSeed, comm.size > 1 {
            shard = try Redistribute.permuted(shard, seed: seed, comm: comm)
        }
        return shard
    }

    /// Opens an input file after checking it exists and is HDF5 (message names the problem);
    /// through MPI-IO on `communicator` (all its ranks together), or serially when nil.
    static func openInput(_ path: String, communicator: Communicator?) throws -> H5File {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw CellDataError(file: path, object: "file", problem: "does not exist or cannot be read",
                                fix: "check the path")
        }
        guard st.st_size > 0 else {
            throw CellDataError(file: path, object: "file", problem: "is empty (0 bytes)",
                                fix: "re-create it, e.g. with anndata's write_h5ad")
        }
        guard H5File.isHDF5(path) else {
            throw CellDataError(file: path, object: "file", problem: "is not an HDF5 file (no HDF5 signature; truncated or another format)",
                                fix: "pass an .h5ad, a 10x .h5 or a legacy X/Y .h5")
        }
        do {
            return try H5File.open(path, communicator: communicator)
        } catch {
            throw CellDataError(file: path, object: "file", problem: "cannot be opened by HDF5 (\(error))",
                                fix: "the file is probably truncated or damaged; re-create it")
        }
    }

    /// Finds the counts matrix and its layout from metadata only (no matrix data read).
    public static func describe(_ file: H5File, path: String, counts: CountsSource = .x) throws -> MatrixLayout {
        let root = file.root
        if root.kind(of: "matrix") == .group, root.exists("matrix/barcodes") {
            return try describe10x(root, path: path)
        }
        if root.exists("exprs") && !root.exists("X") {
            // The seed methods' legacy layout: exprs (CSR group or dense), obs/var groups of
            // columns, obs_names/var_names at the top level.
            var layout = try describeMatrix(root, "exprs", path: path, format: "legacy-exprs")
            layout.obsPath = root.kind(of: "obs") == .group ? "obs" : nil
            layout.varPath = root.kind(of: "var") == .group ? "var" : nil
            return layout
        }
        if root.exists("X") || root.exists("obs") || root.exists("layers") || root.exists("raw") {
            let isAnnData = root.exists("obs") || root.hasAttribute("encoding-type")
            if !isAnnData, root.kind(of: "X") == .dataset {
                return try describeDense(root, "X", path: path, format: "legacy-xy")
            }
            // anndata < 0.7 wrote raw as top-level "raw.X" / "raw.var".
            let mpath = counts == .raw && !root.exists("raw/X") && root.exists("raw.X") ? "raw.X" : counts.path
            guard root.exists(mpath) else {
                var avail = ""
                if case .layer = counts, root.kind(of: "layers") == .group {
                    let names = (try? root.group("layers").memberNames()) ?? []
                    avail = names.isEmpty ? " (the file has no layers)" : " (layers: \(names.joined(separator: ", ")))"
                }
                if counts == .x {
                    let layers = root.kind(of: "layers") == .group ? ((try? root.group("layers").memberNames()) ?? []) : []
                    let others = layers.map { "--layer \($0)" } + (root.exists("raw/X") || root.exists("raw.X") ? ["--raw"] : [])
                    throw CellDataError(file: path, object: "X", problem: "absent (the file stores X = None)",
                                        fix: others.isEmpty ? "write the counts matrix to X" : "pick a matrix the file has: \(others.joined(separator: ", "))")
                }
                throw CellDataError(file: path, object: mpath, problem: "missing\(avail)",
                                    fix: "pick an existing matrix (--layer/--raw) or none for X")
            }
            var layout = try describeMatrix(root, mpath, path: path, format: "anndata")
            // A group (anndata ≥ 0.7) or a compound dataset (a record array, anndata < 0.7).
            layout.obsPath = root.kind(of: "obs") != nil ? "obs" : nil
            let varGroup = counts == .raw ? (mpath == "raw.X" ? "raw.var" : "raw/var") : "var"
            layout.varPath = root.kind(of: varGroup) != nil ? varGroup : nil
            return layout
        }
        let members = (try? root.memberNames()) ?? []
        throw CellDataError(file: path, object: "X", problem: "missing: no X, matrix (10x) or exprs object (top level holds: \(members.isEmpty ? "nothing" : members.joined(separator: ", ")))",
                            fix: "pass an AnnData .h5ad, a 10x v3 .h5 or a legacy X/Y .h5")
    }

    static func describe10x(_ root: H5Group, path: String) throws -> MatrixLayout {
        let g = try root.group("matrix")
        for n in ["data", "indices", "indptr", "shape"] where !g.exists(n) {
            throw CellDataError(file: path, object: "matrix/\(n)", problem: "missing from the 10x matrix group",
                                fix: "pass a Cell Ranger v3 filtered_feature_bc_matrix.h5")
        }
        let shape: [Int64] = try g.dataset("shape").readAll()
        guard shape.count == 2 else {
            throw CellDataError(file: path, object: "matrix/shape", problem: "has \(shape.count) values, expected 2",
                                fix: "pass a Cell Ranger v3 .h5")
        }
        guard shape.allSatisfy({ (0...Int64(Int32.max)).contains($0) }) else {
            throw CellDataError(file: path, object: "matrix/shape", problem: "invalid shape \(shape) (each value must be in 0...2^31-1)",
                                fix: "pass a Cell Ranger v3 .h5")
        }
        let data = try g.dataset("data")
        return MatrixLayout(format: "10x-v3", matrixPath: "matrix", layout: "csr", nObs: Int(shape[1]),
                            nVars: Int(shape[0]), dtype: data.typeClass, nnz: Int64(data.count),
                            dataPath: "matrix/data", indicesPath: "matrix/indices", indptrPath: "matrix/indptr",
                            obsPath: nil, varPath: nil)
    }

    static func describeDense(_ root: H5Group, _ mpath: String, path: String, format: String) throws -> MatrixLayout {
        let d = try root.dataset(mpath)
        guard d.shape.count == 2 else {
            throw CellDataError(file: path, object: mpath, problem: "dense matrix has \(d.shape.count) dimensions, expected 2",
                                fix: "store X as cells × genes")
        }
        try checkValueType(d, path: path)
        return MatrixLayout(format: format, matrixPath: mpath, layout: "dense", nObs: d.shape[0], nVars: d.shape[1],
                            dtype: d.typeClass, nnz: nil, dataPath: mpath, indicesPath: nil, indptrPath: nil,
                            obsPath: nil, varPath: nil)
    }

    static func checkValueType(_ d: H5Dataset, path: String) throws {
        switch d.typeClass {
        case .integer, .float: return
        default:
            throw CellDataError(file: path, object: d.path.hasPrefix("/") ? String(d.path.dropFirst()) : d.path,
                                problem: "holds \(d.typeClass.name) values, not numbers",
                                fix: "store counts as float32/float64/int32/int64")
        }
    }

    static func describeMatrix(_ root: H5Group, _ mpath: String, path: String, format: String) throws -> MatrixLayout {
        switch root.kind(of: mpath) {
        case .dataset?:
            return try describeDense(root, mpath, path: path, format: format)
        case .group?:
            let g = try root.group(mpath)
            var enc = ""
            if g.hasAttribute("encoding-type") { enc = try g.stringAttribute("encoding-type") }
            else if g.hasAttribute("h5sparse_format") { enc = try g.stringAttribute("h5sparse_format") + "_matrix" }
            else if format == "legacy-exprs" { enc = "csr_matrix" }
            guard enc == "csr_matrix" || enc == "csc_matrix" else {
                throw CellDataError(file: path, object: mpath,
                                    problem: enc.isEmpty ? "group without an encoding-type attribute" : "unknown encoding-type '\(enc)'",
                                    fix: "store X as csr_matrix, csc_matrix or a dense array (anndata ≥ 0.8 writes these)")
            }
            for n in ["data", "indices", "indptr"] where g.kind(of: n) != .dataset {
                throw CellDataError(file: path, object: "\(mpath)/\(n)", problem: "missing from the sparse matrix group",
                                    fix: "re-write the file with anndata")
            }
            var shape: [Int64] = []
            for key in ["shape", "h5sparse_shape"] where shape.isEmpty && g.hasAttribute(key) {
                shape = try g.numericAttribute(key)
            }
            if shape.isEmpty, g.kind(of: "shape") == .dataset { shape = try g.dataset("shape").readAll() }
            guard shape.count == 2, (0...Int64(Int32.max)).contains(shape[0]), (0...Int64(Int32.max)).contains(shape[1]) else {
                throw CellDataError(file: path, object: mpath, problem: "no valid 2-value shape attribute",
                                    fix: "re-write the file with anndata")
            }
            let data = try g.dataset("data"), indices = try g.dataset("indices"), indptr = try g.dataset("indptr")
            try checkValueType(data, path: path)
            guard case .integer = indices.typeClass, case .integer = indptr.typeClass else {
                throw CellDataError(file: path, object: "\(mpath)/indices", problem: "indices/indptr are not integers",
                                    fix: "re-write the file with anndata")
            }
            let csr = enc == "csr_matrix"
            let major = Int(csr ? shape[0] : shape[1])
            guard indptr.shape.count == 1, indptr.count == major + 1 else {
                throw CellDataError(file: path, object: "\(mpath)/indptr",
                                    problem: "shape mismatch: \(indptr.count) entries for \(major) \(csr ? "rows" : "columns") (expected \(major + 1))",
                                    fix: "the matrix is inconsistent; re-write it")
            }
            guard data.count == indices.count else {
                throw CellDataError(file: path, object: "\(mpath)/data",
                                    problem: "shape mismatch: data has \(data.count) entries, indices \(indices.count)",
                                    fix: "the matrix is inconsistent; re-write it")
            }
            return MatrixLayout(format: format, matrixPath: mpath, layout: csr ? "csr" : "csc", nObs: Int(shape[0]),
                                nVars: Int(shape[1]), dtype: data.typeClass, nnz: Int64(data.count),
                                dataPath: "\(mpath)/data", indicesPath: "\(mpath)/indices", indptrPath: "\(mpath)/indptr",
                                obsPath: nil, varPath: nil)
        default:
            throw CellDataError(file: path, object: mpath, problem: "missing", fix: "write the counts matrix there")
        }
    }

    // MARK: CSR

    static func readCSR(_ file: H5File, _ L: MatrixLayout, path: String, comm: Communicator,
                        options: ReadOptions) throws -> (CellShard, Range<Int>) {
        // indptr: each rank reads and validates an equal slice of it (neighbouring slices share one
        // entry, so monotonicity is checked across the cuts); the nnz-balanced cuts are found in the
        // slices (one allreduce), and each rank then reads the indptr of its own rows. No rank holds
        // more than ≈ 2·N/P + 1 entries of it.
        let n = L.nObs, nnz = L.nnz ?? 0
        let slice = (n * comm.rank / comm.size)...(n * (comm.rank + 1) / comm.size)
        let part: [Int64] = try agreeing(comm) {
            let d = try file.root.dataset(L.indptrPath!)
            guard d.count == n + 1 else {
                throw CellDataError(file: path, object: L.indptrPath!,
                                    problem: "shape mismatch: \(d.count) entries for \(n) cells (expected \(n + 1))",
                                    fix: "the matrix is inconsistent; re-write it")
            }
            let p: [Int64] = try readOrExplain(path, L.indptrPath!) { try d.read(rows: slice.lowerBound..<(slice.upperBound + 1)) }
            try validateIndptr(p, from: slice.lowerBound, nnz: nnz, first: comm.rank == 0, last: comm.rank == comm.size - 1,
                               path: path, object: L.indptrPath!)
            return p
        }
        let bounds = try RowPartition.balancedByNNZ(indptrSlice: part, from: slice.lowerBound, rows: n, nnz: nnz,
                                                    parts: comm.size, comm: comm)
        let rows = bounds[comm.rank]..<bounds[comm.rank + 1]
        let indptr: [Int64] = try agreeing(comm) {
            try readOrExplain(path, L.indptrPath!) {
                try file.root.dataset(L.indptrPath!).read(rows: rows.lowerBound..<(rows.upperBound + 1))
            }
        }
        let shard: CellShard = try agreeing(comm) {
            let lo = Int(indptr.first!), hi = Int(indptr.last!)
            guard zip(indptr, indptr.dropFirst()).allSatisfy({ $0 <= $1 }) else {
                throw CellDataError(file: path, object: L.indptrPath!, problem: "indptr changed while it was read",
                                    fix: "do not write the file while it is read")
            }
            let dataSet = try file.root.dataset(L.dataPath)
            let idxSet = try file.root.dataset(L.indicesPath!)
            let values: [Float] = try readOrExplain(path, L.dataPath) { try dataSet.read(rows: lo..<hi) }
            try validateValues(values, path: path, object: L.dataPath, requireCounts: options.requireCounts)
            if L.nVars > Int(Int32.max) {
                throw CellDataError(file: path, object: L.indicesPath!, problem: "more than 2^31 genes", fix: "subset genes")
            }
            let cols: [Int32] = try readOrExplain(path, L.indicesPath!) { try idxSet.read(rows: lo..<hi) }
            try validateIndices(cols, bound: L.nVars, path: path, object: L.indicesPath!, what: "gene")
            let base = indptr.first!
            let rowPtr = indptr.map { $0 - base }
            return CellShard(nObs: L.nObs, nVars: L.nVars, rowIds: rows.map { Int64($0) }, rowPtr: rowPtr,
                             colIdx: cols, values: values, obs: Frame(index: []), vars: Frame(index: []),
                             source: sourceInfo(L, path: path))
        }
        return (shard, rows)
    }

    static func sourceInfo(_ L: MatrixLayout, path: String) -> SourceInfo {
        SourceInfo(file: path, format: L.format, matrixPath: L.matrixPath, layout: L.layout, dtype: L.dtype.name,
                   nnz: L.nnz ?? -1)
    }

    static func readOrExplain<R>(_ path: String, _ object: String, _ body: () throws -> R) throws -> R {
        do { return try body() } catch let e as CellDataError { throw e } catch {
            let text = "\(error)"
            // A compression filter the file needs and this process lacks is not damage: name it.
            if let r = text.range(of: "required filter '"), let end = text[r.upperBound...].firstIndex(of: "'") {
                let name = String(text[r.upperBound..<end].prefix { $0 != ";" })
                throw CellDataError(file: path, object: object,
                                    problem: "compressed with the HDF5 filter '\(name)', which this process does not have",
                                    fix: missingFilterFix(name))
            }
            throw CellDataError(file: path, object: object, problem: "read failed (\(error))",
                                fix: "the file is probably truncated or damaged; re-create it")
        }
    }

    /// Where a missing HDF5 filter comes from (Debian packages; LZF and gzip are built in).
    static func missingFilterFix(_ name: String) -> String {
        let rewrite = "or re-write the file with gzip (anndata: write_h5ad(path, compression=\"gzip\"))"
        let lower = name.lowercased()
        let package: String?
        if lower.contains("blosc") { package = "hdf5-filter-plugin-blosc-serial" }
        else if lower.contains("zfp") { package = "hdf5-filter-plugin-zfp-serial" }
        else if lower.contains("lz4") || lower.contains("bzip2") || lower.contains("bshuf") || lower.contains("bitshuffle") { package = "hdf5-filter-plugin" }
        else { package = nil }
        let plugins = "/usr/lib/x86_64-linux-gnu/hdf5/openmpi/plugins"
        if let package {
            return "install its HDF5 plugin (Debian: \(package); put the .so in \(plugins) or HDF5_PLUGIN_PATH) \(rewrite)"
        }
        return "install an HDF5 plugin for '\(name)' (in \(plugins) or HDF5_PLUGIN_PATH; h5py users get it from the hdf5plugin package) \(rewrite)"
    }

    /// A slice of indptr starting at entry `from`: monotone (entries named by their global index); it
    /// starts at 0 when it is the `first` slice and ends at `nnz` when it is the `last`.
    static func validateIndptr(_ p: [Int64], from: Int, nnz: Int64, first: Bool, last: Bool, path: String, object: String) throws {
        if first && p.first != 0 {
            throw CellDataError(file: path, object: object, problem: "indptr starts at \(p.first ?? -1), not 0",
                                fix: "the matrix is inconsistent; re-write it")
        }
        for i in p.indices.dropFirst() where p[i] < p[i - 1] {
            throw CellDataError(file: path, object: object,
                                problem: "non-monotone indptr (entry \(from + i) = \(p[i]) < entry \(from + i - 1) = \(p[i - 1]))",
                                fix: "the matrix is inconsistent; re-write it")
        }
        if last && p.last != nnz {
            throw CellDataError(file: path, object: object,
                                problem: "shape mismatch: indptr ends at \(p.last ?? -1) but data holds \(nnz) entries",
                                fix: "the matrix is inconsistent or truncated; re-write it")
        }
    }

    static func validateIndptr(_ p: [Int64], nnz: Int64, path: String, object: String) throws {
        try validateIndptr(p, from: 0, nnz: nnz, first: true, last: true, path: path, object: object)
    }

    static func validateValues(_ v: [Float], path: String, object: String, requireCounts: Bool) throws {
        // Fast pass (vectorises): a non-negative finite float has a bit pattern below +Inf's.
        let maxBits = v.withUnsafeBufferPointer { b -> UInt32 in
            var m: UInt32 = 0
            for x in b { m = Swift.max(m, x.bitPattern) }
            return m
        }
        if maxBits < Float.infinity.bitPattern { return }
        for (i, x) in v.enumerated() {
            if !x.isFinite {
                throw CellDataError(file: path, object: object, problem: "\(x.isNaN ? "NaN" : "Inf") value at entry \(i) of this rank's slab",
                                    fix: "counts must be finite; clean the matrix first")
            }
            if requireCounts && x < 0 {
                throw CellDataError(file: path, object: object, problem: "negative count \(x)",
                                    fix: "pass raw counts (e.g. --layer counts or --raw), not scaled data")
            }
        }
    }

    static func validateIndices(_ c: [Int32], bound: Int, path: String, object: String, what: String) throws {
        // Fast pass: negative indices become huge as UInt32.
        let maxIndex = c.withUnsafeBufferPointer { b -> UInt32 in
            var m: UInt32 = 0
            for x in b { m = Swift.max(m, UInt32(bitPattern: x)) }
            return m
        }
        if c.isEmpty || Int(maxIndex) < bound { return }
        for x in c where x < 0 || Int(x) >= bound {
            throw CellDataError(file: path, object: object, problem: "\(what) index \(x) out of range 0..<\(bound)",
                                fix: "the matrix is inconsistent; re-write it")
        }
    }

    // MARK: CSC (cells are the minor axis): a distributed transpose

    /// Each rank reads an equal share of the stored entries (whole columns' worth of file order),
    /// the ranks agree on nnz-balanced row ranges from a global per-row histogram, and an
    /// all-to-all sends every entry to the rank owning its row. No rank reads more than its share
    /// or holds more than its rows (plus its share in flight).
    static func readCSC(_ file: H5File, _ L: MatrixLayout, path: String, comm: Communicator,
                        options: ReadOptions) throws -> (CellShard, Range<Int>) {
        let colPtrLocal: [Int64] = try agreeing(comm) {
            guard comm.rank == 0 else { return [] }
            let d = try file.root.dataset(L.indptrPath!)
            let p: [Int64] = try readOrExplain(path, L.indptrPath!) { try d.readAll() }
            try validateIndptr(p, nnz: L.nnz ?? 0, path: path, object: L.indptrPath!)
            return p
        }
        let colPtr = try comm.broadcast(array: colPtrLocal, root: 0)
        let total = Int(colPtr.last ?? 0)
        let share = (total * comm.rank / comm.size)..<(total * (comm.rank + 1) / comm.size)
        // My share of entries: their rows, columns and values.
        let (rowsOf, colsOf, valsOf): ([Int32], [Int32], [Float]) = try agreeing(comm) {
            let r: [Int64] = try readOrExplain(path, L.indicesPath!) { try file.root.dataset(L.indicesPath!).read(rows: share) }
            let v: [Float] = try readOrExplain(path, L.dataPath) { try file.root.dataset(L.dataPath).read(rows: share) }
            try validateValues(v, path: path, object: L.dataPath, requireCounts: options.requireCounts)
            var cols = [Int32](repeating: 0, count: r.count)
            // First column whose range reaches the share's start, then walk.
            var lo = 0, hi = L.nVars
            while lo < hi { let m = (lo + hi) / 2; if Int(colPtr[m + 1]) <= share.lowerBound { lo = m + 1 } else { hi = m } }
            var col = lo
            for k in 0..<r.count {
                let g = share.lowerBound + k
                while Int(colPtr[col + 1]) <= g { col += 1 }
                cols[k] = Int32(col)
                if r[k] < 0 || r[k] >= Int64(L.nObs) {
                    throw CellDataError(file: path, object: L.indicesPath!, problem: "cell index \(r[k]) out of range 0..<\(L.nObs)",
                                        fix: "the matrix is inconsistent; re-write it")
                }
            }
            return (r.map { Int32($0) }, cols, v)
        }
        // Global per-row entry counts → the same nnz-balanced row ranges as for CSR.
        var perRow = [Int64](repeating: 0, count: L.nObs)
        for r in rowsOf { perRow[Int(r)] += 1 }
        try comm.allreduce(&perRow, op: .sum)
        var indptr = [Int64](repeating: 0, count: L.nObs + 1)
        for i in 0..<L.nObs { indptr[i + 1] = indptr[i] + perRow[i] }
        perRow = []
        let bounds = RowPartition.balancedByNNZ(indptr: indptr, parts: comm.size)
        let rows = bounds[comm.rank]..<bounds[comm.rank + 1]
        // Send each entry to its row's owner (entries stay in file order, i.e. column order).
        var owner = [Int](repeating: 0, count: rowsOf.count)
        var counts = [Int](repeating: 0, count: comm.size)
        for (k, r) in rowsOf.enumerated() {
            var lo = 0, hi = comm.size - 1
            while lo < hi { let m = (lo + hi + 1) / 2; if bounds[m] <= Int(r) { lo = m } else { hi = m - 1 } }
            owner[k] = lo; counts[lo] += 1
        }
        var order = [Int](); order.reserveCapacity(rowsOf.count)
        var buckets = [[Int]](repeating: [], count: comm.size)
        for (k, o) in owner.enumerated() { buckets[o].append(k) }
        for b in buckets { order.append(contentsOf: b) }
        buckets = []
        let rr = try comm.alltoallv(order.map { rowsOf[$0] }, sendCounts: counts).values
        let cc = try comm.alltoallv(order.map { colsOf[$0] }, sendCounts: counts).values
        let vv = try comm.alltoallv(order.map { valsOf[$0] }, sendCounts: counts).values
        // Counting sort into CSR; arrivals are in rank order = column order, and the sort is stable.
        var rowPtr = [Int64](repeating: 0, count: rows.count + 1)
        for r in rr { rowPtr[Int(r) - rows.lowerBound + 1] += 1 }
        for i in 0..<rows.count { rowPtr[i + 1] += rowPtr[i] }
        var fill = rowPtr
        var cols = [Int32](repeating: 0, count: vv.count), vals = [Float](repeating: 0, count: vv.count)
        for k in 0..<vv.count {
            let r = Int(rr[k]) - rows.lowerBound
            let at = Int(fill[r]); fill[r] += 1
            cols[at] = cc[k]; vals[at] = vv[k]
        }
        let shard = CellShard(nObs: L.nObs, nVars: L.nVars, rowIds: rows.map { Int64($0) }, rowPtr: rowPtr,
                              colIdx: cols, values: vals, obs: Frame(index: []), vars: Frame(index: []),
                              source: sourceInfo(L, path: path))
        return (shard, rows)
    }

    // MARK: Dense

    static func readDense(_ file: H5File, _ L: MatrixLayout, path: String, comm: Communicator,
                          options: ReadOptions) throws -> (CellShard, Range<Int>) {
        let bounds = RowPartition.equalRows(L.nObs, parts: comm.size)
        let rows = bounds[comm.rank]..<bounds[comm.rank + 1]
        let shard: CellShard = try agreeing(comm) {
            let d = try file.root.dataset(L.dataPath)
            let blockRows = Swift.max(1, (1 << 22) / Swift.max(L.nVars, 1))
            var rowPtr: [Int64] = [0]
            var cols: [Int32] = [], vals: [Float] = []
            var r = rows.lowerBound
            while r < rows.upperBound {
                let e = Swift.min(r + blockRows, rows.upperBound)
                let block: [Float] = try readOrExplain(path, L.dataPath) { try d.read(rows: r..<e) }
                try validateValues(block, path: path, object: L.dataPath, requireCounts: options.requireCounts)
                for i in 0..<(e - r) {
                    for j in 0..<L.nVars {
                        let x = block[i * L.nVars + j]
                        if x != 0 { cols.append(Int32(j)); vals.append(x) }
                    }
                    rowPtr.append(Int64(vals.count))
                }
                r = e
            }
            return CellShard(nObs: L.nObs, nVars: L.nVars, rowIds: rows.map { Int64($0) }, rowPtr: rowPtr,
                             colIdx: cols, values: vals, obs: Frame(index: []), vars: Frame(index: []),
                             source: sourceInfo(L, path: path))
        }
        return (shard, rows)
    }

    // MARK: obs / var

    static func readFrames(_ file: H5File, _ L: MatrixLayout, path: String, rows: Range<Int>,
                           options: ReadOptions) throws -> (Frame, Frame) {
        let root = file.root
        var obs = Frame(index: rows.map { String($0) })
        var vars = Frame(index: (0..<L.nVars).map { String($0) })
        switch L.format {
        case "10x-v3":
            let g = try root.group("matrix")
            obs = Frame(index: try readOrExplain(path, "matrix/barcodes") { try g.dataset("barcodes").readStrings(rows: rows) })
            obs.indexName = "barcode"
            if g.kind(of: "features") == .group {
                let f = try g.group("features")
                if f.exists("name") { vars = Frame(index: try f.dataset("name").readStrings()) }
                vars.indexName = "gene_symbols"
                if f.exists("id") { vars.set("gene_ids", .strings(try f.dataset("id").readStrings())) }
                if f.exists("feature_type") { vars.set("feature_types", .strings(try f.dataset("feature_type").readStrings())) }
                if f.exists("genome") { vars.set("genome", .strings(try f.dataset("genome").readStrings())) }
            } else if g.exists("gene_names") {
                vars = Frame(index: try g.dataset("gene_names").readStrings())
                if g.exists("genes") { vars.set("gene_ids", .strings(try g.dataset("genes").readStrings())) }
            }
            try checkLength(vars.index.count, L.nVars, path: path, object: "matrix/features/name")
        case "legacy-xy":
            if root.kind(of: "Y") == .dataset {
                let y = try root.dataset("Y")
                guard y.count == L.nObs else {
                    throw CellDataError(file: path, object: "Y", problem: "shape mismatch: \(y.count) labels for \(L.nObs) cells",
                                        fix: "Y must hold one label per row of X")
                }
                let v: [Double] = try readOrExplain(path, "Y") { try y.read(rows: rows) }
                obs.set("Y", .numeric(v))
            }
        case "legacy-exprs":
            if let op = L.obsPath {
                obs = try readFrame(try root.group(op), path: path, object: op, rows: rows, expected: L.nObs,
                                    columns: options.readObsColumns)
            }
            if root.kind(of: "obs_names") == .dataset {
                let d = try root.dataset("obs_names")
                try checkLength(d.count, L.nObs, path: path, object: "obs_names")
                obs.index = try d.readStrings(rows: rows)
            }
            if let vp = L.varPath {
                vars = try readFrame(try root.group(vp), path: path, object: vp, rows: 0..<L.nVars, expected: L.nVars,
                                     columns: true)
            }
            if root.kind(of: "var_names") == .dataset {
                let d = try root.dataset("var_names")
                try checkLength(d.count, L.nVars, path: path, object: "var_names")
                vars.index = try d.readStrings()
            }
        default:
            if let op = L.obsPath {
                obs = try readFrame(root, op, path: path, rows: rows, expected: L.nObs, columns: options.readObsColumns)
            }
            if let vp = L.varPath {
                vars = try readFrame(root, vp, path: path, rows: 0..<L.nVars, expected: L.nVars, columns: true)
            }
        }
        for key in options.requiredObsKeys where obs[key] == nil {
            throw CellDataError(file: path, object: "obs/\(key)",
                                problem: "missing obs key (obs has: \(obs.columnNames.isEmpty ? "no columns" : obs.columnNames.joined(separator: ", ")))",
                                fix: "pass one of the existing keys")
        }
        return (obs, vars)
    }

    /// More genes than any assay measures: a damaged or hostile shape (the reader would otherwise make
    /// one name per declared gene before looking further).
    static let maxGenes = 10_000_000
    /// Likewise cells: more than 100 million declared cells, more than the entries stored, is a shape no
    /// data backs (a sparse matrix's cell axis is otherwise bounded only by its shape).
    static let maxUnbackedCells = 100_000_000
    static func checkGeneCount(_ L: MatrixLayout, path: String) throws {
        guard L.nVars <= maxGenes else {
            throw CellDataError(file: path, object: L.matrixPath, problem: "declares \(L.nVars) genes, more than \(maxGenes)",
                                fix: "the shape is damaged or transposed; re-write the file")
        }
        if let nnz = L.nnz, L.nObs > maxUnbackedCells, Int64(L.nObs) > nnz {
            throw CellDataError(file: path, object: L.matrixPath,
                                problem: "declares \(L.nObs) cells but stores only \(nnz) values",
                                fix: "the shape is damaged or transposed; re-write the file")
        }
    }

    static func checkUniqueCategories(_ cats: [String], path: String, object: String) throws {
        var seen = Set<String>()
        for c in cats where !seen.insert(c).inserted {
            throw CellDataError(file: path, object: object, problem: "category '\(c)' appears twice",
                                fix: "categories must be unique; re-write the file with anndata")
        }
    }

    static func checkLength(_ got: Int, _ want: Int, path: String, object: String) throws {
        guard got == want else {
            throw CellDataError(file: path, object: object, problem: "shape mismatch: \(got) entries, expected \(want)",
                                fix: "obs/var must have one entry per cell/gene")
        }
    }

    /// Reads the dataframe at `object` under `root`: a group (anndata ≥ 0.7) or a record array.
    static func readFrame(_ root: H5Group, _ object: String, path: String, rows: Range<Int>, expected: Int,
                          columns: Bool) throws -> Frame {
        if root.kind(of: object) == .dataset {
            return try readRecordFrame(try root.dataset(object), root: root, path: path, object: object, rows: rows,
                                       expected: expected, columns: columns)
        }
        return try readFrame(try root.group(object), path: path, object: object, rows: rows, expected: expected, columns: columns)
    }

    /// Rows of the dataframe at `object` (its index length), nil when it has no index.
    static func frameLength(_ root: H5Group, _ object: String) throws -> Int? {
        if root.kind(of: object) == .dataset { return try root.dataset(object).shape.first }
        guard root.kind(of: object) == .group else { return nil }
        let g = try root.group(object)
        var indexName = "_index"
        if g.hasAttribute("_index") { indexName = try g.stringAttribute("_index") }
        else if !g.exists("_index"), g.exists("index") { indexName = "index" }
        return g.kind(of: indexName) == .dataset ? try g.dataset(indexName).count : nil
    }

    /// anndata < 0.7's dataframe: one compound dataset, a field per column ("index" the names), and a
    /// categorical column stored as integer codes with its categories in `uns/<column>_categories`.
    static func readRecordFrame(_ d: H5Dataset, root: H5Group, path: String, object: String, rows: Range<Int>,
                                expected: Int, columns: Bool) throws -> Frame {
        guard let members = d.compoundMembers, d.shape.count == 1 else {
            throw CellDataError(file: path, object: object, problem: "a dataset of \(d.typeClass.name) \(d.shape), not a dataframe",
                                fix: "re-write the file with anndata")
        }
        try checkLength(d.count, expected, path: path, object: object)
        return try readOrExplain(path, object) {
            var frame = Frame(index: rows.map { String($0) })
            let indexField = members.first { $0.name == "index" || $0.name == "_index" }
            if let f = indexField {
                guard f.type.isString else {
                    throw CellDataError(file: path, object: "\(object)/\(f.name)", problem: "index of \(f.type.name), not strings",
                                        fix: "re-write the file with anndata")
                }
                frame = Frame(index: try d.readMemberStrings(f.name, rows: rows))
                frame.indexName = f.name
            }
            guard columns else { return frame }
            let uns = root.kind(of: "uns") == .group ? try root.group("uns") : nil
            for m in members where m.name != indexField?.name {
                let col: ObsColumn
                switch m.type {
                case .string: col = .strings(try d.readMemberStrings(m.name, rows: rows))
                case .enumeration: col = .bools(try d.readMemberBools(m.name, rows: rows))
                case .integer where uns?.kind(of: "\(m.name)_categories") == .dataset:
                    let codes: [Int32] = try d.readMember(m.name, rows: rows)
                    let cats = try uns!.dataset("\(m.name)_categories").readStrings()
                    for x in codes where x < -1 || Int(x) >= cats.count {
                        throw CellDataError(file: path, object: "\(object)/\(m.name)", problem: "code \(x) out of range for \(cats.count) categories",
                                            fix: "re-write the file with anndata")
                    }
                    col = .categorical(codes: codes, categories: cats, ordered: false)
                case .integer, .float: col = .numeric(try d.readMember(m.name, rows: rows))
                case .other:
                    continue    // array-valued fields are not dataframe columns
                }
                frame.set(m.name, col)
            }
            return frame
        }
    }

    /// Reads an anndata dataframe group's rows (index + columns).
    static func readFrame(_ g: H5Group, path: String, object: String, rows: Range<Int>, expected: Int,
                          columns: Bool) throws -> Frame {
        var indexName = "_index"
        if g.hasAttribute("_index") { indexName = try g.stringAttribute("_index") }
        else if !g.exists("_index"), g.exists("index") { indexName = "index" }
        var frame: Frame
        if g.kind(of: indexName) == .dataset {
            let d = try g.dataset(indexName)
            try checkLength(d.count, expected, path: path, object: "\(object)/\(indexName)")
            let column = try readColumn(g, indexName, path: path, object: object, rows: rows, legacyCategories: nil)
            frame = Frame(index: column.stringValues)
        } else {
            frame = Frame(index: rows.map { String($0) })
        }
        frame.indexName = indexName
        guard columns else { return frame }
        var order: [String] = []
        if g.hasAttribute("column-order"), (try? g.attributeType("column-order"))?.isString == true {
            order = try g.stringArrayAttribute("column-order")
        } else if !g.hasAttribute("column-order") {
            order = try g.memberNames().filter { $0 != indexName && $0 != "__categories" }
        }
        let legacy = g.kind(of: "__categories") == .group ? try g.group("__categories") : nil
        for name in order {
            guard g.exists(name) else {
                throw CellDataError(file: path, object: "\(object)/\(name)", problem: "listed in column-order but missing",
                                    fix: "re-write the file with anndata")
            }
            let col = try readColumn(g, name, path: path, object: object, rows: rows, legacyCategories: legacy)
            try checkLength(col.count, rows.count, path: path, object: "\(object)/\(name)")
            frame.set(name, col)
        }
        return frame
    }

    static func readColumn(_ g: H5Group, _ name: String, path: String, object: String, rows: Range<Int>,
                           legacyCategories: H5Group?) throws -> ObsColumn {
        let obj = "\(object)/\(name)"
        return try readOrExplain(path, obj) {
            if g.kind(of: name) == .group {
                let c = try g.group(name)
                let enc = c.hasAttribute("encoding-type") ? try c.stringAttribute("encoding-type") : ""
                switch enc {
                case "categorical":
                    let codesSet = try c.dataset("codes")
                    let codes: [Int32] = try codesSet.read(rows: rows)
                    let catSet = try c.dataset("categories")
                    let cats = catSet.typeClass.isString ? try catSet.readStrings()
                        : ObsColumn.numeric(try catSet.readAll()).stringValues
                    for x in codes where x < -1 || Int(x) >= cats.count {
                        throw CellDataError(file: path, object: "\(obj)/codes", problem: "code \(x) out of range for \(cats.count) categories",
                                            fix: "re-write the file with anndata")
                    }
                    try checkUniqueCategories(cats, path: path, object: "\(obj)/categories")
                    let ordered = (try? c.numericAttribute("ordered", as: Int8.self).first).flatMap { $0 } ?? 0
                    return .categorical(codes: codes, categories: cats, ordered: ordered != 0)
                case "nullable-integer", "nullable-boolean":
                    let v: [Double] = try c.dataset("values").read(rows: rows)
                    let m = try c.dataset("mask").readBools(rows: rows)
                    return .numeric(zip(v, m).map { $1 ? .nan : $0 })
                case "nullable-string-array":
                    let v = try c.dataset("values").readStrings(rows: rows)
                    return .strings(v)
                default:
                    throw CellDataError(file: path, object: obj,
                                        problem: enc.isEmpty ? "group without encoding-type" : "unknown encoding '\(enc)'",
                                        fix: "re-write the file with anndata ≥ 0.8")
                }
            }
            let d = try g.dataset(name)
            guard d.shape.count == 1 else {
                throw CellDataError(file: path, object: obj, problem: "column has shape \(d.shape), expected 1-D",
                                    fix: "re-write the file with anndata")
            }
            switch d.typeClass {
            case .string: return .strings(try d.readStrings(rows: rows))
            case .enumeration: return .bools(try d.readBools(rows: rows))
            case .integer, .float:
                if let lg = legacyCategories, lg.kind(of: name) == .dataset {
                    let codes: [Int32] = try d.read(rows: rows)
                    let cats = try lg.dataset(name).readStrings()
                    for x in codes where x < -1 || Int(x) >= cats.count {
                        throw CellDataError(file: path, object: obj, problem: "code \(x) out of range for the \(cats.count) categories in __categories/\(name)",
                                            fix: "re-write the file with anndata")
                    }
                    try checkUniqueCategories(cats, path: path, object: "\(object)/__categories/\(name)")
                    return .categorical(codes: codes, categories: cats, ordered: false)
                }
                return .numeric(try d.read(rows: rows))
            default:
                throw CellDataError(file: path, object: obj, problem: "unknown column type \(d.typeClass.name)",
                                    fix: "re-write the file with anndata ≥ 0.8")
            }
        }
    }
}
