import Collectives
import TensorCore

/// The rows this rank owns of a global n × d point set (row-major Float), in global order:
/// rank 0 holds the first rows, rank 1 the next, and so on.
public struct PointShard {
    public let values: [Float]
    public let count: Int
    public let dim: Int
    public init(values: [Float], count: Int, dim: Int) {
        precondition(values.count == count * dim, "PointShard: \(values.count) values for \(count) × \(dim)")
        self.values = values; self.count = count; self.dim = dim
    }
}

/// Distributed k-means (Lloyd) with greedy k-means++ seeding and restarts.
///
/// Every rank holds a shard of the points; centres, counts and inertia are combined by allreduce,
/// so all ranks end with identical centres. Seeding draws from a generator shared by all ranks
/// (same seed → same draws) and fetches the chosen rows from their owners, so a run is a pure
/// function of (points, k, seed, rank count). Sums are accumulated in Double.
public struct KMeans {
    public struct Result {
        public var centres: [Float]  // k × d
        public var labels: [Int32]   // this rank's points
        public var inertia: Double   // global sum of squared distances to the assigned centre
        public var iterations: Int
        public var restart: Int      // which restart won
    }

    public var k: Int
    public var restarts = 10
    public var maxIterations = 300
    /// Relative tolerance on the centre shift, scaled by the mean per-feature variance (as scikit-learn).
    public var tolerance = 1e-4
    public var seed: UInt64 = 0
    /// Seeding: greedy k-means++ (quality; O(k²) collectives) or k distinct random points (fast, for
    /// large k such as an IVF quantiser).
    public enum Initialisation: Sendable { case kMeansPlusPlus, random }
    public var initialisation = Initialisation.kMeansPlusPlus

    public init(k: Int, restarts: Int = 10, maxIterations: Int = 300, tolerance: Double = 1e-4, seed: UInt64 = 0,
                initialisation: Initialisation = .kMeansPlusPlus) {
        self.k = k; self.restarts = restarts; self.maxIterations = maxIterations
        self.tolerance = tolerance; self.seed = seed; self.initialisation = initialisation
    }

    /// `tolerance` × the mean per-feature variance of the points (scikit-learn's absolute tolerance). Collective.
    func absoluteTolerance(_ points: PointShard, comm: Communicator) throws -> Double {
        let d = points.dim
        var moments = [Double](repeating: 0, count: 2 * d + 1)
        moments[2 * d] = Double(points.count)
        points.values.withUnsafeBufferPointer { x in
            for i in 0..<points.count {
                for j in 0..<d {
                    let v = Double(x[i * d + j]); moments[j] += v; moments[d + j] += v * v
                }
            }
        }
        try comm.allreduce(&moments, op: .sum)
        let n = max(moments[2 * d], 1)
        var meanVar = 0.0
        for j in 0..<d { let m = moments[j] / n; meanVar += moments[d + j] / n - m * m }
        return tolerance * max(meanVar / Double(max(d, 1)), 0)
    }

    /// Lloyd's iterations from the given centres (k × d, the same on every rank), e.g. to follow
    /// points that moved since `start` was fitted: cluster c stays the cluster nearest to where c was.
    /// Collective.
    public func refine(_ points: PointShard, from start: [Float], comm: Communicator) throws -> Result {
        precondition(start.count == k * points.dim, "KMeans.refine: \(start.count) centre values for k = \(k), d = \(points.dim)")
        let layout = try RowLayout(comm: comm, localCount: points.count)
        return try lloyd(points, layout: layout, centres: start, tol: try absoluteTolerance(points, comm: comm), comm: comm)
    }

    public func fit(_ points: PointShard, comm: Communicator) throws -> Result {
        let layout = try RowLayout(comm: comm, localCount: points.count)
        guard k >= 1 else { throw CollectiveUsageError("k-means needs k ≥ 1, got \(k)") }
        guard layout.total >= k else {
            throw CollectiveUsageError("k-means with k = \(k) needs at least \(k) points; there are \(layout.total)")
        }
        let tol = try absoluteTolerance(points, comm: comm)

        var best: Result?
        // One stream for all ranks (rank 0's: the same draws everywhere); restart r takes child r,
        // so restarts make decorrelated choices instead of sharing a shifted sequence.
        let seeding = RandomStream(seed: seed, purpose: .clustering)
        for r in 0..<max(restarts, 1) {
            var rng = seeding.split(UInt64(r))
            let start: [Float]
            switch initialisation {
            case .kMeansPlusPlus: start = try seedPlusPlus(points, layout: layout, comm: comm, rng: &rng)
            case .random:
                var picked = Set<Int>(), order: [Int] = []
                while order.count < k { let g = rng.int(below: layout.total); if picked.insert(g).inserted { order.append(g) } }
                start = try Self.fetchRows(order, points, layout: layout, comm: comm)
            }
            var res = try lloyd(points, layout: layout, centres: start, tol: tol, comm: comm)
            res.restart = r
            if best == nil || res.inertia < best!.inertia { best = res }
        }
        return best!
    }

