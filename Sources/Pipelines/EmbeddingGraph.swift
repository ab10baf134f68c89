// The kNN graph of a run's embedding in scanpy's layout (what `sc.pp.neighbors(adata,
// use_rep=KEY, n_neighbors=k + 1)` writes with method='umap', metric='euclidean'):
//   obsp[distances_key]: the k nearest other cells' Euclidean distances per row (CSR; scanpy ≥ 1.10
//     stores n_neighbors − 1 per row, without the cell itself),
//   obsp[connectivities_key]: UMAP's fuzzy simplicial set, symmetrised by the fuzzy union,
//   uns[key]: {connectivities_key, distances_key, params: {n_neighbors, method, random_state, metric, use_rep}}
// scanpy's default key is 'neighbors' with obsp 'connectivities'/'distances'; with key_added = K it
// is uns[K], obsp['K_connectivities'], obsp['K_distances'] (used when a model's own graph already
// holds the default names).
import CellData
import Collectives
import Neighbors
import TensorCore

struct EmbeddingGraph {
    var connectivities: GraphShard
    var distances: GraphShard
    var layout: RowLayout
    var k: Int

    /// Collective. The k-NN graph of `z` (this rank's rows) and its UMAP connectivities.
    static func build(_ z: Tensor, k: Int, method: KNNMethod, seed: UInt64, comm: Communicator) throws -> EmbeddingGraph {
        let layout = try RowLayout(comm: comm, localCount: z.rows)
        try agreeing(comm) {
            if k >= layout.total {
                throw SettingsErrorText("clustering.neighbors: \(k) neighbours for \(layout.total) cells; pick 1 ≤ k < the number of cells")
            }
        }
        let knn = method.resolved(cells: layout.total) == .exact ? try ExactKNN.build(z, k: k, comm: comm)
                                                                 : try ApproximateKNN(seed: seed).build(z, k: k, comm: comm)
        let conn = try Connectivities.umap(knn, layout: layout, comm: comm)
        return EmbeddingGraph(connectivities: conn, distances: GraphShard(knn: knn), layout: layout, k: k)
    }

    /// obsp names and uns entry for scanpy's `key_added` (nil: the default 'neighbors').
    static func keys(_ keyAdded: String?) -> (uns: String, connectivities: String, distances: String) {
        guard let key = keyAdded else { return ("neighbors", "connectivities", "distances") }
        return (key, "\(key)_connectivities", "\(key)_distances")
    }

    /// uns[key] as scanpy 1.10–1.11 writes it.
    func uns(keyAdded: String?, useRep: String, seed: UInt64) -> UnsValue {
        EmbeddingGraph.uns(neighbors: k, method: "umap", keyAdded: keyAdded, useRep: useRep, seed: seed)
    }

    /// uns[key] for a graph of `neighbors` other cells per row with `method` weights ('umap' or 'gauss').
    static func uns(neighbors k: Int, method: String, keyAdded: String?, useRep: String, seed: UInt64) -> UnsValue {
        let names = EmbeddingGraph.keys(keyAdded)
        return .dict([("connectivities_key", .string(names.connectivities)), ("distances_key", .string(names.distances)),
                      ("params", .dict([("n_neighbors", .integer(Int64(k + 1))), ("method", .string(method)),
                                        ("random_state", .integer(Int64(bitPattern: seed))), ("metric", .string("euclidean")),
                                        ("use_rep", .string(useRep))]))])
    }
}

/// A one-line error that every rank raises alike (through `agreeing`).
struct SettingsErrorText: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The 2-D UMAP layout of an embedding's kNN graph as scanpy's sc.tl.umap writes it:
/// obsm['X_umap'] (n × 2, float32) and uns['umap'] = {params: {a, b[, random_state]}}.
struct EmbeddingLayout {
    var coordinates: [Float]
    var a: Double, b: Double
    var seconds: Double
    /// Neighbourhood preservation of the graph's k neighbours in the layout (nil above `scoreLimit` cells).
    var preservation: Double?

    static let scoreLimit = 100_000

    /// Collective.
    static func compute(_ graph: EmbeddingGraph, embedding z: Tensor, epochs: Int?, seed: UInt64, comm: Communicator) throws -> EmbeddingLayout {
        let t0 = Communicator.time()
        let umap = UMAPLayout(seed: seed, epochs: epochs)
        let y = try umap.run(graph.connectivities, embedding: z, layout: graph.layout, comm: comm)
        let seconds = Communicator.time() - t0
        let (a, b) = UMAPLayout.fitAB(spread: umap.spread, minDist: umap.minDist)
        let score = graph.layout.total <= scoreLimit
            ? try NeighbourhoodPreservation.score(neighbours: graph.distances, coordinates: y, layout: graph.layout, comm: comm) : nil
        return EmbeddingLayout(coordinates: y, a: a, b: b, seconds: seconds, preservation: score)
    }

    /// uns['umap'] as scanpy 1.11 writes it (random_state only when it is not 0).
    func uns(seed: UInt64) -> UnsValue {
        var params: [(String, UnsValue)] = [("a", .number(a)), ("b", .number(b))]
        if seed != 0 { params.append(("random_state", .integer(Int64(bitPattern: seed)))) }
        return .dict([("params", .dict(params))])
    }
}
