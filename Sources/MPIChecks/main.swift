// Multi-rank checks of the Communicator, run under real mpirun by launch/test:
//   mpirun -np 3 --oversubscribe .build/release/MPIChecks
//   mpirun -np 3 --oversubscribe .build/release/MPIChecks --fail-on-rank 1
// Every rank runs every check; results are combined with an allreduce so the verdict is global.
// The last line is "mpi-collectives (np=N): P passed, F failed"; the exit code is 0 only when F == 0.
import CellData
import Clustering
import Collectives
import Models
import Neighbors
import NN
import TensorCore
import TestSupport
import Training
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

// Scenario: with signature checks on, rank 1 reduces 2 floats while the others reduce 1.
if args.contains("--mismatch") {
    comm.orAbort {
        try comm.setSafety(CollectiveSafety(checkSignatures: true))
        var x = [Float](repeating: 1, count: comm.rank == 1 ? 2 : 1)
        try comm.allreduce(&x, op: .sum)
    }
    print("[rank \(comm.rank)] mismatch went undetected")
    exit(3)
}

// Scenario: rank 1 arrives 30 s late at a barrier; the stall watchdog (1 s) names it and ends the job.
if args.contains("--stall") {
    comm.orAbort {
        try comm.setSafety(CollectiveSafety(stallTimeout: 1, abortOnStall: true))
        if comm.rank == 1 { sleep(30) }
        try comm.barrier()
    }
    print("[rank \(comm.rank)] stall went undetected")
    exit(3)
}

