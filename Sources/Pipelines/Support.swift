// What the runs share: the output-path checks made before any work, scores against labels, and the
// model/trainer construction from a spec.
import CellData
import Clustering
import Collectives
import Foundation
import Logging
import Settings
import Models
import Training

let log = Logger(label: "syncytium")

/// Checks made before any work: the output's folder exists and is writable, and the output is not
/// the input file (same device and inode) unless overwriting it was asked for.
public enum OutputCheck {
    /// Collective; throws the same one-line error on every rank.
    public static func verify(output: String, input: String, overwriteInput: Bool, comm: Communicator) throws {
        try agreeing(comm) {
            guard comm.rank == 0 else { return }
            let url = URL(fileURLWithPath: output)
            let dir = url.deletingLastPathComponent().path
            var st = stat()
            guard stat(dir, &st) == 0 else {
                throw CellDataError("\(output): the output folder \(dir) does not exist")
            }
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw CellDataError("\(output): \(dir) is not a folder") }
            if let problem = FileSystemCheck.diagnose(folderOf: url.path) {
                throw CellDataError("\(output): \(problem); write the output elsewhere")
            }
            var a = stat(), b = stat()
            if stat(input, &a) == 0 && stat(output, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino && !overwriteInput {
                throw CellDataError("\(output): is the input file; refusing to replace it (write elsewhere, or pass --overwrite-input to replace it once the result is complete)")
            }
            if stat(output, &b) == 0 && (b.st_mode & S_IFMT) == S_IFDIR { throw CellDataError("\(output): is a folder") }
        }
    }
}

extension OutputCheck {
    /// Collective, before training: the output keeps a copy of `input`, so its folder must have at least
    /// the input's size free (the results are small beside it). Skipped where the file system cannot say.
    public static func verifySpace(output: String, keeping input: String, comm: Communicator) throws {
        try agreeing(comm) {
            guard comm.rank == 0 else { return }
            var st = stat(), fs = statvfs()
            let dir = URL(fileURLWithPath: output).deletingLastPathComponent().path
            guard stat(input, &st) == 0, statvfs(dir, &fs) == 0 else { return }
            let free = Int64(fs.f_bavail) * Int64(fs.f_frsize), need = Int64(st.st_size)
            if free < need {
                func gb(_ b: Int64) -> String { b >= 1_000_000_000 ? String(format: "%.1f GB", Double(b) / 1e9) : String(format: "%.1f MB", Double(b) / 1e6) }
                throw CellDataError("\(output): \(dir) has \(gb(free)) free, and the output keeps a copy of the input (\(gb(need))); free space, write elsewhere, or pass --results-only")
            }
        }
    }
}

/// ARI, NMI and ACC of clusterings against reference labels (labels < 0 ignored).
public struct Scores: Sendable, Codable, Equatable {
    public var ari: Double
    public var nmi: Double
    public var acc: Double

    /// Collective. ARI, NMI and ACC are functions of the contingency table of all cells: each rank
    /// counts its cells' (label, cluster) pairs and one allreduce of the classes × clusters table sums
    /// them (O(classes × clusters) per rank, and the same integers on any rank count). Cells with a
    /// missing label or cluster (code < 0) are left out. Only a table above `tableLimit` entries
    /// (labels with ~10⁵ distinct values) gathers the labels instead (8 bytes per cell on every rank).
    public static func compute(truth: [Int32], pred: [Int32], comm: Communicator) throws -> Scores {
        var most: [Int64] = [Int64(truth.max() ?? -1), Int64(pred.max() ?? -1)]
        try comm.allreduce(&most, op: .max)
        let classes = Int(most[0]) + 1, clusters = Int(most[1]) + 1
        if classes * clusters <= tableLimit {
            var counts = [Int64](repeating: 0, count: max(classes * clusters, 1))
            for (t, p) in zip(truth, pred) where t >= 0 && p >= 0 { counts[Int(t) * clusters + Int(p)] += 1 }
            try comm.allreduce(&counts, op: .sum)
            let table = ClusterMetrics.Contingency(counts: (0..<classes).map { i in (0..<clusters).map { Int(counts[i * clusters + $0]) } })
            return Scores(ari: ClusterMetrics.adjustedRandIndex(table), nmi: ClusterMetrics.normalizedMutualInformation(table),
                          acc: ClusterMetrics.accuracy(clustersByClasses: table.transposed))
        }
        let t = try comm.allgatherv(truth.map(Int64.init)).values
        let p = try comm.allgatherv(pred.map(Int64.init)).values
        let keep = t.indices.filter { t[$0] >= 0 && p[$0] >= 0 }
        let tt = keep.map { Int(t[$0]) }, pp = keep.map { Int(p[$0]) }
        return Scores(ari: ClusterMetrics.adjustedRandIndex(tt, pp), nmi: ClusterMetrics.normalizedMutualInformation(tt, pp),
                      acc: ClusterMetrics.accuracy(tt, pp))
    }

