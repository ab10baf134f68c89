import ArgumentParser
import Pipelines
import Collectives
import Foundation
import Neighbors
import TensorCore
import HDF5IO

extension UMAPLayout.MoveOther: ExpressibleByArgument {}

struct BenchLayout: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layout",
        abstract: "The UMAP layout stage alone on the approximate kNN graph of a clustered embedding.",
        discussion: """
            Generates N × D clustered embeddings (each rank its own rows), builds the approximate \
            kNN graph (distributed IVF) and its UMAP connectivities (timed apart), then times the \
            2-D layout (PCA init + SGD epochs). With --epochs below umap-learn's default (200 above \
            10 000 cells), the full layout's time is extrapolated linearly from the seconds per epoch \
            (the work per epoch is the same in every epoch; only the learning rate changes).
            """)

    @Option(help: "Number of cells.") var cells = 1_000_000
    @Option(help: "Embedding width.") var dim = 16
    @Option(help: "Neighbours per cell (other cells; scanpy n_neighbors − 1).") var k = 14
    @Option(help: "Clusters in the synthetic embedding.") var clusters = 30
    @Option(help: "Layout epochs run (null: umap-learn's default).") var epochs: Int?
    @Option(help: "Seed.") var seed: UInt64 = 1
    @Option(help: "Instead of a synthetic embedding: an .h5ad whose obsm[--obsm] is the embedding (each rank reads its rows); its exact kNN graph and connectivities are built as `cluster` builds them, then the layout runs once per --seeds and is scored by neighbourhood preservation.")
    var input: String?
    @Option(help: "obsm key of the embedding in --input.") var obsm = "X_syncytium"
    @Option(help: "Layout seeds for --input, comma-separated.") var seeds = "0"
    @Option(help: "Where the pulls standing in for umap-learn's move_other go: in-walk or before (the default).")
    var moveOther: UMAPLayout.MoveOther = .before
    @Flag(help: "Print JSON.") var json = false

    struct Output: Codable {
        var benchmark = "layout"
        var ranks: Int; var cells: Int; var dim: Int; var k: Int; var edges: Int
        var graphSeconds: Double
        var epochsRun: Int; var defaultEpochs: Int
        var layoutSeconds: Double
        var layoutSecondsAtDefaultEpochs: Double
        var peakRSSMiB: Double
    }

    func run() throws {
        let comm = Communicator.world
        if let input { return try scoreFile(input, comm: comm) }
        comm.orAbort {
            let layout = RowLayout.even(total: cells, size: comm.size)
            let (x, _) = SyntheticEmbeddings.rows(layout.range(of: comm.rank), dim: dim, clusters: clusters, seed: seed)
            try comm.barrier()
            var t0 = Communicator.time()
            let knn = try ApproximateKNN(seed: seed).build(x, k: k, comm: comm)
            let graph = try Connectivities.umap(knn, layout: layout, comm: comm)
            let graphSeconds = try comm.allreduce(value: Communicator.time() - t0, op: .max)
            let edges = try comm.allreduce(value: Int64(graph.nnz), op: .sum)
            let full = UMAPLayout.defaultEpochs(cells: cells)
            let run = epochs ?? full
            try comm.barrier()
            t0 = Communicator.time()
            var umap = UMAPLayout(seed: seed, epochs: run)
            umap.moveOther = moveOther
            let y = try umap.run(graph, embedding: x, layout: layout, comm: comm)
            let seconds = try comm.allreduce(value: Communicator.time() - t0, op: .max)
            precondition(y.allSatisfy(\.isFinite))
            let rss = try comm.allreduce(value: Double(ProcessMemory.read().peak) / 1_048_576, op: .max)
            guard comm.rank == 0 else { return }
            let out = Output(ranks: comm.size, cells: cells, dim: dim, k: k, edges: Int(edges), graphSeconds: graphSeconds,
                             epochsRun: run, defaultEpochs: full, layoutSeconds: seconds,
                             layoutSecondsAtDefaultEpochs: seconds * Double(full) / Double(run), peakRSSMiB: rss)
            if json { print(try jsonString(out)); return }
            print("layout: \(cells) cells × \(dim) on \(comm.size) rank(s), \(edges) edges; graph \(String(format: "%.1f", graphSeconds)) s;"
                  + " layout \(run) epochs \(String(format: "%.1f", seconds)) s (→ \(String(format: "%.1f", out.layoutSecondsAtDefaultEpochs)) s at \(full) epochs); peak RSS \(Int(rss)) MiB")
        }
    }

    /// The layout of a file's embedding for each seed, with its neighbourhood preservation (the
    /// score `cluster` reports as layout_preservation; scripts/umap_compare.py gives umap-learn's).
    func scoreFile(_ path: String, comm: Communicator) throws {
        let seedList = seeds.split(separator: ",").compactMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
        guard !seedList.isEmpty else { throw ValidationError("--seeds: no seed in '\(seeds)'") }
        comm.orAbort {
            let file = try H5File.open(path)
            let set = try file.root.group("obsm").dataset(obsm)
            guard set.shape.count == 2 else { throw ValidationError("\(path): obsm/\(obsm) is not a matrix") }
            let layout = RowLayout.even(total: set.shape[0], size: comm.size)
            let rows = layout.range(of: comm.rank)
            let x = Tensor(rows: rows.count, cols: set.shape[1], values: try set.read(rows: rows, as: Float.self))
            withExtendedLifetime(file) {}
            let knn = try ExactKNN.build(x, k: k, comm: comm)
            let graph = try Connectivities.umap(knn, layout: layout, comm: comm)
            let neighbours = GraphShard(knn: knn)
            var scores: [Double] = []
            for s in seedList {
                let t0 = Communicator.time()
                var umap = UMAPLayout(seed: s, epochs: epochs)
                umap.moveOther = moveOther
                let y = try umap.run(graph, embedding: x, layout: layout, comm: comm)
                let seconds = try comm.allreduce(value: Communicator.time() - t0, op: .max)
                let score = try NeighbourhoodPreservation.score(neighbours: neighbours, coordinates: y, layout: layout, comm: comm)
                scores.append(score)
                if comm.rank == 0 { print("layout seed \(s): preservation \(String(format: "%.5f", score)) (\(String(format: "%.1f", seconds)) s)") }
            }
            let mean = scores.reduce(0, +) / Double(scores.count)
            let se = scores.count > 1 ? (scores.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(scores.count - 1) / Double(scores.count)).squareRoot() : .nan
            if comm.rank == 0 { print("layout: \(path) \(layout.total) cells, \(scores.count) seeds: preservation \(String(format: "%.5f", mean)) ± \(String(format: "%.5f", se)) (standard error)") }
        }
    }
}
