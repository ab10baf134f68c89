// Output = input + results (issue 18): the output .h5ad is the input file copied byte for byte
// (every rank copies its 1/P of the bytes with pread/pwrite), then opened through MPI-IO and given
// the results on the input's rows. Only the links the run writes are replaced (deleted, then
// written anew); X, layers, raw, var and every other object keep their bytes and encodings.
// Deleted links leave their space unreclaimed in the file (h5repack reclaims it).
//
// Cell filtering renumbers the shard's rows and redistribution moves them between ranks; each row
// carries its input row (`CellShard.sourceRows`), and the results travel by one all-to-all to the
// rank owning that input row's block (equal blocks of the input's rows), which writes its block as
// one contiguous hyperslab with NaN (floats) / code −1 (categoricals) / empty rows (obsp) for the
// cells the run removed. Graph columns are mapped to input rows by asking the block owners (no
// array over all cells; `SparsePlan` keeps its O(cells) row-length table, as in the lean writer).
import Collectives
import HDF5IO
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where every local row's results go: rank r owns the input rows [bounds[r], bounds[r+1]).
struct SourceBlocks {
    let bounds: [Int]
    /// Local rows in send order (grouped by destination rank, stable).
    let order: [Int]
    let sendRows: [Int]
    /// Position in my block of every received row (arrival order), and the same ascending.
    let received: [Int]
    let keptPositions: [Int]
    /// Cell id (after filtering) of the first kept row of every rank's block (size + 1 values).
    let firstCell: [Int64]
    var lo: Int
    var hi: Int
    var count: Int { hi - lo }
    var rowRuns: [Range<Int>] { count > 0 ? [lo..<hi] : [] }

    /// Collective: this rank's block of a per-row array (`width` values a row), `fill` where no row arrived.
    func dense<T: CollectiveScalar>(_ values: [T], width: Int, fill: T) throws -> [T] {
        var send: [T] = []
        send.reserveCapacity(values.count)
        for i in order { send.append(contentsOf: values[(i * width)..<((i + 1) * width)]) }
        let got = try comm(values: send, counts: sendRows.map { $0 * width })
        var out = [T](repeating: fill, count: count * width)
        for (k, pos) in received.enumerated() {
            out.replaceSubrange((pos * width)..<((pos + 1) * width), with: got[(k * width)..<((k + 1) * width)])
        }
        return out
    }

    /// Collective: the input row of every cell id (ids after filtering: cell f is the f-th kept input
    /// row). Each id is asked of the rank whose block holds it (the kept rows of block r are the ids
    /// [firstCell[r], firstCell[r+1])): two all-to-alls of the ids, no table over all cells.
    func inputRows(ofCells ids: [Int32]) throws -> [Int32] {
        let p = sendRows.count
        func owner(_ id: Int64) -> Int {   // the r with firstCell[r] <= id < firstCell[r + 1]
            var a = 0, b = p - 1
            while a < b { let m = (a + b + 1) / 2; if firstCell[m] <= id { a = m } else { b = m - 1 } }
            while a > 0 && firstCell[a] > id { a -= 1 }
            return a
        }
        var buckets = [[Int]](repeating: [], count: p)
        for (k, id) in ids.enumerated() { buckets[owner(Int64(id))].append(k) }
        let order = buckets.flatMap { $0 }
        let asked = try communicator.alltoallv(order.map { Int64(ids[$0]) }, sendCounts: buckets.map(\.count))
        let mine = firstCell[communicator.rank]
        let answers = asked.values.map { Int32(lo + keptPositions[Int($0 - mine)]) }
        let back = try communicator.alltoallv(answers, sendCounts: asked.counts).values
        var out = [Int32](repeating: 0, count: ids.count)
        for (j, k) in order.enumerated() { out[k] = back[j] }
        return out
    }

