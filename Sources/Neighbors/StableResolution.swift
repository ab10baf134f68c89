// `--clusters auto`: the number of clusters without labels, one rule for every model (issue 16).
//
// Leiden (modularity, igraph, as scanpy's sc.tl.leiden) on the kNN graph of an embedding is run
// at each resolution of a grid with several seeds; a resolution's stability is the mean ARI
// between the partitions of every pair of seeds. The chosen resolution is the largest one whose
// stability is within `tolerance` of the best (the finest partition that Leiden finds as
// reproducibly as the most reproducible one); its seed-0 partition gives K. The grid stops at
// resolution 1 (scanpy's default), and resolutions giving more than `maxClusters` communities are
// left out. Chosen by measurement over all five shared datasets, seeds 0/1/2 (the note of issue 16
// has the table of the alternatives: the silhouette on k-means, Calinski–Harabasz, the eigengap,
// stability on 80 % subsamples, the most stable resolution with ties to the coarser, fixed
// resolutions).
//
// Cost: grid × seeds Leiden runs on rank 0. Above `sampleLimit` cells the choice is made on the
// kNN graph of a seeded sample of the cells (a hash of the seed and the global cell id, so the
// same cells on any rank count), which bounds the cost by that of a `sampleLimit`-cell graph.
import Clustering
import Collectives
import TensorCore

public struct ResolutionChoice: Sendable {
    public struct Candidate: Sendable {
        public let resolution: Double
        /// Communities of the seed-0 partition.
        public let clusters: Int
        /// Mean ARI between the partitions of every pair of seeds.
        public let stability: Double
    }
    public let resolution: Double
    public let clusters: Int
    public let candidates: [Candidate]
    /// Cells of the graph the choice was made on (all, or the sample).
    public let cells: Int
    public let seconds: Double
}

public enum StableResolution {
    public static let grid = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
    public static let seeds = 5
    public static let tolerance = 0.01
    public static let neighbours = 14
    public static let sampleLimit = 50_000

    /// Local. The choice on a whole graph (`edges`: 2 vertex ids per edge, each edge once).
    public static func choose(vertices n: Int, edges: [Int64], weights: [Double], maxClusters: Int, seed: UInt64,
                              grid: [Double] = grid, seeds: Int = seeds, tolerance: Double = tolerance) throws -> ResolutionChoice {
        let t0 = Communicator.time()
        var cands: [ResolutionChoice.Candidate] = []
        for r in grid {
            let parts = try (0..<max(seeds, 1)).map {
                try Leiden.partition(vertices: n, edges: edges, weights: weights, resolution: r, seed: seed &+ UInt64($0))
            }
            var sum = 0.0, pairs = 0
            for i in 0..<parts.count {
                for j in (i + 1)..<parts.count {
                    sum += ClusterMetrics.adjustedRandIndex(parts[i].labels.map(Int.init), parts[j].labels.map(Int.init)); pairs += 1
                }
            }
            cands.append(.init(resolution: r, clusters: parts[0].clusters, stability: pairs > 0 ? sum / Double(pairs) : 1))
        }
        let chosen = pick(cands, maxClusters: maxClusters, tolerance: tolerance)
        return ResolutionChoice(resolution: chosen.resolution, clusters: min(max(chosen.clusters, 2), maxClusters), candidates: cands,
                                cells: n, seconds: Communicator.time() - t0)
    }

    /// The rule: among the candidates with 2…maxClusters communities (all of them if none has), the
    /// largest resolution whose stability is within `tolerance` of the best.
    public static func pick(_ cands: [ResolutionChoice.Candidate], maxClusters: Int, tolerance: Double) -> ResolutionChoice.Candidate {
        precondition(!cands.isEmpty)
        let allowed = cands.filter { $0.clusters >= 2 && $0.clusters <= maxClusters }
        let pool = allowed.isEmpty ? cands : allowed
        let best = pool.map(\.stability).max() ?? 0
        return pool.filter { $0.stability >= best - tolerance }.max { $0.resolution < $1.resolution } ?? pool[0]
    }

