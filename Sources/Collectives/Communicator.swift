import CMPI
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element types that can travel through a collective.
public enum ScalarKind: Sendable, CaseIterable {
    case float32, float64, int32, int64, uint8

    public var byteCount: Int {
        switch self {
        case .float32, .int32: return 4
        case .float64, .int64: return 8
        case .uint8: return 1
        }
    }

    var datatype: MPI_Datatype {
        switch self {
        case .float32: return cmpi_float()
        case .float64: return cmpi_double()
        case .int32: return cmpi_int32()
        case .int64: return cmpi_int64()
        case .uint8: return cmpi_uint8()
        }
    }
}

/// A Swift scalar with a fixed MPI datatype.
public protocol CollectiveScalar: Numeric, Sendable {
    static var scalarKind: ScalarKind { get }
}
extension Float: CollectiveScalar { public static var scalarKind: ScalarKind { .float32 } }
extension Double: CollectiveScalar { public static var scalarKind: ScalarKind { .float64 } }
extension Int32: CollectiveScalar { public static var scalarKind: ScalarKind { .int32 } }
extension Int64: CollectiveScalar { public static var scalarKind: ScalarKind { .int64 } }
extension UInt8: CollectiveScalar { public static var scalarKind: ScalarKind { .uint8 } }

/// Reduction operators for allreduce.
public enum ReduceOp: String, Sendable, CaseIterable {
    case sum, max, min

    var op: MPI_Op {
        switch self {
        case .sum: return cmpi_sum()
        case .max: return cmpi_max()
        case .min: return cmpi_min()
        }
    }
}

/// An MPI call that returned an error code, with MPI's own message.
public struct MPIError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let code: Int32
    public let message: String
    public var description: String { "\(call) failed: \(message) (MPI error \(code))" }
}

/// A misuse of the Communicator API detected before MPI was called.
public struct CollectiveUsageError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

@inline(__always)
func check(_ rc: Int32, _ call: @autoclosure () -> String) throws {
    if rc != cmpi_success() { throw MPIError(call: call(), code: rc, message: mpiErrorString(rc)) }
}