    /// Collective: this rank's block of CSR rows, column ids (cells after filtering) mapped to input
    /// rows; rows of removed cells are empty.
    func sparse(_ m: SparseRows) throws -> SparseRows {
        let mapped = try inputRows(ofCells: m.colIdx)
        var lens: [Int64] = [], cols: [Int32] = [], vals: [Float] = []
        var entryCounts = [Int](repeating: 0, count: sendRows.count)
        var r = 0, left = sendRows.first ?? 0
        for i in order {
            while left == 0 { r += 1; left = sendRows[r] }
            left -= 1
            let a = Int(m.rowPtr[i]), b = Int(m.rowPtr[i + 1])
            lens.append(Int64(b - a))
            entryCounts[r] += b - a
            cols.append(contentsOf: mapped[a..<b])
            vals.append(contentsOf: m.values[a..<b])
        }
        let gotLens = try comm(values: lens, counts: sendRows)
        let gotCols = try comm(values: cols, counts: entryCounts)
        let gotVals = try comm(values: vals, counts: entryCounts)
        var blockLens = [Int64](repeating: 0, count: count)
        for (k, pos) in received.enumerated() { blockLens[pos] = gotLens[k] }
        var rowPtr = [Int64](repeating: 0, count: count + 1)
        for i in 0..<count { rowPtr[i + 1] = rowPtr[i] + blockLens[i] }
        var outCols = [Int32](repeating: 0, count: Int(rowPtr[count]))
        var outVals = [Float](repeating: 0, count: Int(rowPtr[count]))
        var off = 0
        for (k, pos) in received.enumerated() {
            let n = Int(gotLens[k]), at = Int(rowPtr[pos])
            outCols.replaceSubrange(at..<(at + n), with: gotCols[off..<(off + n)])
            outVals.replaceSubrange(at..<(at + n), with: gotVals[off..<(off + n)])
            off += n
        }
        return SparseRows(rowPtr: rowPtr, colIdx: outCols, values: outVals)
    }

    private let communicator: Communicator
    private func comm<T: CollectiveScalar>(values: [T], counts: [Int]) throws -> [T] {
        try communicator.alltoallv(values, sendCounts: counts).values
    }

    init(_ s: CellShard, communicator comm: Communicator) throws {
        communicator = comm
        let p = comm.size
        bounds = RowPartition.equalRows(s.sourceObs, parts: p)
        (lo, hi) = (bounds[comm.rank], bounds[comm.rank + 1])
        let b = bounds
        func owner(_ row: Int64) -> Int {
            var x = 0, y = p - 1   // the last r with bounds[r] <= row
            while x < y { let m = (x + y + 1) / 2; if b[m] <= Int(row) { x = m } else { y = m - 1 } }
            return x
        }
        var buckets = [[Int]](repeating: [], count: p)
        for (i, r) in s.sourceRows.enumerated() { buckets[owner(r)].append(i) }
        order = buckets.flatMap { $0 }
        sendRows = buckets.map(\.count)
        let first = b[comm.rank]
        received = try comm.alltoallv(order.map { s.sourceRows[$0] }, sendCounts: sendRows).values.map { Int($0) - first }
        keptPositions = received.sorted()
        var cells: [Int64] = [0]
        for c in try comm.allgather(value: Int64(received.count)) { cells.append(cells.last! + c) }
        firstCell = cells
    }
}

extension CellWriter {

    /// Collective: nil when `input` can be kept as the output's base (an anndata ≥ 0.8 file: obs a
    /// dataframe group of encoding 0.2.0 with as many rows as the shard's input), else why not.
    public static func keepableInput(_ input: String, _ s: CellShard, comm: Communicator) throws -> String? {
        var why = ""
        if comm.rank == 0 {
            do {
                if s.source.format != "anndata" {
                    why = "a \(s.source.format) file"
                } else {
                    let f = try H5File.open(input)
                    let root = f.root
                    if root.kind(of: "obs") != .group {
                        why = "obs is not a group (anndata < 0.7 record array)"
                    } else {
                        let obs = try root.group("obs")
                        let type = obs.hasAttribute("encoding-type") ? try obs.stringAttribute("encoding-type") : "none"
                        let version = obs.hasAttribute("encoding-version") ? try obs.stringAttribute("encoding-version") : "none"
                        if type != "dataframe" || version != "0.2.0" {
                            why = "obs encoded as \(type) \(version), not dataframe 0.2.0"
                        } else {
                            let index = try obs.stringAttribute("_index")
                            let n = try obs.dataset(index).shape.first ?? -1
                            if n != s.sourceObs { why = "obs has \(n) rows, the matrix \(s.sourceObs)" }
                        }
                        for g in ["obsm", "obsp", "uns"] where why.isEmpty && root.exists(g) && root.kind(of: g) != .group {
                            why = "\(g) is not a group"
                        }
                    }
                    try f.close()
                }
            } catch {
                why = "\(error)"
            }
        }
        let said = String(decoding: try comm.broadcast(array: Array(why.utf8), root: 0), as: UTF8.self)
        return said.isEmpty ? nil : said
    }

    static func noticeOnStderr(_ text: String) {
        Logger(label: "syncytium.data").notice("\(text)")
    }

