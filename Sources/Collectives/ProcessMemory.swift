import Foundation

/// This process's resident memory from /proc/self/status (Linux): VmRSS now and VmHWM, the peak
/// since the process started. Both 0 where /proc is not available.
public enum ProcessMemory {
    public static func read() -> (rss: Int, peak: Int) {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
        var rss = 0, peak = 0
        for line in s.split(separator: "\n") {
            // "VmHWM:\t 1234 kB", with a tab and as many spaces as the number leaves.
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let kb = Int(parts[1]) else { continue }
            if parts[0] == "VmRSS:" { rss = kb * 1024 }
            if parts[0] == "VmHWM:" { peak = kb * 1024 }
        }
        return (rss, peak)
    }
}
