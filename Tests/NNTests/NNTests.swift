import XCTest
import Foundation
import TensorCore
import Autograd
@testable import NN

final class ParameterStoreTests: XCTestCase {
    func testViewsIntoFlatBuffers() throws {
        let store = ParameterStore()
        var rng = RandomStream(seed: 1, purpose: .initialization)
        let a = store.add("a", rows: 3, cols: 5, .ones, rng: &rng)
        let b = store.add("b", rows: 1, cols: 4, .constant(2), rng: &rng)
        let run = store.addBuffer("run", rows: 1, cols: 3, fill: 7)
        XCTAssertEqual(a.offset, 0)
        XCTAssertEqual(b.offset % 16, 0, "parameters start on 64-byte boundaries")
        XCTAssertEqual(store.parameterCount, 19)
        let flat = store.flatValues
        XCTAssertEqual(flat[0, b.offset], 2)
        b.value.pointer[1] = 5
        XCTAssertEqual(store.flatValues[0, b.offset + 1], 5, "writes through a view land in the flat buffer")
        XCTAssertEqual(store.flatState.scalars, [7, 7, 7])
        // Growing the store (many more parameters) keeps values and refreshes views.
        for i in 0..<40 { store.add("p\(i)", rows: 10, cols: 10, .zeros, rng: &rng) }
        XCTAssertEqual(a.value.scalars, Array(repeating: 1, count: 15))
        XCTAssertEqual(b.value[0, 1], 5)
        XCTAssertEqual(run.value.scalars, [7, 7, 7])
        // A tape accumulates parameter gradients directly into the flat gradient buffer.
        let t = Tape()
        let loss = t.sum(t.mul(t.param(a), t.constant(Tensor(rows: 1, cols: 1, repeating: 3))))
        try t.backward(loss)
        XCTAssertEqual(Array(store.flatGrads.scalars[0..<15]), Array(repeating: 3, count: 15))
        XCTAssertEqual(a.grad.scalars, Array(repeating: 3, count: 15))
        store.zeroGrad()
        XCTAssertTrue(store.flatGrads.scalars.allSatisfy { $0 == 0 })
    }

    func testDroppingTheStoreFreesIt() {
        weak var weakStore: ParameterStore?
        var layer: Linear?
        do {
            let s = ParameterStore()
            var rng = RandomStream(seed: 1)
            layer = Linear(s, "l", inputs: 3, outputs: 2, rng: &rng)
            weakStore = s
        }
        XCTAssertNil(weakStore, "parameters must not keep their store alive (no retain cycle)")
        XCTAssertNotNil(layer)
    }

    func testSaveLoadRoundTripAndErrors() throws {
        func make(_ seed: UInt64, widths: [Int] = [4, 3, 2]) -> ParameterStore {
            let s = ParameterStore()
            var rng = RandomStream(seed: seed, purpose: .initialization)
            _ = Linear(s, "l0", inputs: widths[0], outputs: widths[1], rng: &rng)
            _ = BatchNorm1d(s, "bn", features: widths[1])
            _ = Linear(s, "l1", inputs: widths[1], outputs: widths[2], rng: &rng)
            return s
        }
        let a = make(1), b = make(2)
        a["bn.running_mean"]!.value.fill(0.25)
        XCTAssertNotEqual(a.flatValues.scalars, b.flatValues.scalars)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("syncytium-params-\(getpid()).bin")
        defer { try? FileManager.default.removeItem(at: url) }
        try a.save(to: url)
        try b.load(from: url)
        XCTAssertEqual(a.flatValues.scalars, b.flatValues.scalars)
        XCTAssertEqual(b["bn.running_mean"]!.value.scalars, [0.25, 0.25, 0.25])

        let bytes = a.serialized()
        XCTAssertThrowsError(try make(3, widths: [4, 5, 2]).load(serialized: bytes)) { e in
            guard case ParameterStore.FormatError.shapeMismatch(let name, _, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(name, "l0.weight")
        }
        XCTAssertThrowsError(try b.load(serialized: Array(bytes.dropLast(3)))) { e in
            XCTAssertEqual(e as? ParameterStore.FormatError, .truncated)
        }
        var bad = bytes; bad[0] = 0
        XCTAssertThrowsError(try b.load(serialized: bad)) { e in XCTAssertEqual(e as? ParameterStore.FormatError, .notAParameterFile) }
        var v2 = bytes; v2[8] = 2
        XCTAssertThrowsError(try b.load(serialized: v2)) { e in XCTAssertEqual(e as? ParameterStore.FormatError, .unsupportedVersion(2)) }
        let other = ParameterStore()
        var rng = RandomStream(seed: 0)
        other.add("x", rows: 1, cols: 1, .zeros, rng: &rng)
        XCTAssertThrowsError(try other.load(serialized: bytes)) { e in
            XCTAssertEqual(e as? ParameterStore.FormatError, .countMismatch(expected: 1, found: a.parameters.count))
        }
    }
}

final class OptimizerTests: XCTestCase {
    /// One scalar parameter p₀ = 1 with gradients 0.5 then −0.25, lr 0.1, β = (0.9, 0.999), ε = 1e-8.
    /// Hand-computed: step 1: m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25, p = 1 − 0.1·0.5/0.5 = 0.9.
    /// step 2: m = 0.045 − 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225,
    /// m̂ = 0.02/0.19, v̂ = 0.00031225/0.001999, p = 0.9 − 0.1·m̂/(√v̂ + ε) ≈ 0.873366.
    func runTwoSteps(_ make: (ParameterStore) -> Optimizer) -> [Float] {
        let store = ParameterStore()
        var rng = RandomStream(seed: 0)
        let p = store.add("p", rows: 1, cols: 1, .ones, rng: &rng)
        let opt = make(store)
        var out: [Float] = []
        for g in [Float(0.5), -0.25] {
            p.grad.fill(g)
            opt.step(lr: 0.1)
            out.append(p.value.scalar)
        }
        return out
    }

