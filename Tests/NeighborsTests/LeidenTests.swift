import Collectives
import TensorCore
import XCTest
@testable import Neighbors

/// Leiden through the igraph shim on graphs whose communities are known.
final class LeidenTests: XCTestCase {
    let comm = Communicator.world

    /// A planted partition: `groups` blocks of `size` vertices, each pair inside a block an edge with
    /// probability pIn, across blocks pOut; weights uniform in [0.5, 1). Edges i < j in (i, j) order.
    func planted(groups: Int, size: Int, pIn: Double, pOut: Double, seed: UInt64)
        -> (n: Int, edges: [Int64], weights: [Double], truth: [Int]) {
        var rng = RandomStream(seed: seed, purpose: .custom("leiden-test"))
        let n = groups * size
        var edges: [Int64] = [], weights: [Double] = []
        for i in 0..<n {
            for j in (i + 1)..<n {
                let p = i / size == j / size ? pIn : pOut
                if rng.uniformDouble() < p { edges += [Int64(i), Int64(j)]; weights.append(0.5 + 0.5 * rng.uniformDouble()) }
            }
        }
        return (n, edges, weights, (0..<n).map { $0 / size })
    }

    /// Labels equal up to renaming.
    func samePartition(_ a: [Int32], _ b: [Int]) -> Bool {
        var map: [Int32: Int] = [:], back: [Int: Int32] = [:]
        for (x, y) in zip(a, b) {
            if let m = map[x], m != y { return false }
            if let m = back[y], m != x { return false }
            map[x] = y; back[y] = x
        }
        return true
    }

    /// Modularity Q = Σ_c [W_c / W − γ (S_c / 2W)²] computed here from the edge list (W = total weight,
    /// W_c = weight inside c, S_c = strength of c): the shim's igraph_modularity must agree.
    func modularity(_ labels: [Int32], edges: [Int64], weights: [Double], resolution: Double) -> Double {
        var inside: [Int32: Double] = [:], strength: [Int32: Double] = [:]
        var total = 0.0
        for (e, w) in weights.enumerated() {
            let a = labels[Int(edges[2 * e])], b = labels[Int(edges[2 * e + 1])]
            total += w
            if a == b { inside[a, default: 0] += w }
            strength[a, default: 0] += w; strength[b, default: 0] += w
        }
        return strength.keys.reduce(0.0) { q, c in
            let s = strength[c]! / (2 * total)
            return q + (inside[c] ?? 0) / total - resolution * s * s
        }
    }

    func testPlantedPartitionIsRecovered() throws {
        let g = planted(groups: 5, size: 40, pIn: 0.3, pOut: 0.01, seed: 1)
        let p = try Leiden.partition(vertices: g.n, edges: g.edges, weights: g.weights, resolution: 1, seed: 0)
        XCTAssertEqual(p.clusters, 5)
        XCTAssertEqual(Set(p.labels).count, 5)
        XCTAssertTrue(samePartition(p.labels, g.truth), "planted blocks not recovered")
        // Blocks of equal size, numbered by decreasing size then first member: vertex 0 is in community 0.
        XCTAssertEqual(p.labels[0], 0)
        let q = modularity(p.labels, edges: g.edges, weights: g.weights, resolution: 1)
        XCTAssertEqual(p.modularity, q, accuracy: 1e-9)
        // The planted partition's own modularity is the optimum here.
        let truth = modularity(g.truth.map(Int32.init), edges: g.edges, weights: g.weights, resolution: 1)
        XCTAssertEqual(p.modularity, truth, accuracy: 1e-9)
    }

    func testSeededRunsRepeatAndResolutionOrdersCounts() throws {
        let g = planted(groups: 6, size: 30, pIn: 0.25, pOut: 0.02, seed: 2)
        let a = try Leiden.partition(vertices: g.n, edges: g.edges, weights: g.weights, resolution: 1, seed: 7)
        let b = try Leiden.partition(vertices: g.n, edges: g.edges, weights: g.weights, resolution: 1, seed: 7)
        XCTAssertEqual(a, b)
        let coarse = try Leiden.partition(vertices: g.n, edges: g.edges, weights: g.weights, resolution: 0.05, seed: 7)
        let fine = try Leiden.partition(vertices: g.n, edges: g.edges, weights: g.weights, resolution: 8, seed: 7)
        XCTAssertLessThan(coarse.clusters, a.clusters)
        XCTAssertGreaterThan(fine.clusters, a.clusters)
        XCTAssertThrowsError(try Leiden.partition(vertices: g.n, edges: g.edges, weights: g.weights, resolution: 0, seed: 7))
    }