    /// Collective: every rank copies its byte range of `input` to `output` (created by rank 0).
    static func copyBytes(_ input: String, to output: String, comm: Communicator) throws {
        // Inside `agreeing`: a rank whose stat fails must not leave the others in a collective.
        let size = try agreeing(comm) { () -> Int in
            var st = stat()
            guard stat(input, &st) == 0 else { throw CellDataError("\(input): cannot stat (\(String(cString: strerror(errno))))") }
            return Int(st.st_size)
        }
        try agreeing(comm) {
            guard comm.rank == 0 else { return }
            let fd = open(output, O_CREAT | O_TRUNC | O_WRONLY, 0o644)
            guard fd >= 0 else { throw CellDataError("\(output): cannot create (\(String(cString: strerror(errno))))") }
            defer { close(fd) }
            if ftruncate(fd, off_t(size)) != 0 { throw CellDataError("\(output): cannot size to \(size) bytes (\(String(cString: strerror(errno))))") }
        }
        try agreeing(comm) {
            let a = size * comm.rank / comm.size, b = size * (comm.rank + 1) / comm.size
            guard b > a else { return }
            let src = open(input, O_RDONLY)
            guard src >= 0 else { throw CellDataError("\(input): cannot open (\(String(cString: strerror(errno))))") }
            defer { close(src) }
            let dst = open(output, O_WRONLY)
            guard dst >= 0 else { throw CellDataError("\(output): cannot open (\(String(cString: strerror(errno))))") }
            var buffer = [UInt8](repeating: 0, count: 8 << 20)
            var at = a
            while at < b {
                let want = Swift.min(buffer.count, b - at)
                let got = buffer.withUnsafeMutableBytes { pread(src, $0.baseAddress, want, off_t(at)) }
                if got <= 0 { close(dst); throw CellDataError("\(input): read failed at byte \(at) (\(got < 0 ? String(cString: strerror(errno)) : "end of file"))") }
                var done = 0
                while done < got {
                    let put = buffer.withUnsafeBytes { pwrite(dst, $0.baseAddress! + done, got - done, off_t(at + done)) }
                    if put <= 0 { let e = String(cString: strerror(errno)); close(dst); throw CellDataError("\(output): write failed at byte \(at + done) (\(e))") }
                    done += put
                }
                at += got
            }
            if close(dst) != 0 { throw CellDataError("\(output): close failed (\(String(cString: strerror(errno))))") }
        }
        try comm.barrier()
    }

