import Foundation

/// Clustering quality against reference labels. Labels are any integers; only equality matters.
public enum ClusterMetrics {
    /// Contingency table of two labelings, plus the dense codes used for its rows/columns.
    public struct Contingency {
        public let table: [[Int]]  // rows: classes of `a`, columns: classes of `b`
        public let rowSums: [Int]
        public let colSums: [Int]
        public let n: Int

        /// A table of counts (rows: classes of `a`, columns: classes of `b`); rows and columns with no
        /// cells are dropped, as `contingency` never makes them.
        public init(counts: [[Int]]) {
            let rowsKept = counts.indices.filter { counts[$0].contains { $0 != 0 } }
            let width = counts.first?.count ?? 0
            let colsKept = (0..<width).filter { j in counts.contains { $0[j] != 0 } }
            let t = rowsKept.map { i in colsKept.map { counts[i][$0] } }
            self.init(table: t)
        }

        init(table t: [[Int]]) {
            table = t
            rowSums = t.map { $0.reduce(0, +) }
            colSums = (0..<(t.first?.count ?? 0)).map { j in t.reduce(0) { $0 + $1[j] } }
            n = rowSums.reduce(0, +)
        }

        /// The same table with rows and columns exchanged.
        public var transposed: Contingency {
            Contingency(table: (0..<colSums.count).map { j in table.map { $0[j] } })
        }
    }

    public static func contingency(_ a: [Int], _ b: [Int]) -> Contingency {
        precondition(a.count == b.count, "labelings differ in length: \(a.count) vs \(b.count)")
        let ca = denseCodes(a), cb = denseCodes(b)
        let ra = (ca.max() ?? -1) + 1, rb = (cb.max() ?? -1) + 1
        var t = [[Int]](repeating: [Int](repeating: 0, count: rb), count: ra)
        for i in 0..<a.count { t[ca[i]][cb[i]] += 1 }
        return Contingency(table: t)
    }

    /// Maps labels to 0..<k in order of first appearance.
    public static func denseCodes(_ labels: [Int]) -> [Int] {
        var map: [Int: Int] = [:]
        return labels.map { l in
            if let c = map[l] { return c }
            let c = map.count; map[l] = c; return c
        }
    }

    /// Adjusted Rand index (Hubert & Arabie), as sklearn's adjusted_rand_score.
    public static func adjustedRandIndex(_ truth: [Int], _ pred: [Int]) -> Double {
        adjustedRandIndex(contingency(truth, pred))
    }

    /// ARI from the contingency table (rows: truth, columns: prediction; symmetric in the two).
    public static func adjustedRandIndex(_ c: Contingency) -> Double {
        let n = c.n
        if n < 2 { return 1 }
        func comb2(_ x: Int) -> Double { Double(x) * Double(x - 1) / 2 }
        let sumCells = c.table.reduce(0.0) { acc, row in acc + row.reduce(0.0) { $0 + comb2($1) } }
        let sumA = c.rowSums.reduce(0.0) { $0 + comb2($1) }
        let sumB = c.colSums.reduce(0.0) { $0 + comb2($1) }
        let expected = sumA * sumB / comb2(n)
        let maxIndex = 0.5 * (sumA + sumB)
        // Both labelings trivial in the same way (all one cluster, or all singletons): perfect agreement.
        if maxIndex == expected { return 1 }
        return (sumCells - expected) / (maxIndex - expected)
    }

    /// Normalised mutual information with the arithmetic-mean normaliser (sklearn's default).
    public static func normalizedMutualInformation(_ truth: [Int], _ pred: [Int]) -> Double {
        normalizedMutualInformation(contingency(truth, pred))
    }

    /// NMI from the contingency table (symmetric in rows and columns).
    public static func normalizedMutualInformation(_ c: Contingency) -> Double {
        let n = Double(c.n)
        if c.rowSums.count == 1 && c.colSums.count == 1 { return 1 }
        if c.rowSums.count == 1 || c.colSums.count == 1 { return 0 }
        var mi = 0.0
        for (i, row) in c.table.enumerated() {
            for (j, nij) in row.enumerated() where nij > 0 {
                let p = Double(nij) / n
                mi += p * log(Double(nij) * n / (Double(c.rowSums[i]) * Double(c.colSums[j])))
            }
        }
        func entropy(_ s: [Int]) -> Double {
            s.reduce(0.0) { acc, x in x == 0 ? acc : acc - (Double(x) / n) * log(Double(x) / n) }
        }
        let norm = 0.5 * (entropy(c.rowSums) + entropy(c.colSums))
        return norm > 0 ? max(0, mi) / norm : 0
    }

    /// Clustering accuracy: the fraction of cells whose cluster maps to their class under the best
    /// one-to-one matching of clusters to classes (Hungarian algorithm). Unmatched clusters count as wrong.
    public static func accuracy(_ truth: [Int], _ pred: [Int]) -> Double {
        guard !truth.isEmpty else { return 1 }
        return accuracy(clustersByClasses: contingency(pred, truth))
    }

    /// Accuracy from the contingency table with rows = clusters, columns = classes.
    public static func accuracy(clustersByClasses c: Contingency) -> Double {
        guard c.n > 0 else { return 1 }
        let rows = c.table.count, cols = c.colSums.count
        let m = max(rows, cols)
        // Maximise matches = minimise (max - count) on a square padded matrix.
        let big = c.table.map { $0.max() ?? 0 }.max() ?? 0
        var cost = [[Double]](repeating: [Double](repeating: Double(big), count: m), count: m)
        for i in 0..<rows { for j in 0..<cols { cost[i][j] = Double(big - c.table[i][j]) } }
        let assignment = Hungarian.solve(cost)
        var matched = 0
        for i in 0..<rows where assignment[i] < cols { matched += c.table[i][assignment[i]] }
        return Double(matched) / Double(c.n)
    }

