import CellData
import Clustering
import Collectives
import TensorCore
import XCTest
@testable import Models

final class CELLULARTests: XCTestCase {
    func statistics(types: Int, batches: Int, rng: inout RandomStream) -> CELLULARStatistics {
        let cw = (0..<types).map { _ in Double(rng.uniform(0.1, 1)) }, bw = (0..<batches).map { _ in Double(rng.uniform(0.1, 1)) }
        var d = [Double](repeating: 0, count: types * types)
        for p in 0..<types { for q in (p + 1)..<types where !(p == 0 && q == 2) { let v = Double(rng.uniform(0.1, 1)); d[p * types + q] = v; d[q * types + p] = v } }
        return CELLULARStatistics(classWeights: cw.map { $0 / cw.reduce(0, +) }, batchWeights: bw.map { $0 / bw.reduce(0, +) }, pcaDistances: d)
    }

    /// Every term's gradient (embeddings and temperature) against central differences of the loss.
    /// Budget: the Gram matrix is float32 (cosines off by ~1e-7), so with h = 1e-3 the difference
    /// quotient carries ~1e-7 / 1e-3 = 1e-4 of rounding; tolerance 3e-3 relative + 3e-5 absolute.
    func testGradientsMatchFiniteDifferences() {
        var rng = RandomStream(seed: 3, purpose: .custom("cellular-loss"))
        let b = 14, d = 5, types = 4
        let labels: [Int32] = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, -1, 0, 1]
        let batches: [Int32] = [0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 0]
        let st = statistics(types: types, batches: 2, rng: &rng)
        let w = CELLULARLossWeights(target: 0.9, batch: 0.1, centroid: 1)
        var e = (0..<(b * d)).map { _ in rng.uniform(-1, 1) }
        func loss(_ x: [Float], _ tau: Double) -> Double {
            CELLULARLoss.evaluate(x, rows: b, dim: d, labels: labels, batches: batches, temperature: tau, batchTemperature: 0.5,
                                  statistics: st, weights: w).loss
        }
        let tau = 0.3
        let r = CELLULARLoss.evaluate(e, rows: b, dim: d, labels: labels, batches: batches, temperature: tau, batchTemperature: 0.5,
                                      statistics: st, weights: w)
        XCTAssertGreaterThan(r.target, 0); XCTAssertGreaterThan(r.batch, 0); XCTAssertGreaterThan(r.centroid, 0)
        let h: Float = 1e-3
        var worst = 0.0
        for k in 0..<(b * d) {
            let x0 = e[k]
            e[k] = x0 + h; let up = loss(e, tau)
            e[k] = x0 - h; let dn = loss(e, tau)
            e[k] = x0
            let num = (up - dn) / Double(2 * h)
            worst = max(worst, abs(num - r.gradient[k]) / (3e-5 + 3e-3 * max(abs(num), abs(r.gradient[k]))))
        }
        XCTAssertLessThanOrEqual(worst, 1, "embedding gradient (worst ratio to the tolerance)")
        let numTau = (loss(e, tau + 1e-4) - loss(e, tau - 1e-4)) / 2e-4
        XCTAssertEqual(r.gradTemperature, numTau, accuracy: 3e-5 + 3e-3 * abs(numTau))
        // An unlabelled cell takes part in nothing.
        XCTAssertTrue((11 * d..<12 * d).allSatisfy { r.gradient[$0] == 0 })
    }

    func testBatchesWithoutPositivesHaveNoTerm() {
        var rng = RandomStream(seed: 4)
        let st = statistics(types: 3, batches: 2, rng: &rng)
        let e = (0..<(3 * 4)).map { _ in rng.uniform(-1, 1) }
        // One cell per type: no anchor has a positive; the two-type centroid pairs still count.
        let r = CELLULARLoss.evaluate(e, rows: 3, dim: 4, labels: [0, 1, 2], batches: [0, 1, 0], temperature: 0.25, batchTemperature: 0.5,
                                      statistics: st, weights: CELLULARLossWeights(target: 0.9, batch: 0.1, centroid: 1))
        XCTAssertEqual(r.target, 0); XCTAssertEqual(r.batch, 0)
        XCTAssertTrue(r.loss.isFinite)
    }

    func testStratifiedSplitIsExactPerType() throws {
        let comm = Communicator.solo
        let n = 503
        let labels = (0..<n).map { Int32($0 % 7 == 0 ? 0 : ($0 % 3 == 0 ? 1 : 2)) } + [3]   // type 3: one cell
        let ids = (0..<(n + 1)).map(Int64.init)
        let val = try StratifiedSplit.validationMask(ids: ids, labels: labels, types: 4, fraction: 0.2, seed: 42, comm: comm)
        for t in 0..<4 {
            let members = labels.indices.filter { labels[$0] == Int32(t) }
            let want = members.count < 2 ? 0 : min(members.count - 1, Int((0.2 * Double(members.count)).rounded()))
            XCTAssertEqual(members.filter { val[$0] }.count, want, "type \(t)")
        }
        let other = try StratifiedSplit.validationMask(ids: ids, labels: labels, types: 4, fraction: 0.2, seed: 43, comm: comm)
        XCTAssertNotEqual(val, other, "the seed picks the cells")
        let c = try StratifiedSplit.compactIds(ids: ids, keep: val, comm: comm)
        XCTAssertEqual(c.ids, (0..<c.total).map(Int64.init))
    }

    func testDistributedQuantileEqualsSorting() throws {
        var rng = RandomStream(seed: 8)
        let v = (0..<1000).map { _ in rng.uniform(-5, 9) }
        let g = (0..<1000).map { Int32($0 % 3 == 0 ? -1 : $0 % 2) }
        let q = try DistributedQuantile.perGroup(v, groups: g, groupCount: 3, quantile: 0.9, comm: Communicator.solo)
        for k in 0..<2 {
            let s = zip(v, g).filter { $0.1 == Int32(k) }.map(\.0).sorted()
            let exact = s[Int((0.9 * Double(s.count)).rounded(.up)) - 1]
            XCTAssertEqual(q[k], exact, accuracy: 1e-9 * 14 + exact.ulp)
        }
        XCTAssertTrue(q[2].isNaN, "an empty group")
    }

    func testGeneMappingByName() throws {
        let x = try CSRMatrix(rows: 2, cols: 4, rowPtr: [0, 3, 4], colIdx: [0, 1, 3, 2], values: [1, 2, 3, 4])
        let m = try GeneMapping.map(x, names: ["a", "b", "c", "d"], onto: ["d", "zz", "b"], file: "q.h5ad")
        XCTAssertEqual(m.missing, 1)
        XCTAssertEqual(m.matrix.cols, 3)
        XCTAssertEqual(Array(m.matrix.rowPtr), [0, 2, 2]); XCTAssertEqual(Array(m.matrix.colIdx), [0, 2]); XCTAssertEqual(Array(m.matrix.values), [3, 2])
        XCTAssertThrowsError(try GeneMapping.map(x, names: ["a", "b", "c", "d"], onto: ["x", "y"], file: "q.h5ad")) { e in
            XCTAssertTrue("\(e)".contains("none of the model's 2 genes"), "\(e)")
        }
    }

    func testClassificationMetrics() {
        // truth 0 0 0 1 1 2, predicted 0 0 1 1 1 0: accuracy 4/6; recalls 2/3, 1, 0 → balanced 5/9;
        // F1: class 0 p=2/3 r=2/3 → 2/3; class 1 p=2/3 r=1 → 0.8; class 2 → 0; weighted (3·2/3 + 2·0.8)/6.
        let s = ClassificationMetrics.scores(truth: [0, 0, 0, 1, 1, 2], predicted: [0, 0, 1, 1, 1, 0])
        XCTAssertEqual(s.accuracy, 4.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(s.balancedAccuracy, 5.0 / 9, accuracy: 1e-12)
        XCTAssertEqual(s.weightedF1, (3 * 2.0 / 3 + 2 * 0.8) / 6, accuracy: 1e-12)
        // Two "ranks'" confusion matrices summed give the same scores (annotate reduces them instead of
        // gathering every cell); an unlabelled cell (−1) counts nowhere.
        let a = ClassificationMetrics.confusion(truth: [0, 0, -1, 0], predicted: [0, 0, 2, 1], classes: 4)
        let b = ClassificationMetrics.confusion(truth: [1, 1, 2], predicted: [1, 1, 0], classes: 4)
        XCTAssertEqual(ClassificationMetrics.scores(confusion: zip(a, b).map { $0 + $1 }, classes: 4), s)
    }
}
