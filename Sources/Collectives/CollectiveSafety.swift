import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// Which collective a rank is entering; part of the signature compared across ranks.
public enum CollectiveOp: Int64, Sendable, CustomStringConvertible {
    case barrier = 1, broadcast, allreduce, iallreduce, allgather, allgatherv, alltoallv, reduceScatter, pointToPoint
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
        case .pointToPoint: return "point-to-point"
        }
    }
}

/// Debug checks around every collective (off by default; they cost one small message per rank pair).
///
/// - `checkSignatures`: before each collective every rank sends (sequence number, op, element type,
///   count, root) to every other rank and compares; a mismatch aborts the job naming the ranks and
///   what each called — instead of a hang or silently wrong numbers.
/// - `stallTimeout`: if some ranks have not reached the collective after this many seconds, each
///   waiting rank names the missing ones (rank and host); with `abortOnStall` the job is then brought
///   down. The collective itself (and a wait on a nonblocking one) then runs as its nonblocking MPI
///   form polled to completion: when every rank entered it but it does not finish within the timeout
///   (a peer lost on the network), each waiting rank pings the others on the check communicator and
///   names those that do not answer. (Open MPI's nonblocking collectives may sum in another order
///   than its blocking ones: results with the watchdog on can differ in the last bits from results
///   without it, and are reproducible with it.)
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
    var hosts: [String] = []         // every rank's host name, so a stall names where the missing ranks run
    init(_ c: CollectiveSafety) { config = c }
}

extension Communicator {
    /// The debug checks in force on this communicator. Set it on every rank alike (it is itself
    /// collective when switched on: it duplicates the communicator).
    public var safety: CollectiveSafety {
        get { safetyState.config }
    }

    public func setSafety(_ s: CollectiveSafety) throws {
        if s.enabled && safetyState.checkComm == nil { try prepareSafetyChecks() }
        safetyState.config = s
    }

