// The UMAP layout (Neighbors/Layout.swift) on N ranks equals the single-rank layout bit for bit:
// the graph and embedding are generated on an uneven split (rank r a share ∝ r + 1, so 1000 cells
// do not divide evenly over 3 ranks), the layout computed distributed, gathered, and compared with
// the layout of the whole graph computed on Communicator.solo (every rank builds the same
// single-rank reference from the same generator). A digest is printed so runs on different rank
// counts can also be compared (launch/tests.d/46-layout).
import Collectives
import Neighbors
import TensorCore

func layoutChecks(comm: Communicator, expect: (Bool, String) -> Void) throws {
    let n = 1000, dim = 12, groups = 5
    let split = unevenLayout(n, ranks: comm.size), bounds = split.offsets + [n]
    let range = split.range(of: comm.rank)
    func layoutOf(_ range: Range<Int>, _ c: Communicator) throws -> (y: [Float], knn: GraphShard, layout: RowLayout) {
        let (x, _) = SyntheticEmbeddings.rows(range, dim: dim, clusters: groups, spread: 2, seed: 21)
        let knn = try ExactKNN.build(x, k: 14, comm: c)
        let layout = try RowLayout(comm: c, localCount: range.count)
        let graph = try Connectivities.umap(knn, layout: layout, comm: c)
        let y = try UMAPLayout(seed: 4, epochs: 120).run(graph, embedding: x, layout: layout, comm: c)
        return (y, GraphShard(knn: knn), layout)
    }
    let mine = try layoutOf(range, comm)
    let gathered = try comm.allgatherv(mine.y).values
    let reference = try layoutOf(0..<n, Communicator.solo)
    expect(gathered.count == 2 * n && gathered.allSatisfy(\.isFinite), "layout: \(gathered.count) finite values for \(n) cells × 2")
    let differing = zip(gathered, reference.y).filter { $0 != $1 }.count
    expect(differing == 0, "layout on \(comm.size) ranks differs from one rank in \(differing) of \(2 * n) coordinates")
    let score = try NeighbourhoodPreservation.score(neighbours: mine.knn, coordinates: mine.y, layout: mine.layout, comm: comm)
    let soloScore = try NeighbourhoodPreservation.score(neighbours: reference.knn, coordinates: reference.y, layout: reference.layout,
                                                        comm: Communicator.solo)
    // The coordinates are equal bit for bit; the score's mean of per-cell fractions is summed per
    // rank and then across ranks, so it may differ by the rounding of n additions (n·ε relative).
    expect(abs(score - soloScore) <= Double(n) * Double.ulpOfOne * max(1, abs(soloScore)), "preservation on \(comm.size) ranks \(score) vs one rank \(soloScore)")
    var h: UInt64 = 0xcbf29ce484222325
    for v in gathered { h = (h ^ UInt64(v.bitPattern)) &* 0x100000001b3 }
    if comm.rank == 0 {
        print("layout: \(n) cells on \(comm.size) rank(s) (split \(bounds)), preservation \(score), coordinates digest \(String(h, radix: 16))")
    }
}
