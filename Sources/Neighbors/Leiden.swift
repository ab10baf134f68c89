// Leiden community detection (igraph's `igraph_community_leiden`, modularity objective) on the
// symmetric kNN connectivities, as scanpy's `sc.tl.leiden(flavor="igraph")` runs it:
// python-igraph's `community_leiden(objective_function="modularity", weights=connectivities,
// resolution=γ, n_iterations=2, beta=0.01)`.
//
// igraph is a single-process library, so the distributed graph is gathered to rank 0, Leiden runs
// there, and each rank receives its own rows' labels. Vertex ids are the graph's global row ids
// (`layout.offsets[rank] + i`), edges go in global (row, column) order, and igraph's RNG is seeded:
// the labels are a function of the graph and the seed only, the same on any rank count.
import CIgraph
import Collectives

public struct LeidenError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// One Leiden partition of a whole graph (rank 0's view, or a local run).
public struct LeidenPartition: Sendable, Equatable {
    /// Community per vertex, numbered 0… by decreasing size (ties: by the smallest vertex id).
    public var labels: [Int32]
    public var clusters: Int
    /// Newman–Girvan modularity of `labels` at `resolution` (igraph_modularity, weighted).
    public var modularity: Double
    public var resolution: Double
}

/// A resolution search for a given number of communities.
public struct LeidenSearch: Sendable {
    /// The partition with exactly the asked-for count, else the one nearest to it.
    public var partition: LeidenPartition
    /// False when no resolution tried gave exactly the asked-for count.
    public var exact: Bool
    /// Every (resolution, communities) tried, in order.
    public var trials: [(resolution: Double, clusters: Int)]
}

public enum Leiden {
    /// scanpy's flavor="igraph" values.
    public static let defaultIterations = 2
    public static let defaultBeta = 0.01

    /// Local. Leiden on a whole undirected graph: `edges` holds 2 vertex ids per edge (each edge
    /// once), `weights` one weight per edge.
    public static func partition(vertices n: Int, edges: [Int64], weights: [Double], resolution: Double,
                                 seed: UInt64, iterations: Int = defaultIterations, beta: Double = defaultBeta) throws -> LeidenPartition {
        precondition(edges.count == 2 * weights.count)
        guard resolution > 0, resolution.isFinite else { throw LeidenError("Leiden: resolution must be > 0 (got \(resolution))") }
        if n == 0 { return LeidenPartition(labels: [], clusters: 0, modularity: 0, resolution: resolution) }
        var membership = [Int64](repeating: 0, count: n)
        var clusters: Int64 = 0
        var modularity = 0.0
        let rc = edges.withUnsafeBufferPointer { e in
            weights.withUnsafeBufferPointer { w in
                membership.withUnsafeMutableBufferPointer { m in
                    syn_igraph_leiden_modularity(Int64(n), e.baseAddress, Int64(weights.count), w.baseAddress, resolution, beta,
                                                 Int64(iterations), seed, m.baseAddress, &clusters, &modularity)
                }
            }
        }
        if rc != 0 {
            throw LeidenError("Leiden (igraph \(n) vertices, \(weights.count) edges): \(String(cString: syn_igraph_strerror(rc)))")
        }
        return LeidenPartition(labels: renumberedBySize(membership), clusters: Int(clusters), modularity: modularity, resolution: resolution)
    }

