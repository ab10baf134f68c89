// Leiden through the gather-to-rank-0 path: the labels equal a local igraph run on the same graph
// (collected here independently by allgatherv of every row), and their digest is printed so that
// runs on different rank counts can be compared (launch/tests.d/45-leiden).
import Clustering
import Collectives
import Neighbors
import TensorCore

func leidenChecks(comm: Communicator, expect: (Bool, String) -> Void) throws {
    let n = 3000, dim = 10, groups = 8
    // An uneven split: rank r gets a share proportional to r + 1.
    let split = unevenLayout(n, ranks: comm.size), bounds = split.offsets + [n]
    let range = bounds[comm.rank]..<bounds[comm.rank + 1]
    // Overlapping blobs (spread 2.5 around centres of scale 4), so the partition is not trivial.
    let (x, _) = SyntheticEmbeddings.rows(range, dim: dim, clusters: groups, spread: 2.5, seed: 11)
    let knn = try ExactKNN.build(x, k: 14, comm: comm)
    let layout = try RowLayout(comm: comm, localCount: range.count)
    let graph = try Connectivities.umap(knn, layout: layout, comm: comm)

    // The whole graph on every rank, in global row order, for the local reference.
    let lens = (0..<graph.rows).map { graph.rowPtr[$0 + 1] - graph.rowPtr[$0] }
    let allLens = try comm.allgatherv(lens).values
    let allCols = try comm.allgatherv(graph.cols).values
    let allVals = try comm.allgatherv(graph.values).values
    var edges: [Int64] = [], w: [Double] = []
    var e = 0
    for i in 0..<n {
        for _ in 0..<Int(allLens[i]) {
            if allCols[e] >= Int64(i) && allVals[e] != 0 { edges += [Int64(i), allCols[e]]; w.append(Double(allVals[e])) }
            e += 1
        }
    }
    for target in [Leiden.Target.resolution(1), .clusters(groups + 4, start: 1)] {
        let d = try Leiden.run(graph, layout: layout, target: target, seed: 5, comm: comm)
        let labels = try comm.allgatherv(d.labels).values
        let reference: LeidenPartition
        switch target {
        case .resolution(let r):
            reference = try Leiden.partition(vertices: n, edges: edges, weights: w, resolution: r, seed: 5)
        case .clusters(let k, let start):
            reference = try Leiden.search(vertices: n, edges: edges, weights: w, target: k, start: start, seed: 5).partition
        }
        expect(labels == reference.labels, "\(target): distributed labels differ from igraph on the gathered graph")
        expect(d.clusters == reference.clusters && d.modularity == reference.modularity && d.resolution == reference.resolution,
               "\(target): \(d.clusters) communities, Q \(d.modularity) at \(d.resolution) vs \(reference.clusters), \(reference.modularity) at \(reference.resolution)")
        if case .clusters(let k, _) = target { expect(d.exact && d.clusters == k, "\(target): \(d.clusters) communities, exact \(d.exact)") }
        // FNV-1a over the labels: equal digests on 1 and 3 ranks mean equal labels.
        var h: UInt64 = 0xcbf29ce484222325
        for l in labels { h = (h ^ UInt64(UInt32(bitPattern: l))) &* 0x100000001b3 }
        if comm.rank == 0 {
            print("leiden \(target): \(d.clusters) communities, resolution \(d.resolution), modularity \(d.modularity), labels digest \(String(h, radix: 16))")
        }
    }
}

/// clusters auto (StableResolution): the distributed choice equals the local rule on the gathered
/// graph, and the choice on a seeded sample of the cells is printed (as a "leiden " line compared
/// between rank counts by launch/tests.d/45-leiden) with every candidate's stability.
func stableResolutionChecks(comm: Communicator, expect: (Bool, String) -> Void) throws {
    let n = 3000, dim = 10, groups = 8
    let split = unevenLayout(n, ranks: comm.size), bounds = split.offsets + [n]
    let range = bounds[comm.rank]..<bounds[comm.rank + 1]
    let (x, _) = SyntheticEmbeddings.rows(range, dim: dim, clusters: groups, spread: 2.2, seed: 12)
    let points = PointShard(values: x.scalars, count: x.rows, dim: x.cols)
    // Whole set, then a sample of about 1,200 cells (the sample branch).
    for limit in [StableResolution.sampleLimit, 1200] {
        let c = try StableResolution.choose(points: points, maxClusters: 20, seed: 4, sampleLimit: limit, comm: comm)
        expect(c.candidates.count == StableResolution.grid.count, "stable resolution: \(c.candidates.count) candidates")
        expect(limit >= n ? c.cells == n : (c.cells > 900 && c.cells < 1500), "stable resolution (limit \(limit)): \(c.cells) cells")
        // The rule applied again to the broadcast candidates gives the broadcast choice.
        let again = StableResolution.pick(c.candidates, maxClusters: 20, tolerance: StableResolution.tolerance)
        expect(again.resolution == c.resolution && min(max(again.clusters, 2), 20) == c.clusters, "stable resolution: rule vs result")
        // The same choice from one process holding every cell (the whole set only).
        if limit >= n {
            let all = try comm.allgatherv(x.scalars).values
            let solo = try StableResolution.choose(points: PointShard(values: all, count: n, dim: dim), maxClusters: 20, seed: 4,
                                                   sampleLimit: limit, comm: Communicator.solo)
            expect(solo.resolution == c.resolution && solo.clusters == c.clusters
                   && zip(solo.candidates, c.candidates).allSatisfy { $0.stability == $1.stability && $0.clusters == $1.clusters },
                   "stable resolution: \(comm.size) ranks vs one process: K \(c.clusters) vs \(solo.clusters)")
        }
        // Well-separated blobs (spread 1 around centres of scale 4): the most stable partition is the planted one.
        if limit >= n { expect(c.clusters == groups, "stable resolution: K = \(c.clusters) for \(groups) planted groups") }
        if comm.rank == 0 {
            let list = c.candidates.map { "\($0.resolution):\($0.clusters):\(String(format: "%.6f", $0.stability))" }.joined(separator: " ")
            print("leiden stable resolution (limit \(limit)): K \(c.clusters) at \(c.resolution) on \(c.cells) cells; \(list)")
        }
    }
}
