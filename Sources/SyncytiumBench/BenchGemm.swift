import Pipelines
import ArgumentParser
import Foundation
import TensorCore

/// The GEMM shapes one training step of a dense layer stack performs at a batch size:
/// per layer forward Y = X·W, weight gradient dW = Xᵀ·dY and (except the first layer) dX = dY·Wᵀ.
struct GemmShape: Codable, Hashable {
    var name: String
    var transA: Bool, transB: Bool
    var m: Int, n: Int, k: Int
    var flops: Double { 2 * Double(m) * Double(n) * Double(k) }

    static func trainingStep(widths: [Int], batch: Int, inputNeedsGrad: Bool = false) -> [GemmShape] {
        var out: [GemmShape] = []
        for l in 0..<(widths.count - 1) {
            let i = widths[l], o = widths[l + 1], tag = "\(i)→\(o)"
            out.append(GemmShape(name: "fwd \(tag)", transA: false, transB: false, m: batch, n: o, k: i))
            out.append(GemmShape(name: "dW \(tag)", transA: true, transB: false, m: i, n: o, k: batch))
            if l > 0 || inputNeedsGrad {
                out.append(GemmShape(name: "dX \(tag)", transA: false, transB: true, m: batch, n: i, k: o))
            }
        }
        return out
    }
}

/// Buffers for calling raw cblas_sgemm on a list of shapes.
final class RawGemmRunner {
    let shapes: [GemmShape]
    private var bufs: [(a: Tensor, b: Tensor, c: Tensor)] = []

    init(_ shapes: [GemmShape], seed: UInt64 = 1) {
        self.shapes = shapes
        var rng = RandomStream(seed: seed, purpose: .custom("bench-gemm"))
        for s in shapes {
            let (ar, ac) = s.transA ? (s.k, s.m) : (s.m, s.k)
            let (br, bc) = s.transB ? (s.n, s.k) : (s.k, s.n)
            bufs.append((Tensor.uniform(rows: ar, cols: ac, -1, 1, rng: &rng),
                         Tensor.uniform(rows: br, cols: bc, -1, 1, rng: &rng),
                         Tensor(rows: s.m, cols: s.n)))
        }
    }

    /// Runs shape `i` once.
    @inline(__always) func run(_ i: Int) {
        let s = shapes[i], t = bufs[i]
        Linalg.sgemm(transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: 1,
                     a: t.a.pointer, lda: t.a.cols, b: t.b.pointer, ldb: t.b.cols, beta: 0, c: t.c.pointer, ldc: s.n)
    }

    /// Runs every shape once; returns seconds.
    func runAll() -> Double {
        let t0 = benchNow()
        for i in shapes.indices { run(i) }
        return benchNow() - t0
    }
}

@inline(__always) func benchNow() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

/// The autoencoder of `bench step --model mlp`.
let mlpWidths = [2000, 1024, 128, 24, 128, 1024, 2000]

struct BenchGemm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "GFLOP/s of raw cblas_sgemm at the models' GEMM shapes (one training step of the MLP autoencoder).")

    @Option(help: "Batch size (rows of activations).")
    var batch = 256

    @Option(help: "BLAS threads.")
    var threads = 1

    @Option(help: "Repetitions per shape (median reported).")
    var reps = 30

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    struct Row: Codable {
        var shape: String; var transA: Bool; var transB: Bool; var m: Int; var n: Int; var k: Int
        var medianSeconds: Double; var gflops: Double
    }
    struct Output: Codable {
        var benchmark = "gemm"
        var blasCore: String; var blasThreads: Int; var batch: Int
        var rows: [Row]
        /// All shapes of one step together: total flops / Σ median times.
        var stepGflops: Double
        var stepSeconds: Double
    }

    func validate() throws {
        guard batch > 0, threads > 0, reps > 0 else { throw ValidationError("--batch, --threads and --reps must be positive") }
    }

    func run() throws {
        BLASLibrary.setThreads(threads)
        let shapes = GemmShape.trainingStep(widths: mlpWidths, batch: batch, inputNeedsGrad: true)
        let runner = RawGemmRunner(shapes)
        for i in shapes.indices { runner.run(i) }  // warm-up
        var times = Array(repeating: [Double](), count: shapes.count)
        for _ in 0..<reps {
            for i in shapes.indices {   // interleaved across shapes
                let t0 = benchNow(); runner.run(i); times[i].append(benchNow() - t0)
            }
        }
        var rows: [Row] = []
        var total = 0.0, flops = 0.0
        for (i, s) in shapes.enumerated() {
            let med = median(times[i])
            rows.append(Row(shape: s.name, transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k,
                            medianSeconds: med, gflops: s.flops / med * 1e-9))
            total += med; flops += s.flops
        }
        let out = Output(blasCore: BLASLibrary.coreName, blasThreads: BLASLibrary.threads, batch: batch,
                         rows: rows, stepGflops: flops / total * 1e-9, stepSeconds: total)
        if json { print(try jsonString(out)); return }
        print("raw cblas_sgemm, OpenBLAS core \(out.blasCore), \(out.blasThreads) thread(s), batch \(batch); medians of \(reps) reps")
        print(pad("shape", 16) + pad("op", 6) + pad("m", 6) + pad("n", 6) + pad("k", 6) + pad("ms", 10) + pad("GFLOP/s", 10))
        for r in rows {
            let op = (r.transA ? "T" : "N") + (r.transB ? "T" : "N")
            print(pad(r.shape, 16) + pad(op, 6) + pad("\(r.m)", 6) + pad("\(r.n)", 6) + pad("\(r.k)", 6)
                  + pad(fmt(r.medianSeconds * 1e3, 3), 10) + pad(fmt(r.gflops, 1), 10))
        }
        print("all shapes of one step: \(fmt(total * 1e3, 2)) ms, \(fmt(out.stepGflops, 1)) GFLOP/s")
    }
}
