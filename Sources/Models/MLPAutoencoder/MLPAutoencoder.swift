import Autograd
import CellData
import Collectives
import Settings
import NN
import TensorCore
import Training

/// A plain MLP autoencoder (ReLU between layers, linear bottleneck and output, MSE): the reference
/// workload for the data-parallel runtime. The first layer takes the sparse input directly.
public final class MLPAutoencoder: Model {
    public struct Hyperparameters: ModelHyperparameters, Equatable {
        @Setting("Epochs.", min: 1)
        public var epochs = 10
        @Setting("Encoder widths after the input (the decoder mirrors them; the last is the bottleneck).")
        public var hidden = [1024, 128, 24]
        public init() {}
        public func validate() throws {
            if hidden.isEmpty || hidden.contains(where: { $0 < 1 }) { throw SettingsError(key: "model.hidden", "needs one or more positive widths") }
        }
    }
    public static let name = "mlp-ae"
    public static let summary = "MLP autoencoder (MSE on log-normalised values): the runtime's reference workload"
    public let hyperparameters: Hyperparameters
    public let store = ParameterStore()
    public let widths: [Int]
    let layers: [Linear]
    let data: CSRMatrix
    public var lossTermNames: [String] { [] }

    public convenience init(input: Dataset, hyperparameters: Hyperparameters, context: ModelContext, comm: Communicator) throws {
        self.init(input: input.x, hyperparameters: hyperparameters, seed: context.seed)
    }

    public init(input: CSRMatrix, hyperparameters: Hyperparameters = Hyperparameters(), seed: UInt64) {
        self.hyperparameters = hyperparameters
        let hidden = hyperparameters.hidden
        data = input
        widths = [input.cols] + hidden + hidden.dropLast().reversed() + [input.cols]
        var rng = RandomStream(seed: seed, purpose: .initialization)
        let bottleneck = hidden.count, w = widths, s = store
        var ls: [Linear] = []
        for l in 0..<(w.count - 1) {
            let act: Tape.Activation = (l == bottleneck - 1 || l == w.count - 2) ? .identity : .relu
            ls.append(Linear(s, "layer\(l)", inputs: w[l], outputs: w[l + 1], activation: act, rng: &rng))
        }
        layers = ls
    }

    public func loss(rows: [Int], context: StepContext, tape: Tape) throws -> (loss: Var, terms: [Float]) {
        if rows.isEmpty { return (tape.constant(Tensor.scalar(0)), []) }
        let xb = data.gatherRows(rows)
        var h = layers[0](xb, tape)
        for l in layers.dropFirst() { h = l(h, tape) }
        let target = tape.zeros(xb.rows, xb.cols)
        for i in 0..<xb.rows {
            for k in Int(xb.rowPtr[i])..<Int(xb.rowPtr[i + 1]) { target.pointer[i * xb.cols + Int(xb.colIdx[k])] = xb.values[k] }
        }
        return (tape.mseLoss(h, tape.constant(target)), [])
    }

    public var totalEpochs: Int { hyperparameters.epochs }
    public func phase(atEpoch epoch: Int) -> TrainingPhase { .pretrain }
    public var embeddingDim: Int { widths[layers.count / 2] }
    public func embedding(comm: Communicator) throws -> Tensor { embed() }

    /// The bottleneck embedding of this rank's cells (no gradient), in row chunks.
    public func embed(chunk: Int = 1024) -> Tensor {
        Tape.inferInBlocks(rows: data.rows, cols: widths[layers.count / 2], block: chunk) { rows, tape in
            var h = layers[0](data.gatherRows(rows), tape)
            for l in layers[1..<(layers.count / 2)] { h = l(h, tape) }
            return h
        }
    }
}
