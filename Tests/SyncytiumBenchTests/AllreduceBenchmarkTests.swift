import Collectives
import XCTest
@testable import SyncytiumBench

final class AllreduceBenchmarkTests: XCTestCase {
    let comm = Communicator.world

    func testAllreduceBenchmarkProducesConsistentRows() throws {
        let rows = try AllreduceBenchmark(comm: comm).run(sizes: [4096, 65536], repsOverride: 5)
        XCTAssertEqual(rows.map(\.bytes), [4096, 65536])
        for row in rows {
            XCTAssertEqual(row.reps, 5)
            XCTAssertGreaterThan(row.oursMedian, 0)
            XCTAssertGreaterThan(row.rawMedian, 0)
            XCTAssertGreaterThan(row.ratioMedian, 0)
        }
        XCTAssertEqual(AllreduceBenchmark.defaultSizes.first, 4096)
        XCTAssertEqual(AllreduceBenchmark.defaultSizes.last, 64 << 20)
    }

    func testMedian() {
        XCTAssertEqual(median([3, 1, 2]), 2)
        XCTAssertEqual(median([4, 1, 3, 2]), 2.5)
    }
}
