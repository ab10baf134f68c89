// The gradient-reduction strategies of the data-parallel step, one picked when the Trainer is built.
// Each ends with identical parameters on every rank: sum the flat gradients (and the step's loss
// sums) over the ranks, optionally clip by the global norm, apply the optimiser.
import Collectives
import NN
import TensorCore

/// Combines one step's gradients across ranks and applies the optimiser update.
public protocol GradientReducer: AnyObject {
    /// Called as each parameter's gradient becomes final during the backward pass (nil: not needed).
    var gradientReady: ((_ offset: Int, _ count: Int) throws -> Void)? { get }
    /// Before the step's first backward pass.
    func beginStep()
    /// Sums gradients and `sums` (the step's weighted loss terms) over the ranks, clips, updates.
    func reduceAndUpdate(sums: inout [Double], lr: Float, clipNorm: Float?, optimizer: Optimizer) throws
    /// Makes the optimiser state whole on every rank (before a checkpoint).
    func gatherOptimizerState(_ optimizer: Optimizer) throws
}

public enum GradientReducers {
    /// The reducer for `kind` on `comm` (size 1: no communication whatever the kind).
    public static func make(_ kind: GradientReduction, store: ParameterStore, bucketMiB: Double, comm: Communicator) -> GradientReducer {
        if comm.size == 1 { return LocalReducer(store: store) }
        switch kind {
        case .allreduce: return AllreduceReducer(store: store, comm: comm)
        case .bucketed:
            let elems = max(1, Int(bucketMiB * 1_048_576) / 4)
            return BucketedReducer(buckets: GradientBuckets(store: store, bucketElements: elems,
                                                            firstBucketElements: min(elems, 262_144), comm: comm))
        case .sharded: return ShardedReducer(store: store, comm: comm)
        }
    }
}

/// One rank: the gradients are already the sum.
public final class LocalReducer: GradientReducer {
    let store: ParameterStore
    public init(store: ParameterStore) { self.store = store }
    public var gradientReady: ((Int, Int) throws -> Void)? { nil }
    public func beginStep() {}
    public func reduceAndUpdate(sums: inout [Double], lr: Float, clipNorm: Float?, optimizer: Optimizer) throws {
        if let c = clipNorm { _ = clipGradNorm(store, maxNorm: c) }
        optimizer.step(lr: lr)
    }
    public func gatherOptimizerState(_ optimizer: Optimizer) throws {}
}

/// One blocking allreduce of the whole gradient buffer after the backward pass.
public final class AllreduceReducer: GradientReducer {
    let store: ParameterStore
    let comm: Communicator
    public init(store: ParameterStore, comm: Communicator) { self.store = store; self.comm = comm }
    public var gradientReady: ((Int, Int) throws -> Void)? { nil }
    public func beginStep() {}
    public func reduceAndUpdate(sums: inout [Double], lr: Float, clipNorm: Float?, optimizer: Optimizer) throws {
        try comm.allreduce(UnsafeMutableBufferPointer(start: store.gradsPointer, count: store.count), op: .sum)
        try comm.allreduce(&sums, op: .sum)
        if let c = clipNorm { _ = clipGradNorm(store, maxNorm: c) }
        optimizer.step(lr: lr)
    }
    public func gatherOptimizerState(_ optimizer: Optimizer) throws {}
}

/// Buckets of the gradient buffer allreduced (nonblocking) as soon as the backward pass fills them.
public final class BucketedReducer: GradientReducer {
    public let buckets: GradientBuckets
    public init(buckets: GradientBuckets) { self.buckets = buckets }
    public var gradientReady: ((Int, Int) throws -> Void)? {
        { [buckets] offset, count in try buckets.markReady(offset: offset, count: count) }
    }
    public func beginStep() { buckets.beginStep() }
    public func reduceAndUpdate(sums: inout [Double], lr: Float, clipNorm: Float?, optimizer: Optimizer) throws {
        try buckets.finish()
        try buckets.comm.allreduce(&sums, op: .sum)
        if let c = clipNorm { _ = clipGradNorm(buckets.store, maxNorm: c) }
        optimizer.step(lr: lr)
    }
    public func gatherOptimizerState(_ optimizer: Optimizer) throws {}
}

