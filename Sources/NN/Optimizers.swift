// Optimisers over the flat buffers of a ParameterStore: one fused pass over all parameters.
import Foundation
import TensorCore

public protocol Optimizer: AnyObject {
    /// Applies one update with learning rate `lr` from the store's current gradients.
    func step(lr: Float)
    /// One update of the parameters in `range` only (a rank's shard in a sharded optimiser step),
    /// reading their gradients from `gradients` (gradients[0] belongs to parameter range.lowerBound).
    /// `range.lowerBound` must be a multiple of 16 and `gradients` 64-byte aligned.
    func step(lr: Float, range: Range<Int>, gradients: UnsafePointer<Float>)
    /// The per-parameter state buffers (Adam: m, v; SGD: momentum), each `store.count` long — for
    /// gathering shards of a sharded optimiser before a checkpoint.
    func stateBuffers() -> [UnsafeMutableBufferPointer<Float>]
    /// Updates done so far.
    var steps: Int { get }
    /// The whole state (step count and moment buffers) as bytes, for checkpoints.
    func stateBlob() -> [UInt8]
    /// Restores what `stateBlob` wrote; throws if it belongs to another optimiser or model size.
    func restore(state: [UInt8]) throws
}

/// Adam (Kingma & Ba) with bias correction. `weightDecay` is an L2 term added to the gradient
/// (Adam) or, with `decoupled`, a multiplicative shrink p ← p·(1 − lr·wd) before the update (AdamW).
public final class Adam: Optimizer {
    public let store: ParameterStore
    public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public let decoupled: Bool
    public internal(set) var steps = 0
    private var m: TensorStorage, v: TensorStorage
    var momentStorage: (m: TensorStorage, v: TensorStorage) { (m, v) }

    public init(_ store: ParameterStore, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0, decoupled: Bool = false) {
        self.store = store; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
        self.weightDecay = weightDecay; self.decoupled = decoupled
        m = TensorStorage(zeroedCount: store.count)
        v = TensorStorage(zeroedCount: store.count)
    }

    /// AdamW: Adam with decoupled weight decay (default 0.01, as in PyTorch).
    public static func adamW(_ store: ParameterStore, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                             weightDecay: Float = 0.01) -> Adam {
        Adam(store, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, decoupled: true)
    }

    /// First and second moment estimates (views; for checkpointing and tests).
    public var firstMoment: Tensor { Tensor(rows: 1, cols: store.count, storage: m) }
    public var secondMoment: Tensor { Tensor(rows: 1, cols: store.count, storage: v) }

    public func step(lr: Float) {
        step(lr: lr, range: 0..<store.count, gradients: store.gradsPointer)
    }