// Scenario: the stall timeout is set only in rank 0's environment (launch/test passes it to rank 0's
// app context alone); the other ranks adopt it at start, so rank 1's late barrier is still named.
if args.contains("--stall-env") {
    comm.orAbort {
        if comm.rank == 1 { sleep(30) }
        try comm.barrier()
    }
    print("[rank \(comm.rank)] stall went undetected")
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

// Single-suite modes: `flag` runs one group of checks, prints "NAME (np=N): P passed, F failed" and
// exits (0 only when nothing failed on any rank).
@MainActor func runOnly(_ flag: String, _ name: String, _ title: String, _ body: () throws -> Void) {
    guard args.contains(flag) else { return }
    run(title, body)
    let totals = comm.orAbort { try comm.allreduce(value: Int64(passed), op: .sum) }
    let failures = comm.orAbort { try comm.allreduce(value: Int64(failed), op: .sum) }
    if r == 0 { print("\(name) (np=\(p)): \(totals) passed, \(failures) failed") }
    comm.finalize()
    exit(failures == 0 ? 0 : 1)
}
// The distributed graph layers only (launch/tests.d/70-scdefr): N ranks vs one, and finite differences.
runOnly("--graph-layers", "mpi-graph-layers", "distributed graph layers = single rank") {
    try graphLayerChecks(comm: comm, expect: { expect($0, $1) })
}
// Leiden on a kNN graph built by the distributed pipeline (--leiden; launch/tests.d/45-leiden runs it
// on 1 and 3 ranks and compares the printed label digests): the distributed run equals igraph on the
// gathered graph, on any rank count.
runOnly("--leiden", "mpi-leiden", "distributed Leiden") {
    try leidenChecks(comm: comm, expect: { expect($0, $1) })
    try stableResolutionChecks(comm: comm, expect: { expect($0, $1) })
}
// The UMAP layout on N ranks = one rank, bit for bit (--layout; launch/tests.d/46-layout runs it on 3 ranks).
runOnly("--layout", "mpi-layout", "distributed UMAP layout = single rank") { try layoutChecks(comm: comm, expect: { expect($0, $1) }) }
// Input rows carried through cell filtering and redistribution (--source-rows; launch/tests.d/48-output).
runOnly("--source-rows", "mpi-source-rows", "source rows through filter + redistribute") {
    try sourceRowChecks(comm: comm, expect: { expect($0, $1) })
}
// scSiameseClu's communicating ops only (launch/tests.d/70-scsiameseclu): N ranks vs one.
runOnly("--scsiameseclu", "mpi-scsiameseclu", "scsiameseclu ops = single rank") {
    try scSiameseCluChecks(comm: comm, expect: { expect($0, $1) })
}
// CICL trained on N ranks = one rank (--cicl FILE, a shared dataset; launch/tests.d/70-cicl).
runOnly("--cicl", "mpi-cicl", "cicl training on N ranks = one rank") {
    guard let i = args.firstIndex(of: "--cicl"), i + 1 < args.count else { throw CollectiveUsageError("--cicl needs the path of an .h5ad") }
    try ciclChecks(comm: comm, path: args[i + 1], expect: { expect($0, $1) })
}
if args.contains("--checked") {
    // Every collective below runs through the signature check and stall watchdog: they must not
    // change any result nor fire on correct code.
    comm.orAbort { try comm.setSafety(CollectiveSafety(checkSignatures: true, stallTimeout: 60)) }
}

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

run("reduce-scatter and in-place allgather") {
    // Uneven blocks, one of them empty (rank 0's when p > 1).
    let counts = (0..<p).map { p > 1 && $0 == 0 ? 0 : 3 + 2 * $0 }
    let n = counts.reduce(0, +)
    let send = (0..<n).map { Double($0 * (r + 1)) }
    var got = [Double](repeating: -1, count: max(counts[r], 1))
    try send.withUnsafeBufferPointer { s in
        try got.withUnsafeMutableBufferPointer { g in try comm.reduceScatter(s, into: g, counts: counts, op: .sum) }
    }
    let lo = counts[0..<r].reduce(0, +)
    let f = Double(p * (p + 1) / 2)
    expect((0..<counts[r]).allSatisfy { got[$0] == Double(lo + $0) * f }, "reduceScatter block of rank \(r)")
    var buf = [Float](repeating: -1, count: n)
    for i in lo..<(lo + counts[r]) { buf[i] = Float(100 * r + i) }
    try buf.withUnsafeMutableBufferPointer { try comm.allgatherInPlace($0, counts: counts) }
    var want: [Float] = []
    for (q, c) in counts.enumerated() { let o = counts[0..<q].reduce(0, +); for i in o..<(o + c) { want.append(Float(100 * q + i)) } }
    expect(buf == want, "allgatherInPlace \(buf)")
}

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
    // Each misuse must throw a CollectiveUsageError naming the problem (and nothing else happens).
    var message = ""
    do { _ = try comm.alltoallv([Float(1)], sendCounts: [Int](repeating: 0, count: p)) } catch let e as CollectiveUsageError { message = "\(e)" }
    expect(message.contains("send counts sum to 0, buffer holds 1"), "alltoallv with wrong counts: '\(message)'")
    message = ""
    var a: [Float] = [0]
    do { try comm.broadcast(&a, root: p) } catch let e as CollectiveUsageError { message = "\(e)" }
    expect(message.contains("root \(p) outside 0..<\(p)"), "broadcast from a root outside the job: '\(message)'")
}

