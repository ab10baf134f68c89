import Collectives
import Foundation

/// Rank 0's progress line on stderr (epoch, step, loss terms, cells/s, ETA) and JSONL metrics log.
public final class ProgressLog {
    let comm: Communicator
    let jsonl: FileHandle?
    let interactive: Bool
    var lastPrint = 0.0
    public let start = Date()

    public init(comm: Communicator, metricsPath: URL?) throws {
        self.comm = comm
        interactive = isatty(2) != 0
        if comm.rank == 0, let path = metricsPath {
            try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
            if !FileManager.default.fileExists(atPath: path.path) { FileManager.default.createFile(atPath: path.path, contents: nil) }
            let h = try FileHandle(forWritingTo: path)
            h.seekToEndOfFile()
            jsonl = h
        } else { jsonl = nil }
    }

    /// Appends one JSON object (rank 0 only).
    public func record(_ fields: [String: Any]) {
        guard let h = jsonl else { return }
        if let d = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) {
            h.write(d); h.write(Data("\n".utf8))
        }
    }

    /// A progress line at most every `every` seconds (always when `force`).
    public func show(epoch: Int, epochs: Int, step: Int, steps: Int, terms: [(String, Double)], cellsPerSecond: Double,
                     remainingSteps: Int, secondsPerStep: Double, force: Bool = false, every: Double = 2) {
        guard comm.rank == 0 else { return }
        let now = Date().timeIntervalSince(start)
        guard force || now - lastPrint >= every else { return }
        lastPrint = now
        let t = terms.map { "\($0.0) \(String(format: "%.4g", $0.1))" }.joined(separator: "  ")
        let eta = Double(remainingSteps) * secondsPerStep
        let line = "epoch \(epoch + 1)/\(epochs)  step \(step + 1)/\(steps)  \(t)  \(Int(cellsPerSecond)) cells/s  ETA \(formatDuration(eta))"
        writeStderr(line + "\n")
    }
}

func formatDuration(_ s: Double) -> String {
    guard s.isFinite else { return "?" }
    let t = Int(s.rounded())
    return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
}