/// ZeRO-1: reduce-scatter the gradients, update this rank's slice, allgather the parameters.
public final class ShardedReducer: GradientReducer {
    let store: ParameterStore
    let comm: Communicator
    /// Element counts per rank (multiples of 16, in order) and this rank's slice.
    public let counts: [Int]
    public let range: Range<Int>
    let grads: TensorStorage

    public init(store: ParameterStore, comm: Communicator) {
        self.store = store; self.comm = comm
        let n = store.count, p = comm.size
        let block = ((n + p - 1) / p + 15) / 16 * 16
        counts = (0..<p).map { r in max(0, min(n, (r + 1) * block) - min(n, r * block)) }
        let lo = min(n, comm.rank * block)
        range = lo..<(lo + counts[comm.rank])
        grads = TensorStorage(zeroedCount: max(counts[comm.rank], 1))
    }

    public var gradientReady: ((Int, Int) throws -> Void)? { nil }
    public func beginStep() {}

    public func reduceAndUpdate(sums: inout [Double], lr: Float, clipNorm: Float?, optimizer: Optimizer) throws {
        let n = store.count
        try comm.reduceScatter(UnsafeBufferPointer(start: store.gradsPointer, count: n),
                               into: UnsafeMutableBufferPointer(start: grads.pointer, count: grads.count),
                               counts: counts, op: .sum)
        try comm.allreduce(&sums, op: .sum)
        try update(lr: lr, clipNorm: clipNorm, optimizer: optimizer) { try comm.allreduce(value: $0, op: .sum) }
        try comm.allgatherInPlace(UnsafeMutableBufferPointer(start: store.valuesPointer, count: n), counts: counts)
    }

    /// This rank's share of the update: clip by the global norm (its squares summed by `total`), step its slice.
    func update(lr: Float, clipNorm: Float?, optimizer: Optimizer, total: (Double) throws -> Double) throws {
        let g = grads.pointer, m = range.count
        if let c = clipNorm {
            var sq = 0.0
            for i in 0..<m { sq += Double(g[i]) * Double(g[i]) }
            let norm = try total(sq).squareRoot()
            if norm > Double(c) { let f = Float(Double(c) / (norm + 1e-6)); for i in 0..<m { g[i] *= f } }
        }
        optimizer.step(lr: lr, range: range, gradients: g)
    }

    public func gatherOptimizerState(_ optimizer: Optimizer) throws {
        for b in optimizer.stateBuffers() { try comm.allgatherInPlace(b, counts: counts) }
    }
}

/// For benchmarks: the local work of `reducer`'s update without any collective — the full optimiser
/// step for the replicated strategies, only this rank's slice (from its own gradients) for the sharded one.
public final class ComputeOnlyReducer: GradientReducer {
    let reducer: GradientReducer
    let store: ParameterStore
    public init(mirroring reducer: GradientReducer, store: ParameterStore) { self.reducer = reducer; self.store = store }
    public var gradientReady: ((Int, Int) throws -> Void)? { nil }
    public func beginStep() {}
    public func reduceAndUpdate(sums: inout [Double], lr: Float, clipNorm: Float?, optimizer: Optimizer) throws {
        if let s = reducer as? ShardedReducer {
            s.grads.pointer.update(from: store.gradsPointer + s.range.lowerBound, count: s.range.count)
            try s.update(lr: lr, clipNorm: clipNorm, optimizer: optimizer) { $0 }
        } else {
            if let c = clipNorm { _ = clipGradNorm(store, maxNorm: c) }
            optimizer.step(lr: lr)
        }
    }
    public func gatherOptimizerState(_ optimizer: Optimizer) throws {}
}
