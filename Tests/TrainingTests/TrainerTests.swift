// The Trainer itself on one rank: gradient accumulation, clipping, schedules, the optimiser choice,
// stopping at max_steps. (Each reduction strategy against a single-rank run: MPIChecks, under mpirun.)
import Collectives
import Foundation
import NN
import TensorCore
import TestSupport
import XCTest
@testable import Training

final class TrainerTests: XCTestCase {
    let comm = Communicator.world
    let cells = 32

    func trainer(_ configure: (inout TrainerConfig) -> Void = { _ in }, epochs: Int = 1, change: (Int, Float)? = nil) throws
        -> (Trainer, RegressionTask) {
        let task = RegressionTask(cells: cells, ids: (0..<cells).map(Int64.init))
        var c = TrainerConfig()
        c.batchSize = 8; c.optimizer = .sgd; c.momentum = 0; c.lr = 0.01
        configure(&c)
        if c.optimizer != .sgd { c.momentum = 0.9 }
        let plan = TrainingPlan(epochs: epochs, seed: 3, learningRateChange: change.map { (epoch: $0.0, factor: $0.1) })
        return (try Trainer(task: task, config: c, plan: plan, cellIds: task.ids, comm: comm), task)
    }

    /// Largest |a − b| over max |a| (both parameter vectors).
    func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) }.max()! / a.map(abs).max()!
    }

    func testAccumulationGivesTheSameStepAsOneBatch() throws {
        // Rounding budget: the gradient is one sum of 8 cells' terms either way, in another order;
        // each term and the sum are float32, so 3 steps differ by a few ulps of the parameters.
        let budget: Float = 16 * Float.ulpOfOne
        for k in [2, 3, 4] {
            let (one, t1) = try trainer()
            let (acc, tk) = try trainer { $0.accumulation = k }
            let before = t1.parameters
            XCTAssertEqual(before, tk.parameters)
            var l1: [Double] = [], lk: [Double] = []
            for _ in 0..<3 { l1.append(try one.step().0); lk.append(try acc.step().0) }
            XCTAssertLessThanOrEqual(relativeDifference(t1.parameters, tk.parameters), budget, "\(k) micro-batches")
            XCTAssertGreaterThan(relativeDifference(before, tk.parameters), 1e-3, "the steps moved the parameters")
            for (a, b) in zip(l1, lk) { XCTAssertEqual(a, b, accuracy: 1e-5 * abs(a), "\(k) micro-batches: the step's mean loss") }
        }
    }

    func testClippingBoundsTheUpdate() throws {
        let clip: Float = 1e-3
        let (t, task) = try trainer { $0.clipNorm = clip; $0.lr = 1 }
        let before = task.parameters
        _ = try t.step()
        let delta = zip(task.parameters, before).map { Double($0 - $1) }
        let norm = delta.map { $0 * $0 }.reduce(0, +).squareRoot()
        // SGD without momentum, lr 1: Δp = −g_clipped, ‖g_clipped‖ = clip (the gradient is far larger here).
        // Budget: each Δp is read back as a difference of float32 parameters, off by up to one ulp of
        // the largest parameter, so ‖Δp‖ is known to √n ulps (+ the clip factor's own rounding).
        let ulp = Double(task.parameters.map(abs).max()!.ulp)
        XCTAssertEqual(norm, Double(clip), accuracy: Double(delta.count).squareRoot() * ulp + 1e-6 * Double(clip))
        let (u, task2) = try trainer { $0.lr = 1 }
        _ = try u.step()
        let free = zip(task2.parameters, before).map { Double($0 - $1) }.map { $0 * $0 }.reduce(0, +).squareRoot()
        XCTAssertGreaterThan(free, 100 * norm, "without clipping the same step is much larger")
    }

    func testSchedules() throws {
        let (c, _) = try trainer()
        XCTAssertEqual(c.learningRate(at: 0), 0.01); XCTAssertEqual(c.learningRate(at: 999), 0.01)
        let (w, _) = try trainer { $0.warmupSteps = 4 }
        XCTAssertEqual((0..<6).map { w.learningRate(at: $0) }, [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
        let (cos, _) = try trainer({ $0.schedule = .cosine }, epochs: 2)
        let total = 2 * cos.stepsPerEpoch
        XCTAssertEqual(cos.learningRate(at: 0), 0.01, accuracy: 1e-9)
        XCTAssertEqual(cos.learningRate(at: total / 2), 0.005, accuracy: 1e-6)
        XCTAssertLessThan(cos.learningRate(at: total - 1), 0.001)
        let (ch, _) = try trainer({ _ in }, epochs: 3, change: (1, 0.5))
        let spe = ch.stepsPerEpoch
        XCTAssertEqual(ch.learningRate(at: spe - 1), 0.01)
        XCTAssertEqual(ch.learningRate(at: spe), 0.005)
    }

    func testOptimizerChoiceAndMaxSteps() throws {
        for kind in OptimizerKind.allCases {
            let (t, task) = try trainer({ $0.optimizer = kind; $0.maxSteps = 5 }, epochs: 10)
            let before = task.parameters
            XCTAssertEqual(try t.run(), .completed)
            XCTAssertEqual(t.globalStep, 5, "\(kind)")
            XCTAssertLessThan(t.lossHistory.last!, t.lossHistory.first!, "\(kind): the loss goes down")
            XCTAssertNotEqual(before, task.parameters)
        }
        let (a, _) = try trainer { $0.optimizer = .adamw; $0.weightDecay = 0.1 }
        XCTAssertTrue(a.optimizer is Adam)
        XCTAssertTrue(a.reducer is LocalReducer, "one rank reduces nothing, whatever the strategy")
    }

    func testEpochHistoryIsTheMeanOfEachEpochsSteps() throws {
        let (t, _) = try trainer({ _ in }, epochs: 3)
        XCTAssertEqual(try t.run(), .completed)
        let spe = t.stepsPerEpoch
        XCTAssertEqual(t.epochHistory.map(\.epoch), [0, 1, 2])
        XCTAssertEqual(t.lossHistory.count, 3 * spe)
        for (e, h) in t.epochHistory.enumerated() {
            let steps = t.lossHistory[(e * spe)..<((e + 1) * spe)]
            let mean = steps.reduce(0, +) / Double(spe)
            XCTAssertEqual(h.loss, mean, accuracy: 1e-12 * abs(mean), "epoch \(e)")
            XCTAssertEqual(h.terms.count, t.task.lossTermNames.count)
        }
        XCTAssertLessThan(t.epochHistory.last!.loss, t.epochHistory.first!.loss)
    }

    /// The epoch history travels in checkpoints: stopped after 2 of 4 epochs and resumed, the run's
    /// history holds all four epochs, bit for bit the uninterrupted run's.
    func testEpochHistorySurvivesAResume() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("history-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (whole, _) = try trainer({ _ in }, epochs: 4)
        XCTAssertEqual(try whole.run(), .completed)
        let spe = whole.stepsPerEpoch
        let (first, _) = try trainer({ $0.checkpointDir = dir.path; $0.maxSteps = 2 * spe }, epochs: 4)
        XCTAssertEqual(try first.run(), .completed)
        XCTAssertEqual(first.epochHistory.map(\.epoch), [0, 1])
        let (resumed, _) = try trainer({ $0.checkpointDir = dir.path }, epochs: 4)
        XCTAssertNotNil(try resumed.resumeIfPossible())
        XCTAssertEqual(resumed.epochHistory.map(\.epoch), [0, 1], "restored from the checkpoint")
        XCTAssertEqual(try resumed.run(), .completed)
        XCTAssertEqual(resumed.epochHistory.map(\.epoch), [0, 1, 2, 3])
        for (a, b) in zip(resumed.epochHistory, whole.epochHistory) {
            XCTAssertEqual(a.loss.bitPattern, b.loss.bitPattern, "epoch \(a.epoch)")
            XCTAssertEqual(a.terms.map(\.bitPattern), b.terms.map(\.bitPattern), "epoch \(a.epoch)")
        }
        // A finish the task requested (a convergence rule) is in the checkpoint: resuming it trains no further.
        let early = dir.appendingPathComponent("early")
        let (stopped, st) = try trainer({ $0.checkpointDir = early.path }, epochs: 4)
        st.finishAfterEpoch = 1
        XCTAssertEqual(try stopped.run(), .completed)
        XCTAssertEqual(stopped.globalStep, 2 * spe)
        let (again, at) = try trainer({ $0.checkpointDir = early.path }, epochs: 4)
        XCTAssertNotNil(try again.resumeIfPossible())
        XCTAssertEqual(try again.run(), .completed)
        XCTAssertEqual(again.globalStep, 2 * spe, "no step after the requested finish")
        XCTAssertEqual(at.parameters, st.parameters)
        // A damaged history is an error naming the file, not a silently shorter history.
        let h: [(epoch: Int, loss: Double, terms: [Double])] = [(0, 1.5, [0.25, -2]), (1, 0.75, [])]
        let bytes = Trainer.encodeHistory(h)
        let back = try Trainer.decodeHistory(bytes, checkpoint: dir)
        XCTAssertEqual(back.map(\.epoch), [0, 1]); XCTAssertEqual(back.map(\.loss), [1.5, 0.75]); XCTAssertEqual(back[0].terms, [0.25, -2])
        XCTAssertThrowsError(try Trainer.decodeHistory(Array(bytes.dropLast(8)), checkpoint: dir))
    }
}