func mpiErrorString(_ code: Int32) -> String {
    var buf = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
    var len: Int32 = 0
    if MPI_Error_string(code, &buf, &len) != cmpi_success() { return "unknown MPI error" }
    return String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The largest element count one MPI call takes (counts are C ints).
let maxCount = Int(Int32.max)

/// A communicator over MPI_COMM_WORLD.
///
/// `Communicator.world` initialises MPI on first use: under `mpirun`/`srun` it joins the job,
/// started directly it is a singleton of size 1. Errors from MPI come back as `MPIError`
/// (the communicator uses MPI_ERRORS_RETURN); `abort` prints `[rank r] message` and takes
/// the whole job down so no rank is left waiting in a collective.
///
/// All collectives must be called by every rank in the same order with matching counts
/// (where a count is given); the variable-size ones (`allgatherv`, `alltoallv`,
/// `broadcast(array:)`) exchange their sizes first.
public final class Communicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// Rank among the processes on this node, and their number.
    public let localRank: Int
    public let localSize: Int
    let comm: MPI_Comm
    let safetyState: SafetyState

    /// The world communicator; initialises MPI (thread level FUNNELED) on first use.
    public static let world: Communicator = {
        do { return try Communicator(initialisingWorld: ()) } catch {
            writeStderr("[rank ?] could not initialise MPI: \(error)\n")
            exit(1)
        }
    }()

    /// A communicator of this process alone (MPI_COMM_SELF): the same API over local data, e.g. to
    /// compute a single-rank reference inside a multi-rank job.
    public static let solo: Communicator = {
        _ = world
        do { return try Communicator(wrapping: cmpi_comm_self()) } catch {
            writeStderr("[rank ?] could not set up MPI_COMM_SELF: \(error)\n")
            exit(1)
        }
    }()

    private convenience init(initialisingWorld: Void) throws {
        var flag: Int32 = 0
        try check(MPI_Initialized(&flag), "MPI_Initialized")
        if flag == 0 {
            var provided: Int32 = 0
            try check(MPI_Init_thread(nil, nil, cmpi_thread_funneled(), &provided), "MPI_Init_thread")
            atexit { Communicator.finalizeAtExit() }
        }
        try self.init(wrapping: cmpi_comm_world())
    }

    private init(wrapping comm: MPI_Comm) throws {
        self.comm = comm
        self.safetyState = SafetyState(CollectiveSafety.fromEnvironment())
        try check(MPI_Comm_set_errhandler(comm, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, s: Int32 = 0
        try check(MPI_Comm_rank(comm, &r), "MPI_Comm_rank")
        try check(MPI_Comm_size(comm, &s), "MPI_Comm_size")
        rank = Int(r); size = Int(s)
        var local: MPI_Comm? = cmpi_comm_null()
        try check(MPI_Comm_split_type(comm, cmpi_comm_type_shared(), r, cmpi_info_null(), &local),
                  "MPI_Comm_split_type")
        var lr: Int32 = 0, ls: Int32 = 1
        try check(MPI_Comm_rank(local, &lr), "MPI_Comm_rank(local)")
        try check(MPI_Comm_size(local, &ls), "MPI_Comm_size(local)")
        _ = MPI_Comm_free(&local)
        localRank = Int(lr); localSize = Int(ls)
        if size > 1 { try prepareSafetyChecks() }
    }

    static func finalizeAtExit() {
        var initialised: Int32 = 0, finalised: Int32 = 0
        MPI_Initialized(&initialised)
        MPI_Finalized(&finalised)
        if initialised != 0 && finalised == 0 { MPI_Finalize() }
    }

    /// Finalises MPI (also done automatically at process exit). No collective may follow.
    public func finalize() { Communicator.finalizeAtExit() }

    /// The MPI library's own version string (callable before initialisation).
    public static var libraryVersion: String {
        var buf = [CChar](repeating: 0, count: Int(cmpi_max_library_version_string()) + 1)
        var len: Int32 = 0
        guard MPI_Get_library_version(&buf, &len) == cmpi_success() else { return "unknown" }
        let s = String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return s.split(separator: "\n").first.map { String($0).trimmingTrailingNulls() } ?? s
    }

    /// MPI standard version as "major.minor".
    public static var standardVersion: String {
        var major: Int32 = 0, minor: Int32 = 0
        MPI_Get_version(&major, &minor)
        return "\(major).\(minor)"
    }

    /// Wall-clock seconds (MPI_Wtime).
    public static func time() -> Double { MPI_Wtime() }

    // MARK: Raw MPI handles

    /// Calls `body` with the addresses of this communicator's `MPI_Comm` and of `MPI_INFO_NULL`,
    /// for a C library that takes MPI handles itself (HDF5's MPI-IO driver).
    ///
    /// This is the one way MPI handles leave Collectives, so no other Swift module imports CMPI:
    /// to the caller the addresses are opaque, and only the C shim that receives them reads them
    /// back as `*(const MPI_Comm *)comm` and `*(const MPI_Info *)info`. Passing addresses rather
    /// than the handles keeps that shim correct for any MPI (Open MPI's handles are pointers,
    /// MPICH's integers). The addresses are valid only inside `body`; the C side must copy the
    /// handles or, to keep the communicator, duplicate it (`H5Pset_fapl_mpio` does).
    public func withMPIHandles<R>(_ body: (_ comm: UnsafeRawPointer, _ infoNull: UnsafeRawPointer) throws -> R) rethrows -> R {
        var handle: MPI_Comm? = comm
        var info: MPI_Info? = cmpi_info_null()
        return try withUnsafePointer(to: &handle) { c in
            try withUnsafePointer(to: &info) { i in try body(UnsafeRawPointer(c), UnsafeRawPointer(i)) }
        }
    }

    // MARK: Failure

    /// Prints `[rank r] message` on stderr and brings the whole job down.
    /// On a single rank it exits with `code`; with more ranks it calls MPI_Abort, which makes the
    /// launcher kill every other rank, including those blocked in a collective.
    public func abort(_ message: String, code: Int32 = 1) -> Never {
        // Always the world's rank and the world's job: a failure on a sub-communicator still ends the job.
        let world = Communicator.world
        var text = "[rank \(world.rank)] \(message)"
        if !text.hasSuffix("\n") { text += "\n" }
        fflush(nil)
        writeStderr(text)
        if world.size > 1 { MPI_Abort(world.comm, code) }
        exit(code)
    }

    /// Runs `body`; any error it throws aborts the job with that rank's message.
    public func orAbort<R>(_ body: () throws -> R) -> R {
        do { return try body() } catch { abort("\(error)") }
    }

    // MARK: Synchronisation

    public func barrier() throws {
        try enter(.barrier, nil, count: 0)
        try collective(.barrier, "MPI_Barrier", blocking: { MPI_Barrier(comm) }, nonblocking: { MPI_Ibarrier(comm, &$0) })
    }

    // MARK: Broadcast

    /// Broadcasts `buffer` from `root`; every rank passes a buffer of the same count.
    public func broadcast<T: CollectiveScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int = 0) throws {
        try validateRoot(root)
        try enter(.broadcast, T.scalarKind, count: buffer.count, root: root)
        var offset = 0
        repeat {
            let n = Swift.min(buffer.count - offset, maxCount)
            let p = buffer.baseAddress.map { UnsafeMutableRawPointer($0 + offset) }
            try collective(.broadcast, "MPI_Bcast",
                           blocking: { MPI_Bcast(p, Int32(n), T.scalarKind.datatype, Int32(root), comm) },
                           nonblocking: { MPI_Ibcast(p, Int32(n), T.scalarKind.datatype, Int32(root), comm, &$0) })
            offset += n
        } while offset < buffer.count
    }

    /// Broadcasts an array of the same length on every rank from `root`, in place.
    public func broadcast<T: CollectiveScalar>(_ array: inout [T], root: Int = 0) throws {
        try array.withUnsafeMutableBufferPointer { try broadcast($0, root: root) }
    }

    /// Broadcasts `root`'s array whatever the other ranks' lengths; returns root's array everywhere.
    public func broadcast<T: CollectiveScalar>(array: [T], root: Int = 0) throws -> [T] {
        var count: [Int64] = [Int64(array.count)]
        try broadcast(&count, root: root)
        var result = rank == root ? array : [T](repeating: 0, count: Int(count[0]))
        try broadcast(&result, root: root)
        return result
    }

    /// Broadcasts one value from `root`.
    public func broadcast<T: CollectiveScalar>(value: T, root: Int = 0) throws -> T {
        var a = [value]
        try broadcast(&a, root: root)
        return a[0]
    }

    // MARK: Allreduce

    /// In-place allreduce; every rank passes the same count.
    public func allreduce<T: CollectiveScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        try enter(.allreduce, T.scalarKind, count: buffer.count)
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            try collective(.allreduce, "MPI_Allreduce",
                           blocking: { MPI_Allreduce(cmpi_in_place(), nil, 0, T.scalarKind.datatype, op.op, comm) },
                           nonblocking: { MPI_Iallreduce(cmpi_in_place(), nil, 0, T.scalarKind.datatype, op.op, comm, &$0) })
            return
        }
        var offset = 0
        while offset < buffer.count {
            let n = Swift.min(buffer.count - offset, maxCount)
            let p = base + offset
            try collective(.allreduce, "MPI_Allreduce(\(T.scalarKind), \(op.rawValue), count \(n))",
                           blocking: { MPI_Allreduce(cmpi_in_place(), p, Int32(n), T.scalarKind.datatype, op.op, comm) },
                           nonblocking: { MPI_Iallreduce(cmpi_in_place(), p, Int32(n), T.scalarKind.datatype, op.op, comm, &$0) })
            offset += n
        }
    }

    /// In-place allreduce of an array; every rank passes the same count.
    public func allreduce<T: CollectiveScalar>(_ array: inout [T], op: ReduceOp) throws {
        try array.withUnsafeMutableBufferPointer { try allreduce($0, op: op) }
    }

    /// Allreduce of one value.
    public func allreduce<T: CollectiveScalar>(value: T, op: ReduceOp) throws -> T {
        var a = [value]
        try allreduce(&a, op: op)
        return a[0]
    }

    /// Starts an in-place allreduce and returns at once. The buffer must stay alive and untouched
    /// until the returned request has been waited on.
    public func iallreduce<T: CollectiveScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws
        -> CollectiveRequest {
        guard buffer.count <= maxCount else {
            throw CollectiveUsageError("iallreduce of \(buffer.count) elements: split buffers above 2^31-1 elements")
        }
        try enter(.iallreduce, T.scalarKind, count: buffer.count)
        var req: MPI_Request? = cmpi_request_null()
        try check(MPI_Iallreduce(cmpi_in_place(), buffer.baseAddress, Int32(buffer.count), T.scalarKind.datatype,
                                 op.op, comm, &req), "MPI_Iallreduce")
        return CollectiveRequest(req, owner: self, op: .iallreduce)
    }

    // MARK: Gathers

    /// Every rank contributes `send.count` elements (the same on all ranks); the result holds
    /// rank 0's, then rank 1's, … .
    public func allgather<T: CollectiveScalar>(_ send: [T]) throws -> [T] {
        try enter(.allgather, T.scalarKind, count: send.count)
        let total = send.count * size
        guard send.count <= maxCount else { throw CollectiveUsageError("allgather: count above 2^31-1") }
        var out = [T](repeating: 0, count: total)
        try send.withUnsafeBufferPointer { s in
            try out.withUnsafeMutableBufferPointer { o in
                try collective(.allgather, "MPI_Allgather",
                               blocking: { MPI_Allgather(s.baseAddress, Int32(s.count), T.scalarKind.datatype,
                                                         o.baseAddress, Int32(s.count), T.scalarKind.datatype, comm) },
                               nonblocking: { MPI_Iallgather(s.baseAddress, Int32(s.count), T.scalarKind.datatype,
                                                             o.baseAddress, Int32(s.count), T.scalarKind.datatype, comm, &$0) })
            }
        }
        return out
    }

    /// Allgather of one value per rank.
    public func allgather<T: CollectiveScalar>(value: T) throws -> [T] { try allgather([value]) }

    /// Every rank contributes any number of elements (zero included); returns the concatenation in
    /// rank order and each rank's count.
    public func allgatherv<T: CollectiveScalar>(_ send: [T]) throws -> (values: [T], counts: [Int]) {
        try enter(.allgatherv, T.scalarKind, count: -1)
        let counts = try allgather(value: Int64(send.count)).map(Int.init)
        let total = counts.reduce(0, +)
        guard total <= maxCount else {
            throw CollectiveUsageError("allgatherv of \(total) elements in all: above 2^31-1, gather in pieces")
        }
        var displs = [Int32](repeating: 0, count: size)
        for i in 1..<Swift.max(size, 1) where i < size { displs[i] = displs[i - 1] + Int32(counts[i - 1]) }
        let rc32 = counts.map { Int32($0) }
        var out = [T](repeating: 0, count: total)
        try send.withUnsafeBufferPointer { s in
            try out.withUnsafeMutableBufferPointer { o in
                try collective(.allgatherv, "MPI_Allgatherv",
                               blocking: { MPI_Allgatherv(s.baseAddress, Int32(s.count), T.scalarKind.datatype,
                                                          o.baseAddress, rc32, displs, T.scalarKind.datatype, comm) },
                               nonblocking: { MPI_Iallgatherv(s.baseAddress, Int32(s.count), T.scalarKind.datatype,
                                                              o.baseAddress, rc32, displs, T.scalarKind.datatype, comm, &$0) })
            }
        }
        return (out, counts)
    }

    /// Personalised all-to-all: `send` holds the block for rank 0, then rank 1, …, with
    /// `sendCounts[j]` elements for rank j. Returns what every rank sent to this one, in rank
    /// order, and how many came from each.
    public func alltoallv<T: CollectiveScalar>(_ send: [T], sendCounts: [Int]) throws -> (values: [T], counts: [Int]) {
        guard sendCounts.count == size else {
            throw CollectiveUsageError("alltoallv: \(sendCounts.count) send counts for \(size) ranks")
        }
        guard sendCounts.reduce(0, +) == send.count, sendCounts.allSatisfy({ $0 >= 0 }) else {
            throw CollectiveUsageError("alltoallv: send counts sum to \(sendCounts.reduce(0, +)), buffer holds \(send.count)")
        }
        guard send.count <= maxCount else { throw CollectiveUsageError("alltoallv: send buffer above 2^31-1") }
        try enter(.alltoallv, T.scalarKind, count: -1)
        var sc = sendCounts.map { Int32($0) }
        var rc = [Int32](repeating: 0, count: size)
        try sc.withUnsafeMutableBufferPointer { scp in
            try rc.withUnsafeMutableBufferPointer { rcp in
                // Blocking even under a stall timeout: MPIChecks --checked (3 ranks) hung inside the
                // nonblocking pair (MPI_Ialltoall + MPI_Ialltoallv, OpenMPI 4.1) with every rank alive;
                // the entry check still names a rank that never arrives.
                try check(MPI_Alltoall(scp.baseAddress, 1, cmpi_int32(), rcp.baseAddress, 1, cmpi_int32(), comm), "MPI_Alltoall(counts)")
            }
        }
        let total = rc.reduce(0) { $0 + Int($1) }
        guard total <= maxCount else { throw CollectiveUsageError("alltoallv: receive total above 2^31-1") }
        var sd = [Int32](repeating: 0, count: size), rd = [Int32](repeating: 0, count: size)
        for i in 1..<Swift.max(size, 1) where i < size {
            sd[i] = sd[i - 1] + sc[i - 1]
            rd[i] = rd[i - 1] + rc[i - 1]
        }
        var out = [T](repeating: 0, count: total)
        try send.withUnsafeBufferPointer { s in
            try out.withUnsafeMutableBufferPointer { o in
                try check(MPI_Alltoallv(s.baseAddress, sc, sd, T.scalarKind.datatype,
                                        o.baseAddress, rc, rd, T.scalarKind.datatype, comm), "MPI_Alltoallv")
            }
        }
        return (out, rc.map(Int.init))
    }

    // MARK: Reduce-scatter and in-place allgather (sharded optimiser steps)

    /// Sums `send` over all ranks and leaves on each rank only its block: rank r receives elements
    /// [Σ_{i<r} counts[i], Σ_{i≤r} counts[i]) of the reduced buffer in `receive` (counts[r] elements).
    public func reduceScatter<T: CollectiveScalar>(_ send: UnsafeBufferPointer<T>, into receive: UnsafeMutableBufferPointer<T>,
                                                   counts: [Int], op: ReduceOp) throws {
        guard counts.count == size, counts.reduce(0, +) == send.count, receive.count >= counts[rank],
              send.count <= maxCount else {
            throw CollectiveUsageError("reduceScatter: \(counts.count) counts summing to \(counts.reduce(0, +)) for a buffer of \(send.count) on \(size) ranks")
        }
        try enter(.reduceScatter, T.scalarKind, count: send.count)
        let c32 = counts.map { Int32($0) }
        try collective(.reduceScatter, "MPI_Reduce_scatter",
                       blocking: { MPI_Reduce_scatter(send.baseAddress, receive.baseAddress, c32, T.scalarKind.datatype, op.op, comm) },
                       nonblocking: { MPI_Ireduce_scatter(send.baseAddress, receive.baseAddress, c32, T.scalarKind.datatype, op.op, comm, &$0) })
    }

    /// In place: rank r's block [offset_r, offset_r + counts[r]) of `buffer` is sent to every rank, so
    /// that afterwards every rank holds every block.
    public func allgatherInPlace<T: CollectiveScalar>(_ buffer: UnsafeMutableBufferPointer<T>, counts: [Int]) throws {
        guard counts.count == size, counts.reduce(0, +) == buffer.count, buffer.count <= maxCount else {
            throw CollectiveUsageError("allgatherInPlace: \(counts.count) counts summing to \(counts.reduce(0, +)) for a buffer of \(buffer.count)")
        }
        try enter(.allgather, T.scalarKind, count: buffer.count)
        var displs = [Int32](repeating: 0, count: size)
        for i in 1..<Swift.max(size, 1) where i < size { displs[i] = displs[i - 1] + Int32(counts[i - 1]) }
        let c32 = counts.map { Int32($0) }
        try collective(.allgather, "MPI_Allgatherv(in place)",
                       blocking: { MPI_Allgatherv(cmpi_in_place(), 0, T.scalarKind.datatype, buffer.baseAddress, c32, displs,
                                                  T.scalarKind.datatype, comm) },
                       nonblocking: { MPI_Iallgatherv(cmpi_in_place(), 0, T.scalarKind.datatype, buffer.baseAddress, c32, displs,
                                                      T.scalarKind.datatype, comm, &$0) })
    }

    // MARK: Point to point

    /// Starts sending `buffer` to `dest`; keep the buffer alive and unchanged until the request completes.
    public func isend<T: CollectiveScalar>(_ buffer: UnsafeBufferPointer<T>, to dest: Int, tag: Int = 0) throws
        -> CollectiveRequest {
        guard buffer.count <= maxCount else { throw CollectiveUsageError("isend above 2^31-1 elements") }
        try validateRoot(dest)
        var req: MPI_Request? = cmpi_request_null()
        try check(MPI_Isend(buffer.baseAddress, Int32(buffer.count), T.scalarKind.datatype, Int32(dest), Int32(tag),
                            comm, &req), "MPI_Isend(to \(dest))")
        return CollectiveRequest(req, owner: self, op: .pointToPoint)
    }

    /// Starts receiving exactly `buffer.count` elements from `source` into `buffer`.
    public func irecv<T: CollectiveScalar>(_ buffer: UnsafeMutableBufferPointer<T>, from source: Int, tag: Int = 0) throws
        -> CollectiveRequest {
        guard buffer.count <= maxCount else { throw CollectiveUsageError("irecv above 2^31-1 elements") }
        try validateRoot(source)
        var req: MPI_Request? = cmpi_request_null()
        try check(MPI_Irecv(buffer.baseAddress, Int32(buffer.count), T.scalarKind.datatype, Int32(source), Int32(tag),
                            comm, &req), "MPI_Irecv(from \(source))")
        return CollectiveRequest(req, owner: self, op: .pointToPoint)
    }

    /// Sends `send` to `dest` while receiving `receiveCount` elements from `source` (ring shifts).
    public func sendrecv<T: CollectiveScalar>(_ send: [T], to dest: Int, receiveCount: Int, from source: Int,
                                              tag: Int = 0) throws -> [T] {
        var out = [T](repeating: 0, count: receiveCount)
        try out.withUnsafeMutableBufferPointer { o in
            let r = try irecv(o, from: source, tag: tag)
            try send.withUnsafeBufferPointer { s in
                let q = try isend(s, to: dest, tag: tag)
                try q.wait()
            }
            try r.wait()
        }
        return out
    }

    private func validateRoot(_ root: Int) throws {
        guard root >= 0 && root < size else { throw CollectiveUsageError("root \(root) outside 0..<\(size)") }
    }
}

