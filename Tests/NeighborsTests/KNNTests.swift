import Collectives
import TensorCore
import XCTest
@testable import Neighbors

/// Brute-force kNN in Double: ids and Euclidean distances, nearest first, self excluded.
func bruteForce(_ x: Tensor, k: Int) -> (ids: [[Int64]], dist: [[Double]]) {
    let n = x.rows, d = x.cols
    var ids: [[Int64]] = [], dist: [[Double]] = []
    for i in 0..<n {
        var all: [(Double, Int64)] = []
        for j in 0..<n where j != i {
            var s = 0.0
            for c in 0..<d { let t = Double(x[i, c]) - Double(x[j, c]); s += t * t }
            all.append((s.squareRoot(), Int64(j)))
        }
        all.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        ids.append(all.prefix(k).map(\.1)); dist.append(all.prefix(k).map(\.0))
    }
    return (ids, dist)
}

/// Compares a kNN result with brute force: distances agree to `tol`, and ids agree wherever the
/// distance is not tied (within `tol`) with a neighbour's.
func assertMatchesBruteForce(_ r: KNNResult, _ bf: (ids: [[Int64]], dist: [[Double]]), tol: Double,
                             file: StaticString = #filePath, line: UInt = #line) {
    let k = r.k
    var mismatched = 0
    for i in 0..<r.count {
        for j in 0..<k {
            let got = Double(r.distances[i * k + j]), want = bf.dist[i][j]
            if abs(got - want) > tol * max(1, want) { mismatched += 1; continue }
            let tiedBefore = j > 0 && abs(bf.dist[i][j] - bf.dist[i][j - 1]) <= tol * max(1, want)
            let tiedAfter = j + 1 < k && abs(bf.dist[i][j + 1] - bf.dist[i][j]) <= tol * max(1, want)
            if !tiedBefore && !tiedAfter && r.indices[i * k + j] != bf.ids[i][j] { mismatched += 1 }
        }
    }
    XCTAssertEqual(mismatched, 0, "\(mismatched) of \(r.count * k) neighbour slots differ from brute force", file: file, line: line)
}

final class KNNTests: XCTestCase {
    let solo = Communicator.world  // a single-process test run: the world is one rank

    func testExactMatchesBruteForceAcrossTileEdges() throws {
        // 1100 rows: not a multiple of the 512-row tiles; 7 dims: not a multiple of the SIMD width.
        let (x, _) = SyntheticEmbeddings.rows(0..<1100, dim: 7, clusters: 6, spread: 1.5, seed: 4)
        for k in [1, 5, 16] {
            let r = try ExactKNN.build(x, k: k, comm: solo)
            XCTAssertEqual(r.count, 1100)
            assertMatchesBruteForce(r, bruteForce(x, k: k), tol: 1e-4)
        }
    }

    func testApproximateWithEveryListProbedIsExact() throws {
        let (x, _) = SyntheticEmbeddings.rows(0..<900, dim: 6, clusters: 5, seed: 8)
        let r = try ApproximateKNN(lists: 12, probes: 12, seed: 3).build(x, k: 10, comm: solo)
        assertMatchesBruteForce(r, bruteForce(x, k: 10), tol: 1e-4)
    }

    func testApproximateRecallOnClusteredData() throws {
        let (x, _) = SyntheticEmbeddings.rows(0..<4000, dim: 16, clusters: 20, seed: 2)
        let exact = try ExactKNN.build(x, k: 15, comm: solo)
        let approx = try ApproximateKNN(seed: 1).build(x, k: 15, comm: solo)
        var hits = 0
        for i in 0..<4000 {
            let truth = Set(exact.indices[(i * 15)..<(i * 15 + 15)])
            hits += approx.indices[(i * 15)..<(i * 15 + 15)].filter { truth.contains($0) }.count
        }
        let recall = Double(hits) / Double(4000 * 15)
        XCTAssertGreaterThan(recall, 0.95, "recall@15 = \(recall)")
        // Approximate distances are true distances of the ids returned.
        for i in stride(from: 0, to: 4000, by: 97) {
            for j in 0..<15 {
                let id = Int(approx.indices[i * 15 + j])
                var s = 0.0
                for c in 0..<16 { let t = Double(x[i, c]) - Double(x[id, c]); s += t * t }
                XCTAssertEqual(Double(approx.distances[i * 15 + j]), s.squareRoot(), accuracy: 1e-3)
            }
        }
    }

    func testTopKKeepsSmallestSortedWithoutDuplicates() {
        let t = TopK(rows: 2, k: 3)
        for (d, id) in [(5, 1), (3, 2), (9, 3), (1, 4), (3, 2), (4, 5)] as [(Float, Int64)] { t.insertUnique(row: 1, distance: d, id: id) }
        XCTAssertEqual(Array(t.ids[3..<6]), [4, 2, 5])
        XCTAssertEqual(Array(t.distances[3..<6]), [1, 3, 4])
        XCTAssertEqual(Array(t.ids[0..<3]), [-1, -1, -1])
        // The unchecked insert trusts the caller: offering the same id twice keeps both.
        let u = TopK(rows: 1, k: 3)
        for (d, id) in [(5, 1), (3, 2), (3, 2)] as [(Float, Int64)] { u.insert(row: 0, distance: d, id: id) }
        XCTAssertEqual(u.ids, [2, 2, 1])
    }

    func testRejectsKNotBelowCellCount() {
        let (x, _) = SyntheticEmbeddings.rows(0..<5, dim: 2, clusters: 1, seed: 1)
        XCTAssertThrowsError(try ExactKNN.build(x, k: 5, comm: solo))
        XCTAssertThrowsError(try ApproximateKNN().build(x, k: 7, comm: solo))
    }
}
