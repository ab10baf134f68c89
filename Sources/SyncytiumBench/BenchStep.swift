import Pipelines
import ArgumentParser
import Autograd
import Collectives
import Foundation
import NN
import TensorCore

struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "One training step (forward + backward + Adam) vs the same GEMMs called raw, interleaved in one run.",
        discussion: """
            --model mlp: the 2000-1024-128-24-128-1024-2000 autoencoder (ReLU between layers, none on the \
            24-d bottleneck and the output), MSE reconstruction loss, Adam. --model linear: one Linear \
            2000→1024 forward + backward (input requiring a gradient) vs its three sgemm calls. \
            Reports medians, cells/s, and peak RSS after warm-up and at the end (steady-state steps \
            should allocate nothing, so the two should match). On several ranks (`launch/run 2 bench \
            step`) it reports the data-parallel share instead: full vs compute-only Trainer steps.
            """)

    enum Model: String, ExpressibleByArgument, CaseIterable { case mlp, linear }

    @Option(help: "Model to step.")
    var model: Model = .mlp

    @Option(help: "Feed the mlp a sparse (CSR) input with this fraction of non-zeros; the first layer then uses the sparse kernels (the raw baseline stays the dense GEMMs).")
    var density: Double?

    @Option(help: "Cells per minibatch.")
    var batch = 256

    @Option(help: "Measured steps (each followed by one raw-GEMM rep).")
    var steps = 200

    @Option(help: "Warm-up steps before measuring.")
    var warmup = 10

    @Option(help: "BLAS threads.")
    var threads = 1

    @Flag(help: "Print JSON instead of text.")
    var json = false

    struct Output: Codable {
        var benchmark = "step"
        var model: String
        var inputDensity: Double?
        var batch: Int; var steps: Int; var blasThreads: Int; var blasCore: String
        var parameters: Int
        var stepMedianMs: Double
        /// Medians of the step's parts (mlp): forward (incl. loss), backward, optimiser.
        var forwardMedianMs: Double?
        var backwardMedianMs: Double?
        var optimizerMedianMs: Double?
        var rawGemmMedianMs: Double
        var ratio: Double
        var cellsPerSecond: Double
        var rawGemmCellsPerSecond: Double
        var peakRSSAfterWarmupMiB: Double
        var peakRSSEndMiB: Double
        var peakRSSGrowthMiB: Double
        var finalLoss: Float
    }

    func validate() throws {
        if let density, !(density > 0 && density <= 1) || model != .mlp {
            throw ValidationError("--density takes a fraction in (0, 1] and applies to --model mlp")
        }
        guard batch > 1, steps > 0, warmup >= 1, threads > 0 else {
            throw ValidationError("--batch must be > 1, --steps and --warmup ≥ 1, --threads > 0")
        }
    }

    func run() throws {
        // One process's step: on several ranks say so instead of measuring something else.
        if Communicator.world.size > 1 {
            if Communicator.world.rank == 0 {
                writeStderr("error: bench step times one process's step; run it on 1 rank, or `bench dp` for the data-parallel cost on \(Communicator.world.size)\n")
            }
            Communicator.world.finalize()
            throw ExitCode.validationFailure
        }
        BLASLibrary.setThreads(threads)
        let store = ParameterStore()
        var rng = RandomStream(seed: 42, purpose: .initialization)
        let tape = Tape()
        var dataRng = RandomStream(seed: 42, purpose: .simulation)
        let widths = model == .mlp ? mlpWidths : [2000, 1024]
        let x = Tensor.uniform(rows: batch, cols: widths[0], 0, 1, rng: &dataRng)
        if let density {
            for i in 0..<x.count where dataRng.uniformDouble() >= density { x.pointer[i] = 0 }
        }
        let xSparse = density.map { _ in CSRMatrix(dense: x) }
        var layers: [Linear] = []
        for l in 0..<(widths.count - 1) {
            // ReLU between layers; none into the bottleneck (24) nor at the output.
            let act: Tape.Activation = (l == widths.count - 2 || widths[l + 1] == 24) ? .identity : .relu
            layers.append(Linear(store, "l\(l)", inputs: widths[l], outputs: widths[l + 1], activation: act, rng: &rng))
        }
        let adam = Adam(store)
        let upstream = Tensor.uniform(rows: batch, cols: widths.last!, -1, 1, rng: &dataRng)
        var lastLoss: Float = .nan
        var parts: (f: Double, b: Double, o: Double) = (0, 0, 0)

        func step() throws {
            tape.reset()
            switch model {
            case .mlp:
                let t0 = benchNow()
                var h: Var
                if let xSparse {
                    h = layers[0](xSparse, tape)
                    for l in layers.dropFirst() { h = l(h, tape) }
                } else {
                    h = tape.constant(x)
                    for l in layers { h = l(h, tape) }
                }
                let loss = tape.mseLoss(h, tape.constant(x))
                let t1 = benchNow()
                try tape.backward(loss)
                let t2 = benchNow()
                lastLoss = tape.value(loss).scalar
                adam.step(lr: 1e-3)
                parts = (t1 - t0, t2 - t1, benchNow() - t2)
            case .linear:
                let xin = tape.variable(x)
                let y = layers[0](xin, tape)
                try tape.backward(y, seed: upstream)
            }
        }

        let shapes = GemmShape.trainingStep(widths: widths, batch: batch, inputNeedsGrad: model == .linear)
        let raw = RawGemmRunner(shapes)
        for _ in 0..<warmup { try step(); _ = raw.runAll() }
        let memWarm = ProcessMemory.read()
        var stepTimes: [Double] = [], rawTimes: [Double] = []
        var fT: [Double] = [], bT: [Double] = [], oT: [Double] = []
        stepTimes.reserveCapacity(steps); rawTimes.reserveCapacity(steps); fT.reserveCapacity(steps); bT.reserveCapacity(steps); oT.reserveCapacity(steps)
        for _ in 0..<steps {
            let t0 = benchNow(); try step(); stepTimes.append(benchNow() - t0)
            fT.append(parts.f); bT.append(parts.b); oT.append(parts.o)
            rawTimes.append(raw.runAll())
        }
        let memEnd = ProcessMemory.read()
        let sMed = median(stepTimes), rMed = median(rawTimes)
        let mib = 1.0 / Double(1 << 20)
        let out = Output(
            model: model.rawValue, inputDensity: density, batch: batch, steps: steps, blasThreads: BLASLibrary.threads,
            blasCore: BLASLibrary.coreName, parameters: store.parameterCount,
            stepMedianMs: sMed * 1e3,
            forwardMedianMs: model == .mlp ? median(fT) * 1e3 : nil,
            backwardMedianMs: model == .mlp ? median(bT) * 1e3 : nil,
            optimizerMedianMs: model == .mlp ? median(oT) * 1e3 : nil,
            rawGemmMedianMs: rMed * 1e3, ratio: sMed / rMed,
            cellsPerSecond: Double(batch) / sMed, rawGemmCellsPerSecond: Double(batch) / rMed,
            peakRSSAfterWarmupMiB: Double(memWarm.peak) * mib, peakRSSEndMiB: Double(memEnd.peak) * mib,
            peakRSSGrowthMiB: Double(memEnd.peak - memWarm.peak) * mib, finalLoss: lastLoss)
        if json { print(try jsonString(out)); return }
        print("""
            bench step --model \(out.model)\(density.map { " (sparse input, density \($0))" } ?? ""): batch \(batch), \(steps) measured steps after \(warmup) warm-up, \
            \(out.blasThreads) BLAS thread(s) (\(out.blasCore)), \(out.parameters) parameters
            step (median):       \(fmt(out.stepMedianMs, 3)) ms   \(fmt(out.cellsPerSecond, 0)) cells/s\(out.forwardMedianMs.map { "  (forward \(fmt($0, 2)), backward \(fmt(out.backwardMedianMs ?? 0, 2)), Adam \(fmt(out.optimizerMedianMs ?? 0, 2)) ms)" } ?? "")
            raw GEMMs (median):  \(fmt(out.rawGemmMedianMs, 3)) ms   \(fmt(out.rawGemmCellsPerSecond, 0)) cells/s  (\(shapes.count) sgemm calls)
            step / raw GEMM:     \(fmt(out.ratio, 3))
            peak RSS:            \(fmt(out.peakRSSAfterWarmupMiB, 1)) MiB after warm-up, \(fmt(out.peakRSSEndMiB, 1)) MiB at the end (growth \(fmt(out.peakRSSGrowthMiB, 2)) MiB)
            """ + (model == .mlp ? "\nfinal loss:          \(out.finalLoss)" : ""))
    }
}
