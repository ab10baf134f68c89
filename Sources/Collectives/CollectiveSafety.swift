import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// Which collective a rank is entering; part of the signature compared across ranks.
public enum CollectiveOp: Int64, Sendable, CustomStringConvertible {
    case barrier = 1, broadcast, allreduce, iallreduce, allgather, allgatherv, alltoallv, reduceScatter
    public var description: String {
        switch self {
        case .barrier: return "barrier"
        case .broadcast: return "broadcast"
        case .allreduce: return "allreduce"
        case .iallreduce: return "iallreduce"
        case .allgather: return "allgather"
        case .allgatherv: return "allgatherv"
        case .alltoallv: return "alltoallv"
        case .reduceScatter: return "reduceScatter"
        }
    }
}

/// Debug checks around every collective (off by default; they cost one small message per rank pair).
///
/// - `checkSignatures`: before each collective every rank sends (sequence number, op, element type,
///   count, root) to every other rank and compares; a mismatch aborts the job naming the ranks and
///   what each called — instead of a hang or silently wrong numbers.
/// - `stallTimeout`: if some ranks have not reached the collective after this many seconds, each
///   waiting rank names the missing ones; with `abortOnStall` the job is then brought down.
///
/// Environment: `SYNCYTIUM_CHECK_COLLECTIVES=1`, `SYNCYTIUM_STALL_TIMEOUT=<seconds>`,
/// `SYNCYTIUM_STALL_ABORT=0|1` (default 1).
public struct CollectiveSafety: Sendable {
    public var checkSignatures = false
    public var stallTimeout: Double? = nil
    public var abortOnStall = true
    public init(checkSignatures: Bool = false, stallTimeout: Double? = nil, abortOnStall: Bool = true) {
        self.checkSignatures = checkSignatures; self.stallTimeout = stallTimeout; self.abortOnStall = abortOnStall
    }
    public var enabled: Bool { checkSignatures || stallTimeout != nil }

    public static func fromEnvironment() -> CollectiveSafety {
        func env(_ k: String) -> String? { getenv(k).map { String(cString: $0) } }
        var s = CollectiveSafety()
        if let v = env("SYNCYTIUM_CHECK_COLLECTIVES"), v != "0", !v.isEmpty { s.checkSignatures = true }
        if let v = env("SYNCYTIUM_STALL_TIMEOUT"), let t = Double(v), t > 0 { s.stallTimeout = t }
        if let v = env("SYNCYTIUM_STALL_ABORT") { s.abortOnStall = v != "0" }
        return s
    }
}

/// Mutable per-communicator state of the checks (collectives run on one thread: MPI_THREAD_FUNNELED).
final class SafetyState: @unchecked Sendable {
    var config: CollectiveSafety
    var sequence: Int64 = 0
    var checkComm: MPI_Comm? = nil  // a duplicate, so check messages never match user traffic
    init(_ c: CollectiveSafety) { config = c }
}

extension Communicator {
    /// The debug checks in force on this communicator. Set it on every rank alike (it is itself
    /// collective when switched on: it duplicates the communicator).
    public var safety: CollectiveSafety {
        get { safetyState.config }
    }

    public func setSafety(_ s: CollectiveSafety) throws {
        if s.enabled && safetyState.checkComm == nil {
            var dup: MPI_Comm? = cmpi_comm_null()
            try check(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup")
            try check(MPI_Comm_set_errhandler(dup, cmpi_errors_return()), "MPI_Comm_set_errhandler")
            safetyState.checkComm = dup
        }
        safetyState.config = s
    }

    /// Called at the start of every collective. `count` is −1 where ranks may legitimately differ.
    @inline(__always)
    func enter(_ op: CollectiveOp, _ kind: ScalarKind?, count: Int, root: Int = -1) throws {
        guard safetyState.config.enabled else { return }
        try checkedEnter(op, kind, count: count, root: root)
    }

    private func checkedEnter(_ op: CollectiveOp, _ kind: ScalarKind?, count: Int, root: Int) throws {
        let st = safetyState
        st.sequence += 1
        guard size > 1, let cc = st.checkComm else { return }
        let kindCode: Int64 = kind.map { Int64(ScalarKind.allCases.firstIndex(of: $0)!) } ?? -1
        var mine: [Int64] = [st.sequence, op.rawValue, kindCode, Int64(count), Int64(root)]
        let w = mine.count
        var theirs = [Int64](repeating: 0, count: w * size)
        var reqs = [MPI_Request?](repeating: cmpi_request_null(), count: 2 * size)
        let tag: Int32 = 4242
        try mine.withUnsafeMutableBufferPointer { m in
            try theirs.withUnsafeMutableBufferPointer { t in
                for peer in 0..<size where peer != rank {
                    try check(MPI_Irecv(t.baseAddress! + peer * w, Int32(w), cmpi_int64(), Int32(peer), tag, cc, &reqs[peer]),
                              "MPI_Irecv(collective check)")
                    try check(MPI_Isend(m.baseAddress!, Int32(w), cmpi_int64(), Int32(peer), tag, cc, &reqs[size + peer]),
                              "MPI_Isend(collective check)")
                }
                // Poll until every peer has announced itself, naming the missing ones on a stall.
                let start = MPI_Wtime()
                var warned = false
                while true {
                    var flag: Int32 = 0
                    try check(MPI_Testall(Int32(reqs.count), &reqs, &flag, nil), "MPI_Testall(collective check)")
                    if flag != 0 { break }
                    if let limit = st.config.stallTimeout, MPI_Wtime() - start > limit, !warned {
                        warned = true
                        var missing: [Int] = []
                        for peer in 0..<size where peer != rank {
                            var f: Int32 = 0
                            _ = MPI_Request_get_status(reqs[peer], &f, cmpi_status_ignore())
                            if f == 0 { missing.append(peer) }
                        }
                        let msg = "stalled \(Int(MPI_Wtime() - start)) s in \(op) #\(st.sequence): "
                            + "rank(s) \(missing.map(String.init).joined(separator: ", ")) have not reached it"
                        if st.config.abortOnStall { abort(msg) }
                        writeStderr("[rank \(Communicator.world.rank)] warning: \(msg); still waiting\n")
                    }
                    usleep(200)
                }
            }
        }
        guard st.config.checkSignatures else { return }
        for peer in 0..<size where peer != rank {
            let s = Array(theirs[(peer * w)..<(peer * w + w)])
            if s != mine {
                abort("collective mismatch: rank \(rank) calls \(describe(mine)), rank \(peer) calls \(describe(s))")
            }
        }
    }

    private func describe(_ s: [Int64]) -> String {
        let op = CollectiveOp(rawValue: s[1]).map { "\($0)" } ?? "op \(s[1])"
        let kind = s[2] >= 0 && Int(s[2]) < ScalarKind.allCases.count ? "\(ScalarKind.allCases[Int(s[2])])" : "-"
        var out = "\(op) #\(s[0]) of \(kind)"
        if s[3] >= 0 { out += " × \(s[3])" }
        if s[4] >= 0 { out += " from root \(s[4])" }
        return out
    }
}
