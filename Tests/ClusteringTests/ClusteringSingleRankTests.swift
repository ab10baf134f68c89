import Collectives
import TensorCore
import XCTest
@testable import Clustering

/// Blobs around `k` centres in `d` dimensions, deterministic.
func blobs(n: Int, k: Int, d: Int, spread: Float, seed: UInt64) -> (points: [Float], labels: [Int]) {
    var rng = RandomStream(seed: seed)
    let centres = (0..<(k * d)).map { _ in Float(rng.uniformDouble() * 20 - 10) }
    var pts = [Float](), labs = [Int]()
    for i in 0..<n {
        let c = i % k
        labs.append(c)
        for j in 0..<d {
            // Sum of uniforms: roughly normal noise.
            let noise = Float((0..<4).reduce(0.0) { a, _ in a + rng.uniformDouble() } - 2)
            pts.append(centres[c * d + j] + spread * noise)
        }
    }
    return (pts, labs)
}

final class ClusteringSingleRankTests: XCTestCase {
    let comm = Communicator.world

    func testKMeansRecoversSeparatedBlobsAndIsAFixedPoint() throws {
        let (x, truth) = blobs(n: 600, k: 5, d: 8, spread: 0.5, seed: 3)
        let shard = PointShard(values: x, count: 600, dim: 8)
        let res = try KMeans(k: 5, restarts: 3, seed: 1).fit(shard, comm: comm)
        XCTAssertEqual(ClusterMetrics.adjustedRandIndex(truth, res.labels.map(Int.init)), 1, accuracy: 1e-12)
        // Fixed point: each centre is the mean of its points, each point sits with its nearest centre.
        for c in 0..<5 {
            let members = (0..<600).filter { res.labels[$0] == c }
            XCTAssertFalse(members.isEmpty)
            for j in 0..<8 {
                let mean = members.reduce(0.0) { $0 + Double(x[$1 * 8 + j]) } / Double(members.count)
                XCTAssertEqual(Double(res.centres[c * 8 + j]), mean, accuracy: 1e-4)
            }
        }
        var inertia = 0.0
        for i in 0..<600 {
            let d2 = (0..<5).map { c in (0..<8).reduce(0.0) { let t = Double(x[i * 8 + $1] - res.centres[c * 8 + $1]); return $0 + t * t } }
            XCTAssertEqual(Int(res.labels[i]), d2.firstIndex(of: d2.min()!)!)
            inertia += d2.min()!
        }
        XCTAssertEqual(res.inertia, inertia, accuracy: 1e-6 * inertia)
    }

    func testKMeansIsDeterministicAndRestartsHelp() throws {
        let (x, _) = blobs(n: 400, k: 8, d: 4, spread: 2.5, seed: 9)
        let shard = PointShard(values: x, count: 400, dim: 4)
        let a = try KMeans(k: 8, restarts: 4, seed: 7).fit(shard, comm: comm)
        let b = try KMeans(k: 8, restarts: 4, seed: 7).fit(shard, comm: comm)
        XCTAssertEqual(a.centres, b.centres)
        XCTAssertEqual(a.labels, b.labels)
        let one = try KMeans(k: 8, restarts: 1, seed: 7).fit(shard, comm: comm)
        XCTAssertLessThanOrEqual(a.inertia, one.inertia * (1 + 1e-12))
    }

