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

    /// A progress line at most every `every` seconds (always when `force`). On a terminal, one line
    /// with a bar, rewritten in place (4 times a second at most) and ended when training ends; in a
    /// batch log, a line at most every `every` seconds and at the end of each epoch.
    public func show(epoch: Int, epochs: Int, step: Int, steps: Int, terms: [(String, Double)], cellsPerSecond: Double,
                     remainingSteps: Int, secondsPerStep: Double, force: Bool = false, every: Double = 2) {
        guard comm.rank == 0 else { return }
        let now = Date().timeIntervalSince(start)
        let last = remainingSteps == 0
        guard force || last || now - lastPrint >= (interactive ? 0.25 : every) else { return }
        lastPrint = now
        let t = terms.map { "\($0.0) \(String(format: "%.4g", $0.1))" }.joined(separator: "  ")
        let eta = Double(remainingSteps) * secondsPerStep
        let line = "epoch \(epoch + 1)/\(epochs)  step \(step + 1)/\(steps)  \(t)  \(Int(cellsPerSecond)) cells/s  ETA \(formatDuration(eta))"
        guard interactive else { writeStderr(line + "\n"); return }
        let done = epoch * steps + step + 1
        let total = done + remainingSteps
        // \r and "erase line" redraw in place; the line stays open (see stderrProgressLineOpen).
        let text = "\r\u{1B}[2K" + Self.bar(Double(done) / Double(Swift.max(total, 1))) + " " + line + (last ? "\n" : "")
        stderrProgressLineOpen = false
        writeStderr(text)
        stderrProgressLineOpen = !last
    }

    /// A 20-cell bar, e.g. "[#######·············]  35%".
    static func bar(_ fraction: Double) -> String {
        let f = Swift.min(Swift.max(fraction, 0), 1), width = 20
        let filled = Int((f * Double(width)).rounded(.down))
        return "[" + String(repeating: "#", count: filled) + String(repeating: "·", count: width - filled) + "] " +
            String(format: "%3d%%", Int((f * 100).rounded(.down)))
    }

    /// Ends an open terminal line (a run stopped before its last step).
    public func endLine() {
        if comm.rank == 0 && stderrProgressLineOpen { stderrProgressLineOpen = false; writeStderr("\n") }
    }
}

func formatDuration(_ s: Double) -> String {
    guard s.isFinite else { return "?" }
    let t = Int(s.rounded())
    return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
}
