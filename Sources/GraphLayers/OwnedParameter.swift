// Per-cell parameters (e.g. DFCN's node-fusion weights a, b ∈ R^{n × d}) are not replicated: the rank
// that owns a cell owns its row, its gradient and its Adam moments. Other ranks use a row through the
// halo exchange; its gradient goes back to the owner in the backward pass, so after the step the owner
// holds the whole gradient of the global loss and updates the row itself.
//
// The optimiser is lazy Adam (torch.optim.SparseAdam's rule): a step updates only the rows that took
// part in it (read by a local cell or served to another rank through the halo), with the step count
// shared by all rows for the bias correction. Dense Adam would also move every untouched row by its
// momentum, which costs O(rows) per step and O(N²/B) per epoch in mini-batches; in a full-graph step
// every row takes part, so the two rules give the same numbers there.
import Autograd
import Collectives
import Foundation
import Neighbors
import TensorCore

/// Rows of a per-cell parameter owned by this rank, with their gradient and Adam state.
public final class OwnedParameter {
    public let name: String
    public let rows: Int
    public let width: Int
    public var values: [Float]
    public var grads: [Float]
    public private(set) var firstMoment: [Float]
    public private(set) var secondMoment: [Float]
    public private(set) var steps = 0
    public var beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8
    private var isTouched: [Bool]
    /// Rows that took part in the current step, in first-use order.
    public private(set) var touchedRows: [Int32] = []

    public init(_ name: String, rows: Int, width: Int, fill: Float) {
        self.name = name; self.rows = rows; self.width = width
        values = [Float](repeating: fill, count: rows * width)
        grads = [Float](repeating: 0, count: rows * width)
        firstMoment = grads; secondMoment = grads
        isTouched = [Bool](repeating: false, count: rows)
    }

    public func zeroGrad() {
        for i in grads.indices { grads[i] = 0 }
        for r in touchedRows { isTouched[Int(r)] = false }
        touchedRows.removeAll(keepingCapacity: true)
    }

    /// Marks local row `r` as taking part in this step (its gradient may be non-zero).
    @inline(__always) public func touch(_ r: Int32) {
        if !isTouched[Int(r)] { isTouched[Int(r)] = true; touchedRows.append(r) }
    }

    /// One lazy Adam step on the rows that took part since the last step (see the header), then their
    /// gradient is cleared. Cost O(touched rows × width).
    public func step(lr: Float) {
        steps += 1
        let t = Float(steps)
        let c1 = 1 - Foundation.pow(beta1, t), c2 = 1 - Foundation.pow(beta2, t)
        let stepSize = lr / c1, invSqrtC2 = 1 / c2.squareRoot()
        for r in touchedRows {
            for e in (Int(r) * width)..<(Int(r) * width + width) {
                let g = grads[e]
                let m = beta1 * firstMoment[e] + (1 - beta1) * g
                let v = beta2 * secondMoment[e] + (1 - beta2) * g * g
                firstMoment[e] = m; secondMoment[e] = v
                values[e] -= stepSize * m / ((v.squareRoot() * invSqrtC2) + eps)
                grads[e] = 0
            }
            isTouched[Int(r)] = false
        }
        touchedRows.removeAll(keepingCapacity: true)
    }

    /// values, first and second moments side by side (rows × 3·width), for per-cell checkpoint shards.
    public var state: [Float] {
        var out = [Float](repeating: 0, count: rows * 3 * width)
        for i in 0..<rows {
            for j in 0..<width {
                out[i * 3 * width + j] = values[i * width + j]
                out[i * 3 * width + width + j] = firstMoment[i * width + j]
                out[i * 3 * width + 2 * width + j] = secondMoment[i * width + j]
            }
        }
        return out
    }

    /// Restores `state` (rows × 3·width) and the step count.
    public func restore(state s: [Float], steps: Int) {
        precondition(s.count == rows * 3 * width, "\(name): state of \(s.count) values for \(rows) × 3·\(width)")
        for i in 0..<rows {
            for j in 0..<width {
                values[i * width + j] = s[i * 3 * width + j]
                firstMoment[i * width + j] = s[i * 3 * width + width + j]
                secondMoment[i * width + j] = s[i * 3 * width + 2 * width + j]
            }
        }
        self.steps = steps
        zeroGrad()
    }
}

extension Tape {
    /// The rows `index` of an owned parameter as a (index.count × width) value: index ≥ 0 is a row this
    /// rank owns, index < 0 is row −1 − index of `halo` (fetched from its owner). Gradients go into
    /// `p.grads`, those of halo rows to their owners. Collective when `halo` is given.
    public func ownedRows(_ p: OwnedParameter, index: [Int32], halo: HaloPlan?) throws -> Var {
        let w = p.width
        let remote: [Float] = try halo.map { plan in try p.values.withUnsafeBufferPointer { try plan.fetch($0, width: w) } } ?? []
        for s in index where s >= 0 { p.touch(s) }
        if let halo { for r in halo.servedRows { p.touch(r) } }
        let out = alloc(index.count, w)
        for (i, s) in index.enumerated() {
            let dst = out.pointer + i * w
            if s >= 0 {
                precondition(Int(s) < p.rows, "\(p.name): row \(s) outside 0..<\(p.rows)")
                p.values.withUnsafeBufferPointer { dst.update(from: $0.baseAddress! + Int(s) * w, count: w) }
            } else {
                let h = Int(-1 - s)
                remote.withUnsafeBufferPointer { dst.update(from: $0.baseAddress! + h * w, count: w) }
            }
        }
        let haloCount = halo?.rows.count ?? 0
        return push(out, requiresGrad: true) { _, g in
            var gh = [Float](repeating: 0, count: haloCount * w)
            p.grads.withUnsafeMutableBufferPointer { gp in
                for (i, s) in index.enumerated() {
                    let src = g.pointer + i * w
                    let dst = s >= 0 ? gp.baseAddress! + Int(s) * w : nil
                    if let dst { for j in 0..<w { dst[j] += src[j] } } else {
                        let h = Int(-1 - s)
                        for j in 0..<w { gh[h * w + j] += src[j] }
                    }
                }
            }
            if let halo {
                let comm = halo.communicator
                comm.orAbort {
                    try gh.withUnsafeBufferPointer { hb in
                        try p.grads.withUnsafeMutableBufferPointer { try halo.accumulate(hb, width: w, into: $0.baseAddress!) }
                    }
                }
            }
        }
    }
}
