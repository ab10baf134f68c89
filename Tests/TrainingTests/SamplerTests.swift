import Collectives
import XCTest
@testable import Training

final class SamplerTests: XCTestCase {
    func testIndexPermutationIsABijection() {
        for n in [1, 2, 3, 17, 1000, 4097] {
            let p = IndexPermutation(n: n, seed: 42)
            let image = (0..<n).map { p($0) }
            XCTAssertEqual(Set(image).count, n, "n = \(n)")
            XCTAssertTrue(image.allSatisfy { $0 >= 0 && $0 < n })
        }
        let a = (0..<100).map(IndexPermutation(n: 100, seed: 1).callAsFunction)
        let b = (0..<100).map(IndexPermutation(n: 100, seed: 2).callAsFunction)
        XCTAssertNotEqual(a, b)
        XCTAssertNotEqual(a, Array(0..<100))
    }

    /// The union over ranks of each step's local rows is exactly that step's global batch, for any
    /// sharding; every cell appears once per epoch; every rank sees the same number of steps.
    func testGlobalBatchesAreIndependentOfSharding() {
        let n = 103, batch = 16
        let oneRank = GlobalBatchSampler(layout: RowLayout(counts: [n]), rank: 0, globalBatch: batch, seed: 9)
        XCTAssertEqual(oneRank.stepsPerEpoch, 7)
        XCTAssertEqual(oneRank.batchSize(step: 6), 103 - 96)
        for counts in [[50, 53], [40, 0, 63], [1, 2, 3, 97]] {
            let layout = RowLayout(counts: counts)
            let samplers = counts.indices.map { GlobalBatchSampler(layout: layout, rank: $0, globalBatch: batch, seed: 9) }
            XCTAssertTrue(samplers.allSatisfy { $0.stepsPerEpoch == oneRank.stepsPerEpoch })
            for epoch in 0..<2 {
                var seen: [Int] = []
                for step in 0..<oneRank.stepsPerEpoch {
                    let single = Set(oneRank.localRows(epoch: epoch, step: step))
                    var union = Set<Int>()
                    for (r, s) in samplers.enumerated() { for l in s.localRows(epoch: epoch, step: step) { union.insert(layout.offsets[r] + l) } }
                    XCTAssertEqual(union, single, "counts \(counts) epoch \(epoch) step \(step)")
                    seen += single
                }
                XCTAssertEqual(seen.sorted(), Array(0..<n))
            }
        }
        XCTAssertNotEqual(oneRank.localRows(epoch: 0, step: 0), oneRank.localRows(epoch: 1, step: 0))
    }

    func testRowLayoutOwnership() {
        let l = RowLayout(counts: [3, 0, 2, 0])
        XCTAssertEqual(l.offsets, [0, 3, 3, 5])
        XCTAssertEqual(l.total, 5)
        XCTAssertEqual((0..<5).map { l.owner(ofGlobal: $0).rank }, [0, 0, 0, 2, 2])
        XCTAssertEqual(l.owner(ofGlobal: 4).local, 1)
        XCTAssertEqual(RowLayout.even(total: 10, size: 3).counts, [4, 3, 3])
    }
}