// Distributed clustering against the same computation on this process alone (MPI_COMM_SELF) over
// the whole data set; shards are uneven (rank r holds a share proportional to r + 1).
run("distributed clustering = single-rank") {
    let n = 1001, d = 6, k = 7
    var state: UInt64 = 42
    func uni() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24)
    }
    let centres = (0..<(k * d)).map { _ in uni() * 10 }
    var all = [Float]()
    for i in 0..<n { for j in 0..<d { all.append(centres[(i % k) * d + j] + (uni() + uni() + uni() - 1.5) * 1.5) } }
    let weights = (0..<p).map { $0 + 1 }
    let wsum = weights.reduce(0, +)
    var bounds = [0]
    for w in weights { bounds.append(min(n, bounds.last! + n * w / wsum)) }
    bounds[p] = n
    let lo = bounds[r], hi = bounds[r + 1]
    let shard = PointShard(values: Array(all[(lo * d)..<(hi * d)]), count: hi - lo, dim: d)
    let whole = PointShard(values: all, count: n, dim: d)
    let km = KMeans(k: k, restarts: 3, seed: 5)
    let dist = try km.fit(shard, comm: comm)
    let ref = try km.fit(whole, comm: Communicator.solo)
    let maxDiff = zip(dist.centres, ref.centres).map { abs($0 - $1) }.max() ?? 0
    expect(maxDiff < 1e-4, "k-means centres differ from single-rank by \(maxDiff)")
    expect(dist.labels == Array(ref.labels[lo..<hi]), "k-means labels differ from single-rank")
    expect(abs(dist.inertia - ref.inertia) <= 1e-9 * ref.inertia, "k-means inertia \(dist.inertia) vs \(ref.inertia)")

    let q = SoftAssignment.studentT(shard.values, n: shard.count, centres: dist.centres, k: k, dim: d)
    let qAll = SoftAssignment.studentT(all, n: n, centres: dist.centres, k: k, dim: d)
    let pt = try SoftAssignment.decTarget(q, n: shard.count, k: k, comm: comm)
    let ptAll = try SoftAssignment.decTarget(qAll, n: n, k: k, comm: Communicator.solo)
    let dDiff = zip(pt, ptAll[(lo * k)..<(hi * k)]).map { abs($0 - $1) }.max() ?? 0
    expect(dDiff < 1e-6, "DEC target differs from single-rank by \(dDiff)")

    let scores = q.map { Double(log($0)) / 0.5 }, scoresAll = qAll.map { Double(log($0)) / 0.5 }
    let colMass = [Double](repeating: 1.0 / Double(k), count: k)
    let sk = try Sinkhorn(tolerance: 1e-9).solve(scores: scores, n: shard.count, k: k,
        rowMass: [Double](repeating: 1.0 / Double(n), count: shard.count), colMass: colMass, comm: comm)
    let skAll = try Sinkhorn(tolerance: 1e-9).solve(scores: scoresAll, n: n, k: k,
        rowMass: [Double](repeating: 1.0 / Double(n), count: n), colMass: colMass, comm: Communicator.solo)
    let sDiff = zip(sk.plan, skAll.plan[(lo * k)..<(hi * k)]).map { abs($0 - $1) }.max() ?? 0
    expect(sDiff < 1e-12 && sk.iterations == skAll.iterations, "Sinkhorn differs from single-rank by \(sDiff)")

    let sil = try Silhouette.sampled(shard, labels: dist.labels, k: k, sampleSize: 200, seed: 3, comm: comm)
    let silAll = try Silhouette.sampled(whole, labels: ref.labels, k: k, sampleSize: 200, seed: 3, comm: Communicator.solo)
    expect(abs(sil - silAll) < 1e-9, "silhouette \(sil) vs single-rank \(silAll)")
}