/// A nonblocking collective in flight. Wait on it exactly once before touching its buffer;
/// a request dropped without waiting is waited on in deinit.
public final class CollectiveRequest: @unchecked Sendable {
    private var request: MPI_Request?
    private var done = false
    private let owner: Communicator?   // its stall watchdog, if one is in force, watches the wait
    private let op: CollectiveOp

    init(_ request: MPI_Request?, owner: Communicator? = nil, op: CollectiveOp = .iallreduce) {
        self.request = request; self.owner = owner; self.op = op
    }

    /// Blocks until the operation has completed.
    public func wait() throws {
        guard !done else { return }
        done = true
        if let owner, owner.safety.stallTimeout != nil {
            try owner.waitWatched(&request, op, "MPI_Wait(\(op))")
        } else {
            try check(MPI_Wait(&request, cmpi_status_ignore()), "MPI_Wait")
        }
    }

    /// True when the operation has completed (then no wait is needed).
    public func test() throws -> Bool {
        guard !done else { return true }
        var flag: Int32 = 0
        try check(MPI_Test(&request, &flag, cmpi_status_ignore()), "MPI_Test")
        if flag != 0 { done = true }
        return done
    }

    deinit { if !done { _ = MPI_Wait(&request, cmpi_status_ignore()) } }
}

