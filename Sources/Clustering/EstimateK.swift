import Collectives

/// Estimating the number of clusters without labels: distributed k-means for every K in a range,
/// scored by the mean silhouette of a seeded sample of cells (Rousseeuw 1987); the K with the highest
/// score wins, ties to the smaller K. Each K costs one k-means and one sampled silhouette
/// (O(sample × N × d) over all ranks). Deterministic for a given seed and rank count.
public struct ClusterCountEstimate: Sendable {
    public struct Candidate: Sendable {
        public let k: Int
        public let silhouette: Double
        public let inertia: Double
    }
    public let best: Int
    public let candidates: [Candidate]
}

public enum EstimateClusterCount {
    public static func silhouette(_ points: PointShard, range: ClosedRange<Int>, sampleSize: Int = 2000,
                                  restarts: Int = 3, seed: UInt64 = 0, comm: Communicator) throws -> ClusterCountEstimate {
        guard range.lowerBound >= 2 else { throw CollectiveUsageError("cluster-count search starts at K ≥ 2, got \(range)") }
        var cands: [ClusterCountEstimate.Candidate] = []
        for k in range {
            let km = try KMeans(k: k, restarts: restarts, seed: seed).fit(points, comm: comm)
            let s = try Silhouette.sampled(points, labels: km.labels, k: k, sampleSize: sampleSize, seed: seed, comm: comm)
            cands.append(.init(k: k, silhouette: s, inertia: km.inertia))
        }
        var best = cands[0]
        for c in cands.dropFirst() where c.silhouette > best.silhouette + 1e-12 { best = c }
        return ClusterCountEstimate(best: best.k, candidates: cands)
    }

    /// K for a model's cluster head: `given` when the run states it, else the silhouette choice over
    /// 2…`maxClusters` on `points` (returned with its evidence). Collective when K is not given.
    public static func resolve(given: Int?, points: PointShard, maxClusters: Int, seed: UInt64,
                               comm: Communicator) throws -> (k: Int, estimate: ClusterCountEstimate?) {
        if let given, given > 0 { return (given, nil) }
        let est = try silhouette(points, range: 2...max(2, maxClusters), seed: seed, comm: comm)
        return (est.best, est)
    }
}