// kNN graphs on uneven shards (rank r holds a share ∝ r + 1, so 4 ranks of 1203 rows are all
// different sizes) against the same graph built by this process alone over all rows.
run("distributed kNN = single-rank") {
    let n = 1203, d = 9, k = 12
    let weights = (0..<p).map { $0 + 1 }, wsum = weights.reduce(0, +)
    var counts = weights.map { n * $0 / wsum }
    counts[p - 1] += n - counts.reduce(0, +)
    let layout = RowLayout(counts: counts)
    let (x, _) = SyntheticEmbeddings.rows(layout.range(of: r), dim: d, clusters: 7, spread: 1.2, seed: 12)
    let (all, _) = SyntheticEmbeddings.rows(0..<n, dim: d, clusters: 7, spread: 1.2, seed: 12)
    let ref = try ExactKNN.build(all, k: k, comm: Communicator.solo)
    let lo = layout.offsets[r]
    @MainActor func compare(_ got: KNNResult, _ what: String) {
        var worst: Float = 0, idMismatch = 0
        for i in 0..<got.count {
            for j in 0..<k {
                let a = got.distances[i * k + j], b = ref.distances[(lo + i) * k + j]
                worst = max(worst, abs(a - b))
                if got.indices[i * k + j] != ref.indices[(lo + i) * k + j] {
                    // Only a tie may reorder: the reference must hold this id at (nearly) this distance.
                    let row = ref.indices[((lo + i) * k)..<((lo + i) * k + k)]
                    if let at = row.firstIndex(of: got.indices[i * k + j]) {
                        if abs(ref.distances[at] - a) > 1e-4 { idMismatch += 1 }
                    } else if abs(ref.distances[(lo + i) * k + k - 1] - a) > 1e-4 { idMismatch += 1 }
                }
            }
        }
        expect(worst < 1e-4 && idMismatch == 0, "\(what): max distance difference \(worst), \(idMismatch) ids differ")
    }
    let knn = try ExactKNN.build(x, k: k, comm: comm)
    compare(knn, "exact kNN")
    // Graphs built from the distributed kNN equal the single-rank graphs' rows.
    let allLayout = RowLayout(counts: [n])
    @MainActor func sameRows(_ a: GraphShard, _ b: GraphShard, _ what: String) {
        var worst: Float = 0, structure = 0
        for i in 0..<a.rows {
            let (ca, va) = a.row(i), (cb, vb) = b.row(lo + i)
            if Array(ca) != Array(cb) { structure += 1; continue }
            for (u, v) in zip(va, vb) { worst = max(worst, abs(u - v)) }
        }
        expect(structure == 0 && worst < 1e-4, "\(what): \(structure) rows differ in structure, max |Δ| \(worst)")
    }
    let umapD = try Connectivities.umap(knn, layout: layout, comm: comm)
    let umapS = try Connectivities.umap(ref, layout: allLayout, comm: Communicator.solo)
    sameRows(umapD, umapS, "umap connectivities")
    sameRows(try Connectivities.gaussian(knn, layout: layout, comm: comm),
             try Connectivities.gaussian(ref, layout: allLayout, comm: Communicator.solo), "gauss connectivities")
    sameRows(try umapD.symmetricNormalized(selfLoops: true, layout: layout, comm: comm),
             try umapS.symmetricNormalized(selfLoops: true, layout: allLayout, comm: Communicator.solo), "D^-1/2 (A+I) D^-1/2")
    let specD = try SpectralClusterCount.estimate(umapD, layout: layout, maxK: 12, iterations: 60, comm: comm)
    let specS = try SpectralClusterCount.estimate(umapS, layout: allLayout, maxK: 12, iterations: 60, comm: Communicator.solo)
    let eDiff = zip(specD.eigenvalues, specS.eigenvalues).map { abs($0 - $1) }.max() ?? 1
    expect(specD.k == specS.k && eDiff < 1e-4, "spectral cluster count \(specD.k) vs single-rank \(specS.k) (max eigenvalue Δ \(eDiff))")
    // Halo: every rank fetches rows owned anywhere, including its own and none at all on rank 0.
    let want: [Int64] = r == 0 ? [] : [Int64(n - 1), 0, Int64(lo), Int64(n / 2), 0]
    let halo = try HaloPlan(needed: want, layout: layout, comm: comm)
    let got = try halo.fetch(x.scalars, width: d)
    var haloOK = halo.rows == Array(Set(want)).sorted()
    for (t, g) in halo.rows.enumerated() { for j in 0..<d where got[t * d + j] != all[Int(g), j] { haloOK = false } }
    expect(haloOK, "halo rows")
    // Memory bank retrieval across ranks = single rank, with uneven query counts (rank 0 asks none).
    let bank = try MemoryBank(initial: x, comm: comm)
    let bankAll = try MemoryBank(initial: all, comm: Communicator.solo)
    let (q, _) = SyntheticEmbeddings.rows((5000 + 10 * r)..<(5000 + 10 * r + (r == 0 ? 0 : 3 + r)), dim: d, clusters: 7, seed: 12)
    let (bi, bs) = try bank.nearest(q, k: 6, comm: comm)
    let (ai, as_) = try bankAll.nearest(q, k: 6, comm: Communicator.solo)
    let sDiff = zip(bs, as_).map { abs($0 - $1) }.max() ?? 0
    expect(bi == ai && sDiff < 1e-5, "memory bank retrieval differs from single rank (max score Δ \(sDiff))")
    compare(try ApproximateKNN(lists: 10, probes: 10, seed: 2).build(x, k: k, comm: comm), "IVF kNN probing every list")
}

