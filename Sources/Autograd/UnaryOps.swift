// Elementwise differentiable functions: f(x) forward and f'(x, y) backward side by side.
import Foundation
import TensorCore

/// An elementwise function with its derivative, given the input x and the output y = f(x).
public protocol DifferentiableUnary {
    func f(_ x: Float) -> Float
    func df(_ x: Float, _ y: Float) -> Float
}

public struct ExpOp: DifferentiableUnary {
    @inline(__always) public func f(_ x: Float) -> Float { Foundation.exp(x) }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { y }
}
public struct LogOp: DifferentiableUnary {
    @inline(__always) public func f(_ x: Float) -> Float { Foundation.log(x) }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { 1 / x }
}
/// log Γ(x); derivative digamma(x).
public struct LgammaOp: DifferentiableUnary {
    @inline(__always) public func f(_ x: Float) -> Float { Foundation.lgammaf(x) }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { Float(digamma(Double(x))) }
}
public struct PowOp: DifferentiableUnary {
    public let p: Float
    @inline(__always) public func f(_ x: Float) -> Float { Foundation.pow(x, p) }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { p == 0 ? 0 : p * Foundation.pow(x, p - 1) }
}
public struct SqrtOp: DifferentiableUnary {
    @inline(__always) public func f(_ x: Float) -> Float { x.squareRoot() }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { 0.5 / y }
}
/// |x|; derivative sign(x) (0 at 0).
public struct AbsOp: DifferentiableUnary {
    @inline(__always) public func f(_ x: Float) -> Float { abs(x) }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : 0) }
}
/// min(max(x, lo), hi); gradient passes where lo ≤ x ≤ hi.
public struct ClampOp: DifferentiableUnary {
    public let lo: Float, hi: Float
    @inline(__always) public func f(_ x: Float) -> Float { min(max(x, lo), hi) }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { x >= lo && x <= hi ? 1 : 0 }
}
public struct ReLUOp: DifferentiableUnary {
    @inline(__always) public func f(_ x: Float) -> Float { max(x, 0) }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { x > 0 ? 1 : 0 }
}
public struct LeakyReLUOp: DifferentiableUnary {
    public let slope: Float
    @inline(__always) public func f(_ x: Float) -> Float { x > 0 ? x : slope * x }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { x > 0 ? 1 : slope }
}
public struct TanhOp: DifferentiableUnary {
    @inline(__always) public func f(_ x: Float) -> Float { Foundation.tanh(x) }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { 1 - y * y }
}
public struct SigmoidOp: DifferentiableUnary {
    @inline(__always) public func f(_ x: Float) -> Float { SigmoidFn.apply(x) }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { y * (1 - y) }
}
/// log(1 + eˣ); derivative sigmoid(x).
public struct SoftplusOp: DifferentiableUnary {
    @inline(__always) public func f(_ x: Float) -> Float { SoftplusFn.apply(x) }
    @inline(__always) public func df(_ x: Float, _ y: Float) -> Float { SigmoidFn.apply(x) }
}

extension Tape {
    /// y = op.f(x) elementwise; backward dx += g·op.df(x, y).
    public func unary<Op: DifferentiableUnary>(_ x: Var, _ op: Op) -> Var {
        let xv = value(x)
        let out = alloc(xv.rows, xv.cols)
        let xp = xv.pointer, yp = out.pointer
        for i in 0..<xv.count { yp[i] = op.f(xp[i]) }
        return push(out, requiresGrad: needs(x)) { t, g in
            if let gx = t.gradAccumulator(x) {
                let gp = g.pointer, d = gx.pointer
                for i in 0..<gx.count { d[i] += gp[i] * op.df(xp[i], yp[i]) }
            }
        }
    }

    public func exp(_ x: Var) -> Var { unary(x, ExpOp()) }
    public func log(_ x: Var) -> Var { unary(x, LogOp()) }
    public func lgamma(_ x: Var) -> Var { unary(x, LgammaOp()) }
    public func pow(_ x: Var, _ p: Float) -> Var { unary(x, PowOp(p: p)) }
    public func sqrt(_ x: Var) -> Var { unary(x, SqrtOp()) }
    public func abs(_ x: Var) -> Var { unary(x, AbsOp()) }
    public func clamp(_ x: Var, _ lo: Float, _ hi: Float) -> Var { unary(x, ClampOp(lo: lo, hi: hi)) }
    public func relu(_ x: Var) -> Var { unary(x, ReLUOp()) }
    public func leakyRelu(_ x: Var, slope: Float = 0.01) -> Var { unary(x, LeakyReLUOp(slope: slope)) }
    public func tanh(_ x: Var) -> Var { unary(x, TanhOp()) }
    public func sigmoid(_ x: Var) -> Var { unary(x, SigmoidOp()) }
    public func softplus(_ x: Var) -> Var { unary(x, SoftplusOp()) }
}
