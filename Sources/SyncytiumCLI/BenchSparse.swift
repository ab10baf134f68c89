import ArgumentParser
import Foundation
import TensorCore

struct BenchSparse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sparse",
        abstract: "Sparse-input layer kernels (X·W and Xᵀ·dY with X in CSR) vs dense sgemm of the same shape, interleaved.",
        discussion: """
            X is batch × inputs with the given fraction of non-zeros; W is inputs × outputs. The ratio \
            sparse/dense tells where a layer with sparse input should densify the batch and call sgemm \
            (SparseOps.denseCrossoverDensity).
            """)

    @Option(help: "Comma-separated densities.")
    var densities = "0.02,0.05,0.1,0.15,0.2,0.3"
    @Option(help: "Rows of X.") var batch = 256
    @Option(help: "Columns of X (genes).") var inputs = 2000
    @Option(help: "Columns of W.") var outputs = 1024
    @Option(help: "Column block of the sparse kernels (default: SparseOps.columnBlock).") var block: Int?
    @Option(help: "Repetitions (median reported).") var reps = 15
    @Option(help: "BLAS threads.") var threads = 1
    @Flag(help: "Print JSON instead of a table.") var json = false

    struct Row: Codable {
        var density: Double
        var sparseForwardMs: Double, denseForwardMs: Double
        var sparseWeightGradMs: Double, denseWeightGradMs: Double
        var forwardRatio: Double, weightGradRatio: Double
    }
    struct Output: Codable {
        var benchmark = "sparse"; var batch: Int; var inputs: Int; var outputs: Int
        /// Column block of the sparse kernels; nil = whole rows.
        var block: Int?
        var rows: [Row]
    }

    func run() throws {
        BLASLibrary.setThreads(threads)
        if let block { SparseOps.columnBlock = block }
        let ds = try densities.split(separator: ",").map { s -> Double in
            guard let d = Double(s.trimmingCharacters(in: .whitespaces)), d > 0, d <= 1 else { throw ValidationError("bad density '\(s)'") }
            return d
        }
        var rng = RandomStream(seed: 3, purpose: .custom("bench-sparse"))
        let w = Tensor.uniform(rows: inputs, cols: outputs, -1, 1, rng: &rng)
        let dy = Tensor.uniform(rows: batch, cols: outputs, -1, 1, rng: &rng)
        let y = Tensor(rows: batch, cols: outputs), dw = Tensor(rows: inputs, cols: outputs)
        var rows: [Row] = []
        for d in ds {
            let xd = Tensor.uniform(rows: batch, cols: inputs, 0, 1, rng: &rng)
            for i in 0..<xd.count where rng.uniformDouble() >= d { xd.pointer[i] = 0 }
            let x = CSRMatrix(dense: xd)
            var t: [[Double]] = Array(repeating: [], count: 4)
            for rep in 0...reps {
                var s = benchNow(); SparseOps.matmul(x, w, into: y); let a = benchNow() - s
                s = benchNow(); Linalg.gemm(xd, w, into: y); let b = benchNow() - s
                s = benchNow(); SparseOps.transposeMatmul(x, dy, into: dw); let c = benchNow() - s
                s = benchNow(); Linalg.gemm(xd, transA: true, dy, into: dw); let e = benchNow() - s
                if rep > 0 { t[0].append(a); t[1].append(b); t[2].append(c); t[3].append(e) }
            }
            let m = t.map(median)
            rows.append(Row(density: d, sparseForwardMs: m[0] * 1e3, denseForwardMs: m[1] * 1e3,
                            sparseWeightGradMs: m[2] * 1e3, denseWeightGradMs: m[3] * 1e3,
                            forwardRatio: m[0] / m[1], weightGradRatio: m[2] / m[3]))
        }
        let out = Output(batch: batch, inputs: inputs, outputs: outputs, block: SparseOps.columnBlock == Int.max ? nil : SparseOps.columnBlock, rows: rows)
        if json { print(try jsonString(out)); return }
        print("X \(batch)×\(inputs) CSR, W \(inputs)×\(outputs), column block \(out.block.map(String.init) ?? "none"), \(BLASLibrary.threads) BLAS thread(s); medians of \(reps)")
        print(pad("density", 9) + pad("X·W ms", 10) + pad("sgemm ms", 10) + pad("ratio", 8) + pad("Xᵀ·dY ms", 10) + pad("sgemm ms", 10) + pad("ratio", 8))
        for r in rows {
            print(pad(fmt(r.density, 3), 9) + pad(fmt(r.sparseForwardMs, 3), 10) + pad(fmt(r.denseForwardMs, 3), 10) + pad(fmt(r.forwardRatio, 2), 8)
                  + pad(fmt(r.sparseWeightGradMs, 3), 10) + pad(fmt(r.denseWeightGradMs, 3), 10) + pad(fmt(r.weightGradRatio, 2), 8))
        }
    }
}
