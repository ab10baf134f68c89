// Multi-rank checks of the Communicator, run under real mpirun by launch/test:
//   mpirun -np 3 --oversubscribe .build/release/MPIChecks
//   mpirun -np 3 --oversubscribe .build/release/MPIChecks --fail-on-rank 1
// Every rank runs every check; results are combined with an allreduce so the verdict is global.
// The last line is "mpi-collectives (np=N): P passed, F failed"; the exit code is 0 only when F == 0.
import Collectives
#if canImport(Glibc)
import Glibc
#endif

let comm = Communicator.world
let args = CommandLine.arguments

// Scenario: one rank throws while the others wait in a collective; the job must end, non-zero,
// within seconds, with that rank's message.
if let i = args.firstIndex(of: "--fail-on-rank"), i + 1 < args.count, let bad = Int(args[i + 1]) {
    struct InjectedFailure: Error, CustomStringConvertible {
        let description: String
    }
    comm.orAbort {
        if comm.rank == bad {
            throw InjectedFailure(description: "injected failure: input shard could not be read")
        }
        var x: [Float] = [1]
        try comm.allreduce(&x, op: .sum)  // the others block here until the abort takes them down
        try comm.barrier()
    }
    print("[rank \(comm.rank)] unexpectedly survived the injected failure")
    exit(3)
}

var passed = 0
var failed = 0
@MainActor func expect(_ ok: Bool, _ what: @autoclosure () -> String) {
    if ok { passed += 1 } else {
        failed += 1
        print("[rank \(comm.rank)] FAIL: \(what())")
    }
}
@MainActor func run(_ name: String, _ body: () throws -> Void) {
    do { try body() } catch {
        failed += 1
        print("[rank \(comm.rank)] FAIL: \(name) threw \(error)")
    }
}

let r = comm.rank, p = comm.size

run("shape") {
    expect(p >= 1 && r >= 0 && r < p, "rank \(r) of \(p)")
    expect(comm.localRank >= 0 && comm.localRank < comm.localSize && comm.localSize <= p,
           "local rank \(comm.localRank) of \(comm.localSize)")
    let sizes = try comm.allgather(value: Int64(p))
    expect(sizes.allSatisfy { $0 == Int64(p) }, "all ranks agree on the size")
    let ranks = try comm.allgather(value: Int64(r))
    expect(ranks == (0..<p).map(Int64.init), "allgather of ranks is 0..<p: \(ranks)")
    try comm.barrier()
}

@MainActor func typedChecks<T: CollectiveScalar & Comparable>(_: T.Type, _ make: (Int) -> T) throws {
    let name = "\(T.self)"
    // broadcast from every root
    for root in 0..<p {
        var a = (0..<5).map { make(r == root ? 10 * root + $0 : 99) }
        try comm.broadcast(&a, root: root)
        expect(a == (0..<5).map { make(10 * root + $0) }, "\(name) broadcast from \(root): \(a)")
    }
    // allreduce sum / max / min against local arithmetic
    let n = 7
    var s = (0..<n).map { make((r + 1) * ($0 + 1) % 11) }
    var mx = s, mn = s
    try comm.allreduce(&s, op: .sum)
    try comm.allreduce(&mx, op: .max)
    try comm.allreduce(&mn, op: .min)
    for i in 0..<n {
        let all = (0..<p).map { make(($0 + 1) * (i + 1) % 11) }
        expect(s[i] == all.reduce(0, +), "\(name) allreduce sum [\(i)] \(s[i])")
        expect(mx[i] == all.max()!, "\(name) allreduce max [\(i)] \(mx[i])")
        expect(mn[i] == all.min()!, "\(name) allreduce min [\(i)] \(mn[i])")
    }
    // allgather
    let g = try comm.allgather([make(r), make(r + 1)])
    expect(g == (0..<p).flatMap { [make($0), make($0 + 1)] }, "\(name) allgather \(g)")
    // allgatherv: rank k contributes k elements (rank 0 none)
    let (v, counts) = try comm.allgatherv((0..<r).map { make(r + $0) })
    expect(counts == Array(0..<p), "\(name) allgatherv counts \(counts)")
    expect(v == (0..<p).flatMap { k in (0..<k).map { make(k + $0) } }, "\(name) allgatherv values")
    // allgatherv: only the last rank contributes
    let (v2, c2) = try comm.allgatherv(r == p - 1 ? [make(5), make(6), make(7)] : [])
    expect(v2 == [make(5), make(6), make(7)] && c2.reduce(0, +) == 3, "\(name) allgatherv with empty ranks")
    // allgatherv: nobody contributes
    let (v3, c3) = try comm.allgatherv([T]())
    expect(v3.isEmpty && c3 == [Int](repeating: 0, count: p), "\(name) allgatherv all empty")
    // alltoallv: rank r sends (r + j) % 3 elements to rank j, value 10*r + j
    let sendCounts = (0..<p).map { (r + $0) % 3 }
    let send = (0..<p).flatMap { j in [T](repeating: make(10 * r + j), count: (r + j) % 3) }
    let (recv, rc) = try comm.alltoallv(send, sendCounts: sendCounts)
    expect(rc == (0..<p).map { ($0 + r) % 3 }, "\(name) alltoallv counts \(rc)")
    expect(recv == (0..<p).flatMap { k in [T](repeating: make(10 * k + r), count: (k + r) % 3) },
           "\(name) alltoallv values")
    // variable-length broadcast
    let b = try comm.broadcast(array: r == p - 1 ? (0..<4).map(make) : [make(1)], root: p - 1)
    expect(b == (0..<4).map(make), "\(name) broadcast(array:) \(b)")
}