    /// Local. The resolution that gives exactly `target` communities: the bracket is widened by
    /// factors of 2 from `start` until it holds `target`, then bisected on log γ (the community
    /// count grows with γ, though not strictly: Leiden can give the same count over a range and,
    /// rarely, one fewer at a larger γ). Stops at the first exact hit; after `maxTrials` Leiden runs
    /// the partition nearest to `target` is returned with `exact == false`.
    public static func search(vertices n: Int, edges: [Int64], weights: [Double], target: Int, start: Double = 1,
                              seed: UInt64, iterations: Int = defaultIterations, beta: Double = defaultBeta,
                              maxTrials: Int = 40) throws -> LeidenSearch {
        precondition(target >= 1)
        var trials: [(resolution: Double, clusters: Int)] = []
        var best: LeidenPartition?
        func run(_ r: Double) throws -> LeidenPartition {
            let p = try partition(vertices: n, edges: edges, weights: weights, resolution: r, seed: seed, iterations: iterations, beta: beta)
            trials.append((r, p.clusters))
            // Nearest count; at equal distance the smaller resolution (fewer trials' noise, coarser).
            if best == nil || abs(p.clusters - target) < abs(best!.clusters - target)
                || (abs(p.clusters - target) == abs(best!.clusters - target) && r < best!.resolution) { best = p }
            return p
        }
        var p = try run(start)
        if p.clusters == target { return LeidenSearch(partition: p, exact: true, trials: trials) }
        // Widen: lo gives < target, hi gives > target.
        var lo: Double, hi: Double
        let limit = 1e6 * max(start, 1), floor = 1e-6 * min(start, 1)
        if p.clusters < target {
            lo = start; hi = start
            repeat {
                hi *= 2; p = try run(hi)
                if p.clusters == target { return LeidenSearch(partition: p, exact: true, trials: trials) }
                if p.clusters < target { lo = hi }
            } while p.clusters < target && hi < limit && trials.count < maxTrials
        } else {
            lo = start; hi = start
            repeat {
                lo /= 2; p = try run(lo)
                if p.clusters == target { return LeidenSearch(partition: p, exact: true, trials: trials) }
                if p.clusters > target { hi = lo }
            } while p.clusters > target && lo > floor && trials.count < maxTrials
        }
        // Bisect on log γ while the bracket is wider than 0.1 % of γ.
        while trials.count < maxTrials && hi / lo > 1.001 {
            let mid = (lo * hi).squareRoot()
            p = try run(mid)
            if p.clusters == target { return LeidenSearch(partition: p, exact: true, trials: trials) }
            if p.clusters < target { lo = mid } else { hi = mid }
        }
        return LeidenSearch(partition: best!, exact: false, trials: trials)
    }

    /// What the distributed run aims at.
    public enum Target: Sendable, Equatable {
        case resolution(Double)
        /// Exactly this many communities (resolution search from `start`).
        case clusters(Int, start: Double)
    }

    /// The result of a distributed run: this rank's labels (its rows, in order) and the whole
    /// partition's numbers.
    public struct Result: Sendable {
        public var labels: [Int32]
        public var clusters: Int
        public var modularity: Double
        public var resolution: Double
        /// Cluster target only: false when no resolution gave exactly the count (labels are the nearest).
        public var exact: Bool
        public var trials: [(resolution: Double, clusters: Int)]
    }

    /// Collective. The upper triangle (j ≥ i, non-zero weights) of a symmetric graph's edges on rank 0
    /// (2 vertex ids and 1 weight per edge, in global (i, j) order whatever the rank count); empty elsewhere.
    static func gatheredUpperTriangle(_ graph: GraphShard, layout: RowLayout, comm: Communicator) throws -> (ids: [Int64], weights: [Float]) {
        let first = Int64(layout.offsets[comm.rank])
        // The upper triangle (j ≥ i) of this rank's rows, in (i, j) order; rank order then gives
        // global (i, j) order on rank 0 whatever the rank count.
        var ids: [Int64] = [], w: [Float] = []
        ids.reserveCapacity(graph.nnz); w.reserveCapacity(graph.nnz / 2 + 1)
        for i in 0..<graph.rows {
            let gi = first + Int64(i)
            for e in Int(graph.rowPtr[i])..<Int(graph.rowPtr[i + 1]) where graph.cols[e] >= gi && graph.values[e] != 0 {
                ids.append(gi); ids.append(graph.cols[e]); w.append(graph.values[e])
            }
        }
        var toRoot = [Int](repeating: 0, count: comm.size)
        toRoot[0] = ids.count
        let allIds = try comm.alltoallv(ids, sendCounts: toRoot).values
        toRoot[0] = w.count
        let allW = try comm.alltoallv(w, sendCounts: toRoot).values
        return (allIds, allW)
    }