    /// Largest classes × clusters table summed by allreduce (4M entries, 32 MB).
    static let tableLimit = 1 << 22

    public var line: String { String(format: "ARI %.4f  NMI %.4f  ACC %.4f", ari, nmi, acc) }
}

extension ReportValue {
    var uns: UnsValue {
        switch self {
        case .integer(let i): return .integer(Int64(i))
        case .number(let x): return .number(x)
        case .text(let s): return .string(s)
        }
    }
}

/// Trains `model` with `config`; resumes from its checkpoint folder when `config.resume` is auto.
func train(_ model: any Model, config: TrainerConfig, seed: UInt64, runSpec: String, data: Dataset,
           comm: Communicator) throws -> (trainer: Trainer, outcome: TrainingOutcome) {
    let plan = TrainingPlan(epochs: model.totalEpochs, seed: seed, learningRateChange: model.learningRateChange, runSpec: runSpec,
                            epochSchedule: model.learningRateSchedulePlan)
    var config = config
    if let b = model.globalBatchSize {
        guard config.accumulation == 1 else {
            throw SettingsError(key: "trainer.accumulation", "\(type(of: model).name) takes all \(b) cells of a step at once (full-graph steps); set it to 1")
        }
    }
    if let b = model.globalBatchSize, b != config.batchSize {
        log.info("\(type(of: model).name): \(b) cells per step (trainer.batch_size \(config.batchSize) does not apply)")
        config.batchSize = b
    }
    if let lr = model.learningRate, lr != config.lr {
        log.info("\(type(of: model).name): learning rate \(lr) (model.lr; trainer.lr \(config.lr) does not apply)")
        config.lr = lr
    }
    let cells = model.trainingCells ?? (data.cellIds, data.cells)
    let trainer = try Trainer(task: model, config: config, plan: plan, cellIds: cells.ids, idSpace: cells.idSpace, comm: comm)
    if config.resume == .auto, let ck = try trainer.resumeIfPossible() {
        log.info("resumed from \(ck.path) at epoch \(trainer.epoch + 1), step \(trainer.stepInEpoch + 1)")
    }
    let outcome = try trainer.run()
    if case .stopped(let ck) = outcome { log.info("stopped by signal after checkpoint \(ck)") } else { try model.trainingDidEnd() }
    return (trainer, outcome)
}

/// Runs a command's work on every rank. An error every rank has (from `agreeing`) ends the job
/// cleanly with exit code 1 and rank 0's one-line message; any other error aborts the whole job
/// with the failing rank's message (no rank is left waiting in a collective).
public func runDataCommand(_ comm: Communicator, _ body: () throws -> Void) {
    do { try body() } catch let e as CellDataError where e.agreedByAllRanks {
        if comm.rank == 0 { writeStderr("error: \(e.message)\n") }
        comm.finalize()
        exit(1)
    } catch { comm.abort("\(error)") }
}

/// Serves allocations below 256 MiB from the heap and keeps freed memory there: the per-step
/// batch arrays (a few hundred KiB each) would otherwise be mmapped and zero-faulted every step.
public func keepAllocationsOnHeap() {
    #if os(Linux)
    _ = glibcMallopt(-3, 256 << 20)   // M_MMAP_THRESHOLD (malloc.h is not in the Glibc module)
    _ = glibcMallopt(-1, 512 << 20)   // M_TRIM_THRESHOLD
    #endif
}

#if os(Linux)
@_silgen_name("mallopt") func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32
#endif
