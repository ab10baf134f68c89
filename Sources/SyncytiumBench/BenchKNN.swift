import Pipelines
import ArgumentParser
import Collectives
import Foundation
import Neighbors
import TensorCore

struct BenchKNN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knn",
        abstract: "Exact and approximate kNN graphs on clustered embeddings, next to raw sgemm of the same distances.",
        discussion: """
            Generates N × D clustered embeddings (each rank its own rows), builds the exact graph \
            (ring of GEMM blocks) and the approximate one (distributed IVF), and reports wall time, \
            the approximate graph's recall@k against the exact one, and exact time ÷ the time of raw \
            cblas_sgemm computing the same N × N × D products in the same run.
            """)

    @Option(help: "Number of cells.") var cells = 100_000
    @Option(help: "Embedding width.") var dim = 32
    @Option(help: "Neighbours per cell.") var k = 15
    @Option(help: "Clusters in the synthetic embedding.") var clusters = 30
    @Option(help: "Seed.") var seed: UInt64 = 1
    @Option(help: "Repetitions (median reported).") var reps = 3
    @Flag(help: "Skip the exact graph (and recall).") var approximateOnly = false
    @Flag(help: "Print JSON.") var json = false

    struct Output: Codable {
        var benchmark = "knn"
        var ranks: Int; var cells: Int; var dim: Int; var k: Int
        var exactSeconds: Double?
        var rawGemmSeconds: Double?
        var exactOverRawGemm: Double?
        var approximateSeconds: Double
        var recallAtK: Double?
        var peakRSSMiB: Double
    }

    func run() throws {
        let comm = Communicator.world
        comm.orAbort {
            let layout = RowLayout.even(total: cells, size: comm.size)
            let (x, _) = SyntheticEmbeddings.rows(layout.range(of: comm.rank), dim: dim, clusters: clusters, seed: seed)
            var exactTimes: [Double] = [], approxTimes: [Double] = [], gemmTimes: [Double] = []
            var exact: KNNResult?
            var approx: KNNResult?
            for _ in 0..<max(reps, 1) {
                if !approximateOnly {
                    try comm.barrier()
                    var t0 = Communicator.time()
                    exact = try ExactKNN.build(x, k: k, comm: comm)
                    exactTimes.append(try comm.allreduce(value: Communicator.time() - t0, op: .max))
                    try comm.barrier()
                    t0 = Communicator.time()
                    rawDistanceGemm(x, layout: layout, comm: comm)
                    gemmTimes.append(try comm.allreduce(value: Communicator.time() - t0, op: .max))
                }
                try comm.barrier()
                let t1 = Communicator.time()
                approx = try ApproximateKNN(seed: seed).build(x, k: k, comm: comm)
                approxTimes.append(try comm.allreduce(value: Communicator.time() - t1, op: .max))
            }
            var recall: Double?
            if let e = exact, let a = approx {
                var hits = 0
                for i in 0..<e.count {
                    let truth = Set(e.indices[(i * k)..<(i * k + k)])
                    for j in 0..<k where truth.contains(a.indices[i * k + j]) { hits += 1 }
                }
                let total = try comm.allreduce(value: Int64(hits), op: .sum)
                recall = Double(total) / Double(cells * k)
            }
            let rss = try comm.allreduce(value: Double(ProcessMemory.read().peak) / 1_048_576, op: .max)
            guard comm.rank == 0 else { return }
            let ex = exactTimes.isEmpty ? nil : median(exactTimes)
            let gm = gemmTimes.isEmpty ? nil : median(gemmTimes)
            let out = Output(ranks: comm.size, cells: cells, dim: dim, k: k, exactSeconds: ex, rawGemmSeconds: gm,
                             exactOverRawGemm: ex.flatMap { e in gm.map { e / $0 } },
                             approximateSeconds: median(approxTimes), recallAtK: recall, peakRSSMiB: rss)
            if json { print(try jsonString(out)); return }
            print("kNN on \(cells) × \(dim) clustered embeddings, k = \(k), \(comm.size) rank(s), medians of \(reps)")
            if let ex, let gm {
                print("exact:       \(fmt(ex, 3)) s   (raw sgemm of the same products \(fmt(gm, 3)) s, ratio \(fmt(ex / gm, 2)))")
            }
            print("approximate: \(fmt(median(approxTimes), 3)) s" + (recall.map { "   recall@\(k) \(fmt($0, 4))" } ?? ""))
            print("peak RSS per rank: \(fmt(rss, 1)) MiB")
        }
    }

    /// The baseline: sgemm of this rank's rows against every row (N × N × D), tiled like the search
    /// but with no top-k selection, no norms and no communication.
    private func rawDistanceGemm(_ x: Tensor, layout: RowLayout, comm: Communicator) {
        let (all, _) = SyntheticEmbeddings.rows(0..<min(layout.total, 1024), dim: dim, clusters: clusters, seed: seed)
        let n = x.rows, tq = 256, tc = 1024
        var tile = [Float](repeating: 0, count: tq * tc)
        let blocks = (layout.total + tc - 1) / tc
        tile.withUnsafeMutableBufferPointer { t in
            for b in 0..<blocks {
                let cw = min(tc, layout.total - b * tc)
                var r0 = 0
                while r0 < n {
                    let rh = min(tq, n - r0)
                    Linalg.sgemm(transA: false, transB: true, m: rh, n: cw, k: dim, alpha: -2, a: x.pointer + r0 * dim,
                                 lda: dim, b: all.pointer, ldb: dim, beta: 0, c: t.baseAddress!, ldc: cw)
                    r0 += rh
                }
            }
        }
    }
}
