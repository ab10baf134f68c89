import Collectives
import TensorCore
import XCTest
@testable import Neighbors

/// The UMAP layout (Neighbors/Layout.swift) on one rank; N ranks vs one is MPIChecks --layout.
final class LayoutTests: XCTestCase {
    let comm = Communicator.world

    /// umap-learn 0.5.12's find_ab_params (scipy curve_fit, Levenberg–Marquardt, ftol = xtol =
    /// 1.49e-8) printed these; both fits stop once a relative step is below ~1e-8, so they agree to
    /// ~1e-8 relative in the parameters; 1e-6 leaves room for the two optimisers' different paths.
    func testABFitMatchesUmapLearn() {
        let cases: [(spread: Double, minDist: Double, a: Double, b: Double)] = [
            (1.0, 0.5, 0.5830300203414425, 1.3341669924314914),   // scanpy's sc.tl.umap default
            (1.0, 0.1, 1.5769434602697652, 0.8950608778515733),   // umap-learn's default
            (2.0, 0.3, 0.3794946886311041, 0.9488152194414622),
        ]
        for c in cases {
            let (a, b) = UMAPLayout.fitAB(spread: c.spread, minDist: c.minDist)
            XCTAssertEqual(a, c.a, accuracy: 1e-6 * c.a, "a for spread \(c.spread), min_dist \(c.minDist)")
            XCTAssertEqual(b, c.b, accuracy: 1e-6 * c.b, "b for spread \(c.spread), min_dist \(c.minDist)")
        }
    }

    func blobs(cells: Int, clusters: Int, seed: UInt64) throws -> (z: Tensor, labels: [Int32], graph: GraphShard, knn: GraphShard, layout: RowLayout) {
        let (z, labels) = SyntheticEmbeddings.rows(0..<cells, dim: 16, clusters: clusters, spread: 1, seed: seed)
        let layout = try RowLayout(comm: comm, localCount: cells)
        let knn = try ExactKNN.build(z, k: 14, comm: comm)
        let conn = try Connectivities.umap(knn, layout: layout, comm: comm)
        return (z, labels, conn, GraphShard(knn: knn), layout)
    }

    /// Fraction of cells whose 10 nearest others in the layout all carry its label.
    func purity(_ y: [Float], labels: [Int32]) -> Double {
        let n = labels.count
        var pure = 0
        for i in 0..<n {
            var d: [(Float, Int)] = []
            for j in 0..<n where j != i {
                let a = y[2 * i] - y[2 * j], b = y[2 * i + 1] - y[2 * j + 1]
                d.append((a * a + b * b, j))
            }
            d.sort { $0.0 < $1.0 }
            if d.prefix(10).allSatisfy({ labels[$0.1] == labels[i] }) { pure += 1 }
        }
        return Double(pure) / Double(n)
    }

    /// From a uniformly random start (no information about the clusters), the optimisation alone
    /// must separate planted clusters: the start's purity is about 1/clusters^10 ≈ 0, the layout's
    /// must be ≥ 0.95 (blobs 4σ·√2 apart in 16-D are separable: their kNN graph has no edge across).
    func testOptimisationSeparatesPlantedClusters() throws {
        let (_, labels, graph, knn, layout) = try blobs(cells: 400, clusters: 4, seed: 3)
        var rng = RandomStream(seed: 9, purpose: .custom("layout-test"))
        let start = (0..<800).map { _ in rng.uniform(0, 10) }
        XCTAssertLessThan(purity(start, labels: labels), 0.05)
        let y = try UMAPLayout(seed: 1, epochs: 200).optimise(graph, initial: start, layout: layout, comm: comm)
        XCTAssertTrue(y.allSatisfy(\.isFinite))
        XCTAssertGreaterThanOrEqual(purity(y, labels: labels), 0.95)
        // And it keeps neighbourhoods far better than the random start does.
        let before = try NeighbourhoodPreservation.score(neighbours: knn, coordinates: start, layout: layout, comm: comm)
        let after = try NeighbourhoodPreservation.score(neighbours: knn, coordinates: y, layout: layout, comm: comm)
        XCTAssertLessThan(before, 0.1)
        XCTAssertGreaterThan(after, before + 0.2)
    }

    /// Same seed, same layout bit for bit; another seed, another layout.
    func testDeterministicForASeed() throws {
        let (z, _, graph, _, layout) = try blobs(cells: 300, clusters: 3, seed: 5)
        let one = try UMAPLayout(seed: 7, epochs: 50).run(graph, embedding: z, layout: layout, comm: comm)
        let two = try UMAPLayout(seed: 7, epochs: 50).run(graph, embedding: z, layout: layout, comm: comm)
        let other = try UMAPLayout(seed: 8, epochs: 50).run(graph, embedding: z, layout: layout, comm: comm)
        XCTAssertEqual(one, two)
        XCTAssertNotEqual(one, other)
    }

    /// The preservation score counts what it says: a layout that is the embedding itself (2-D blobs)
    /// keeps every exact neighbour (score 1); a layout with the cells' coordinates permuted keeps ~k/n.
    func testPreservationScore() throws {
        let n = 200
        let (z, _) = SyntheticEmbeddings.rows(0..<n, dim: 2, clusters: 2, spread: 1, seed: 2)
        let layout = try RowLayout(comm: comm, localCount: n)
        let knn = GraphShard(knn: try ExactKNN.build(z, k: 10, comm: comm))
        XCTAssertEqual(try NeighbourhoodPreservation.score(neighbours: knn, coordinates: z.scalars, layout: layout, comm: comm), 1, accuracy: 1e-12)
        var rng = RandomStream(seed: 4, purpose: .custom("perm"))
        let perm = rng.permutation(n)
        let s = z.scalars
        let shuffled = (0..<n).flatMap { [s[2 * perm[$0]], s[2 * perm[$0] + 1]] }
        XCTAssertLessThan(try NeighbourhoodPreservation.score(neighbours: knn, coordinates: shuffled, layout: layout, comm: comm), 0.25)
    }
}
