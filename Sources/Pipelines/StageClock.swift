import CellData
import Collectives
import Foundation

/// Wall time and peak resident memory per pipeline stage (read, model setup, train, …), printed at
/// the end of a run and written to uns['syncytium']['stages'].
///
/// Collective: every rank marks the same stages in the same order (each mark is one allreduce of
/// three numbers); a stage's seconds and memory are the maxima over ranks. A stage's peak is the
/// process's VmHWM since the previous mark: each mark resets the high-water mark (Linux ≥ 4.0,
/// `echo 5 > /proc/self/clear_refs`). Where the reset is refused, peaks are cumulative since the
/// process started and `peaksPerStage` is false. A stage marked again (an ensemble's members) adds
/// its seconds and keeps the larger peak.
struct StageClock {
    struct Stage {
        var name: String
        var seconds: Double
        /// Largest VmHWM over ranks during the stage, bytes.
        var peakBytes: Int
        /// Largest VmRSS over ranks at the stage's end, bytes.
        var endBytes: Int
    }
    private(set) var stages: [Stage] = []
    private(set) var peaksPerStage = StageClock.resetPeak()
    private var last = Communicator.time()

    /// Collective: closes the stage that began at the previous mark (or at init).
    mutating func mark(_ name: String, comm: Communicator) throws {
        let memory = ProcessMemory.read()
        var v = [Communicator.time() - last, Double(memory.peak), Double(memory.rss)]
        try comm.allreduce(&v, op: .max)
        if peaksPerStage { peaksPerStage = StageClock.resetPeak() }
        if let i = stages.firstIndex(where: { $0.name == name }) {
            stages[i].seconds += v[0]; stages[i].peakBytes = max(stages[i].peakBytes, Int(v[1])); stages[i].endBytes = Int(v[2])
        } else {
            stages.append(Stage(name: name, seconds: v[0], peakBytes: Int(v[1]), endBytes: Int(v[2])))
        }
        last = Communicator.time()
    }

    /// Resets this process's VmHWM to its current RSS; false where the kernel refuses.
    static func resetPeak() -> Bool {
        guard let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? h.close() }
        do { try h.write(contentsOf: Data("5".utf8)); return true } catch { return false }
    }

    /// uns['syncytium']['stages']: {name: {seconds, peak_rss_mib, end_rss_mib}, …, peaks: 'per stage' | 'since start'}.
    var uns: UnsValue {
        let mib = { (b: Int) in UnsValue.number((Double(b) / 1_048_576 * 10).rounded() / 10) }
        var items: [(String, UnsValue)] = stages.map { s in
            (s.name, .dict([("seconds", .number(s.seconds)), ("peak_rss_mib", mib(s.peakBytes)), ("end_rss_mib", mib(s.endBytes))]))
        }
        items.append(("peaks", .string(peaksPerStage ? "per stage" : "since start")))
        return .dict(items)
    }

    /// One line per stage for the end of a run's log (rank 0).
    func lines(ranks: Int) -> [String] {
        let total = stages.reduce(0) { $0 + $1.seconds }
        var out = ["stages (\(ranks) rank\(ranks == 1 ? "" : "s"); slowest rank's seconds, largest rank's peak resident memory\(peaksPerStage ? " during the stage" : " since start")):"]
        for s in stages {
            out.append("  " + s.name.padding(toLength: 18, withPad: " ", startingAt: 0)
                       + String(format: "%9.2f s  %5.1f %%  peak %8.1f MiB  end %8.1f MiB", s.seconds, total > 0 ? 100 * s.seconds / total : 0,
                                Double(s.peakBytes) / 1_048_576, Double(s.endBytes) / 1_048_576))
        }
        return out
    }
}