run("Float") { try typedChecks(Float.self) { Float($0) } }
run("Double") { try typedChecks(Double.self) { Double($0) } }
run("Int32") { try typedChecks(Int32.self) { Int32($0) } }
run("Int64") { try typedChecks(Int64.self) { Int64($0) } }
run("UInt8") { try typedChecks(UInt8.self) { UInt8($0 % 256) } }

run("large allreduce") {
    // 3M floats, several MPI internal segments; integers stay exact in Float.
    let n = 3_000_001
    var a = [Float](repeating: 0, count: n)
    for i in 0..<n { a[i] = Float((i % 97) * (r + 1)) }
    try comm.allreduce(&a, op: .sum)
    let f = Float(p * (p + 1) / 2)
    var bad = 0
    for i in 0..<n where a[i] != Float(i % 97) * f { bad += 1 }
    expect(bad == 0, "large allreduce: \(bad) wrong elements")
}

run("nonblocking allreduce") {
    // Several requests in flight at once, completed out of order, overlapping local work.
    var bufs: [[Double]] = (0..<4).map { k in (0..<1000).map { Double($0 * (k + 1) + r) } }
    var reqs: [CollectiveRequest] = []
    for k in 0..<4 {
        reqs.append(try bufs[k].withUnsafeMutableBufferPointer { try comm.iallreduce($0, op: .sum) })
    }
    var local = 0.0
    for i in 0..<100_000 { local += Double(i) }  // work while the reductions progress
    _ = try reqs[3].test()
    for k in [2, 0, 3, 1] { try reqs[k].wait() }
    let rsum = Double(p * (p - 1) / 2)
    for k in 0..<4 {
        let ok = (0..<1000).allSatisfy { bufs[k][$0] == Double($0 * (k + 1) * p) + rsum }
        expect(ok, "iallreduce buffer \(k)")
    }
    expect(local > 0, "local work")
    var m: [Int64] = [Int64(r)]
    let req = try m.withUnsafeMutableBufferPointer { try comm.iallreduce($0, op: .max) }
    try req.wait()
    try req.wait()  // a second wait is a no-op
    expect(m[0] == Int64(p - 1), "iallreduce max \(m)")
}

run("usage errors") {
    do {
        _ = try comm.alltoallv([Float(1)], sendCounts: [Int](repeating: 0, count: p))
        expect(false, "alltoallv with wrong counts must throw")
    } catch is CollectiveUsageError { expect(true, "") }
    do {
        var a: [Float] = [0]
        try comm.broadcast(&a, root: p)
        expect(false, "broadcast from a root outside the job must throw")
    } catch is CollectiveUsageError { expect(true, "") }
}

// Global verdict: every rank's counts summed.
let totals = comm.orAbort { try comm.allreduce(value: Int64(passed), op: .sum) }
let failures = comm.orAbort { try comm.allreduce(value: Int64(failed), op: .sum) }
if r == 0 { print("mpi-collectives (np=\(p)): \(totals) passed, \(failures) failed") }
comm.finalize()
exit(failures == 0 ? 0 : 1)
