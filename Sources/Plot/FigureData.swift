// What the figures read from an .h5ad (one process: the plot is drawn by rank 0 alone; a million
// cells × 2 coordinates and a few obs columns are small): the 2-D basis from obsm, obs columns
// through CellData's reader (categorical, numeric, strings, bools), and the run's per-epoch loss
// table and label key from uns['syncytium'].
import CellData
import Collectives
import Foundation
import HDF5IO

/// One coloured key of a layout figure.
public enum ColorValues: Sendable {
    /// Codes into `categories` (−1: missing).
    case categorical(codes: [Int32], categories: [String])
    /// Values (NaN: missing).
    case continuous([Double])
}

/// The run's per-epoch loss table (uns['syncytium']['history']).
public struct LossHistory: Sendable, Equatable {
    public var epochs: [Double]
    /// Each term's per-epoch mean ("loss" first), in the order stored.
    public var terms: [(name: String, values: [Double])]
    public static func == (a: LossHistory, b: LossHistory) -> Bool {
        a.epochs == b.epochs && a.terms.count == b.terms.count && zip(a.terms, b.terms).allSatisfy { $0.name == $1.name && $0.values == $1.values }
    }
}

/// An open .h5ad for plotting.
public final class FigureSource {
    public let path: String
    let file: H5File