// Every gradient-reduction strategy of the Trainer against one rank training on all cells (MPI_COMM_SELF):
// a regression task, 29 cells split unevenly over the ranks, global batch 8 (the last batch short),
// 6 steps with SGD (a wrong gradient scale shows linearly) and with Adam, clipping on for one run.
// Budget: the reduced gradient is the same sum of 8 per-cell terms in another order, so each step
// differs by a few float32 ulps of the update; 6 steps of lr 0.05 on parameters of order 1 stay
// within 1e-5 of the largest parameter (a missing shard or an unaveraged gradient moves them by > 1e-2).
run("gradient reduction strategies vs one rank") {
    let cells = 29
    // Rank q holds a share ∝ q + 1 of the cells (uneven on every rank count).
    let weight = p * (p + 1) / 2
    var counts = (0..<p).map { cells * ($0 + 1) / weight }
    counts[p - 1] += cells - counts.reduce(0, +)
    let lo = counts.prefix(r).reduce(0, +)
    let mine = (lo..<(lo + counts[r])).map(Int64.init)
    for optimizer in [OptimizerKind.sgd, .adam] {
        for clip in [nil, Float(0.5)] {
            var c = TrainerConfig()
            c.batchSize = 8; c.lr = 0.05; c.optimizer = optimizer; c.momentum = optimizer == .sgd ? 0 : 0.9; c.clipNorm = clip
            c.bucketMib = 1e-4   // a few parameters per bucket, so buckets start during the backward pass
            let plan = TrainingPlan(epochs: 2, seed: 9)
            let single = RegressionTask(cells: cells, ids: (0..<cells).map(Int64.init))
            let ts = try Trainer(task: single, config: c, plan: plan, cellIds: single.ids, comm: Communicator.solo)
            var singleLosses: [Double] = []
            for _ in 0..<6 { singleLosses.append(try ts.step().0) }
            for reduction in GradientReduction.allCases {
                var cr = c; cr.reduction = reduction
                let task = RegressionTask(cells: cells, ids: mine)
                let t = try Trainer(task: task, config: cr, plan: plan, cellIds: mine, idSpace: cells, comm: comm)
                var losses: [Double] = []
                for _ in 0..<6 { losses.append(try t.step().0) }
                let ref = single.parameters, got = task.parameters
                let scale = ref.map(abs).max()!
                let diff = zip(ref, got).map { abs($0 - $1) }.max()! / scale
                expect(diff <= 1e-5, "\(reduction) \(optimizer) clip \(clip.map { "\($0)" } ?? "none"): parameters differ from one rank by \(diff)")
                let same = try comm.allgather(got)
                expect((0..<p).allSatisfy { Array(same[$0 * got.count..<($0 + 1) * got.count]) == got }, "\(reduction): replicas identical")
                let lossDiff = zip(losses, singleLosses).map { abs($0 - $1) / abs($1) }.max()!
                expect(lossDiff <= 1e-5, "\(reduction) \(optimizer): step losses differ from one rank by \(lossDiff)")
            }
        }
    }
}

