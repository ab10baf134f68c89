// Graph propagation on the tape and the two convolution layers built from it (PyTorch Geometric's
// TAGConv and GCNConv). Forward: the halo rows are fetched, then out = Â·[local; halo]. Backward: the
// transpose product; the gradients of halo rows are sent back to the ranks that own them.
import Autograd
import Collectives
import NN
import TensorCore

extension Tape {
    /// Â·x for a graph operator whose inputs are `x` (its localInputs rows) and the halo rows fetched
    /// from other ranks. Collective in forward and backward when `op` is distributed: every rank must
    /// record it in the same order.
    public func propagate(_ x: Var, _ op: GraphOperator) throws -> Var {
        let xv = value(x), w = xv.cols
        let halo = try op.fetchHalo(xv)
        let out = alloc(op.rows, w)
        op.apply(xv.pointer, halo: halo, width: w, into: out.pointer)
        return push(out, requiresGrad: requiresGrad(x)) { t, g in
            guard let gx = t.gradAccumulator(x) else { return }
            op.mustSucceed { try op.applyTranspose(g.pointer, width: w, into: gx.pointer) }
        }
    }
}

/// PyTorch Geometric's TAGConv (Du et al. 2017): X′ = Σ_{k=0..K} Â^k X Θ_k + b with Â the operator
/// given at call time (`GraphNormalization.tagConv`: symmetric normalisation, no self loops added).
/// Evaluated as Horner's scheme X Θ_0 + Â(X Θ_1 + Â(X Θ_2 + Â X Θ_3)), so only out-width rows are
/// ever propagated (K products with Â, each one halo exchange forward and one backward). Θ_k are
/// in × out without bias, initialised as torch's Linear (U(±1/√in)); the bias starts at zero (PyG).
public final class TAGConv {
    public let weights: [Parameter]
    public let bias: Parameter?
    public let hops: Int

    public init(_ store: ParameterStore, _ name: String, inputs: Int, outputs: Int, hops: Int = 3, bias: Bool = true,
                rng: inout RandomStream) {
        precondition(hops >= 0, "TAGConv needs K ≥ 0 hops")
        let torchLinear = Initializer.kaimingUniform(gain: (1.0 / 3.0).squareRoot())   // kaiming_uniform(a = √5)
        weights = (0...hops).map { store.add("\(name).lins.\($0).weight", rows: inputs, cols: outputs, torchLinear, rng: &rng) }
        self.bias = bias ? store.add("\(name).bias", rows: 1, cols: outputs, .zeros, rng: &rng) : nil
        self.hops = hops
    }

    public func callAsFunction(_ x: Var, graph: GraphOperator, _ tape: Tape) throws -> Var {
        try horner(graph, tape) { k, b in tape.linear(x, tape.param(weights[k]), b) }
    }

    /// The same layer on sparse input rows (e.g. expression), never densified.
    public func callAsFunction(_ x: CSRMatrix, graph: GraphOperator, _ tape: Tape) throws -> Var {
        try horner(graph, tape) { k, b in tape.linear(x, tape.param(weights[k]), b) }
    }

    private func horner(_ graph: GraphOperator, _ tape: Tape, _ term: (Int, Var?) -> Var) throws -> Var {
        let b = bias.map { tape.param($0) }
        guard hops > 0 else { return term(0, b) }
        var t = term(hops, nil)
        for k in stride(from: hops - 1, through: 0, by: -1) {
            t = tape.add(try tape.propagate(t, graph), term(k, k == 0 ? b : nil))
        }
        return t
    }
}

/// PyTorch Geometric's GCNConv (Kipf & Welling 2017): X′ = Â X Θ + b with Â from
/// `GraphNormalization.gcn` (symmetric normalisation with self loops). Θ Glorot-uniform, b zero (PyG).
public final class GCNConv {
    public let weight: Parameter
    public let bias: Parameter?

    public init(_ store: ParameterStore, _ name: String, inputs: Int, outputs: Int, bias: Bool = true, rng: inout RandomStream) {
        weight = store.add("\(name).weight", rows: inputs, cols: outputs, .xavierUniform(), rng: &rng)
        self.bias = bias ? store.add("\(name).bias", rows: 1, cols: outputs, .zeros, rng: &rng) : nil
    }

    public func callAsFunction(_ x: Var, graph: GraphOperator, _ tape: Tape) throws -> Var {
        try finish(tape.propagate(tape.linear(x, tape.param(weight), nil), graph), tape)
    }

    public func callAsFunction(_ x: CSRMatrix, graph: GraphOperator, _ tape: Tape) throws -> Var {
        try finish(tape.propagate(tape.linear(x, tape.param(weight), nil), graph), tape)
    }

    private func finish(_ h: Var, _ tape: Tape) -> Var {
        guard let bias else { return h }
        return tape.add(h, tape.param(bias))
    }
}
