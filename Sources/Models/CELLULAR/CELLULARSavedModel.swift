// A trained CELLULAR model on disk, loadable by another run on any rank count:
//   DIR/model.json       format version, the training HVG gene names, label and batch encoders,
//                        hyperparameters, preprocessing, loss statistics (class weights, PCA centroid
//                        distances), seed, the resolved training spec (YAML), and once `annotate` has
//                        trained it, the classifier's settings and novelty model
//   DIR/parameters.bin   the embedding network (ParameterStore format)
//   DIR/classifier.bin   the classifier network (after `annotate`)
// Rank 0 writes everything into DIR.partial-<pid> and renames it into place: a model directory exists
// whole or not at all; an update (the classifier added) replaces the directory the same way.
import CellData
import Collectives
import Foundation
import Settings
import TensorCore

public struct CELLULARSavedModel: Codable, Sendable {
    public static let currentFormat = 1
    public var format = CELLULARSavedModel.currentFormat
    public var model = CELLULAR.name
    public var version: String
    public var genes: [String]
    public var labels: [String]
    public var batches: [String]
    public var hyperparameters: CELLULARHyperparameters
    public var preprocess: PreprocessOptions
    public var counts: String
    public var statistics: CELLULARStatistics
    public var seed: UInt64
    public var spec: String
    /// The training data, for training the classifier later.
    public var trainingInput: String
    public var labelKey: String
    public var batchKey: String?
    public var classifier: CELLULARClassifierSettings?
    public var novelty: CELLULARNovelty?

    public init(version: String, genes: [String], labels: [String], batches: [String], hyperparameters: CELLULARHyperparameters,
                preprocess: PreprocessOptions, counts: String, statistics: CELLULARStatistics, seed: UInt64, spec: String,
                trainingInput: String, labelKey: String, batchKey: String?) {
        self.version = version; self.genes = genes; self.labels = labels; self.batches = batches
        self.hyperparameters = hyperparameters; self.preprocess = preprocess; self.counts = counts; self.statistics = statistics
        self.seed = seed; self.spec = spec; self.trainingInput = trainingInput; self.labelKey = labelKey; self.batchKey = batchKey
    }

    /// Reads DIR/model.json (every rank reads it; errors are one line naming the file).
    public static func read(_ dir: String) throws -> CELLULARSavedModel {
        let path = dir + "/model.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CellDataError("\(dir): not a saved model (no model.json); train one with `syncytium embed … --save-model \(dir)`")
        }
        let m: CELLULARSavedModel
        do { m = try JSONDecoder().decode(CELLULARSavedModel.self, from: data) } catch {
            throw CellDataError("\(path): not a readable model description (\(error))")
        }
        guard m.format <= currentFormat else { throw CellDataError("\(path): model format \(m.format) is newer than this syncytium (\(currentFormat))") }
        guard m.model == CELLULAR.name else { throw CellDataError("\(path): a '\(m.model)' model, not cellular") }
        return m
    }

    public static func readBlob(_ dir: String, _ name: String) throws -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: dir + "/" + name) else { throw CellDataError("\(dir)/\(name): missing from the saved model") }
        return Array(d)
    }

    /// Collective: rank 0 writes the directory atomically; every rank learns whether it worked.
    public func write(to dir: String, blobs: [String: [UInt8]], comm: Communicator) throws {
        try agreeing(comm) {
            guard comm.rank == 0 else { return }
            let fm = FileManager.default
            let tmp = dir + ".partial-\(getpid())", old = dir + ".old-\(getpid())"
            do {
                try? fm.removeItem(atPath: tmp)
                try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
                let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                try enc.encode(self).write(to: URL(fileURLWithPath: tmp + "/model.json"))
                for (name, b) in blobs { try Data(b).write(to: URL(fileURLWithPath: tmp + "/" + name)) }
                // Keep blobs of an existing model that this write does not replace (e.g. parameters
                // when only the classifier is added).
                if fm.fileExists(atPath: dir) {
                    for name in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where name.hasSuffix(".bin") && blobs[name] == nil {
                        try fm.copyItem(atPath: dir + "/" + name, toPath: tmp + "/" + name)
                    }
                    try fm.moveItem(atPath: dir, toPath: old)
                }
                try fm.moveItem(atPath: tmp, toPath: dir)
                try? fm.removeItem(atPath: old)
            } catch {
                try? fm.removeItem(atPath: tmp)
                if fm.fileExists(atPath: old) && !fm.fileExists(atPath: dir) { try? fm.moveItem(atPath: old, toPath: dir) }
                let plain = FileSystemCheck.diagnose(folderOf: dir).map { $0 + " — " } ?? ""
                throw CellDataError("\(dir): cannot save the model: \(plain)\(error.localizedDescription)")
            }
        }
    }
}

/// A query mapped onto a saved model's genes by name.
public struct GeneMapping: Sendable {
    public var matrix: CSRMatrix
    /// Model genes absent from the query (their values are 0).
    public var missing: Int

