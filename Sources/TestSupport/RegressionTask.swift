// A small training task for the Trainer's own tests (unit and multi-rank): linear regression of
// targets from inputs, MSE, whose data are small integers so that the gradients of different
// splittings of a batch can be compared against a stated rounding budget.
import Autograd
import NN
import TensorCore
import Training

public final class RegressionTask: TrainingTask {
    public let store = ParameterStore()
    public var lossTermNames: [String] { ["mse"] }
    let layer: Linear
    /// Rows of every cell (global id g → row g of the data), this rank's ids.
    let x: Tensor, y: Tensor
    public let ids: [Int64]
    /// Requests the end of training when this epoch ends (as a convergence rule would); nil: never.
    public var finishAfterEpoch: Int? = nil

    /// `cells` cells in all with `inputs` features and `outputs` targets; this task holds `ids`.
    public init(cells: Int, inputs: Int = 6, outputs: Int = 3, ids: [Int64], seed: UInt64 = 5) {
        var rng = RandomStream(seed: seed, purpose: .initialization)
        layer = Linear(store, "w", inputs: inputs, outputs: outputs, rng: &rng)
        var data = RandomStream(seed: seed, purpose: .simulation)
        let allX = (0..<(cells * inputs)).map { _ in Float(Int(data.next() % 7) - 3) }
        let allY = (0..<(cells * outputs)).map { _ in Float(Int(data.next() % 9) - 4) }
        self.ids = ids
        x = Tensor(rows: ids.count, cols: inputs, values: ids.flatMap { g in allX[Int(g) * inputs..<(Int(g) + 1) * inputs] })
        y = Tensor(rows: ids.count, cols: outputs, values: ids.flatMap { g in allY[Int(g) * outputs..<(Int(g) + 1) * outputs] })
    }

    public func loss(rows: [Int], context: StepContext, tape: Tape) throws -> (loss: Var, terms: [Float]) {
        if rows.isEmpty { return (tape.constant(Tensor.scalar(0)), [0]) }
        let xb = Tensor(rows: rows.count, cols: x.cols, values: rows.flatMap { r in (0..<x.cols).map { x[r, $0] } })
        let yb = Tensor(rows: rows.count, cols: y.cols, values: rows.flatMap { r in (0..<y.cols).map { y[r, $0] } })
        let l = tape.mseLoss(layer(tape.constant(xb), tape), tape.constant(yb))
        return (l, [tape.value(l).scalar])
    }

    public func epochDidEnd(_ epoch: Int, trainer: Trainer) throws {
        if epoch == finishAfterEpoch { trainer.finishRequested = true }
    }

    /// The parameters as a flat array.
    public var parameters: [Float] { Array(UnsafeBufferPointer(start: store.valuesPointer, count: store.count)) }
}