    public init(_ path: String) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else { throw PlotError("\(path): no such file") }
        guard H5File.isHDF5(path) else { throw PlotError("\(path): not an HDF5 file (give an AnnData .h5ad)") }
        do { file = try H5File.open(path) } catch { throw PlotError("\(path): cannot open (\(error))") }
        guard file.root.kind(of: "obs") != nil else { throw PlotError("\(path): no obs (not an AnnData .h5ad)") }
    }

    /// Cells (rows of obs).
    public var cells: Int {
        get throws {
            let (n, _) = try readObs([])
            return n
        }
    }

    /// The obsm keys present (sorted).
    public func obsmKeys() -> [String] {
        guard file.root.kind(of: "obsm") == .group, let g = try? file.root.group("obsm"), let names = try? g.memberNames() else { return [] }
        return names.sorted()
    }

    /// The obs column names (without the index and legacy category tables).
    public func obsColumns() -> [String] {
        guard file.root.kind(of: "obs") == .group, let g = try? file.root.group("obs"), let names = try? g.memberNames() else { return [] }
        var index = "_index"
        if g.hasAttribute("_index"), let s = try? g.stringAttribute("_index") { index = s }
        return names.filter { $0 != index && $0 != "__categories" }.sorted()
    }

    /// The first two columns of obsm[basis] as (x, y).
    public func basis(_ name: String) throws -> (x: [Float], y: [Float]) {
        let keys = obsmKeys()
        guard keys.contains(name) else {
            throw PlotError("\(path): no obsm['\(name)'] (obsm holds: \(keys.isEmpty ? "nothing" : keys.joined(separator: ", "))); pass --basis with one of them")
        }
        let obsm = try file.root.group("obsm")
        guard obsm.kind(of: name) == .dataset else { throw PlotError("\(path): obsm['\(name)'] is not a dense array") }
        let d = try obsm.dataset(name)
        guard d.shape.count == 2, d.shape[1] >= 2 else {
            throw PlotError("\(path): obsm['\(name)'] has shape \(d.shape); a 2-D layout needs at least 2 columns")
        }
        let (n, w) = (d.shape[0], d.shape[1])
        var x = [Float](repeating: 0, count: n), y = [Float](repeating: 0, count: n)
        // Row blocks, so a wide embedding is never read whole.
        let block = max(1, (1 << 22) / w)
        var r = 0
        while r < n {
            let e = min(n, r + block)
            let v: [Float] = try d.read(rows: r..<e)
            for i in 0..<(e - r) { x[r + i] = v[i * w]; y[r + i] = v[i * w + 1] }
            r = e
        }
        return (x, y)
    }

    func readObs(_ names: [String]) throws -> (Int, Frame) {
        do { return try CellReader.readObs(path, columns: names, comm: Communicator.solo) } catch let e as CellDataError {
            throw PlotError(e.message)
        }
    }

    /// obs[key] for colouring.
    public func colors(_ keys: [String]) throws -> [ColorValues] {
        let present = obsColumns()
        for k in keys where !present.contains(k) {
            throw PlotError("\(path): no obs column '\(k)' (obs holds: \(present.isEmpty ? "nothing" : present.joined(separator: ", ")))")
        }
        let (_, frame) = try readObs(keys)
        return keys.map { k in
            switch frame[k]! {
            case .categorical(let codes, let cats, _): return .categorical(codes: codes, categories: cats)
            case .numeric(let v): return .continuous(v)
            case .bools(let b): return .categorical(codes: b.map { $0 ? 1 : 0 }, categories: ["False", "True"])
            case .strings(let s):
                // As anndata turns string columns into categoricals: sorted unique values.
                let cats = Array(Set(s)).sorted()
                let index = Dictionary(uniqueKeysWithValues: cats.enumerated().map { ($1, Int32($0)) })
                return .categorical(codes: s.map { index[$0]! }, categories: cats)
            }
        }
    }

    /// uns['<key>_colors'] (the colours scanpy stores and reuses), when it has a hex colour for each
    /// of `categories` categories; nil otherwise (named colours are not resolved: the default is used).
    public func storedPalette(_ key: String, categories: Int) -> [RGB]? {
        guard let uns = unsGroup(["uns"]), uns.kind(of: key + "_colors") == .dataset,
              let s = try? uns.dataset(key + "_colors").readStrings(), s.count >= categories else { return nil }
        let hex = s.prefix(categories).map { $0.trimmingCharacters(in: .whitespaces) }
        guard hex.allSatisfy({ ($0.count == 7 || $0.count == 9) && $0.hasPrefix("#") && UInt32($0.dropFirst().prefix(6), radix: 16) != nil }) else { return nil }
        return hex.map { RGB(hex: String($0.prefix(7))) }
    }

    func unsGroup(_ parts: [String]) -> H5Group? {
        var g = file.root
        for p in parts {
            guard g.kind(of: p) == .group, let next = try? g.group(p) else { return nil }
            g = next
        }
        return g
    }

    func unsString(_ parts: [String]) -> String? {
        guard let g = unsGroup(Array(parts.dropLast())), let last = parts.last, g.kind(of: last) == .dataset,
              let d = try? g.dataset(last), let s = try? d.readStrings() else { return nil }
        return s.first
    }

    /// The label column the run recorded (uns['syncytium']['spec']['data']['label_key']), if any.
    public func recordedLabelKey() -> String? {
        guard let s = unsString(["uns", "syncytium", "spec", "data", "label_key"]), !s.isEmpty, s != "null" else { return nil }
        return s
    }

    /// uns['syncytium']['history'], if the run stored it.
    public func lossHistory() throws -> LossHistory? {
        guard let g = unsGroup(["uns", "syncytium", "history"]) else { return nil }
        let names = try g.memberNames()
        func read(_ n: String) throws -> [Double] { try g.dataset(n).readAll(as: Double.self) }
        guard names.contains("epoch") else { return nil }
        let epochs = try read("epoch")
        // The model's order when the run recorded it ("loss,zinb,mask,…"), else by name; "loss" first.
        var order = names.filter { $0 != "epoch" && $0 != "terms" }.sorted()
        if names.contains("terms"), let t = try? g.dataset("terms").readStrings().first {
            let listed = t.split(separator: ",").map(String.init).filter { order.contains($0) }
            order = listed + order.filter { !listed.contains($0) }
        }
        if let i = order.firstIndex(of: "loss") { order.remove(at: i); order.insert("loss", at: 0) }
        var terms: [(String, [Double])] = []
        for n in order where names.contains(n) && g.kind(of: n) == .dataset {
            guard let v = try? read(n) else { continue }   // not a numeric array
            if v.count == epochs.count { terms.append((n, v)) }
        }
        return LossHistory(epochs: epochs, terms: terms)
    }
}
