import Foundation

/// A binary elementwise operation (specialised at compile time; no per-element closures).
public protocol BinaryElementOp { static func apply(_ a: Float, _ b: Float) -> Float }
public enum AddOp: BinaryElementOp { @inline(__always) public static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
public enum SubOp: BinaryElementOp { @inline(__always) public static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
public enum MulOp: BinaryElementOp { @inline(__always) public static func apply(_ a: Float, _ b: Float) -> Float { a * b } }
public enum DivOp: BinaryElementOp { @inline(__always) public static func apply(_ a: Float, _ b: Float) -> Float { a / b } }

/// The shape two operands broadcast to: each dimension equal, or 1 in one operand.
public func broadcastShape(_ a: (rows: Int, cols: Int), _ b: (rows: Int, cols: Int)) -> (rows: Int, cols: Int) {
    precondition((a.rows == b.rows || a.rows == 1 || b.rows == 1) && (a.cols == b.cols || a.cols == 1 || b.cols == 1),
                 "shapes \(a.rows)×\(a.cols) and \(b.rows)×\(b.cols) do not broadcast")
    return (a.rows == 1 ? b.rows : a.rows, a.cols == 1 ? b.cols : a.cols)
}

/// Elementwise kernels over raw pointers and tensors. `into:` variants write in place (no copy-on-write).
public enum Elementwise {
    /// out = a ∘ b with row/column/scalar broadcasting of either operand; `out` has the broadcast shape.
    @inlinable
    public static func binary<Op: BinaryElementOp>(_ op: Op.Type, _ a: Tensor, _ b: Tensor, into out: Tensor) {
        let (R, C) = broadcastShape(a.shape, b.shape)
        precondition(out.rows == R && out.cols == C, "output \(out.rows)×\(out.cols), broadcast shape \(R)×\(C)")
        let ap = a.pointer, bp = b.pointer, op = out.pointer
        let aRowStep = a.rows == 1 ? 0 : a.cols, bRowStep = b.rows == 1 ? 0 : b.cols
        let aFull = a.cols == C, bFull = b.cols == C
        if aFull && bFull && aRowStep == C && bRowStep == C {
            for i in 0..<(R * C) { op[i] = Op.apply(ap[i], bp[i]) }
            return
        }
        for r in 0..<R {
            let ar = ap + r * aRowStep, br = bp + r * bRowStep, o = op + r * C
            if aFull && bFull {
                for j in 0..<C { o[j] = Op.apply(ar[j], br[j]) }
            } else if aFull {
                let bv = br[0]
                for j in 0..<C { o[j] = Op.apply(ar[j], bv) }
            } else if bFull {
                let av = ar[0]
                for j in 0..<C { o[j] = Op.apply(av, br[j]) }
            } else {
                let v = Op.apply(ar[0], br[0])
                for j in 0..<C { o[j] = v }
            }
        }
    }

    public static func add(_ a: Tensor, _ b: Tensor) -> Tensor { make(AddOp.self, a, b) }
    public static func sub(_ a: Tensor, _ b: Tensor) -> Tensor { make(SubOp.self, a, b) }
    public static func mul(_ a: Tensor, _ b: Tensor) -> Tensor { make(MulOp.self, a, b) }
    public static func div(_ a: Tensor, _ b: Tensor) -> Tensor { make(DivOp.self, a, b) }

    @inlinable
    static func make<Op: BinaryElementOp>(_ op: Op.Type, _ a: Tensor, _ b: Tensor) -> Tensor {
        let s = broadcastShape(a.shape, b.shape)
        let out = Tensor(uninitializedRows: s.rows, cols: s.cols)
        binary(op, a, b, into: out)
        return out
    }

    /// Adds `src` (shape R×C) into `dst` whose shape is R×C or a broadcast-reduced version of it
    /// (1×C: column sums, R×1: row sums, 1×1: total), scaled by `alpha`. Used for gradients of broadcasts.
    public static func accumulateReduced(_ src: Tensor, into dst: Tensor, alpha: Float = 1) {
        let R = src.rows, C = src.cols
        let s = src.pointer, d = dst.pointer
        if dst.rows == R && dst.cols == C {
            if alpha == 1 { for i in 0..<(R * C) { d[i] += s[i] } } else { for i in 0..<(R * C) { d[i] += alpha * s[i] } }
        } else if dst.rows == 1 && dst.cols == C {
            for r in 0..<R { let sr = s + r * C; for j in 0..<C { d[j] += alpha * sr[j] } }
        } else if dst.rows == R && dst.cols == 1 {
            for r in 0..<R { d[r] += alpha * rowSum(s + r * C, C) }
        } else {
            precondition(dst.count == 1, "cannot reduce \(R)×\(C) into \(dst.rows)×\(dst.cols)")
            var t: Float = 0
            for r in 0..<R { t += rowSum(s + r * C, C) }
            d[0] += alpha * t
        }
    }