    /// The mean of each cluster's points (k × d, row-major) over every rank, summed in Double; an empty
    /// cluster's mean is zero. Collective.
    public static func clusterMeans(_ points: PointShard, labels: [Int32], k: Int, comm: Communicator) throws -> [Float] {
        precondition(labels.count == points.count, "clusterMeans: \(labels.count) labels for \(points.count) points")
        let d = points.dim
        var sums = [Double](repeating: 0, count: k * (d + 1))
        points.values.withUnsafeBufferPointer { x in
            for i in 0..<points.count {
                let c = Int(labels[i])
                precondition(c >= 0 && c < k, "clusterMeans: label \(c) outside 0..<\(k)")
                for j in 0..<d { sums[c * (d + 1) + j] += Double(x[i * d + j]) }
                sums[c * (d + 1) + d] += 1
            }
        }
        try comm.allreduce(&sums, op: .sum)
        var means = [Float](repeating: 0, count: k * d)
        for c in 0..<k {
            let n = max(sums[c * (d + 1) + d], 1)
            for j in 0..<d { means[c * d + j] = Float(sums[c * (d + 1) + j] / n) }
        }
        return means
    }

    /// Assigns points to the nearest of `centres` (k × d); returns labels and each point's squared distance.
    /// Distances come from sgemm (−2·X·Cᵀ + ‖c‖²) in row tiles; the winner's distance is recomputed exactly.
    public static func assign(_ points: PointShard, centres: [Float], k: Int) -> (labels: [Int32], dist2: [Double]) {
        let d = points.dim, n = points.count
        var labels = [Int32](repeating: 0, count: n)
        var dist = [Double](repeating: 0, count: n)
        guard n > 0 else { return (labels, dist) }
        var cnorm = [Float](repeating: 0, count: k)
        for c in 0..<k { var s: Float = 0; for j in 0..<d { s += centres[c * d + j] * centres[c * d + j] }; cnorm[c] = s }
        let tileRows = max(1, min(n, (1 << 18) / max(k, 1)))
        var tile = [Float](repeating: 0, count: tileRows * k)
        points.values.withUnsafeBufferPointer { x in
            centres.withUnsafeBufferPointer { cp in
                tile.withUnsafeMutableBufferPointer { t in
                    var r0 = 0
                    while r0 < n {
                        let rh = min(tileRows, n - r0)
                        Linalg.sgemm(transA: false, transB: true, m: rh, n: k, k: d, alpha: -2, a: x.baseAddress! + r0 * d,
                                     lda: d, b: cp.baseAddress!, ldb: d, beta: 0, c: t.baseAddress!, ldc: k)
                        for i in 0..<rh {
                            let row = t.baseAddress! + i * k
                            var bestC = 0
                            var bestD = row[0] + cnorm[0]
                            for c in 1..<k { let v = row[c] + cnorm[c]; if v < bestD { bestD = v; bestC = c } }
                            let xi = x.baseAddress! + (r0 + i) * d, cc = cp.baseAddress! + bestC * d
                            var e: Double = 0
                            for j in 0..<d { let u = Double(xi[j]) - Double(cc[j]); e += u * u }
                            labels[r0 + i] = Int32(bestC); dist[r0 + i] = e
                        }
                        r0 += rh
                    }
                }
            }
        }
        return (labels, dist)
    }