    func testAdamTwoSteps() {
        let p = runTwoSteps { Adam($0) }
        XCTAssertEqual(p[0], 0.9, accuracy: 1e-6)
        let mhat = 0.02 / 0.19, vhat = 0.00031225 / 0.001999
        XCTAssertEqual(Double(p[1]), 0.9 - 0.1 * mhat / (vhat.squareRoot() + 1e-8), accuracy: 1e-6)
        XCTAssertEqual(p[1], 0.873366, accuracy: 1e-5)
    }

    func testAdamWTwoSteps() {
        // Decoupled decay 0.1: p ← p·(1 − 0.1·0.1) first, then the same Adam update as above.
        let p = runTwoSteps { Adam.adamW($0, weightDecay: 0.1) }
        XCTAssertEqual(p[0], 0.99 - 0.1, accuracy: 1e-6)
        let mhat = 0.02 / 0.19, vhat = 0.00031225 / 0.001999
        XCTAssertEqual(Double(p[1]), 0.89 * 0.99 - 0.1 * mhat / (vhat.squareRoot() + 1e-8), accuracy: 1e-6)
        XCTAssertEqual(p[1], 0.854466, accuracy: 1e-5)
    }

    func testAdamL2TwoSteps() {
        // Coupled L2 0.1: g₁ = 0.5 + 0.1·1 = 0.6 → m̂ = 0.6, v̂ = 0.36, p = 0.9;
        // g₂ = −0.25 + 0.09 = −0.16 → m = 0.054 − 0.016 = 0.038, v = 0.0003596 + 0.0000256.
        let p = runTwoSteps { Adam($0, weightDecay: 0.1) }
        XCTAssertEqual(p[0], 0.9, accuracy: 1e-6)
        let mhat = 0.038 / 0.19, vhat = (0.999 * 0.00036 + 0.001 * 0.0256) / 0.001999
        XCTAssertEqual(Double(p[1]), 0.9 - 0.1 * mhat / (vhat.squareRoot() + 1e-8), accuracy: 1e-6)
    }

    func testSGDMomentum() {
        // b₁ = 0.5, p = 1 − 0.05 = 0.95; b₂ = 0.9·0.5 − 0.25 = 0.2, p = 0.95 − 0.02 = 0.93.
        let p = runTwoSteps { SGD($0, momentum: 0.9) }
        XCTAssertEqual(p[0], 0.95, accuracy: 1e-6)
        XCTAssertEqual(p[1], 0.93, accuracy: 1e-6)
    }

    func testClipGradNorm() {
        let store = ParameterStore()
        var rng = RandomStream(seed: 0)
        let a = store.add("a", rows: 1, cols: 2, .zeros, rng: &rng), b = store.add("b", rows: 1, cols: 1, .zeros, rng: &rng)
        a.grad.pointer[0] = 3; a.grad.pointer[1] = 0; b.grad.pointer[0] = 4
        XCTAssertEqual(clipGradNorm(store, maxNorm: 10), 5, accuracy: 1e-6)
        XCTAssertEqual(a.grad.scalars, [3, 0], "below the limit nothing changes")
        XCTAssertEqual(clipGradNorm(store, maxNorm: 1), 5, accuracy: 1e-6)
        XCTAssertEqual(a.grad[0, 0], 0.6, accuracy: 1e-5)
        XCTAssertEqual(b.grad[0, 0], 0.8, accuracy: 1e-5)
    }