    func testResolutionSearchHitsTheCount() throws {
        let g = planted(groups: 6, size: 30, pIn: 0.25, pOut: 0.02, seed: 3)
        for target in [2, 6, 12] {
            let s = try Leiden.search(vertices: g.n, edges: g.edges, weights: g.weights, target: target, seed: 0)
            XCTAssertTrue(s.exact, "K = \(target): trials \(s.trials)")
            XCTAssertEqual(s.partition.clusters, target)
            XCTAssertEqual(Set(s.partition.labels).count, target)
            XCTAssertEqual(s.trials.last?.clusters, target)
        }
        // At K = 6 the blocks themselves, up to the few vertices with more edges outside their block
        // than the noise allows (each block's majority label; ≥ 95 % of vertices agree), and a
        // modularity at least the planted partition's at the resolution found.
        let six = try Leiden.search(vertices: g.n, edges: g.edges, weights: g.weights, target: 6, seed: 0)
        var agree = 0
        for b in 0..<6 {
            let block = six.partition.labels[(b * 30)..<(b * 30 + 30)]
            agree += Dictionary(grouping: block, by: { $0 }).values.map(\.count).max() ?? 0
        }
        XCTAssertEqual(Set((0..<6).map { b in Dictionary(grouping: six.partition.labels[(b * 30)..<(b * 30 + 30)], by: { $0 })
            .max { $0.value.count < $1.value.count }!.key }).count, 6, "two blocks share a majority community")
        XCTAssertGreaterThanOrEqual(Double(agree) / Double(g.n), 0.95, "agreement with the planted blocks")
        let planted = modularity(g.truth.map(Int32.init), edges: g.edges, weights: g.weights, resolution: six.partition.resolution)
        XCTAssertGreaterThanOrEqual(six.partition.modularity, planted - 1e-9)
    }

    func testImpossibleCountReportsTheNearest() throws {
        // Two disconnected triangles: never fewer than 2 communities, never more than 6.
        let edges: [Int64] = [0, 1, 1, 2, 0, 2, 3, 4, 4, 5, 3, 5]
        let w = [Double](repeating: 1, count: 6)
        let s = try Leiden.search(vertices: 6, edges: edges, weights: w, target: 1, seed: 0)
        XCTAssertFalse(s.exact)
        XCTAssertEqual(s.partition.clusters, 2)
        XCTAssertLessThanOrEqual(s.trials.count, 40)
    }

    /// The distributed entry point on one rank equals the local call on the same graph.
    func testDistributedOnOneRankEqualsLocal() throws {
        let g = planted(groups: 4, size: 25, pIn: 0.3, pOut: 0.03, seed: 4)
        // Symmetric CSR with both directions, as GraphShard.symmetrized makes it.
        var rowsOf = [[(Int64, Float)]](repeating: [], count: g.n)
        for (e, w) in g.weights.enumerated() {
            let i = Int(g.edges[2 * e]), j = Int(g.edges[2 * e + 1])
            rowsOf[i].append((Int64(j), Float(w))); rowsOf[j].append((Int64(i), Float(w)))
        }
        var rp: [Int64] = [0], cols: [Int64] = [], vals: [Float] = []
        for r in rowsOf { for (c, v) in r.sorted(by: { $0.0 < $1.0 }) { cols.append(c); vals.append(v) }; rp.append(Int64(cols.count)) }
        let shard = GraphShard(rowPtr: rp, cols: cols, values: vals)
        let layout = RowLayout(counts: [g.n])
        let d = try Leiden.run(shard, layout: layout, target: .resolution(1), seed: 3, comm: comm)
        let local = try Leiden.partition(vertices: g.n, edges: g.edges, weights: g.weights.map { Double(Float($0)) }, resolution: 1, seed: 3)
        XCTAssertEqual(d.labels, local.labels)
        XCTAssertEqual(d.clusters, local.clusters)
        XCTAssertEqual(d.modularity, local.modularity, accuracy: 1e-12)
        let k = try Leiden.run(shard, layout: layout, target: .clusters(6, start: 1), seed: 3, comm: comm)
        XCTAssertEqual(k.clusters, 6)
        XCTAssertTrue(k.exact)
    }
}