    func testKMeansRefineFollowsMovedPointsAndKeepsClusterIdentity() throws {
        let (x, truth) = blobs(n: 400, k: 4, d: 6, spread: 0.4, seed: 11)
        let shard = PointShard(values: x, count: 400, dim: 6)
        let km = KMeans(k: 4, restarts: 2, seed: 3)
        let fit = try km.fit(shard, comm: comm)
        // The points move by a common shift: refined centres move with them and cluster c stays c.
        let moved = PointShard(values: x.enumerated().map { $0.element + Float($0.offset % 6) * 0.7 }, count: 400, dim: 6)
        let r = try km.refine(moved, from: fit.centres, comm: comm)
        XCTAssertEqual(r.labels, fit.labels, "the same points in the same clusters, under the same cluster numbers")
        for c in 0..<4 { for j in 0..<6 { XCTAssertEqual(r.centres[c * 6 + j], fit.centres[c * 6 + j] + Float(j) * 0.7, accuracy: 1e-3) } }
        // Started from permuted centres, the numbering follows the start, not k-means++.
        let perm = [2, 0, 3, 1]
        let start = perm.flatMap { Array(fit.centres[($0 * 6)..<($0 * 6 + 6)]) }
        let p = try km.refine(shard, from: start, comm: comm)
        for i in 0..<400 { XCTAssertEqual(perm[Int(p.labels[i])], Int(fit.labels[i])) }
        XCTAssertEqual(ClusterMetrics.adjustedRandIndex(truth, p.labels.map(Int.init)), 1, accuracy: 1e-12)
        // From a poor start it still descends to the blobs.
        let poor = (0..<24).map { Float($0 % 5) * 0.1 }
        let q = try km.refine(shard, from: poor, comm: comm)
        XCTAssertGreaterThan(q.iterations, 1)
        XCTAssertLessThanOrEqual(fit.inertia, q.inertia * (1 + 1e-6))
    }

    func testKMeansRejectsMoreClustersThanPoints() {
        let shard = PointShard(values: [0, 1, 2], count: 3, dim: 1)
        XCTAssertThrowsError(try KMeans(k: 4).fit(shard, comm: comm)) { e in
            XCTAssertTrue("\(e)".contains("at least 4 points"), "\(e)")
        }
    }

    func testStudentTAndDECTarget() throws {
        // One point at the origin, centres at distance 1 and 2 (α = 1): q ∝ 1/(1+d²) = 1/2, 1/5.
        let q = SoftAssignment.studentT([0, 0], n: 1, centres: [1, 0, 0, 2], k: 2, dim: 2)
        XCTAssertEqual(q[0], Float(0.5 / 0.7), accuracy: 1e-6)
        XCTAssertEqual(q[1], Float(0.2 / 0.7), accuracy: 1e-6)
        let (x, _) = blobs(n: 50, k: 3, d: 2, spread: 1, seed: 5)
        let qs = SoftAssignment.studentT(x, n: 50, centres: Array(x[0..<6]), k: 3, dim: 2)
        let p = try SoftAssignment.decTarget(qs, n: 50, k: 3, comm: comm)
        var f = [Double](repeating: 0, count: 3)
        for i in 0..<50 { for c in 0..<3 { f[c] += Double(qs[i * 3 + c]) } }
        for i in 0..<50 {
            let raw = (0..<3).map { Double(qs[i * 3 + $0]) * Double(qs[i * 3 + $0]) / f[$0] }
            let s = raw.reduce(0, +)
            for c in 0..<3 { XCTAssertEqual(Double(p[i * 3 + c]), raw[c] / s, accuracy: 1e-6) }
        }
    }

    func testSinkhornMatchesPlainScalingAndMarginals() throws {
        var rng = RandomStream(seed: 11)
        let n = 40, k = 5
        let scores = (0..<(n * k)).map { _ in rng.uniformDouble() * 4 - 2 }
        let a = [Double](repeating: 1.0 / Double(n), count: n)
        let b = (0..<k).map { Double($0 + 1) / 15.0 }
        let res = try Sinkhorn(tolerance: 1e-10).solve(scores: scores, n: n, k: k, rowMass: a, colMass: b, comm: comm)
        XCTAssertLessThanOrEqual(res.marginalError, 1e-10)
        for i in 0..<n { XCTAssertEqual((0..<k).reduce(0.0) { $0 + res.plan[i * k + $1] }, a[i], accuracy: 1e-12) }
        for c in 0..<k { XCTAssertEqual((0..<n).reduce(0.0) { $0 + res.plan[$1 * k + c] }, b[c], accuracy: 1e-9) }
        // Plain (non-log) Sinkhorn–Knopp scaling of K = exp(S) reaches the same plan.
        var u = [Double](repeating: 1, count: n), v = [Double](repeating: 1, count: k)
        let K = scores.map { exp($0) }
        for _ in 0..<5000 {
            for i in 0..<n { u[i] = a[i] / (0..<k).reduce(0.0) { $0 + K[i * k + $1] * v[$1] } }
            for c in 0..<k { v[c] = b[c] / (0..<n).reduce(0.0) { $0 + K[$1 * k + c] * u[$1] } }
        }
        for i in 0..<n { for c in 0..<k { XCTAssertEqual(res.plan[i * k + c], u[i] * K[i * k + c] * v[c], accuracy: 1e-9) } }
    }

