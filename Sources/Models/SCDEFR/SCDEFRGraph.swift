// scDEFR's cell graph (MODELS.md §3.2): PCA of the log-normalised expression → directed kNN graph with
// the cell itself among its k neighbours (sklearn's kneighbors_graph(include_self=True)), binary, not
// symmetrised; and the operators the layers use: TAGConv's Â (PyG's normalisation of the edges
// source → target, i.e. of Aᵀ by in-degrees), adj_n = A/k for the node fusion and the edge loss, and
// the symmetrised graph for spectral clustering. Rows live on the rank owning the cell.
import CellData
import Clustering
import Collectives
import Foundation
import GraphLayers
import Neighbors
import TensorCore

struct SCDEFRGraph {
    let layout: RowLayout
    /// Global id of this rank's first cell (the shard's cells are contiguous ids).
    let first: Int
    /// PCA coordinates of this rank's cells (n × pcaDim).
    let pcs: [Float]
    let pcaDim: Int
    /// A: row i lists cell i and its k − 1 nearest cells (global ids, sorted), values 1.
    let adjacency: GraphShard
    /// The k − 1 neighbours' Euclidean distances (for obsp['distances']).
    let knn: KNNResult
    /// TAGConv's Â = D_in^−½ Aᵀ D_in^−½ and A/k, both distributed (halo rows).
    let tag: GraphOperator
    let adjn: GraphOperator
    /// TAGConv propagates along A ∪ Aᵀ (else along the directed edges).
    let symmetricTAG: Bool

    /// Collective.
    static func build(_ data: Dataset, neighbours k: Int, pca: Int, exactLimit: Int, symmetricTAG: Bool, seed: UInt64,
                      comm: Communicator) throws -> SCDEFRGraph {
        let n = data.x.rows, g = data.genes
        let layout = try RowLayout(comm: comm, localCount: n)
        let first = layout.offsets[comm.rank]
        guard data.cellIds.enumerated().allSatisfy({ $0.element == Int64(first + $0.offset) }) else {
            throw CollectiveUsageError("scdefr: the cells of each rank must be contiguous global ids in rank order")
        }
        guard layout.total > k else { throw CollectiveUsageError("scdefr: a kNN graph with k = \(k) needs more than \(k) cells, there are \(layout.total)") }
        // PCA of the dense log-normalised rows (sklearn's PCA centres; no scaling, as the reference).
        var dense = [Float](repeating: 0, count: n * g)
        for i in 0..<n { for e in Int(data.x.rowPtr[i])..<Int(data.x.rowPtr[i + 1]) { dense[i * g + Int(data.x.colIdx[e])] = data.x.values[e] } }
        let pc = try Preprocess.pca(&dense, localRows: n, nVars: g, nComps: min(pca, g), nObs: layout.total, seed: seed, comm: comm)
        dense = []
        let x = Tensor(rows: n, cols: pc.nComps, values: pc.scores)
        let knn = layout.total <= exactLimit ? try ExactKNN.build(x, k: k - 1, comm: comm)
                                             : try ApproximateKNN(seed: seed).build(x, k: k - 1, comm: comm)
        var rp: [Int64] = [0], cols: [Int64] = []
        cols.reserveCapacity(n * k)
        for i in 0..<n {
            var row = [Int64(first + i)]
            for j in 0..<knn.k where knn.indices[i * knn.k + j] >= 0 { row.append(knn.indices[i * knn.k + j]) }
            cols.append(contentsOf: Array(Set(row)).sorted()); rp.append(Int64(cols.count))
        }
        let a = GraphShard(rowPtr: rp, cols: cols, values: [Float](repeating: 1, count: cols.count))
        // TAGConv's graph: Aᵀ (PyG aggregates at the target) or the union A ∪ Aᵀ (values 1).
        var t = symmetricTAG ? try a.symmetrized(.max, layout: layout, comm: comm) : try a.transposed(layout: layout, comm: comm)
        t.values = [Float](repeating: 1, count: t.nnz)
        let tagGraph = try t.symmetricNormalized(selfLoops: false, layout: layout, comm: comm)
        return SCDEFRGraph(layout: layout, first: first, pcs: pc.scores, pcaDim: pc.nComps, adjacency: a, knn: knn,
                           tag: try GraphOperator(graph: tagGraph, layout: layout, comm: comm),
                           adjn: try GraphNormalization.rowNormalized(a, layout: layout, comm: comm), symmetricTAG: symmetricTAG)
    }