    /// Collective. The choice on a distributed symmetric graph (rank 0 runs Leiden; all ranks get the result).
    public static func choose(_ graph: GraphShard, layout: RowLayout, maxClusters: Int, seed: UInt64,
                              comm: Communicator) throws -> ResolutionChoice {
        let t0 = Communicator.time()
        let g = try Leiden.gatheredUpperTriangle(graph, layout: layout, comm: comm)
        var numbers: [Double] = []   // ok, resolution, clusters, then (resolution, clusters, stability) per candidate
        var message: [UInt8] = []
        if comm.rank == 0 {
            do {
                let c = try choose(vertices: layout.total, edges: g.ids, weights: g.weights.map(Double.init),
                                   maxClusters: maxClusters, seed: seed)
                numbers = [1, c.resolution, Double(c.clusters)] + c.candidates.flatMap { [$0.resolution, Double($0.clusters), $0.stability] }
            } catch {
                numbers = [0]; message = Array("\(error)".utf8)
            }
        }
        numbers = try comm.broadcast(array: numbers, root: 0)
        if numbers.first != 1 {
            throw LeidenError(String(decoding: try comm.broadcast(array: message, root: 0), as: UTF8.self))
        }
        let cands = stride(from: 3, to: numbers.count, by: 3).map {
            ResolutionChoice.Candidate(resolution: numbers[$0], clusters: Int(numbers[$0 + 1]), stability: numbers[$0 + 2])
        }
        return ResolutionChoice(resolution: numbers[1], clusters: Int(numbers[2]), candidates: cands, cells: layout.total,
                                seconds: Communicator.time() - t0)
    }

    /// Collective. The choice on the kNN graph (`neighbours` per cell, UMAP connectivities as scanpy's)
    /// of `points` (this rank's rows), or of a seeded sample of at most about `sampleLimit` of them.
    public static func choose(points: PointShard, maxClusters: Int, seed: UInt64, sampleLimit: Int = sampleLimit,
                              comm: Communicator) throws -> ResolutionChoice {
        let t0 = Communicator.time()
        let full = try RowLayout(comm: comm, localCount: points.count)
        var values = points.values, count = points.count
        if full.total > sampleLimit {
            // Cell g is kept when a hash of (seed, g) falls below sampleLimit / total.
            let bound = UInt64(Double(UInt64.max) * (Double(sampleLimit) / Double(full.total)))
            let first = full.offsets[comm.rank]
            var kept: [Float] = []
            kept.reserveCapacity(min(points.count, 2 * sampleLimit / max(comm.size, 1) + 16) * points.dim)
            count = 0
            for i in 0..<points.count where SplitMix64.mix(seed ^ 0x5EED_1E1D ^ UInt64(first + i) &* 0x9E37_79B9_7F4A_7C15) < bound {
                kept.append(contentsOf: points.values[(i * points.dim)..<((i + 1) * points.dim)]); count += 1
            }
            values = kept
        }
        let layout = try RowLayout(comm: comm, localCount: count)
        guard layout.total > neighbours else {
            throw CollectiveUsageError("clusters auto: \(layout.total) cells are too few for a \(neighbours)-neighbour graph; give --clusters K")
        }
        let x = Tensor(rows: count, cols: points.dim, values: values)
        let knn = layout.total <= 100_000 ? try ExactKNN.build(x, k: neighbours, comm: comm)
                                          : try ApproximateKNN(seed: seed).build(x, k: neighbours, comm: comm)
        let graph = try Connectivities.umap(knn, layout: layout, comm: comm)
        let c = try choose(graph, layout: layout, maxClusters: maxClusters, seed: seed, comm: comm)
        return ResolutionChoice(resolution: c.resolution, clusters: c.clusters, candidates: c.candidates, cells: c.cells,
                                seconds: Communicator.time() - t0)
    }

    /// K for a model's cluster head: `given` when the run states it, else the choice on `points`
    /// (returned with its evidence). Collective when K is not given.
    public static func resolve(given: Int?, points: PointShard, maxClusters: Int, seed: UInt64,
                               comm: Communicator) throws -> (k: Int, choice: ResolutionChoice?) {
        if let given, given > 0 { return (given, nil) }
        let c = try choose(points: points, maxClusters: max(2, maxClusters), seed: seed, comm: comm)
        return (c.clusters, c)
    }

    /// The candidates as "resolution→communities (stability)" items.
    public static func evidence(_ c: ResolutionChoice) -> String {
        c.candidates.map { "\($0.resolution)→\($0.clusters) (\(String(format: "%.3f", $0.stability)))" }.joined(separator: ", ")
    }

    /// The evidence as one log line.
    public static func describe(_ c: ResolutionChoice) -> String {
        let list = evidence(c)
        return "clusters auto: K = \(c.clusters) at Leiden resolution \(c.resolution), the largest within \(tolerance) of the most stable "
            + "(resolution→communities (mean ARI over \(seeds) seeds)): \(list); \(c.cells) cells, \(String(format: "%.2f", c.seconds)) s"
    }
}
