// Layers over the tape. Layers hold `Parameter`s of a `ParameterStore`; calling one records ops.
import Autograd
import TensorCore

public protocol Layer: AnyObject {
    func callAsFunction(_ x: Var, _ tape: Tape) -> Var
}

/// act(X·W + b) with W inputs×outputs (fan-in × fan-out), b 1×outputs; one fused tape op.
public final class Linear: Layer {
    public let weight: Parameter
    public let bias: Parameter?
    public let activation: Tape.Activation

    public init(_ store: ParameterStore, _ name: String, inputs: Int, outputs: Int, bias: Bool = true,
                activation: Tape.Activation = .identity, initializer: Initializer? = nil, rng: inout RandomStream) {
        let defaultInit: Initializer
        switch activation {
        case .relu: defaultInit = .kaimingUniform()
        case .leakyRelu(let s): defaultInit = .kaimingUniform(gain: (2 / (1 + s * s)).squareRoot())
        default: defaultInit = .xavierUniform()
        }
        let initW = initializer ?? defaultInit
        weight = store.add(name + ".weight", rows: inputs, cols: outputs, initW, rng: &rng)
        self.bias = bias ? store.add(name + ".bias", rows: 1, cols: outputs, .zeros, rng: &rng) : nil
        self.activation = activation
    }

    public func callAsFunction(_ x: Var, _ tape: Tape) -> Var {
        tape.linear(x, tape.param(weight), bias.map { tape.param($0) }, activation: activation)
    }

    /// The same layer applied to a sparse input batch.
    public func callAsFunction(_ x: CSRMatrix, _ tape: Tape) -> Var {
        tape.linear(x, tape.param(weight), bias.map { tape.param($0) }, activation: activation)
    }
}

public final class LayerNorm: Layer {
    public let gamma: Parameter?, beta: Parameter?
    public let eps: Float

    public init(_ store: ParameterStore, _ name: String, features: Int, eps: Float = 1e-5, affine: Bool = true) {
        var rng = RandomStream(seed: 0)
        gamma = affine ? store.add(name + ".gamma", rows: 1, cols: features, .ones, rng: &rng) : nil
        beta = affine ? store.add(name + ".beta", rows: 1, cols: features, .zeros, rng: &rng) : nil
        self.eps = eps
    }

    public func callAsFunction(_ x: Var, _ tape: Tape) -> Var {
        tape.layerNorm(x, gamma: gamma.map { tape.param($0) }, beta: beta.map { tape.param($0) }, eps: eps)
    }
}

/// Batch normalisation over features (columns); running statistics are store buffers.
/// Uses batch statistics when `tape.training`, running ones otherwise.
public final class BatchNorm1d: Layer {
    public let gamma: Parameter?, beta: Parameter?
    public let runningMean: Parameter, runningVar: Parameter
    public let momentum: Float, eps: Float

    public init(_ store: ParameterStore, _ name: String, features: Int, momentum: Float = 0.1, eps: Float = 1e-5, affine: Bool = true) {
        var rng = RandomStream(seed: 0)
        gamma = affine ? store.add(name + ".gamma", rows: 1, cols: features, .ones, rng: &rng) : nil
        beta = affine ? store.add(name + ".beta", rows: 1, cols: features, .zeros, rng: &rng) : nil
        runningMean = store.addBuffer(name + ".running_mean", rows: 1, cols: features, fill: 0)
        runningVar = store.addBuffer(name + ".running_var", rows: 1, cols: features, fill: 1)
        self.momentum = momentum; self.eps = eps
    }

    public func callAsFunction(_ x: Var, _ tape: Tape) -> Var {
        tape.batchNorm(x, gamma: gamma.map { tape.param($0) }, beta: beta.map { tape.param($0) },
                       runningMean: runningMean.value, runningVar: runningVar.value, momentum: momentum, eps: eps)
    }
}

/// Inverted dropout with its own random stream (identity when the tape is not training).
public final class Dropout: Layer {
    public let p: Float
    public var rng: RandomStream

    public init(p: Float, rng: RandomStream) { self.p = p; self.rng = rng }

    public func callAsFunction(_ x: Var, _ tape: Tape) -> Var { tape.dropout(x, p: p, rng: &rng) }
}

/// A parameter-free elementwise activation as a layer.
public final class ActivationLayer: Layer {
    public enum Kind: Sendable { case relu, leakyRelu(Float), tanh, sigmoid, softplus }
    public let kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    public func callAsFunction(_ x: Var, _ tape: Tape) -> Var {
        switch kind {
        case .relu: return tape.relu(x)
        case .leakyRelu(let s): return tape.leakyRelu(x, slope: s)
        case .tanh: return tape.tanh(x)
        case .sigmoid: return tape.sigmoid(x)
        case .softplus: return tape.softplus(x)
        }
    }
}

public final class Sequential: Layer {
    public let layers: [Layer]
    public init(_ layers: [Layer]) { self.layers = layers }
    public func callAsFunction(_ x: Var, _ tape: Tape) -> Var {
        var h = x
        for l in layers { h = l(h, tape) }
        return h
    }
}

/// x + block(x) (the block must keep the width).
public final class Residual: Layer {
    public let block: Layer
    public init(_ block: Layer) { self.block = block }
    public func callAsFunction(_ x: Var, _ tape: Tape) -> Var { tape.add(x, block(x, tape)) }
}