    /// Stopped at the iteration cap, the plan's rows still carry their mass exactly (the last update
    /// is a row update), and the error reported is that of the plan returned.
    func testSinkhornAtTheIterationCapKeepsRowsExact() throws {
        var rng = RandomStream(seed: 5)
        let n = 30, k = 4
        let scores = (0..<(n * k)).map { _ in rng.uniformDouble() * 12 - 6 }
        let a = [Double](repeating: 1.0 / Double(n), count: n)
        let b = [0.7, 0.1, 0.1, 0.1]
        let res = try Sinkhorn(maxIterations: 2, tolerance: 1e-14).solve(scores: scores, n: n, k: k, rowMass: a, colMass: b, comm: comm)
        XCTAssertEqual(res.iterations, 2)
        XCTAssertGreaterThan(res.marginalError, 1e-6, "two iterations do not reach these columns")
        for i in 0..<n { XCTAssertEqual((0..<k).reduce(0.0) { $0 + res.plan[i * k + $1] }, a[i], accuracy: 1e-14) }
        let colError = (0..<k).reduce(0.0) { e, c in e + abs((0..<n).reduce(0.0) { $0 + res.plan[$1 * k + c] } - b[c]) }
        XCTAssertEqual(colError, res.marginalError, accuracy: 1e-12)
    }

    func testSilhouetteOfWholeSetMatchesBruteForce() throws {
        let (x, labs) = blobs(n: 90, k: 3, d: 3, spread: 3, seed: 2)
        let labels = labs.map(Int32.init)
        let got = try Silhouette.sampled(PointShard(values: x, count: 90, dim: 3), labels: labels, k: 3,
                                         sampleSize: 1000, seed: 1, comm: comm)
        func dist(_ i: Int, _ j: Int) -> Double {
            // Differences in Double, as Silhouette takes them (a Float difference rounds to ~1e-7).
            (0..<3).reduce(0.0) { let t = Double(x[i * 3 + $1]) - Double(x[j * 3 + $1]); return $0 + t * t }.squareRoot()
        }
        var total = 0.0
        for i in 0..<90 {
            var sums = [Double](repeating: 0, count: 3), cnt = [Double](repeating: 0, count: 3)
            for j in 0..<90 where j != i { sums[labs[j]] += dist(i, j); cnt[labs[j]] += 1 }
            let a = sums[labs[i]] / cnt[labs[i]]
            let b = (0..<3).filter { $0 != labs[i] }.map { sums[$0] / cnt[$0] }.min()!
            total += (b - a) / max(a, b)
        }
        XCTAssertEqual(got, total / 90, accuracy: 1e-9)
    }
}

final class EstimateKTests: XCTestCase {
    func testSilhouettePicksTheTrueCountOnSeparatedBlobs() throws {
        for trueK in [3, 6] {
            let (x, _) = blobs(n: 600, k: trueK, d: 5, spread: 0.6, seed: UInt64(trueK))
            let est = try EstimateClusterCount.silhouette(PointShard(values: x, count: 600, dim: 5), range: 2...9,
                                                          sampleSize: 300, restarts: 2, seed: 1, comm: Communicator.world)
            XCTAssertEqual(est.best, trueK, "\(est.candidates.map { ($0.k, $0.silhouette) })")
            XCTAssertEqual(est.candidates.map(\.k), Array(2...9))
        }
        XCTAssertThrowsError(try EstimateClusterCount.silhouette(PointShard(values: [0, 1], count: 2, dim: 1), range: 1...2,
                                                                 comm: Communicator.world))
    }
}
