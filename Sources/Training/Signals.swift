import Collectives
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM / SIGUSR1 → a flag; nothing else happens in the handler. At the next step boundary
/// the ranks agree on it by allreduce (so all checkpoint together), then exit with
/// `StopSignal.exitCode` for a batch script to requeue on.
public enum StopSignal {
    /// Exit status of a run stopped by a signal after its checkpoint (EX_TEMPFAIL): "try again".
    public static let exitCode: Int32 = 75

    static let received = Atomic<Int32>(0)

    /// Installs the handlers (idempotent).
    public static func install() {
        for sig in [SIGTERM, SIGUSR1] {
            signal(sig) { s in StopSignal.received.store(s, ordering: .relaxed) }
        }
    }

    /// The signal received on this rank, or 0.
    public static var local: Int32 { received.load(ordering: .relaxed) }

    /// Collective: whether any rank received a stop signal.
    public static func anyRank(_ comm: Communicator) throws -> Bool {
        try comm.allreduce(value: Int32(local != 0 ? 1 : 0), op: .max) != 0
    }

    /// Collective: whether any rank received a stop signal before optimiser step `step`.
    /// `SYNCYTIUM_TEST_STOP_AT_STEP=n` acts as if SIGUSR1 arrived just before step n (for the
    /// preemption tests of launch/tests.d; it is read once, at the first call).
    public static func anyRank(_ comm: Communicator, beforeStep step: Int) throws -> Bool {
        if let s = simulatedStep, s == step { simulate() }
        return try anyRank(comm)
    }

    static let simulatedStep: Int? = getenv("SYNCYTIUM_TEST_STOP_AT_STEP").flatMap { Int(String(cString: $0)) }

    /// For tests: behave as if a signal had arrived.
    public static func simulate(_ sig: Int32 = SIGUSR1) { received.store(sig, ordering: .relaxed) }
    public static func clear() { received.store(0, ordering: .relaxed) }
}
