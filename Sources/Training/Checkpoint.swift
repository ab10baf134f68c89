import Collectives
import Foundation

/// Self-describing, versioned checkpoints written atomically.
///
/// Layout: `<dir>/ckpt-<step>/` holding `meta.json` (format version, resolved config, epoch, step,
/// rank count, seeds, sampler position, …), the replicated blobs rank 0 writes (parameters,
/// optimiser state) and per-rank shard files for per-cell state (`<name>.shard<r>`, each with the
/// global ids of its rows, so a run on another rank count can re-shard). Everything is written into
/// `ckpt-<step>.tmp/`, all ranks meet at a barrier, rank 0 writes the `COMPLETE` marker, syncs and
/// renames the folder: a checkpoint either exists whole or not at all. `latest` returns the newest
/// complete one; older ones beyond `keep` are removed.
public struct CheckpointMeta: Codable, Sendable, Equatable {
    public static let currentFormat = 1
    public var format = CheckpointMeta.currentFormat
    public var producer: String
    public var config: String          // the resolved configuration, JSON
    public var epoch: Int               // epoch in progress
    public var stepInEpoch: Int         // next step to run within it
    public var globalStep: Int          // optimiser steps taken
    public var ranks: Int
    public var seed: UInt64
    public var blobs: [String]          // replicated blobs present
    public var shards: [String]         // sharded arrays present
    public var extra: [String: String]  // model-specific scalars
    public init(producer: String, config: String, epoch: Int, stepInEpoch: Int, globalStep: Int, ranks: Int,
                seed: UInt64, blobs: [String] = [], shards: [String] = [], extra: [String: String] = [:]) {
        self.producer = producer; self.config = config; self.epoch = epoch; self.stepInEpoch = stepInEpoch
        self.globalStep = globalStep; self.ranks = ranks; self.seed = seed; self.blobs = blobs; self.shards = shards
        self.extra = extra
    }
}

public struct CheckpointError: Error, CustomStringConvertible {
    public let description: String
}

public enum Checkpoint {
    /// One rank's rows of a per-cell array: global ids and `width` floats per row.
    public struct Shard: Sendable {
        public var ids: [Int64]
        public var width: Int
        public var values: [Float]
        public init(ids: [Int64], width: Int, values: [Float]) { self.ids = ids; self.width = width; self.values = values }
    }

    /// Collective. Writes checkpoint `meta.globalStep` under `directory`.
    public static func write(to directory: URL, meta: CheckpointMeta, blobs: [String: [UInt8]], shards: [String: Shard],
                             keep: Int = 2, comm: Communicator) throws {
        let fm = FileManager.default
        let final = directory.appendingPathComponent("ckpt-\(meta.globalStep)")
        let tmp = directory.appendingPathComponent("ckpt-\(meta.globalStep).tmp")
        var failure = ""
        if comm.rank == 0 {
            do {
                try fm.createDirectory(at: directory, withIntermediateDirectories: true)
                if fm.fileExists(atPath: tmp.path) { try fm.removeItem(at: tmp) }
                try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
            } catch { failure = "cannot create \(tmp.path): \(error.localizedDescription)" }
        }
        try agree(failure, comm)
        do {
            for (name, shard) in shards {
                var bytes: [UInt8] = []
                append(&bytes, UInt64(shard.ids.count)); append(&bytes, UInt64(shard.width))
                shard.ids.withUnsafeBytes { bytes.append(contentsOf: $0) }
                shard.values.withUnsafeBytes { bytes.append(contentsOf: $0) }
                try writeSynced(bytes, to: tmp.appendingPathComponent("\(name).shard\(comm.rank)"))
            }
            if comm.rank == 0 {
                var m = meta
                m.blobs = blobs.keys.sorted(); m.shards = shards.keys.sorted()
                for (name, b) in blobs { try writeSynced(b, to: tmp.appendingPathComponent("\(name).bin")) }
                let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                try writeSynced(Array(try enc.encode(m)), to: tmp.appendingPathComponent("meta.json"))
            }
        } catch { failure = "writing checkpoint \(meta.globalStep): \(error)" }
        try agree(failure, comm)
        if comm.rank == 0 {
            do {
                try writeSynced(Array("complete\n".utf8), to: tmp.appendingPathComponent("COMPLETE"))
                if fm.fileExists(atPath: final.path) { try fm.removeItem(at: final) }
                try fm.moveItem(at: tmp, to: final)
                syncDirectory(directory)
                // Prune older complete checkpoints beyond `keep`.
                let all = completeSteps(in: directory)
                for s in all.dropLast(max(keep, 1)) {
                    try? fm.removeItem(at: directory.appendingPathComponent("ckpt-\(s)"))
                }
            } catch { failure = "committing checkpoint \(meta.globalStep): \(error)" }
        }
        try agree(failure, comm)
    }

