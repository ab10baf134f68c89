import Collectives
import TensorCore
import XCTest
@testable import Neighbors

/// clusters auto: the resolution-stability rule (StableResolution) on graphs whose communities are known.
final class StableResolutionTests: XCTestCase {
    func candidate(_ r: Double, _ k: Int, _ s: Double) -> ResolutionChoice.Candidate { .init(resolution: r, clusters: k, stability: s) }

    func testRuleTakesTheLargestResolutionWithinTheToleranceOfTheMostStable() {
        let c = [candidate(0.1, 3, 0.999), candidate(0.2, 5, 0.950), candidate(0.4, 8, 0.991), candidate(0.6, 9, 0.985),
                 candidate(1.0, 14, 0.990)]
        // 0.999 best; within 0.01: 0.1, 0.4, 1.0 → the largest, 1.0.
        XCTAssertEqual(StableResolution.pick(c, maxClusters: 20, tolerance: 0.01).resolution, 1.0)
        // K above max_clusters is left out: 1.0 (14) goes, 0.4 is the largest left.
        XCTAssertEqual(StableResolution.pick(c, maxClusters: 10, tolerance: 0.01).resolution, 0.4)
        // No tolerance: the most stable.
        XCTAssertEqual(StableResolution.pick(c, maxClusters: 20, tolerance: 0).resolution, 0.1)
        // Every candidate outside 2…max: the rule still answers from all of them.
        XCTAssertEqual(StableResolution.pick([candidate(0.1, 1, 1), candidate(0.2, 40, 0.5)], maxClusters: 20, tolerance: 0.01).resolution, 0.1)
    }

    /// Six planted communities, dense inside, sparse across: the most stable fine partition is the planted one.
    func testPlantedCommunitiesAreFound() throws {
        let groups = 6, size = 40
        var rng = RandomStream(seed: 3, purpose: .custom("stable-resolution-test"))
        var edges: [Int64] = [], weights: [Double] = []
        let n = groups * size
        for i in 0..<n {
            for j in (i + 1)..<n where rng.uniformDouble() < (i / size == j / size ? 0.3 : 0.004) {
                edges += [Int64(i), Int64(j)]; weights.append(0.5 + 0.5 * rng.uniformDouble())
            }
        }
        let c = try StableResolution.choose(vertices: n, edges: edges, weights: weights, maxClusters: 20, seed: 0)
        XCTAssertEqual(c.clusters, groups, StableResolution.describe(c))
        XCTAssertEqual(c.candidates.map(\.resolution), StableResolution.grid)
        // The chosen candidate is Leiden's partition at that resolution with seed 0 (what `cluster` then uses).
        let p = try Leiden.partition(vertices: n, edges: edges, weights: weights, resolution: c.resolution, seed: 0)
        XCTAssertEqual(p.clusters, c.clusters)
        XCTAssertTrue(c.candidates.allSatisfy { $0.stability >= -1 && $0.stability <= 1 })
        // Deterministic for a seed.
        let again = try StableResolution.choose(vertices: n, edges: edges, weights: weights, maxClusters: 20, seed: 0)
        XCTAssertEqual(again.candidates.map(\.stability), c.candidates.map(\.stability))
    }
}
