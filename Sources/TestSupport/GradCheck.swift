// Finite-difference gradient checking (test support; used by the tests of every differentiable op).
import Autograd
import TensorCore

/// Compares a tape's gradients with central finite differences.
///
/// The op's output O (any shape) is reduced to the scalar L = Σ Rᵢⱼ·Oᵢⱼ with fixed random weights R,
/// accumulated in Double, so that every output element (and every cross term of the backward)
/// is exercised while the reduction adds no Float rounding. The analytic gradient is the backward
/// pass seeded with R. Each input element x is moved to x ± h and
///   numeric = (L(x + h) − L(x − h)) / 2h.
/// Error budget with Float32 forwards: each output is off by ≈ ulp ≈ 6e-8·|O|, so the rounding part
/// of the difference is ≈ 6e-8·Σ|R·O| / h; with h = 1e-2 and outputs of order 1 on the small shapes
/// used in tests (≤ 100 elements) that is ≲ 1e-4. The truncation part is h²/6·|L'''| ≈ 2e-5 for smooth
/// functions of order-1 inputs. Hence the default tolerance |a − n| ≤ atol + rtol·max(|a|, |n|)
/// with atol = 2e-3, rtol = 1e-2: an order of magnitude above both, far below any real bug
/// (a wrong factor or a missing term gives errors of order 1).
public enum GradCheck {
    public struct Report: CustomStringConvertible {
        public var worst: Double = 0          // worst |a − n| / (atol + rtol·max(|a|, |n|)); ≤ 1 passes
        public var worstInput = -1, worstIndex = -1
        public var analytic: Double = 0, numeric: Double = 0
        public var checked = 0
        public var passed: Bool { worst <= 1 && checked > 0 }
        public var description: String {
            "gradcheck: \(checked) elements, worst ratio \(worst) at input \(worstInput)[\(worstIndex)]: analytic \(analytic), numeric \(numeric)"
        }
    }

    /// How an input enters the tape.
    public enum InputKind { case variable, parameter }

    /// Checks d(Σ R⊙build(inputs))/d(inputs) for all inputs marked as differentiable.
    /// - Parameters:
    ///   - inputs: the point at which to check (not modified).
    ///   - kinds: per input, `.variable` or `.parameter` (parameters receive gradients in an external buffer); default all variables.
    ///   - build: records the op(s) on the tape and returns the output.
    public static func check(_ inputs: [Tensor], kinds: [InputKind]? = nil, h: Float = 1e-2,
                             rtol: Double = 1e-2, atol: Double = 2e-3, seed: UInt64 = 7,
                             training: Bool = true,
                             _ build: (Tape, [Var]) -> Var) -> Report {
        let kinds = kinds ?? Array(repeating: .variable, count: inputs.count)
        let points = inputs.map { $0.copy() }
        let tape = Tape()
        tape.training = training
        // Analytic.
        var grads: [Tensor] = []
        var vars: [Var] = []
        for (i, x) in points.enumerated() {
            if kinds[i] == .parameter {
                let g = Tensor(rows: x.rows, cols: x.cols, repeating: .nan)  // must be overwritten
                grads.append(g)
                vars.append(tape.parameter(x, grad: g))
            } else {
                vars.append(tape.variable(x))
                grads.append(Tensor(rows: 0, cols: 0))
            }
        }
        let out = build(tape, vars)
        let os = tape.shape(out)
        var rng = RandomStream(seed: seed, purpose: .custom("gradcheck"))
        let r = Tensor.uniform(rows: os.rows, cols: os.cols, -1, 1, rng: &rng)
        do { try tape.backward(out, seed: r) } catch { preconditionFailure("backward with no gradient hook threw: \(error)") }
        for (i, v) in vars.enumerated() where kinds[i] == .variable {
            grads[i] = tape.grad(v)?.copy() ?? Tensor(rows: points[i].rows, cols: points[i].cols)
        }
        for i in grads.indices where kinds[i] == .parameter { grads[i] = grads[i].copy() }
        tape.reset()

        func loss() -> Double {
            let t = Tape()
            t.training = training
            let vs = points.map { t.constant($0) }
            let o = t.value(build(t, vs))
            var s = 0.0
            for k in 0..<o.count { s += Double(r.pointer[k]) * Double(o.pointer[k]) }
            return s
        }

        var report = Report()
        for (i, x) in points.enumerated() {
            for k in 0..<x.count {
                let orig = x.pointer[k]
                x.pointer[k] = orig + h
                let lp = loss()
                x.pointer[k] = orig - h
                let lm = loss()
                x.pointer[k] = orig
                // The actual step after Float rounding of orig ± h.
                let step = Double(orig + h) - Double(orig - h)
                let numeric = (lp - lm) / step
                let analytic = Double(grads[i].pointer[k])
                let ratio = analytic.isFinite ? abs(analytic - numeric) / (atol + rtol * max(abs(analytic), abs(numeric))) : .infinity
                report.checked += 1
                if ratio > report.worst || report.worstInput < 0 {
                    report.worst = ratio; report.worstInput = i; report.worstIndex = k
                    report.analytic = analytic; report.numeric = numeric
                }
            }
        }
        return report
    }
}