    /// Collective: the output is `input`'s bytes plus the results on the input's rows.
    static func writeKeepingInput(_ path: String, input: String, _ req: WriteRequest, dim: Int, hasGraph: Bool, hasClusters: Bool,
                                  nClusters: Int, comm: Communicator) throws {
        let s = req.shard
        let tmp = temporaryPath(for: path)
        let n = s.sourceObs
        let blocks = try SourceBlocks(s, communicator: comm)
        // Result obs columns: categorical (code −1 for removed cells) or numeric (NaN).
        let resultNames = req.resultObs.filter { $0 != "syncytium_cluster" }
        try agreeing(comm) {
            for name in resultNames {
                switch s.obs[name] {
                case .categorical?, .numeric?: continue
                default: throw CellDataError(file: path, object: "obs/\(name)", problem: "a result column must be categorical or numeric",
                                             fix: "pass categorical codes or numbers")
                }
            }
        }
        let clusters: [Int32] = hasClusters ? try blocks.dense(req.clusters ?? [], width: 1, fill: -1) : []
        let embedding: [Float] = dim > 0 ? try blocks.dense(req.embedding ?? [], width: dim, fill: .nan) : []
        var obsm: [(name: String, values: [Float], width: Int)] = []
        for m in req.obsm { obsm.append((m.name, try blocks.dense(m.values, width: m.width, fill: .nan), m.width)) }
        var columns: [(String, ObsColumn)] = []
        for name in resultNames {
            switch s.obs[name]! {
            case .categorical(let codes, let cats, let o):
                columns.append((name, .categorical(codes: try blocks.dense(codes, width: 1, fill: -1), categories: cats, ordered: o)))
            case .numeric(let v): columns.append((name, .numeric(try blocks.dense(v, width: 1, fill: .nan))))
            default: break
            }
        }
        let blockIds = (blocks.lo..<blocks.hi).map { Int64($0) }
        let rowRuns = blocks.rowRuns
        var graphs: [(name: String, rows: SparseRows)] = []
        if hasGraph, let g = req.graph {
            graphs.append(("connectivities", try blocks.sparse(g.connectivities)))
            graphs.append(("distances", try blocks.sparse(g.distances)))
        }
        for m in req.obsp { graphs.append((m.name, try blocks.sparse(m.rows))) }
        let plans = try graphs.map { try SparsePlan(rowPtr: $0.rows.rowPtr, rowIds: blockIds, nObs: n, rowRuns: rowRuns, comm: comm) }
        let unsReplaced = (req.uns.isEmpty ? [] : ["syncytium"]) + req.unsTop.map(\.0).filter { $0 != "syncytium" }

        func failed(_ error: Error) throws -> Never { try collectiveFailure(error, path: path, tmp: tmp, comm: comm) }
        let t0 = Communicator.time()
        do { try copyBytes(input, to: tmp, comm: comm) } catch { try failed(error) }
        let copySeconds = Communicator.time() - t0
        do {
            try agreeing(comm) {
                let f = try H5File.open(tmp, writable: true, communicator: comm)
                try { () throws -> Void in
                    let root = f.root
                    func group(_ name: String) throws -> H5Group { root.exists(name) ? try root.group(name) : try root.createGroup(name) }
                    func fresh(_ g: H5Group, _ name: String) throws { if g.exists(name) { try g.deleteLink(name) } }
                    let obs = try root.group("obs")
                    if hasClusters {
                        try fresh(obs, "syncytium_cluster")
                        try obs.createGroup("syncytium_cluster").createDataset("codes", of: Int32.self, shape: [n]).write(clusters, runs: rowRuns)
                    }
                    for (name, c) in columns {
                        try fresh(obs, name)
                        switch c {
                        case .categorical(let codes, _, _):
                            try obs.createGroup(name).createDataset("codes", of: Int32.self, shape: [n]).write(codes, runs: rowRuns)
                        case .numeric(let v): try obs.createDataset(name, of: Double.self, shape: [n]).write(v, runs: rowRuns)
                        default: break
                        }
                    }
                    let om = try group("obsm")
                    if dim > 0 {
                        try fresh(om, "X_syncytium")
                        try om.createDataset("X_syncytium", of: Float.self, shape: [n, dim]).write(embedding, runs: rowRuns)
                    }
                    for m in obsm {
                        try fresh(om, m.name)
                        try om.createDataset(m.name, of: Float.self, shape: [n, m.width]).write(m.values, runs: rowRuns)
                    }
                    let op = try group("obsp")
                    for (g, plan) in zip(graphs, plans) {
                        try fresh(op, g.name)
                        try plan.write(into: try op.createGroup(g.name), values: g.rows.values, colIdx: g.rows.colIdx, nObs: n, gzip: nil)
                    }
                    let u = try group("uns")
                    for name in unsReplaced { try fresh(u, name) }
                }()
                try f.close()
            }
        } catch { try failed(error) }

        // Rank 0: encodings, categories, column-order and uns (strings cannot be written in parallel).
        try agreeing(comm) {
            guard comm.rank == 0 else { return }
            do {
                let f = try H5File.open(tmp, writable: true)
                try { () throws -> Void in
                    let root = f.root
                    let obs = try root.group("obs")
                    var order = (try? obs.stringArrayAttribute("column-order")) ?? []
                    var added = false
                    func note(_ name: String) { if !order.contains(name) { order.append(name) }; added = true }
                    if hasClusters {
                        try writeColumn(obs, "syncytium_cluster",
                                        .categorical(codes: [], categories: (0..<nClusters).map(String.init), ordered: false), existing: true)
                        note("syncytium_cluster")
                    }
                    for (name, c) in columns {
                        switch c {
                        case .categorical(_, let cats, let o): try writeColumn(obs, name, .categorical(codes: [], categories: cats, ordered: o), existing: true)
                        default: try writeColumn(obs, name, .numeric([]), existing: true)
                        }
                        note(name)
                    }
                    if added { try obs.setAttribute("column-order", order) }
                    for name in ["obsm", "obsp", "uns"] {
                        let g = try root.group(name)
                        if !g.hasAttribute("encoding-type") { try enc(g, "dict", "0.1.0") }
                    }
                    let om = try root.group("obsm")
                    if dim > 0 { try enc(try om.dataset("X_syncytium"), "array", "0.2.0") }
                    for m in obsm { try enc(try om.dataset(m.name), "array", "0.2.0") }
                    let op = try root.group("obsp")
                    for g in graphs {
                        let m = try op.group(g.name)
                        try enc(m, "csr_matrix", "0.1.0")
                        try m.setAttribute("shape", [Int64(n), Int64(n)])
                    }
                    let u = try root.group("uns")
                    if !req.uns.isEmpty { try writeUns(u, [("syncytium", .dict(req.uns))]) }
                    try writeUns(u, req.unsTop.filter { $0.0 != "syncytium" })
                }()
                try f.close()
            } catch { throw serialFailure(error, path: path, tmp: tmp) }
        }
        try renameIntoPlace(tmp: tmp, path: path, comm: comm)
        if comm.rank == 0 {
            Logger(label: "syncytium.data").info("\(path): \(input) copied in \((copySeconds * 100).rounded() / 100) s, results added on its \(n) rows")
        }
    }
}