    @inline(__always)
    public static func rowSum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        // Eight partial sums: vectorisable and more accurate than one running sum.
        var acc = SIMD8<Float>()
        var j = 0
        while j + 8 <= n {
            acc += UnsafeRawPointer(p + j).loadUnaligned(as: SIMD8<Float>.self)
            j += 8
        }
        var s = acc.sum()
        while j < n { s += p[j]; j += 1 }
        return s
    }

    /// out[i] = f(x[i]) for a unary map.
    @inlinable
    public static func map<F: UnaryElementOp>(_ f: F.Type, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { out[i] = F.apply(x[i]) }
    }

    /// Blocked transpose of a rows×cols row-major matrix into cols×rows.
    public static func transpose(_ src: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>) {
        let B = 32
        var r0 = 0
        while r0 < rows {
            let r1 = min(r0 + B, rows)
            var c0 = 0
            while c0 < cols {
                let c1 = min(c0 + B, cols)
                for r in r0..<r1 { for c in c0..<c1 { dst[c * rows + r] = src[r * cols + c] } }
                c0 = c1
            }
            r0 = r1
        }
    }

    /// out = alpha·x (elementwise), in place into out (may alias x).
    public static func scale(_ x: Tensor, _ alpha: Float, into out: Tensor) {
        precondition(x.count == out.count)
        let xp = x.pointer, o = out.pointer
        for i in 0..<x.count { o[i] = alpha * xp[i] }
    }

    /// ReLU in place.
    public static func reluInPlace(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { p[i] = max(p[i], 0) }
    }
}

/// A unary elementwise function.
public protocol UnaryElementOp { static func apply(_ x: Float) -> Float }
public enum ExpFn: UnaryElementOp { @inline(__always) public static func apply(_ x: Float) -> Float { Foundation.exp(x) } }
public enum LogFn: UnaryElementOp { @inline(__always) public static func apply(_ x: Float) -> Float { Foundation.log(x) } }
public enum SqrtFn: UnaryElementOp { @inline(__always) public static func apply(_ x: Float) -> Float { x.squareRoot() } }
public enum AbsFn: UnaryElementOp { @inline(__always) public static func apply(_ x: Float) -> Float { abs(x) } }
public enum ReLUFn: UnaryElementOp { @inline(__always) public static func apply(_ x: Float) -> Float { max(x, 0) } }
public enum TanhFn: UnaryElementOp { @inline(__always) public static func apply(_ x: Float) -> Float { Foundation.tanh(x) } }
public enum SigmoidFn: UnaryElementOp {
    @inline(__always) public static func apply(_ x: Float) -> Float {
        x >= 0 ? 1 / (1 + Foundation.exp(-x)) : { let e = Foundation.exp(x); return e / (1 + e) }()
    }
}
public enum SoftplusFn: UnaryElementOp {
    /// log(1 + eˣ), stable for large |x|.
    @inline(__always) public static func apply(_ x: Float) -> Float {
        max(x, 0) + Foundation.log1p(Foundation.exp(-abs(x)))
    }
}
public enum LgammaFn: UnaryElementOp { @inline(__always) public static func apply(_ x: Float) -> Float { Foundation.lgammaf(x) } }

extension Tensor {
    /// f applied to every element, as a new tensor.
    public func map<F: UnaryElementOp>(_ f: F.Type) -> Tensor {
        let out = Tensor(uninitializedRows: rows, cols: cols)
        Elementwise.map(f, pointer, out.pointer, count)
        return out
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor { Elementwise.add(a, b) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { Elementwise.sub(a, b) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { Elementwise.mul(a, b) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { Elementwise.div(a, b) }
    public static func * (a: Tensor, s: Float) -> Tensor {
        let out = Tensor(uninitializedRows: a.rows, cols: a.cols)
        Elementwise.scale(a, s, into: out)
        return out
    }
}

/// digamma ψ(x) = d/dx log Γ(x), in Double: recurrence ψ(x) = ψ(x+1) − 1/x up to x ≥ 6, then the
/// asymptotic series log x − 1/(2x) − Σ B₂ₖ/(2k x²ᵏ); reflection for negative non-integers.
public func digamma(_ x: Double) -> Double {
    if x.isNaN || x == -.infinity { return .nan }
    if x == .infinity { return .infinity }
    if x <= 0 {
        if x == x.rounded(.down) { return .nan }  // poles at 0, −1, −2, …
        // ψ(1 − x) − ψ(x) = π cot(πx)
        return digamma(1 - x) - Double.pi / Foundation.tan(Double.pi * x)
    }
    var v = x
    var result = 0.0
    while v < 6 { result -= 1 / v; v += 1 }
    let inv = 1 / v, inv2 = inv * inv
    // Bernoulli terms: 1/12, 1/120, 1/252, 1/240, 1/132, 691/32760, 1/12
    let series = inv2 * (1.0 / 12 - inv2 * (1.0 / 120 - inv2 * (1.0 / 252 - inv2 * (1.0 / 240 - inv2 * (1.0 / 132 - inv2 * (691.0 / 32760 - inv2 / 12))))))
    return result + Foundation.log(v) - 0.5 * inv - series
}