    private static func sqdist(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Double {
        var s = 0.0
        for j in 0..<d { let t = Double(a[j]) - Double(b[j]); s += t * t }
        return s
    }

    /// Fetches global rows (any owner) onto every rank, in the order given.
    static func fetchRows(_ globals: [Int], _ points: PointShard, layout: RowLayout, comm: Communicator) throws -> [Float] {
        let d = points.dim
        var mine: [Float] = []
        var order: [Int] = []
        for (pos, g) in globals.enumerated() {
            let (owner, local) = layout.owner(ofGlobal: g)
            if owner == comm.rank {
                mine.append(contentsOf: points.values[(local * d)..<(local * d + d)])
                order.append(pos)
            }
        }
        let (rows, _) = try comm.allgatherv(mine)
        let (positions, _) = try comm.allgatherv(order.map(Int64.init))
        var out = [Float](repeating: 0, count: globals.count * d)
        for (slot, pos) in positions.enumerated() {
            for j in 0..<d { out[Int(pos) * d + j] = rows[slot * d + j] }
        }
        return out
    }

    /// Picks a global index with probability proportional to `weights` (this rank's part), using one
    /// shared uniform draw: every rank computes the same answer.
    static func sampleProportional(_ weights: [Double], u: Double, layout: RowLayout, comm: Communicator) throws -> Int {
        let local = weights.reduce(0, +)
        let sums = try comm.allgather(value: local)
        let total = sums.reduce(0, +)
        if total <= 0 { return Int(u * Double(layout.total)) % layout.total }
        var target = u * total
        var owner = sums.count - 1
        for (r, s) in sums.enumerated() { if target < s { owner = r; break }; target -= s }
        var found: Int64 = -1
        if owner == comm.rank {
            var acc = 0.0
            found = Int64(weights.count - 1)
            for (i, w) in weights.enumerated() { acc += w; if target < acc { found = Int64(i); break } }
            while found > 0 && weights[Int(found)] == 0 { found -= 1 }
        }
        let idx = try comm.allreduce(value: found, op: .max)
        return layout.offsets[owner] + Int(idx)
    }

    /// Greedy k-means++: each new centre is the best of 2 + ln k candidates drawn ∝ D².
    private func seedPlusPlus(_ points: PointShard, layout: RowLayout, comm: Communicator,
                              rng: inout RandomStream) throws -> [Float] {
        let d = points.dim, n = points.count
        let trials = 2 + Int(log(Double(k)))
        var centres = try Self.fetchRows([rng.int(below: layout.total)], points, layout: layout, comm: comm)
        var closest = [Double](repeating: 0, count: n)
        points.values.withUnsafeBufferPointer { x in
            centres.withUnsafeBufferPointer { c in
                for i in 0..<n { closest[i] = Self.sqdist(x.baseAddress! + i * d, c.baseAddress!, d) }
            }
        }
        for _ in 1..<k {
            var cands: [Int] = []
            for _ in 0..<trials { cands.append(try Self.sampleProportional(closest, u: rng.uniformDouble(), layout: layout, comm: comm)) }
            let rows = try Self.fetchRows(cands, points, layout: layout, comm: comm)
            var pot = [Double](repeating: 0, count: trials)
            points.values.withUnsafeBufferPointer { x in
                rows.withUnsafeBufferPointer { c in
                    for t in 0..<trials {
                        var s = 0.0
                        for i in 0..<n { s += min(closest[i], Self.sqdist(x.baseAddress! + i * d, c.baseAddress! + t * d, d)) }
                        pot[t] = s
                    }
                }
            }
            try comm.allreduce(&pot, op: .sum)
            var bestT = 0
            for t in 1..<trials where pot[t] < pot[bestT] { bestT = t }
            let chosen = Array(rows[(bestT * d)..<(bestT * d + d)])
            centres.append(contentsOf: chosen)
            points.values.withUnsafeBufferPointer { x in
                chosen.withUnsafeBufferPointer { c in
                    for i in 0..<n { closest[i] = min(closest[i], Self.sqdist(x.baseAddress! + i * d, c.baseAddress!, d)) }
                }
            }
        }
        return centres
    }

    private func lloyd(_ points: PointShard, layout: RowLayout, centres initial: [Float], tol: Double,
                       comm: Communicator) throws -> Result {
        let d = points.dim, n = points.count
        var centres = initial
        var labels = [Int32](repeating: -1, count: n)
        var iterations = 0
        var sums = [Double](repeating: 0, count: k * d + k)
        for it in 1...max(maxIterations, 1) {
            iterations = it
            let (newLabels, dist2) = Self.assign(points, centres: centres, k: k)
            var changed = Int64(0)
            for i in 0..<n where newLabels[i] != labels[i] { changed += 1 }
            labels = newLabels
            for i in 0..<sums.count { sums[i] = 0 }
            points.values.withUnsafeBufferPointer { x in
                for i in 0..<n {
                    let c = Int(labels[i])
                    for j in 0..<d { sums[c * d + j] += Double(x[i * d + j]) }
                    sums[k * d + c] += 1
                }
            }
            try comm.allreduce(&sums, op: .sum)
            var newCentres = centres
            var emptied: [Int] = []
            for c in 0..<k {
                let cnt = sums[k * d + c]
                if cnt == 0 { emptied.append(c); continue }
                for j in 0..<d { newCentres[c * d + j] = Float(sums[c * d + j] / cnt) }
            }
            if !emptied.isEmpty {
                // Relocate each empty cluster to the point farthest from its centre (as scikit-learn).
                var far = dist2
                for c in emptied {
                    var bestLocal = -1
                    for i in 0..<n where bestLocal < 0 || far[i] > far[bestLocal] { bestLocal = i }
                    let mine = bestLocal >= 0 ? far[bestLocal] : -1
                    let all = try comm.allgather(value: mine)
                    var winner = 0
                    for r in 1..<all.count where all[r] > all[winner] { winner = r }
                    let g = layout.offsets[winner] + (winner == comm.rank ? bestLocal : 0)
                    let gAll = try comm.broadcast(value: Int64(g), root: winner)
                    let row = try Self.fetchRows([Int(gAll)], points, layout: layout, comm: comm)
                    for j in 0..<d { newCentres[c * d + j] = row[j] }
                    if winner == comm.rank && bestLocal >= 0 { far[bestLocal] = -1 }
                }
            }
            var shift = 0.0
            for i in 0..<(k * d) { let t = Double(newCentres[i] - centres[i]); shift += t * t }
            centres = newCentres
            let anyChanged = try comm.allreduce(value: changed, op: .sum)
            if (anyChanged == 0 && it > 1) || shift <= tol { break }
        }
        // Final assignment against the final centres, so labels and inertia match them.
        let (finalLabels, dist2) = Self.assign(points, centres: centres, k: k)
        let inertia = try comm.allreduce(value: dist2.reduce(0, +), op: .sum)
        return Result(centres: centres, labels: finalLabels, inertia: inertia, iterations: iterations, restart: 0)
    }
}

import Foundation