extension String {
    func trimmingTrailingNulls() -> String {
        var s = self
        while let last = s.last, last == "\0" || last == " " { s.removeLast() }
        return s
    }
}

/// Whether a terminal progress line (written without a newline) is on screen; the next other
/// message starts on a fresh line below it.
nonisolated(unsafe) public var stderrProgressLineOpen = false

/// Writes straight to file descriptor 2 (unbuffered, safe from any thread).
public func writeStderr(_ text: String) {
    var t = text
    if stderrProgressLineOpen { stderrProgressLineOpen = false; t = "\n" + t }
    t.withUTF8 { buf in
        var off = 0
        while off < buf.count {
            let n = write(2, buf.baseAddress! + off, buf.count - off)
            if n <= 0 { break }
            off += n
        }
    }
}

// MARK: - Baselines and helpers

extension Communicator {
    /// One direct MPI_Allreduce (sum, in place) with none of the wrapper's checks or instrumentation:
    /// the baseline that `syncytium bench allreduce` measures the wrapper against.
    public func bareAllreduceSum(_ buf: UnsafeMutableBufferPointer<Float>) throws {
        try check(MPI_Allreduce(cmpi_in_place(), buf.baseAddress, Int32(buf.count), cmpi_float(), cmpi_sum(), comm), "MPI_Allreduce")
    }

    /// Every rank's value of a Codable type, in rank order (one allgatherv of its JSON).
    public func allgatherCodable<T: Codable>(_ mine: T) throws -> [T] {
        let bytes = Array(try JSONEncoder().encode(mine))
        let (all, counts) = try allgatherv(bytes)
        var out: [T] = []
        var offset = 0
        for c in counts {
            out.append(try JSONDecoder().decode(T.self, from: Data(all[offset..<offset + c])))
            offset += c
        }
        return out
    }

    /// This node's host name.
    public static var hostName: String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count - 1)
        return String(cString: buf)
    }
}