    func testSchedules() {
        XCTAssertEqual(LearningRateSchedule.constant(0.3)(12345), 0.3)
        let s = LearningRateSchedule.warmupCosine(peak: 1, warmupSteps: 4, totalSteps: 14, floor: 0.1)
        XCTAssertEqual(s(0), 0.25, accuracy: 1e-6)
        XCTAssertEqual(s(3), 1, accuracy: 1e-6)
        XCTAssertEqual(s(4), 1, accuracy: 1e-6)
        XCTAssertEqual(s(9), 0.1 + 0.9 * 0.5, accuracy: 1e-6)   // halfway: cos(π/2) = 0
        XCTAssertEqual(s(14), 0.1, accuracy: 1e-6)
        XCTAssertEqual(s(1000), 0.1, accuracy: 1e-6)
        XCTAssertEqual(LearningRateSchedule.warmup(peak: 2, warmupSteps: 4)(1), 1)
        XCTAssertEqual(LearningRateSchedule.changed(.constant(2), atStep: 5, factor: 0.25)(4), 2)
        XCTAssertEqual(LearningRateSchedule.changed(.constant(2), atStep: 5, factor: 0.25)(5), 0.5)
    }
}

final class LayerTests: XCTestCase {
    func testLayersCompose() throws {
        let store = ParameterStore()
        var rng = RandomStream(seed: 3, purpose: .initialization)
        let net = Sequential([
            Linear(store, "in", inputs: 6, outputs: 8, activation: .relu, rng: &rng),
            LayerNorm(store, "ln", features: 8),
            Residual(Sequential([Linear(store, "r", inputs: 8, outputs: 8, rng: &rng), ActivationLayer(.tanh)])),
            BatchNorm1d(store, "bn", features: 8),
            Dropout(p: 0.5, rng: RandomStream(seed: 4, purpose: .dropout)),
            Linear(store, "out", inputs: 8, outputs: 2, rng: &rng),
        ])
        let x = Tensor.uniform(rows: 5, cols: 6, -1, 1, rng: &rng)
        let t = Tape()
        let y = net(t.constant(x), t)
        XCTAssertEqual(t.value(y).rows, 5); XCTAssertEqual(t.value(y).cols, 2)
        try t.backward(t.mean(y))
        XCTAssertGreaterThan(store.flatGrads.scalars.map(Swift.abs).max()!, 0)
        XCTAssertNotEqual(store["bn.running_mean"]!.value.scalars, Array(repeating: 0, count: 8))
        // Evaluation mode: deterministic (no dropout, running statistics).
        t.reset(); t.training = false
        let e1 = t.value(net(t.constant(x), t)).scalars
        let e2 = t.value(net(t.constant(x), t)).scalars
        XCTAssertEqual(e1, e2)
    }

    /// A small MLP overfits a synthetic regression problem: 32 points, 6 features, 3 targets.
    func testMLPOverfitsSmallProblem() throws {
        let store = ParameterStore()
        var rng = RandomStream(seed: 8, purpose: .initialization)
        let net = Sequential([
            Linear(store, "l0", inputs: 6, outputs: 32, activation: .relu, rng: &rng),
            Linear(store, "l1", inputs: 32, outputs: 32, activation: .relu, rng: &rng),
            Linear(store, "l2", inputs: 32, outputs: 3, rng: &rng),
        ])
        var data = RandomStream(seed: 9, purpose: .simulation)
        let x = Tensor.uniform(rows: 32, cols: 6, -1, 1, rng: &data)
        let y = Tensor.uniform(rows: 32, cols: 3, -1, 1, rng: &data)   // arbitrary targets: must be memorised
        let adam = Adam(store)
        let schedule = LearningRateSchedule.warmupCosine(peak: 1e-2, warmupSteps: 20, totalSteps: 1500, floor: 1e-4)
        let t = Tape()
        var first: Float = 0, last: Float = 0
        for step in 0..<1500 {
            t.reset()
            let loss = t.mseLoss(net(t.constant(x), t), t.constant(y))
            try t.backward(loss)
            clipGradNorm(store, maxNorm: 10)
            adam.step(lr: schedule(step))
            last = t.value(loss).scalar
            if step == 0 { first = last }
        }
        XCTAssertGreaterThan(first, 0.2)
        XCTAssertLessThan(last, 1e-3, "initial loss \(first), final \(last)")
    }
}
