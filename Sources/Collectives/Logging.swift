// Rank-aware logging through swift-log: messages below `error` are printed by rank 0 only (every rank
// logs the same run), errors and above by every rank, prefixed `[rank r]` when the job has several.
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public struct RankLogHandler: LogHandler {
    /// The level every logger of the process uses (set once from the run spec's `log_level`).
    static let level = Atomic<Int>(Logger.Level.info.rank)
    /// Installs this handler for every `Logger` of the process (once, before the first one is made).
    public static func bootstrap() {
        LoggingSystem.bootstrap { RankLogHandler(label: $0) }
    }
    /// Sets the level of every logger (trace, debug, info, notice, warning, error, critical).
    public static func setLevel(_ l: Logger.Level) { level.store(l.rank, ordering: .relaxed) }

    public let label: String
    public var metadata: Logger.Metadata = [:]
    public init(label: String) { self.label = label }

    public var logLevel: Logger.Level {
        get { Logger.Level.allCases.first { $0.rank == RankLogHandler.level.load(ordering: .relaxed) } ?? .info }
        set { RankLogHandler.setLevel(newValue) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                    file: String, function: String, line: UInt) {
        let world = Communicator.world
        if level < .error && world.rank != 0 { return }
        var text = level >= .warning ? "\(level == .warning ? "warning" : "error"): \(message)" : "\(message)"
        if level >= .error && world.size > 1 { text = "[rank \(world.rank)] " + text }
        writeStderr(text.hasSuffix("\n") ? text : text + "\n")
    }
}

extension Logger.Level {
    var rank: Int { Logger.Level.allCases.firstIndex(of: self) ?? 2 }
}