// CELLULAR's global-batch loss (embeddings gathered, every rank evaluates the same loss, each back-
// propagates its rows with the weight that cancels the Trainer's n_r / B): 4 optimiser steps on N
// ranks equal one rank on all cells (MPI_COMM_SELF), the validation split included. Budget as above:
// the same sums in another order, a few float32 ulps per step; 1e-5 of the largest parameter.
// With trainer.accumulation 2 the micro-batches must hold the same cells on any rank count (cut by
// position in the global batch), or the gathered micro-batch losses differ.
for accumulation in [1, 2] { run("CELLULAR on N ranks = one rank (accumulation \(accumulation))") {
    let cells = 61, genes = 24, types = 3
    var g = RandomStream(seed: 21, purpose: .simulation)
    var allRows: [[(Int32, Float)]] = [], allLabels: [Int32] = [], allBatches: [Int32] = []
    for i in 0..<cells {
        let y = Int32(i % types)
        var row: [(Int32, Float)] = []
        for j in 0..<genes where g.uniform() < 0.4 { row.append((Int32(j), (j % types == Int(y) ? 2 : 0.5) * g.uniform(0.5, 1.5))) }
        allRows.append(row); allLabels.append(y); allBatches.append(Int32(i % 2))
    }
    func csr(_ rows: Range<Int>) throws -> CSRMatrix {
        var rp: [Int64] = [0], ci: [Int32] = [], vs: [Float] = []
        for i in rows { for (c, v) in allRows[i] { ci.append(c); vs.append(v) }; rp.append(Int64(vs.count)) }
        return try CSRMatrix(rows: rows.count, cols: genes, rowPtr: rp, colIdx: ci, values: vs)
    }
    var h = CELLULARHyperparameters()
    h.hidden = [16]; h.latent = 6; h.pcaComponents = 4; h.epochs = 3
    var c = TrainerConfig(); c.batchSize = 16; c.optimizer = .sgd; c.momentum = 0; c.lr = 0.05; c.accumulation = accumulation
    func model(_ rows: Range<Int>, _ on: Communicator) throws -> (CELLULAR, Trainer) {
        let m = try CELLULAR(x: try csr(rows), cellIds: rows.map(Int64.init), genes: (0..<genes).map { "g\($0)" }, labels: Array(allLabels[rows]),
                             labelNames: ["a", "b", "c"], batches: Array(allBatches[rows]), batchNames: ["x", "y"], statistics: nil,
                             hyperparameters: h, seed: 5, comm: on)
        let t = try Trainer(task: m, config: c, plan: TrainingPlan(epochs: 3, seed: 5), cellIds: m.trainingCells!.ids,
                            idSpace: m.trainingCells!.idSpace, comm: on)
        return (m, t)
    }
    let (single, ts) = try model(0..<cells, Communicator.solo)
    let weight = p * (p + 1) / 2
    var counts = (0..<p).map { cells * ($0 + 1) / weight }
    counts[p - 1] += cells - counts.reduce(0, +)
    let lo = counts.prefix(r).reduce(0, +)
    let (mine, tm) = try model(lo..<(lo + counts[r]), comm)
    // Class and batch weights come from integer counts (exact); the PCA centroid distances from a
    // distributed randomized PCA, which agrees across rank counts to ~1e-5 (the 20-celldata check).
    expect(mine.statistics.classWeights == single.statistics.classWeights && mine.statistics.batchWeights == single.statistics.batchWeights,
           "CELLULAR class/batch weights differ from one rank")
    let pd = zip(mine.statistics.pcaDistances, single.statistics.pcaDistances).map { abs($0 - $1) }.max() ?? 1
    expect(pd <= 1e-4, "CELLULAR PCA centroid distances differ from one rank by \(pd)")
    expect(mine.trainingCells!.idSpace == single.trainingCells!.idSpace, "CELLULAR validation split differs from one rank")
    var lm: [Double] = [], ls: [Double] = []
    for _ in 0..<4 { lm.append(try tm.step().0); ls.append(try ts.step().0) }
    func params(_ m: CELLULAR) -> [Float] { Array(UnsafeBufferPointer(start: m.store.valuesPointer, count: m.store.count)) }
    let a = params(single), b = params(mine)
    let diff = zip(a, b).map { abs($0 - $1) }.max()! / a.map(abs).max()!
    expect(diff <= 1e-5, "CELLULAR parameters after 4 steps differ from one rank by \(diff)")
    let ld = zip(lm, ls).map { abs($0 - $1) / abs($1) }.max()!
    expect(ld <= 1e-5, "CELLULAR step losses differ from one rank by \(ld)")
    expect(zip(a, params(try model(0..<cells, Communicator.solo).0)).contains { $0 != $1 }, "the steps changed the parameters")
    let vm = try mine.validationLoss(), vs = try single.validationLoss()
    expect(abs(vm - vs) <= 1e-5 * abs(vs), "CELLULAR validation loss \(vm) vs one rank \(vs)")
} }
run("distributed graph layers = single rank") { try graphLayerChecks(comm: comm, expect: { expect($0, $1) }) }
// Distributed order statistics: uneven shards (rank 0 empty when P ≥ 3), duplicates across ranks, equal
// to sorting the gathered values.
run("distributed median and k-th smallest") {
    let n = 53
    let mine: [Float] = (0..<n).filter { $0 % p == r && !(p >= 3 && r == 0) }.map { Float(($0 * 37) % 11) - 4.5 }
    let all = try comm.allgatherv(mine).values.sorted()
    for k in [0, 1, all.count / 2, all.count - 1] { expect(try comm.kthSmallest(mine, k) == all[k], "kthSmallest(\(k))") }
    let m = all.count % 2 == 1 ? Double(all[all.count / 2]) : (Double(all[all.count / 2 - 1]) + Double(all[all.count / 2])) / 2
    let got = try comm.median(mine)
    expect(got == m, "median \(String(describing: got)) vs \(m)")
}
// The reader's nnz-balanced row cuts from indptr slices (each rank an equal slice, sharing one entry
// with the next) equal the cuts of the whole indptr, including empty rows, runs of equal offsets,
// heavy rows and an all-empty matrix.
run("balanced row cuts from indptr slices") {
    for (n, seed) in [(7, 1), (53, 2), (200, 3), (1000, 4)] where n >= p {
        for pattern in 0..<3 {
            var rng = RandomStream(seed: UInt64(seed), purpose: .custom("cuts"))
            var indptr: [Int64] = [0]
            for i in 0..<n {
                let add: Int64 = pattern == 2 ? 0 : (pattern == 1 && i % 5 != 0 ? 0 : Int64(rng.int(below: i % 17 == 0 ? 400 : 20)))
                indptr.append(indptr.last! + add)
            }
            let whole = RowPartition.balancedByNNZ(indptr: indptr, parts: p)
            let lo = n * r / p, hi = n * (r + 1) / p
            let got = try RowPartition.balancedByNNZ(indptrSlice: Array(indptr[lo...hi]), from: lo, rows: n, nnz: indptr.last!,
                                                     parts: p, comm: comm)
            expect(got == whole, "cuts of \(n) rows (pattern \(pattern)): \(got) from slices vs \(whole)")
        }
    }
}
run("scname sampled neighbourhood loss = single rank") { try scnameSampledLossChecks(comm: comm, expect: { expect($0, $1) }) }

// Global verdict: every rank's counts summed.
let totals = comm.orAbort { try comm.allreduce(value: Int64(passed), op: .sum) }
let failures = comm.orAbort { try comm.allreduce(value: Int64(failed), op: .sum) }
if r == 0 { print("mpi-collectives (np=\(p)): \(totals) passed, \(failures) failed") }
comm.finalize()
exit(failures == 0 ? 0 : 1)