    public func step(lr: Float, range: Range<Int>, gradients: UnsafePointer<Float>) {
        precondition(m.count >= store.count, "parameters were added to the store after the optimiser was created")
        precondition((range.isEmpty || range.lowerBound % 16 == 0) && range.upperBound <= store.count, "optimiser range \(range) not 16-aligned or out of bounds")
        steps += 1
        let t = Float(steps)
        let b1 = beta1, b2 = beta2
        let c1 = 1 - Foundation.pow(b1, t), c2 = 1 - Foundation.pow(b2, t)
        let stepSize = lr / c1
        let invSqrtC2 = 1 / c2.squareRoot()
        let e = eps
        let shrink: Float = decoupled ? 1 - lr * weightDecay : 1
        let l2: Float = decoupled ? 0 : weightDecay
        let lo = range.lowerBound
        let p = store.valuesPointer + lo, g = gradients, mp = m.pointer + lo, vp = v.pointer + lo
        let n = range.count
        // Explicit 16-wide SIMD (the buffers are 64-byte aligned); scalar loop for the tail.
        typealias V = SIMD16<Float>
        let vb1 = V(repeating: b1), vb2 = V(repeating: b2), va1 = V(repeating: 1 - b1), va2 = V(repeating: 1 - b2)
        let vl2 = V(repeating: l2), vshrink = V(repeating: shrink), vstep = V(repeating: stepSize)
        let vinv = V(repeating: invSqrtC2), veps = V(repeating: e)
        var i = 0
        while i + 16 <= n {
            let pv = UnsafeRawPointer(p + i).load(as: V.self)
            let gi = UnsafeRawPointer(g + i).load(as: V.self) + vl2 * pv
            let mi = vb1 * UnsafeRawPointer(mp + i).load(as: V.self) + va1 * gi
            let vi = vb2 * UnsafeRawPointer(vp + i).load(as: V.self) + va2 * gi * gi
            UnsafeMutableRawPointer(mp + i).storeBytes(of: mi, as: V.self)
            UnsafeMutableRawPointer(vp + i).storeBytes(of: vi, as: V.self)
            let upd = pv * vshrink - vstep * mi / (vi.squareRoot() * vinv + veps)
            UnsafeMutableRawPointer(p + i).storeBytes(of: upd, as: V.self)
            i += 16
        }
        for i in i..<n {
            let gi = g[i] + l2 * p[i]
            let mi = b1 * mp[i] + (1 - b1) * gi
            let vi = b2 * vp[i] + (1 - b2) * gi * gi
            mp[i] = mi; vp[i] = vi
            p[i] = p[i] * shrink - stepSize * mi / (vi.squareRoot() * invSqrtC2 + e)
        }
    }
}

/// SGD with (optionally Nesterov) momentum and L2 weight decay: b ← μ·b + (g + wd·p), p ← p − lr·b.
public final class SGD: Optimizer {
    public let store: ParameterStore
    public var momentum: Float, weightDecay: Float
    public let nesterov: Bool
    public internal(set) var steps = 0
    private var buf: TensorStorage
    var momentumStorage: TensorStorage { buf }

    public init(_ store: ParameterStore, momentum: Float = 0.9, weightDecay: Float = 0, nesterov: Bool = false) {
        self.store = store; self.momentum = momentum; self.weightDecay = weightDecay; self.nesterov = nesterov
        buf = TensorStorage(zeroedCount: store.count)
    }

    public func step(lr: Float) {
        step(lr: lr, range: 0..<store.count, gradients: store.gradsPointer)
    }

    public func step(lr: Float, range: Range<Int>, gradients: UnsafePointer<Float>) {
        steps += 1
        let lo = range.lowerBound
        let p = store.valuesPointer + lo, g = gradients, b = buf.pointer + lo
        let mu = momentum, wd = weightDecay
        let first = steps == 1
        for i in 0..<range.count {
            let gi = g[i] + wd * p[i]
            let bi = first ? gi : mu * b[i] + gi
            b[i] = bi
            p[i] -= lr * (nesterov ? gi + mu * bi : bi)
        }
    }
}

/// Scales the store's gradients so their global L2 norm is at most `maxNorm`; returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ store: ParameterStore, maxNorm: Float) -> Float {
    let g = store.gradsPointer
    var acc = 0.0
    var i = 0
    let n = store.count
    while i < n {
        let len = min(4096, n - i)
        var s: Float = 0
        for k in 0..<len { s += g[i + k] * g[i + k] }
        acc += Double(s)
        i += len
    }
    let norm = Float(acc.squareRoot())
    if norm > maxNorm && norm > 0 {
        let k = maxNorm / (norm + 1e-6)
        Linalg.sscal(n, k, g)
    }
    return norm
}