    /// Collective. Leiden on the symmetric graph `graph` (this rank's rows; columns are global row
    /// ids; both directions of every edge present, as `GraphShard.symmetrized` makes them).
    ///
    /// Memory: rank 0 receives the upper triangle, one (i, j, w) per undirected edge, O(N·k) — for
    /// 1M cells and k = 15 about 15M edges ≈ 15M × (2 × 8 + 4) B ≈ 300 MB in transit plus igraph's
    /// own copy (~2× that), well within one node. The other ranks send their rows' edges and wait.
    /// igraph has no distributed Leiden, and the graph is the one piece of global state Leiden
    /// needs at every move; gathering it once is cheaper than any message-passing scheme.
    public static func run(_ graph: GraphShard, layout: RowLayout, target: Target, seed: UInt64,
                           iterations: Int = defaultIterations, beta: Double = defaultBeta, comm: Communicator) throws -> Result {
        let gathered = try gatheredUpperTriangle(graph, layout: layout, comm: comm)
        let allIds = gathered.ids
        var allW = gathered.weights
        // Rank 0 runs Leiden; its outcome (or its error) goes to every rank.
        var labels: [Int32] = []
        var summary = [Double](repeating: 0, count: 4)   // ok, clusters, modularity, resolution
        var trialList: [Double] = []
        var message: [UInt8] = []
        if comm.rank == 0 {
            do {
                let weights = allW.map(Double.init)
                allW = []
                let outcome: (LeidenPartition, Bool, [(resolution: Double, clusters: Int)])
                switch target {
                case .resolution(let r):
                    let p = try partition(vertices: layout.total, edges: allIds, weights: weights, resolution: r, seed: seed,
                                          iterations: iterations, beta: beta)
                    outcome = (p, true, [(r, p.clusters)])
                case .clusters(let k, let start):
                    let s = try search(vertices: layout.total, edges: allIds, weights: weights, target: k, start: start, seed: seed,
                                       iterations: iterations, beta: beta)
                    outcome = (s.partition, s.exact, s.trials)
                }
                labels = outcome.0.labels
                summary = [outcome.1 ? 1 : 2, Double(outcome.0.clusters), outcome.0.modularity, outcome.0.resolution]
                trialList = outcome.2.flatMap { [$0.resolution, Double($0.clusters)] }
            } catch {
                summary = [0, 0, 0, 0]
                message = Array("\(error)".utf8)
            }
        }
        try comm.broadcast(&summary)
        if summary[0] == 0 {
            throw LeidenError(String(decoding: try comm.broadcast(array: message, root: 0), as: UTF8.self))
        }
        trialList = try comm.broadcast(array: trialList, root: 0)
        // Labels to their owners: rank 0 sends each rank its row range.
        let mine = try comm.alltoallv(labels, sendCounts: comm.rank == 0 ? layout.counts : [Int](repeating: 0, count: comm.size)).values
        let trials = stride(from: 0, to: trialList.count, by: 2).map { (resolution: trialList[$0], clusters: Int(trialList[$0 + 1])) }
        return Result(labels: mine, clusters: Int(summary[1]), modularity: summary[2], resolution: summary[3],
                      exact: summary[0] == 1, trials: trials)
    }

    /// Communities renumbered 0… by decreasing size (ties by smallest member), as leidenalg numbers them.
    static func renumberedBySize(_ m: [Int64]) -> [Int32] {
        var size: [Int64: Int] = [:], firstSeen: [Int64: Int] = [:]
        for (i, c) in m.enumerated() { size[c, default: 0] += 1; if firstSeen[c] == nil { firstSeen[c] = i } }
        let order = size.keys.sorted { size[$0]! != size[$1]! ? size[$0]! > size[$1]! : firstSeen[$0]! < firstSeen[$1]! }
        var code: [Int64: Int32] = [:]
        for (n, c) in order.enumerated() { code[c] = Int32(n) }
        return m.map { code[$0]! }
    }
}