    /// The cluster → class map of the best one-to-one matching (clusters without a class map to nil).
    public static func matching(truth: [Int], pred: [Int]) -> [Int: Int] {
        let c = contingency(pred, truth)
        let predCodes = denseCodes(pred), truthCodes = denseCodes(truth)
        var predOf: [Int: Int] = [:], truthOf: [Int: Int] = [:]
        for i in 0..<pred.count { predOf[predCodes[i]] = pred[i]; truthOf[truthCodes[i]] = truth[i] }
        let rows = c.table.count, cols = c.colSums.count, m = max(rows, cols)
        let big = c.table.map { $0.max() ?? 0 }.max() ?? 0
        var cost = [[Double]](repeating: [Double](repeating: Double(big), count: m), count: m)
        for i in 0..<rows { for j in 0..<cols { cost[i][j] = Double(big - c.table[i][j]) } }
        let a = Hungarian.solve(cost)
        var out: [Int: Int] = [:]
        for i in 0..<rows where a[i] < cols { out[predOf[i]!] = truthOf[a[i]]! }
        return out
    }
}

/// Minimum-cost assignment on a square cost matrix (Kuhn–Munkres with potentials, O(n³)).
public enum Hungarian {
    /// Returns `assignment[row] = column` minimising the total cost.
    public static func solve(_ cost: [[Double]]) -> [Int] {
        let n = cost.count
        guard n > 0 else { return [] }
        precondition(cost.allSatisfy { $0.count == n }, "Hungarian.solve needs a square matrix")
        // 1-based potentials u (rows), v (columns); p[j] = row matched to column j; way = back-links.
        var u = [Double](repeating: 0, count: n + 1), v = [Double](repeating: 0, count: n + 1)
        var p = [Int](repeating: 0, count: n + 1), way = [Int](repeating: 0, count: n + 1)
        for i in 1...n {
            p[0] = i
            var j0 = 0
            var minv = [Double](repeating: .infinity, count: n + 1)
            var used = [Bool](repeating: false, count: n + 1)
            repeat {
                used[j0] = true
                let i0 = p[j0]
                var delta = Double.infinity, j1 = 0
                for j in 1...n where !used[j] {
                    let cur = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j] { minv[j] = cur; way[j] = j0 }
                    if minv[j] < delta { delta = minv[j]; j1 = j }
                }
                for j in 0...n {
                    if used[j] { u[p[j]] += delta; v[j] -= delta } else { minv[j] -= delta }
                }
                j0 = j1
            } while p[j0] != 0
            repeat {
                let j1 = way[j0]
                p[j0] = p[j1]
                j0 = j1
            } while j0 != 0
        }
        var assignment = [Int](repeating: -1, count: n)
        for j in 1...n where p[j] > 0 { assignment[p[j] - 1] = j - 1 }
        return assignment
    }
}

/// Scores of predicted classes against true classes (codes in the same space; −1 ignored).
public enum ClassificationMetrics {
    public struct Scores: Sendable, Codable, Equatable {
        public var accuracy: Double
        /// Mean per-class recall over the true classes present.
        public var balancedAccuracy: Double
        /// Per-class F1 weighted by the true class sizes (scikit-learn's average='weighted').
        public var weightedF1: Double
    }

    public static func scores(truth: [Int], predicted: [Int]) -> Scores {
        precondition(truth.count == predicted.count)
        let classes = max(truth.max() ?? 0, predicted.max() ?? 0) + 1
        return scores(confusion: confusion(truth: truth, predicted: predicted, classes: classes), classes: classes)
    }

    /// The classes × classes counts (row: true class, column: predicted; pairs with a code < 0 left
    /// out). Sums of these over ranks give the scores of all cells without gathering them.
    public static func confusion(truth: [Int], predicted: [Int], classes: Int) -> [Int64] {
        precondition(truth.count == predicted.count)
        var m = [Int64](repeating: 0, count: classes * classes)
        for (t, p) in zip(truth, predicted) where t >= 0 && p >= 0 {
            precondition(t < classes && p < classes, "class code outside 0..<\(classes)")
            m[t * classes + p] += 1
        }
        return m
    }

    /// The scores of a confusion matrix (`confusion`'s layout).
    public static func scores(confusion m: [Int64], classes k: Int) -> Scores {
        precondition(m.count == k * k)
        var n = 0.0, correct = 0.0, recalls: [Double] = [], f1 = 0.0
        for c in 0..<k {
            let support = Double((0..<k).reduce(Int64(0)) { $0 + m[c * k + $1] })
            let predicted = Double((0..<k).reduce(Int64(0)) { $0 + m[$1 * k + c] })
            let tp = Double(m[c * k + c])
            n += support; correct += tp
            guard support > 0 else { continue }
            let rec = tp / support, prec = predicted > 0 ? tp / predicted : 0
            recalls.append(rec)
            f1 += support * (prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0)
        }
        n = max(n, 1)
        return Scores(accuracy: correct / n, balancedAccuracy: recalls.isEmpty ? 0 : recalls.reduce(0, +) / Double(recalls.count),
                      weightedF1: f1 / n)
    }
}
