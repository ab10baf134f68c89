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
            XCTAssertEqual(row.ours.count, 5)
            XCTAssertEqual(row.raw.count, 5)
            XCTAssertTrue(row.ours.allSatisfy { $0 > 0 }, "\(row.ours)")
            XCTAssertTrue(row.raw.allSatisfy { $0 > 0 }, "\(row.raw)")
            XCTAssertEqual(row.ratios.count, 5)
            for (r, (o, w)) in zip(row.ratios, zip(row.ours, row.raw)) { XCTAssertEqual(r, o / w) }
        }
        XCTAssertEqual(AllreduceBenchmark.defaultSizes.first, 4096)
        XCTAssertEqual(AllreduceBenchmark.defaultSizes.last, 64 << 20)
    }
}