    /// This rank's rows of `x` (columns named `names`) re-indexed to `genes`; duplicate query names
    /// use their first column. Throws when no model gene is in the query.
    public static func map(_ x: CSRMatrix, names: [String], onto genes: [String], file: String) throws -> GeneMapping {
        var first: [String: Int] = [:]
        for (j, n) in names.enumerated() where first[n] == nil { first[n] = j }
        var target = [Int32](repeating: -1, count: x.cols)
        var found = 0
        for (k, g) in genes.enumerated() { if let j = first[g] { target[j] = Int32(k); found += 1 } }
        guard found > 0 else {
            throw CellDataError("\(file): none of the model's \(genes.count) genes is in this file (e.g. '\(genes.first ?? "")'); a query must use the same gene names as the training data")
        }
        var rowPtr: [Int64] = [0], cols: [Int32] = [], vals: [Float] = []
        rowPtr.reserveCapacity(x.rows + 1)
        var entries: [(Int32, Float)] = []
        for i in 0..<x.rows {
            entries.removeAll(keepingCapacity: true)
            for e in Int(x.rowPtr[i])..<Int(x.rowPtr[i + 1]) where target[Int(x.colIdx[e])] >= 0 {
                entries.append((target[Int(x.colIdx[e])], x.values[e]))
            }
            entries.sort { $0.0 < $1.0 }
            for (c, v) in entries { cols.append(c); vals.append(v) }
            rowPtr.append(Int64(vals.count))
        }
        return GeneMapping(matrix: try CSRMatrix(rows: x.rows, cols: genes.count, rowPtr: rowPtr, colIdx: cols, values: vals),
                           missing: genes.count - found)
    }
}

/// Per-type representations of an embedding: centroid, coordinate-wise median, or medoid.
public enum CELLULARRepresentations {
    public enum Kind: String, SettingChoice { case centroid, median, medoid }

    /// Collective. One row (d values) per group 0..<groups (NaN for an empty group).
    public static func compute(_ e: Tensor, groups: [Int32], groupCount: Int, kind: Kind, comm: Communicator) throws -> [Float] {
        let d = e.cols
        switch kind {
        case .centroid:
            var sums = [Double](repeating: 0, count: groupCount * (d + 1))
            for i in 0..<e.rows where groups[i] >= 0 {
                let g = Int(groups[i])
                for t in 0..<d { sums[g * (d + 1) + t] += Double(e[i, t]) }
                sums[g * (d + 1) + d] += 1
            }
            try comm.allreduce(&sums, op: .sum)
            return (0..<(groupCount * d)).map { k in
                let g = k / d, n = sums[g * (d + 1) + d]
                return n > 0 ? Float(sums[g * (d + 1) + k % d] / n) : .nan
            }
        case .median:
            var values: [Float] = [], codes: [Int32] = []
            values.reserveCapacity(e.rows * d); codes.reserveCapacity(e.rows * d)
            for i in 0..<e.rows where groups[i] >= 0 {
                for t in 0..<d { values.append(e[i, t]); codes.append(groups[i] * Int32(d) + Int32(t)) }
            }
            return try DistributedQuantile.perGroup(values, groups: codes, groupCount: groupCount * d, quantile: 0.5, comm: comm)
        case .medoid:
            // Candidates: on every rank the 8 members nearest the coordinate-wise median; the medoid is
            // the candidate with the smallest sum of distances to all members (exact among candidates).
            let med = try compute(e, groups: groups, groupCount: groupCount, kind: .median, comm: comm)
            let m = 8
            var cand = [Float](repeating: .nan, count: groupCount * m * d)
            for g in 0..<groupCount {
                let members = (0..<e.rows).filter { groups[$0] == Int32(g) }
                let near = members.map { i -> (Float, Int) in
                    var s: Float = 0
                    for t in 0..<d { let x = e[i, t] - med[g * d + t]; s += x * x }
                    return (s, i)
                }.sorted { $0.0 < $1.0 }.prefix(m)
                for (c, (_, i)) in near.enumerated() { for t in 0..<d { cand[(g * m + c) * d + t] = e[i, t] } }
            }
            let all = try comm.allgather(cand)   // ranks × groups × m × d
            let perRank = groupCount * m * d, total = comm.size * groupCount * m
            var cost = [Double](repeating: 0, count: total)
            for i in 0..<e.rows where groups[i] >= 0 {
                let g = Int(groups[i])
                for r in 0..<comm.size {
                    for c in 0..<m {
                        let base = r * perRank + (g * m + c) * d
                        if all[base].isNaN { continue }
                        var s: Float = 0
                        for t in 0..<d { let x = e[i, t] - all[base + t]; s += x * x }
                        cost[(r * groupCount + g) * m + c] += Double(s.squareRoot())
                    }
                }
            }
            try comm.allreduce(&cost, op: .sum)
            var out = [Float](repeating: .nan, count: groupCount * d)
            for g in 0..<groupCount {
                var bestCost = Double.infinity, bestBase = -1
                for r in 0..<comm.size {
                    for c in 0..<m {
                        let base = r * perRank + (g * m + c) * d
                        if !all[base].isNaN && cost[(r * groupCount + g) * m + c] < bestCost { bestCost = cost[(r * groupCount + g) * m + c]; bestBase = base }
                    }
                }
                if bestBase >= 0 { for t in 0..<d { out[g * d + t] = all[bestBase + t] } }
            }
            return out
        }
    }
}