    /// Collective. The symmetrised graph (A + Aᵀ)/2 (obsp connectivities, spectral clustering).
    func symmetrized(comm: Communicator) throws -> GraphShard {
        try adjacency.symmetrized(.mean, layout: layout, comm: comm)
    }

    /// Collective. Spectral clustering of (A + Aᵀ)/2 (as sklearn's SpectralClustering on the
    /// precomputed affinity, which symmetrises it): the top `k` eigenvectors of D^−½ W D^−½ by
    /// subspace iteration on (M + I)/2 (start vectors from the global cell ids, so any rank count
    /// gives the same result), rows normalised to unit length, then k-means (Ng, Jordan, Weiss 2001;
    /// the reference discretises the eigenvectors instead).
    func spectralClustering(k: Int, seed: UInt64, iterations: Int = 300, comm: Communicator) throws -> [Int32] {
        let w = try symmetrized(comm: comm)
        let m = try w.symmetricNormalized(selfLoops: false, layout: layout, comm: comm)
        let b = min(k + 10, layout.total), n = m.rows
        let halo = try HaloPlan(needed: m.cols, layout: layout, comm: comm)
        let colSlot = m.cols.map { halo.index(of: $0)! }
        var v = [Float](repeating: 0, count: n * b)
        let start = RandomStream(seed: seed, purpose: .custom("scdefr-spectral"))
        for i in 0..<n {
            var rng = start.split(UInt64(first + i))
            for j in 0..<b { v[i * b + j] = Float(rng.uniformDouble() - 0.5) }
        }
        var out = [Float](repeating: 0, count: n * b)
        func apply() throws {   // out = ((M + I)/2) v
            let remote = try halo.fetch(v, width: b)
            for i in 0..<n {
                for j in 0..<b { out[i * b + j] = 0.5 * v[i * b + j] }
                for e in Int(m.rowPtr[i])..<Int(m.rowPtr[i + 1]) {
                    let a = 0.5 * m.values[e], src = colSlot[e] * b
                    for j in 0..<b { out[i * b + j] += a * remote[src + j] }
                }
            }
        }
        v = try SpectralClusterCount.orthonormalize(v, n: n, b: b, comm: comm)
        for _ in 0..<iterations {
            try apply()
            v = try SpectralClusterCount.orthonormalize(out, n: n, b: b, comm: comm)
        }
        try apply()
        var h = [Double](repeating: 0, count: b * b)
        for i in 0..<n { for p in 0..<b { let vp = Double(v[i * b + p]); for q in 0..<b { h[p * b + q] += vp * Double(out[i * b + q]) } } }
        try comm.allreduce(&h, op: .sum)
        for p in 0..<b { for q in (p + 1)..<b { let s = 0.5 * (h[p * b + q] + h[q * b + p]); h[p * b + q] = s; h[q * b + p] = s } }
        // Rank 0's decomposition everywhere (LAPACK kernels may differ in the last bits between CPUs).
        var vectors = [Double](repeating: 0, count: b * b)
        if comm.rank == 0 { vectors = try SymmetricEigen.decompose(h, n: b).vectors }
        try comm.broadcast(&vectors)
        // The k largest Ritz pairs are the last k rows of `vectors`.
        var u = [Float](repeating: 0, count: n * k)
        for i in 0..<n {
            var norm = 0.0
            for c in 0..<k {
                let row = b - 1 - c
                var s = 0.0
                for p in 0..<b { s += Double(v[i * b + p]) * vectors[row * b + p] }
                u[i * k + c] = Float(s); norm += s * s
            }
            let inv = norm > 0 ? Float(1 / norm.squareRoot()) : 0
            for c in 0..<k { u[i * k + c] *= inv }
        }
        return try KMeans(k: k, restarts: 10, seed: seed).fit(PointShard(values: u, count: n, dim: k), comm: comm).labels
    }

    /// obsp: connectivities (A + Aᵀ)/2 and the kNN distances (the cell itself excluded, as scanpy).
    func resultGraph(comm: Communicator) throws -> ResultGraph {
        let w = try symmetrized(comm: comm)
        let d = GraphShard(knn: knn)
        return ResultGraph(connectivities: SparseRows(rowPtr: w.rowPtr, colIdx: w.cols.map { Int32($0) }, values: w.values),
                           distances: SparseRows(rowPtr: d.rowPtr, colIdx: d.cols.map { Int32($0) }, values: d.values))
    }
}