    /// Steps of the complete checkpoints in `directory`, ascending.
    public static func completeSteps(in directory: URL) -> [Int] {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory.path) else { return [] }
        return names.compactMap { name -> Int? in
            guard name.hasPrefix("ckpt-"), !name.hasSuffix(".tmp"), let s = Int(name.dropFirst(5)) else { return nil }
            return fm.fileExists(atPath: directory.appendingPathComponent(name).appendingPathComponent("COMPLETE").path) ? s : nil
        }.sorted()
    }

    /// The newest complete checkpoint folder, if any.
    public static func latest(in directory: URL) -> URL? {
        completeSteps(in: directory).last.map { directory.appendingPathComponent("ckpt-\($0)") }
    }

    public static func readMeta(_ checkpoint: URL) throws -> CheckpointMeta {
        let url = checkpoint.appendingPathComponent("meta.json")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw CheckpointError(description: "\(url.path): missing; the checkpoint is incomplete or not a Syncytium checkpoint")
        }
        let meta: CheckpointMeta
        do { meta = try JSONDecoder().decode(CheckpointMeta.self, from: data) } catch {
            throw CheckpointError(description: "\(url.path): not a Syncytium checkpoint description (\(error))")
        }
        guard meta.format <= CheckpointMeta.currentFormat else {
            throw CheckpointError(description: "\(url.path): checkpoint format \(meta.format) is newer than this build understands (\(CheckpointMeta.currentFormat)); use a newer syncytium")
        }
        return meta
    }

    public static func readBlob(_ checkpoint: URL, _ name: String) throws -> [UInt8] {
        let url = checkpoint.appendingPathComponent("\(name).bin")
        guard let d = FileManager.default.contents(atPath: url.path) else {
            throw CheckpointError(description: "\(url.path): missing from the checkpoint")
        }
        return Array(d)
    }

    /// Reads every rank's shard of `name` as written (any rank count) and keeps the rows whose global
    /// ids `wanted` contains, returned in the order of `wanted` (missing rows are an error).
    public static func readShard(_ checkpoint: URL, _ name: String, ranksWritten: Int, wanted: [Int64]) throws -> Shard {
        var index: [Int64: Int] = [:]
        for (i, g) in wanted.enumerated() { index[g] = i }
        var width = -1
        var out: [Float] = []
        var found = 0
        for r in 0..<ranksWritten {
            let url = checkpoint.appendingPathComponent("\(name).shard\(r)")
            guard let d = FileManager.default.contents(atPath: url.path) else {
                throw CheckpointError(description: "\(url.path): missing from the checkpoint")
            }
            let bytes = Array(d)
            guard bytes.count >= 16 else { throw CheckpointError(description: "\(url.path): truncated") }
            let n = Int(read64(bytes, 0)), w = Int(read64(bytes, 8))
            guard bytes.count == 16 + n * 8 + n * w * 4 else { throw CheckpointError(description: "\(url.path): truncated") }
            if width < 0 { width = w; out = [Float](repeating: 0, count: wanted.count * w) }
            guard w == width else { throw CheckpointError(description: "\(url.path): width \(w), expected \(width)") }
            bytes.withUnsafeBytes { raw in
                for i in 0..<n {
                    let g = raw.loadUnaligned(fromByteOffset: 16 + i * 8, as: Int64.self)
                    guard let slot = index[g] else { continue }
                    for j in 0..<w {
                        out[slot * w + j] = raw.loadUnaligned(fromByteOffset: 16 + n * 8 + (i * w + j) * 4, as: Float.self)
                    }
                    found += 1
                }
            }
        }
        guard found == wanted.count else {
            throw CheckpointError(description: "\(checkpoint.path): shard '\(name)' lacks \(wanted.count - found) of the rows this rank owns")
        }
        return Shard(ids: wanted, width: max(width, 0), values: out)
    }

    // MARK: helpers

    /// Raises the first rank's failure on every rank (so none proceeds alone into the next collective).
    static func agree(_ failure: String, _ comm: Communicator) throws {
        let bytes = Array(failure.utf8)
        let (all, counts) = try comm.allgatherv(bytes)
        var off = 0
        for (r, c) in counts.enumerated() {
            if c > 0 {
                let msg = String(decoding: all[off..<(off + c)], as: UTF8.self)
                throw CheckpointError(description: r == comm.rank ? msg : "rank \(r): \(msg)")
            }
            off += c
        }
    }

    static func append(_ b: inout [UInt8], _ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    static func read64(_ b: [UInt8], _ o: Int) -> UInt64 {
        b.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
    }

    /// Writes and fsyncs a file.
    static func writeSynced(_ bytes: [UInt8], to url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw CheckpointError(description: "\(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var off = 0
        try bytes.withUnsafeBytes { raw in
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { throw CheckpointError(description: "\(url.path): \(String(cString: strerror(errno)))") }
                off += n
            }
        }
        guard fsync(fd) == 0 else { throw CheckpointError(description: "\(url.path): fsync failed") }
    }

    static func syncDirectory(_ url: URL) {
        let fd = open(url.path, O_RDONLY)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }
}