    /// Collective, once per communicator of more than one rank (at creation, so that checks switched on
    /// by the environment — `SYNCYTIUM_STALL_TIMEOUT`, `SYNCYTIUM_CHECK_COLLECTIVES` — have their
    /// communicator whatever the ranks' environments): duplicates the communicator for the check
    /// messages and gathers every rank's host name for the stall message.
    func prepareSafetyChecks() throws {
        guard safetyState.checkComm == nil else { return }
        var dup: MPI_Comm? = cmpi_comm_null()
        try check(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup")
        try check(MPI_Comm_set_errhandler(dup, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        let width = 64
        var mine = [UInt8](repeating: 0, count: width)
        for (i, b) in Communicator.hostName.utf8.prefix(width - 1).enumerated() { mine[i] = b }
        var all = [UInt8](repeating: 0, count: width * size)
        try check(MPI_Allgather(&mine, Int32(width), cmpi_uint8(), &all, Int32(width), cmpi_uint8(), dup),
                  "MPI_Allgather(host names)")
        safetyState.hosts = (0..<size).map { r in
            String(decoding: all[(r * width)..<((r + 1) * width)].prefix { $0 != 0 }, as: UTF8.self)
        }
        // Every rank adopts rank 0's settings: ranks whose environments differ would otherwise mix the
        // watched (nonblocking) and plain forms of a collective, which do not match each other in MPI.
        let c = safetyState.config
        var settings: [Double] = [c.checkSignatures ? 1 : 0, c.stallTimeout ?? -1, c.abortOnStall ? 1 : 0]
        let before = settings
        try check(MPI_Bcast(&settings, 3, cmpi_double(), 0, dup), "MPI_Bcast(check settings)")
        if settings != before {
            safetyState.config = CollectiveSafety(checkSignatures: settings[0] != 0,
                                                  stallTimeout: settings[1] > 0 ? settings[1] : nil,
                                                  abortOnStall: settings[2] != 0)
            writeStderr("[rank \(rank)] collective checks: this rank's environment differs from rank 0's; using rank 0's "
                        + "(SYNCYTIUM_CHECK_COLLECTIVES=\(settings[0] != 0 ? 1 : 0), SYNCYTIUM_STALL_TIMEOUT="
                        + (settings[1] > 0 ? "\(settings[1])" : "unset") + ", SYNCYTIUM_STALL_ABORT=\(settings[2] != 0 ? 1 : 0))\n")
        }
        safetyState.checkComm = dup
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
                    answerPings()
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
                            + " (\(placed(missing)); unreachable or stuck)"
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

    /// "rank 2 on host h3, …" from the host names gathered when the communicator was made.
    func placed(_ ranks: [Int]) -> String {
        ranks.map { p in p < safetyState.hosts.count ? "rank \(p) on host \(safetyState.hosts[p])" : "rank \(p)" }
            .joined(separator: ", ")
    }

    /// Runs one collective: the blocking MPI call, or, with a stall timeout in force, its nonblocking
    /// form polled by `waitWatched`, so that a peer lost inside the collective is named, not waited for.
    @inline(__always)
    func collective(_ op: CollectiveOp, _ name: @autoclosure () -> String, blocking: () -> Int32,
                    nonblocking: (inout MPI_Request?) -> Int32) throws {
        guard safetyState.config.stallTimeout != nil, size > 1, safetyState.checkComm != nil else {
            try check(blocking(), name()); return
        }
        var req: MPI_Request? = cmpi_request_null()
        try check(nonblocking(&req), name())
        try waitWatched(&req, op, name())
    }

    /// Polls `req` to completion. Past the stall timeout: with `abortOnStall`, pings every peer and
    /// aborts naming those that do not answer within a few seconds; otherwise warns once.
    func waitWatched(_ req: inout MPI_Request?, _ op: CollectiveOp, _ name: String) throws {
        let st = safetyState
        guard let limit = st.config.stallTimeout, size > 1, st.checkComm != nil else {
            try check(MPI_Wait(&req, cmpi_status_ignore()), name); return
        }
        let start = MPI_Wtime()
        var warned = false
        while true {
            var flag: Int32 = 0
            try check(MPI_Test(&req, &flag, cmpi_status_ignore()), name)
            if flag != 0 { return }
            answerPings()
            if !warned, MPI_Wtime() - start > limit {
                warned = true
                let head = op == .pointToPoint
                    ? "stalled \(Int(MPI_Wtime() - start)) s waiting for a point-to-point message"
                    : "stalled \(Int(MPI_Wtime() - start)) s inside \(op) #\(st.sequence), which every rank had entered"
                if st.config.abortOnStall {
                    let window = Swift.min(limit, 5)
                    let silent = silentPeers(within: window)
                    if silent.isEmpty { abort(head + "; every rank answers a ping, so MPI itself is stuck") }
                    abort(head + ": rank(s) \(silent.map(String.init).joined(separator: ", ")) do not answer within "
                          + "\(Int(window)) s (\(placed(silent)); unreachable or stuck)")
                }
                writeStderr("[rank \(Communicator.world.rank)] warning: \(head); still waiting\n")
            }
            usleep(200)
        }
    }

    private static let pingTag: Int32 = 4243, pongTag: Int32 = 4244

    /// Answers the pings of peers that are looking for lost ranks (called from every watchdog poll).
    func answerPings() {
        guard let cc = safetyState.checkComm else { return }
        while true {
            var flag: Int32 = 0
            var status = MPI_Status()
            guard MPI_Iprobe(cmpi_any_source(), Self.pingTag, cc, &flag, &status) == cmpi_success(), flag != 0 else { return }
            var v: Int64 = 0
            guard MPI_Recv(&v, 1, cmpi_int64(), status.MPI_SOURCE, Self.pingTag, cc, cmpi_status_ignore()) == cmpi_success()
            else { return }
            _ = MPI_Send(&v, 1, cmpi_int64(), status.MPI_SOURCE, Self.pongTag, cc)
        }
    }

    /// Pings every peer and returns those whose answer has not come within `window` seconds. Only on the
    /// way to an abort (requests to silent peers are left pending).
    private func silentPeers(within window: Double) -> [Int] {
        guard let cc = safetyState.checkComm else { return [] }
        let ping = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
        ping.pointee = safetyState.sequence
        let answers = UnsafeMutablePointer<Int64>.allocate(capacity: size)
        var recvs = [MPI_Request?](repeating: cmpi_request_null(), count: size)
        var answered = [Bool](repeating: false, count: size)
        answered[rank] = true
        for peer in 0..<size where peer != rank {
            var s: MPI_Request? = cmpi_request_null()
            _ = MPI_Irecv(answers + peer, 1, cmpi_int64(), Int32(peer), Self.pongTag, cc, &recvs[peer])
            if MPI_Isend(ping, 1, cmpi_int64(), Int32(peer), Self.pingTag, cc, &s) == cmpi_success() { _ = MPI_Request_free(&s) }
        }
        let start = MPI_Wtime()
        while MPI_Wtime() - start < window, answered.contains(false) {
            for peer in 0..<size where !answered[peer] {
                var f: Int32 = 0
                if MPI_Test(&recvs[peer], &f, cmpi_status_ignore()) == cmpi_success(), f != 0 { answered[peer] = true }
            }
            answerPings()
            usleep(200)
        }
        return (0..<size).filter { !answered[$0] }
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
