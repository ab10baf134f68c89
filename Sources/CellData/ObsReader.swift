import Collectives
import HDF5IO

extension CellReader {
    /// Reads only obs (index and the named columns) of an .h5ad, each rank an even share of the rows —
    /// for commands that need annotations but no matrix (e.g. `syncytium evaluate` on a result file
    /// written without X). Errors are agreed across ranks.
    public static func readObs(_ path: String, columns: [String], comm: Communicator) throws -> (cells: Int, obs: Frame) {
        let file = try agreeing(comm) { try openInput(path, communicator: nil) }
        if file.root.kind(of: "obs") == .dataset {     // anndata < 0.7: a record array
            return try agreeing(comm) { () -> (Int, Frame) in
                let n = try frameLength(file.root, "obs") ?? 0
                let rows = RowLayout.even(total: n, size: comm.size).range(of: comm.rank)
                let all = try readFrame(file.root, "obs", path: path, rows: rows, expected: n, columns: true)
                var f = Frame(index: [])
                for name in columns {
                    guard let c = all[name] else {
                        throw CellDataError(file: path, object: "obs/\(name)", problem: "missing", fix: "pass an existing obs column")
                    }
                    f.set(name, c)
                }
                return (n, f)
            }
        }
        let obs = try agreeing(comm) { () -> H5Group in
            guard file.root.exists("obs") else {
                throw CellDataError(file: path, object: "obs", problem: "missing", fix: "pass an AnnData .h5ad file")
            }
            return try file.root.group("obs")
        }
        let n = try agreeing(comm) { () -> Int in
            var indexName = "_index"
            if obs.hasAttribute("_index") { indexName = try obs.stringAttribute("_index") }
            guard obs.exists(indexName) else {
                throw CellDataError(file: path, object: "obs/\(indexName)", problem: "missing", fix: "re-write the file with anndata")
            }
            return try obs.dataset(indexName).count
        }
        let share = RowLayout.even(total: n, size: comm.size)
        let rows = share.range(of: comm.rank)
        let frame = try agreeing(comm) { () -> Frame in
            var f = Frame(index: [])
            for name in columns {
                guard obs.exists(name) else {
                    throw CellDataError(file: path, object: "obs/\(name)", problem: "missing",
                                        fix: "pass an existing obs column")
                }
                let legacy = obs.kind(of: "__categories") == .group ? try obs.group("__categories") : nil
                f.set(name, try readColumn(obs, name, path: path, object: "obs", rows: rows, legacyCategories: legacy))
            }
            return f
        }
        return (n, frame)
    }
}