/// Learning-rate schedules as pure functions of the (0-based) step.
public indirect enum LearningRateSchedule: Sendable, Equatable {
    case constant(Float)
    /// Linear warm-up to `peak` over `warmupSteps`, then `peak`.
    case warmup(peak: Float, warmupSteps: Int)
    /// Linear warm-up to `peak` over `warmupSteps` (step s gives peak·(s+1)/warmupSteps), then cosine
    /// decay to `floor` at `totalSteps`, and `floor` after that.
    case warmupCosine(peak: Float, warmupSteps: Int, totalSteps: Int, floor: Float = 0)
    /// `base`, multiplied by `factor` from step `atStep` on (a model's phase change).
    case changed(LearningRateSchedule, atStep: Int, factor: Float)

    public func callAsFunction(_ step: Int) -> Float { lr(at: step) }

    public func lr(at step: Int) -> Float {
        switch self {
        case .constant(let v): return v
        case .warmup(let peak, let warm):
            return step < warm ? peak * Float(step + 1) / Float(warm) : peak
        case .changed(let base, let at, let factor):
            return base.lr(at: step) * (step >= at ? factor : 1)
        case .warmupCosine(let peak, let warm, let total, let floor):
            if step < warm { return peak * Float(step + 1) / Float(warm) }
            let span = max(total - warm, 1)
            let progress = min(Double(step - warm) / Double(span), 1)
            return floor + (peak - floor) * Float(0.5 * (1 + Foundation.cos(Double.pi * progress)))
        }
    }
}

// MARK: optimiser state for checkpoints

/// A failure to restore optimiser state.
public struct OptimizerStateError: Error, CustomStringConvertible {
    public let description: String
}

/// Optimiser state as bytes: a tag, the step count, then the state buffers.
enum OptimizerState {
    static func encode(tag: String, steps: Int, buffers: [TensorStorage], count: Int) -> [UInt8] {
        var out = Array(tag.utf8.prefix(8))
        out += [UInt8](repeating: 0, count: 8 - out.count)
        withUnsafeBytes(of: UInt64(steps).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(count).littleEndian) { out.append(contentsOf: $0) }
        for b in buffers { out.append(contentsOf: UnsafeRawBufferPointer(start: b.pointer, count: count * 4)) }
        return out
    }

    static func decode(_ bytes: [UInt8], tag: String, buffers: [TensorStorage], count: Int) throws -> Int {
        var want = Array(tag.utf8.prefix(8)); want += [UInt8](repeating: 0, count: 8 - want.count)
        guard bytes.count >= 24, Array(bytes[0..<8]) == want else {
            throw OptimizerStateError(description: "optimiser state is not \(tag) state (the run's optimiser differs from the checkpoint's)")
        }
        let steps = bytes.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))) }
        let n = bytes.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self))) }
        guard n == count, bytes.count == 24 + buffers.count * n * 4 else {
            throw OptimizerStateError(description: "optimiser state holds \(n) parameters, the model has \(count)")
        }
        bytes.withUnsafeBytes { raw in
            for (k, b) in buffers.enumerated() {
                UnsafeMutableRawPointer(b.pointer).copyMemory(from: raw.baseAddress! + 24 + k * n * 4, byteCount: n * 4)
            }
        }
        return steps
    }
}

extension Adam {
    public func stateBuffers() -> [UnsafeMutableBufferPointer<Float>] {
        [UnsafeMutableBufferPointer(start: momentStorage.m.pointer, count: store.count),
         UnsafeMutableBufferPointer(start: momentStorage.v.pointer, count: store.count)]
    }
    public func stateBlob() -> [UInt8] {
        OptimizerState.encode(tag: decoupled ? "adamw" : "adam", steps: steps, buffers: [momentStorage.m, momentStorage.v], count: store.count)
    }
    public func restore(state: [UInt8]) throws {
        steps = try OptimizerState.decode(state, tag: decoupled ? "adamw" : "adam", buffers: [momentStorage.m, momentStorage.v], count: store.count)
    }
}

extension SGD {
    public func stateBuffers() -> [UnsafeMutableBufferPointer<Float>] {
        [UnsafeMutableBufferPointer(start: momentumStorage.pointer, count: store.count)]
    }
    public func stateBlob() -> [UInt8] {
        OptimizerState.encode(tag: "sgd", steps: steps, buffers: [momentumStorage], count: store.count)
    }
    public func restore(state: [UInt8]) throws {
        steps = try OptimizerState.decode(state, tag: "sgd", buffers: [momentumStorage], count: store.count)
    }
}
