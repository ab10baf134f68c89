import XCTest
@testable import Clustering

final class MetricsTests: XCTestCase {
    /// ARI by counting pairs directly (O(n²)), an independent definition.
    func pairCountingARI(_ a: [Int], _ b: [Int]) -> Double {
        var ss = 0.0, sd = 0.0, ds = 0.0, dd = 0.0
        for i in 0..<a.count {
            for j in (i + 1)..<a.count {
                let sa = a[i] == a[j], sb = b[i] == b[j]
                if sa && sb { ss += 1 } else if sa { sd += 1 } else if sb { ds += 1 } else { dd += 1 }
            }
        }
        // Hubert–Arabie ARI in pair-count form.
        let num = 2 * (ss * dd - sd * ds)
        let den = (ss + sd) * (sd + dd) + (ss + ds) * (ds + dd)
        return den == 0 ? 1 : num / den
    }

    func randomLabels(_ n: Int, _ k: Int, _ g: inout SystemRandomNumberGenerator) -> [Int] {
        (0..<n).map { _ in Int.random(in: 0..<k, using: &g) }
    }

    func testARIMatchesPairCounting() {
        var g = SystemRandomNumberGenerator()
        for trial in 0..<20 {
            let n = 5 + trial * 7
            let a = randomLabels(n, 2 + trial % 5, &g)
            // b: a noisy copy of a, so ARI spans weak to strong agreement.
            let b = a.map { Double.random(in: 0..<1, using: &g) < Double(trial) / 20 ? $0 : Int.random(in: 0..<4, using: &g) }
            XCTAssertEqual(ClusterMetrics.adjustedRandIndex(a, b), pairCountingARI(a, b), accuracy: 1e-12, "trial \(trial)")
        }
    }

    func testARIKnownValuesAndInvariances() {
        // Textbook example (scikit-learn's documentation gives 0.5714285714285715 for this pair).
        XCTAssertEqual(ClusterMetrics.adjustedRandIndex([0, 0, 1, 2], [0, 0, 1, 1]), 4.0 / 7.0, accuracy: 1e-12)
        let a = [3, 3, 1, 1, 2, 2, 2]
        XCTAssertEqual(ClusterMetrics.adjustedRandIndex(a, a.map { 10 - $0 }), 1, accuracy: 1e-12)
        XCTAssertEqual(ClusterMetrics.adjustedRandIndex(a, [5, 6, 7, 1, 2, 3, 4]),
                       ClusterMetrics.adjustedRandIndex([5, 6, 7, 1, 2, 3, 4], a), accuracy: 1e-12)
        XCTAssertLessThan(ClusterMetrics.adjustedRandIndex([0, 0, 0, 1, 1, 1], [0, 1, 0, 1, 0, 1]), 0)
    }

    func testNMIAgainstEntropyIdentity() {
        var g = SystemRandomNumberGenerator()
        for _ in 0..<10 {
            let a = randomLabels(200, 4, &g), b = randomLabels(200, 3, &g).enumerated().map { $0.element + (a[$0.offset] == 0 ? 3 : 0) }
            // MI = H(A) + H(B) − H(A,B)
            func H(_ x: [Int]) -> Double {
                var c: [Int: Int] = [:]; for v in x { c[v, default: 0] += 1 }
                return c.values.reduce(0.0) { let p = Double($1) / Double(x.count); return $0 - p * log(p) }
            }
            let joint = zip(a, b).map { $0 * 1000 + $1 }
            let mi = H(a) + H(b) - H(joint)
            XCTAssertEqual(ClusterMetrics.normalizedMutualInformation(a, b), mi / (0.5 * (H(a) + H(b))), accuracy: 1e-10)
        }
        XCTAssertEqual(ClusterMetrics.normalizedMutualInformation([0, 0, 1, 1], [1, 1, 0, 0]), 1, accuracy: 1e-12)
        XCTAssertEqual(ClusterMetrics.normalizedMutualInformation([0, 0, 1, 1], [0, 1, 0, 1]), 0, accuracy: 1e-12)
    }

    func testAccuracyUsesBestMatching() {
        XCTAssertEqual(ClusterMetrics.accuracy([0, 0, 1, 1, 2, 2], [2, 2, 0, 0, 1, 1]), 1)
        // Two clusters for three classes: at most the two largest classes can be matched.
        XCTAssertEqual(ClusterMetrics.accuracy([0, 0, 0, 1, 1, 2], [5, 5, 5, 7, 7, 7]), 5.0 / 6.0, accuracy: 1e-12)
        // More clusters than classes: the extra cluster counts as wrong.
        XCTAssertEqual(ClusterMetrics.accuracy([0, 0, 1, 1], [0, 1, 2, 2]), 3.0 / 4.0, accuracy: 1e-12)
        XCTAssertEqual(ClusterMetrics.matching(truth: [0, 0, 1, 1], pred: [9, 9, 4, 4]), [9: 0, 4: 1])
    }

    func testHungarianAgainstBruteForce() {
        func permutations(_ n: Int) -> [[Int]] {
            if n == 0 { return [[]] }
            return permutations(n - 1).flatMap { p in (0...p.count).map { var q = p; q.insert(n - 1, at: $0); return q } }
        }
        var g = SystemRandomNumberGenerator()
        for n in 1...6 {
            for _ in 0..<5 {
                let cost = (0..<n).map { _ in (0..<n).map { _ in Double(Int.random(in: 0..<20, using: &g)) } }
                let a = Hungarian.solve(cost)
                XCTAssertEqual(Set(a), Set(0..<n), "not a permutation")
                let got = (0..<n).reduce(0.0) { $0 + cost[$1][a[$1]] }
                let best = permutations(n).map { p in (0..<n).reduce(0.0) { $0 + cost[$1][p[$1]] } }.min()!
                XCTAssertEqual(got, best)
            }
        }
    }
}
