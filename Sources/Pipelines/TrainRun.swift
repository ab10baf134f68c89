// `train`: read → preprocess → train a model data-parallel; save parameters and the loss curve.
import CellData
import Collectives
import Foundation
import Models
import Training

public struct TrainResult: Sendable {
    public var completed: Bool
    public var epochs: Int
    public var steps: Int
    /// Global mean loss of every step run.
    public var lossHistory: [Double]
    public var seconds: Double
}

public enum TrainRun {
    /// Collective. Runs the `train` pipeline of `spec`.
    public static func run(_ spec: TrainSpec, comm: Communicator) throws -> TrainResult {
        let t0 = Communicator.time()
        let data = try Dataset.load(spec.data, preprocess: spec.preprocess, comm: comm)
        log.info("\(spec.data.input): \(data.cells) cells × \(data.genes) genes on \(comm.size) rank(s)")
        let context = ModelContext(seed: spec.seed, clusters: nil, maxClusters: 20)
        let model = try spec.model.entry.make(input: data, hyperparameters: spec.model.hyperparameters, context: context, comm: comm)
        let (trainer, outcome) = try train(model, config: spec.trainer, seed: spec.seed, runSpec: RunSpecs.yaml(spec), data: data, comm: comm)
        if comm.rank == 0, let path = spec.output.lossLog {
            try writeAtomically(Data(try JSONEncoder().encode(["loss": trainer.lossHistory])), to: path)
        }
        let completed = outcome == .completed
        if completed, comm.rank == 0, let path = spec.output.saveParameters {
            try writeAtomically(Data(model.store.serialized()), to: path)
        }
        return TrainResult(completed: completed, epochs: trainer.epoch, steps: trainer.globalStep,
                           lossHistory: trainer.lossHistory, seconds: Communicator.time() - t0)
    }
}

/// Writes `data` to `path` through a temporary file in the same folder and an atomic rename(2).
public func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    do { try data.write(to: tmp) } catch {
        throw CellDataError("\(path): cannot write: \(FileSystemError.describe(errno: errno, fallback: error))")
    }
    guard rename(tmp.path, url.path) == 0 else {
        let err = String(cString: strerror(errno))
        try? FileManager.default.removeItem(at: tmp)
        throw CellDataError("\(path): cannot write: \(err)")
    }
}

/// Plain words for a file-system failure.
public enum FileSystemError {
    public static func describe(errno e: Int32, fallback: Error) -> String {
        switch e {
        case ENOSPC: return "no space left on device"
        case EDQUOT: return "disk quota exceeded"
        case EACCES, EPERM: return "permission denied"
        case EROFS: return "read-only file system"
        case ENOENT: return "no such folder"
        default: return e != 0 ? String(cString: strerror(e)) : "\(fallback)"
        }
    }
}
