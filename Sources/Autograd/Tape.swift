// Reverse-mode automatic differentiation over whole tensors (define-by-run).
import TensorCore

/// A value recorded on a `Tape` (an index into it; valid until `reset()`).
public struct Var: Hashable, Sendable {
    public let id: Int
}

/// A define-by-run tape. Each op computes its value now and records how to send gradients back.
///
/// Buffers for values and gradients come from a pool keyed by element count: `reset()` returns
/// every buffer nobody else holds to the pool, so after the first step a step of the same shapes
/// allocates no new tensor memory. Tensors read from the tape (`value(_:)`, `grad(_:)`) stay valid
/// after `reset()`: a buffer still referenced outside the tape is not recycled.
///
/// Parameters are registered with their gradient buffer (a view into a flat gradient store): the
/// first gradient written in a backward pass overwrites it, later ones add, and a registered
/// parameter that gets no gradient is zeroed at the end of `backward` (pass `accumulate: true`
/// to add into the existing contents instead, e.g. for gradient accumulation over microbatches).
public final class Tape {
    public typealias Backward = (Tape, Tensor) -> Void

    struct Node {
        var value: Tensor
        var grad: Tensor?
        var gradWritten = false
        var requiresGrad: Bool
        var externalGrad = false
        var accumulate = false
        var backward: Backward?
    }

    var nodes: [Node] = []
    private var pool: [Int: [TensorStorage]] = [:]
    private var inUse: [TensorStorage] = []
    /// The reset cycle in which each pooled size was last asked for: sizes not asked for during the
    /// last two cycles are freed at `reset()`, so steps of changing shapes (sampled neighbourhoods,
    /// a short last batch) do not keep every shape they ever had.
    private var lastUse: [Int: Int] = [:]
    private var cycle = 0
    private var parameterNodes: [Int] = []

    /// Training mode (dropout active, batch norm uses batch statistics). Default true.
    public var training = true

    public init() {
        nodes.reserveCapacity(256)
        inUse.reserveCapacity(512)
    }

    public var count: Int { nodes.count }

    // MARK: buffers

    /// Elements of the buffers allocated anew since the tape was made, i.e. not taken from the pool
    /// (diagnostics, tests).
    public private(set) var elementsAllocated = 0

    /// A tensor from the pool (uninitialised contents) that lives until the next `reset()`.
    public func alloc(_ rows: Int, _ cols: Int) -> Tensor {
        let n = Tape.poolCapacity(rows * cols)
        let s: TensorStorage
        lastUse[n] = cycle
        if let reused = pool[n]?.popLast() {
            s = reused
        } else if let c = largerPooledClass(n) {
            // A pooled buffer of a larger class (the full steps' buffers, during a short last step)
            // rather than a new one: it goes back to its own class at reset().
            s = pool[c]!.popLast()!
            lastUse[c] = cycle
        } else {
            s = TensorStorage(uninitializedCount: n); elementsAllocated += n
        }
        inUse.append(s)
        return Tensor(rows: rows, cols: cols, storage: s)
    }

    /// The smallest pooled class with a free buffer of more than `n` and at most 4·n elements, if any
    /// (a buffer is never lent to a request below a quarter of its size, so small tensors do not
    /// take the buffers large ones will ask for).
    private func largerPooledClass(_ n: Int) -> Int? {
        var best: Int?
        for (c, free) in pool where c > n && c <= 4 * n && !free.isEmpty {
            if best == nil || c < best! { best = c }
        }
        return best
    }

    /// The pool's size class for `n` elements: n itself up to 4096, above that n rounded up to a
    /// multiple of an eighth of the largest power of two ≤ n (at most 12.5 % more). Steps whose
    /// shapes differ by a few rows (a rank's share of a global batch changes from step to step) then
    /// reuse the same buffers instead of growing the pool by one set of buffers per distinct size.
    public static func poolCapacity(_ n: Int) -> Int {
        guard n > 4096 else { return n }
        let step = (1 << (Int.bitWidth - 1 - n.leadingZeroBitCount)) / 8
        return (n + step - 1) / step * step
    }

    /// A zero-filled pool tensor.
    public func zeros(_ rows: Int, _ cols: Int) -> Tensor {
        let t = alloc(rows, cols)
        t.fill(0)
        return t
    }

    /// Forgets every recorded node and recycles buffers that are no longer referenced elsewhere.
    public func reset() {
        nodes.removeAll(keepingCapacity: true)
        parameterNodes.removeAll(keepingCapacity: true)
        for i in inUse.indices where isKnownUniquelyReferenced(&inUse[i]) {
            pool[inUse[i].count, default: []].append(inUse[i])
        }
        inUse.removeAll(keepingCapacity: true)
        for (n, used) in lastUse where used < cycle - 1 {
            pool[n] = nil
            lastUse[n] = nil
        }
        cycle += 1
    }

    /// Total elements held by the pool and in use (for memory diagnostics).
    public var pooledElements: Int {
        pool.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } + inUse.reduce(0) { $0 + $1.count }
    }

    // MARK: leaves

    /// A value that needs no gradient (data, targets, masks).
    public func constant(_ t: Tensor) -> Var { push(t, requiresGrad: false, nil) }

    /// A leaf whose gradient the tape keeps (read it with `grad(_:)` after `backward`).
    public func variable(_ t: Tensor) -> Var { push(t, requiresGrad: true, nil) }

    /// A trainable parameter whose gradient goes into `grad` (same shape), e.g. a view of a flat gradient buffer.
    /// Registering the same gradient buffer again on one tape (a layer applied twice, shared weights)
    /// returns the first registration's `Var`, so both uses' gradients add up.
    public func parameter(_ value: Tensor, grad: Tensor, accumulate: Bool = false) -> Var {
        precondition(value.rows == grad.rows && value.cols == grad.cols, "parameter grad shape differs from its value")
        for p in parameterNodes where nodes[p].grad!.pointer == grad.pointer {
            precondition(nodes[p].value.pointer == value.pointer && nodes[p].grad!.count == grad.count,
                         "one gradient buffer registered for two different parameters")
            return Var(id: p)
        }
        var node = Node(value: value, grad: grad, requiresGrad: true, backward: nil)
        node.externalGrad = true
        node.accumulate = accumulate
        nodes.append(node)
        parameterNodes.append(nodes.count - 1)
        return Var(id: nodes.count - 1)
    }

    public func value(_ v: Var) -> Tensor { nodes[v.id].value }
    public func shape(_ v: Var) -> (rows: Int, cols: Int) { nodes[v.id].value.shape }
    public func requiresGrad(_ v: Var) -> Bool { nodes[v.id].requiresGrad }

    /// The gradient of a node after `backward` (nil if none reached it).
    public func grad(_ v: Var) -> Tensor? {
        let n = nodes[v.id]
        return n.gradWritten || (n.externalGrad && n.accumulate) ? n.grad : nil
    }

    /// Records an op's result. `backward` receives the result's gradient and sends it to the inputs.
    @discardableResult
    public func push(_ value: Tensor, requiresGrad: Bool, _ backward: Backward?) -> Var {
        nodes.append(Node(value: value, grad: nil, requiresGrad: requiresGrad, backward: requiresGrad ? backward : nil))
        return Var(id: nodes.count - 1)
    }

    // MARK: gradient access for backward functions

    /// The gradient buffer of `v` to add into (zero-filled on first use); nil if `v` needs no gradient.
    public func gradAccumulator(_ v: Var) -> Tensor? {
        let i = v.id
        guard nodes[i].requiresGrad else { return nil }
        if !nodes[i].gradWritten {
            if nodes[i].externalGrad {
                if !nodes[i].accumulate { nodes[i].grad!.fill(0) }
            } else {
                let s = nodes[i].value.shape
                nodes[i].grad = zeros(s.rows, s.cols)
            }
            nodes[i].gradWritten = true
        }
        return nodes[i].grad
    }

    /// The gradient buffer of `v` and the beta to use when writing it with a kernel that overwrites
    /// when beta = 0 (GEMM): beta is 0 on the first write (the buffer is then uninitialised), else 1.
    public func gradTarget(_ v: Var) -> (grad: Tensor, beta: Float)? {
        let i = v.id
        guard nodes[i].requiresGrad else { return nil }
        if nodes[i].gradWritten { return (nodes[i].grad!, 1) }
        nodes[i].gradWritten = true
        if nodes[i].externalGrad { return (nodes[i].grad!, nodes[i].accumulate ? 1 : 0) }
        let s = nodes[i].value.shape
        let g = alloc(s.rows, s.cols)
        nodes[i].grad = g
        return (g, 0)
    }

    // MARK: backward

    /// Back-propagates from `output`. A 1×1 output is seeded with 1; otherwise pass `seed`
    /// (the gradient of some scalar with respect to `output`, same shape).
    public func backward(_ output: Var, seed: Tensor? = nil) throws {
        let o = output.id
        precondition(nodes[o].requiresGrad, "backward from a value that does not depend on any variable or parameter")
        let s = nodes[o].value.shape
        let g0: Tensor
        if let seed {
            precondition(seed.rows == s.rows && seed.cols == s.cols, "seed shape \(seed.rows)×\(seed.cols) differs from output \(s.rows)×\(s.cols)")
            g0 = seed
        } else {
            precondition(s.rows == 1 && s.cols == 1, "backward without a seed needs a 1×1 output, got \(s.rows)×\(s.cols)")
            g0 = Tensor.scalar(1)
        }
        let acc = gradAccumulator(output)!
        Elementwise.accumulateReduced(g0, into: acc)
        var i = o
        while i >= 0 {
            if nodes[i].gradWritten, let bw = nodes[i].backward {
                bw(self, nodes[i].grad!)
            } else if nodes[i].externalGrad {
                // Every consumer of a parameter comes after it on the tape, so its gradient is final
                // here: zero it if nothing reached it, and tell the listener (bucketed allreduce).
                if !nodes[i].gradWritten && !nodes[i].accumulate { nodes[i].grad!.fill(0) }
                nodes[i].gradWritten = true
                try onParameterGradientReady?(nodes[i].grad!)
            }
            i -= 1
        }
        for p in parameterNodes where !nodes[p].gradWritten && !nodes[p].accumulate {
            nodes[p].grad!.fill(0)
            nodes[p].gradWritten = true
        }
    }

    /// Called during `backward` with each parameter's gradient buffer as soon as that gradient is
    /// final (in reverse order of registration), so its communication can start while the rest of
    /// the backward pass runs.
    public var onParameterGradientReady: ((Tensor) throws -> Void)?
}

extension Tape {
    /// Inference whose every row is bitwise the same on any rank count: the rows are placed in blocks
    /// of `block` rows by their global cell ids (block ⌊id / block⌋, position id mod block), and
    /// every call of `forward` gets exactly `block` rows, a row always at the same position; places of
    /// a block that this rank does not hold are filled with a copy of one of its rows, and their
    /// outputs dropped. Why: a BLAS GEMM's result for one row can depend on how many rows the call
    /// has (OpenBLAS's Haswell/Zen sgemm computes the M mod 16 tail rows with other kernels, and
    /// SkylakeX takes a small-matrix path for small calls: rounding differences of ~1e-6), so blocks
    /// cut from each rank's own first row (`inferInBlocks(rows:)`) give a cell a different embedding
    /// on 2 ranks than on 3. Cost: at most two partly filled blocks per rank beyond the rows themselves.
    /// `forward` must treat rows independently (no batch statistics), as inference does.
    public static func inferInBlocks(globalIds ids: [Int64], cols d: Int, block: Int = 256,
                                     _ forward: (_ rows: [Int], _ tape: Tape) -> Var) -> Tensor {
        precondition(block > 0, "inferInBlocks: block \(block)")
        let n = ids.count
        let out = Tensor(rows: n, cols: d)
        guard n > 0 else { return out }
        let tape = Tape()
        tape.training = false
        let order = (0..<n).sorted { ids[$0] < ids[$1] }
        // Ids that repeat (or are negative) have no place of their own: the rank's own blocks then.
        guard ids[order[0]] >= 0, (1..<n).allSatisfy({ ids[order[$0 - 1]] < ids[order[$0]] }) else {
            return inferInBlocks(rows: n, cols: d, block: block, forward)
        }
        let b = Int64(block)
        var start = 0
        while start < n {
            let blockIndex = ids[order[start]] / b
            var end = start
            while end < n, ids[order[end]] / b == blockIndex { end += 1 }
            var rows = [Int](repeating: order[start], count: block)
            for j in start..<end { rows[Int(ids[order[j]] - blockIndex * b)] = order[j] }
            tape.reset()
            let v = tape.value(forward(rows, tape))
            precondition(v.rows == block && v.cols == d, "inferInBlocks: the block's output is \(v.rows) × \(v.cols), not \(block) × \(d)")
            for j in start..<end {
                let r = order[j], pos = Int(ids[r] - blockIndex * b)
                (out.pointer + r * d).update(from: v.pointer + pos * d, count: d)
            }
            start = end
        }
        return out
    }

    /// Inference over `rows` local rows in blocks of `block` (no dropout, the tape reset per block so
    /// memory stays O(block)): `forward(rows of the block, tape)` gives the block's output, `cols` wide;
    /// the blocks are stacked into one rows × cols tensor.
    public static func inferInBlocks(rows n: Int, cols d: Int, block: Int = 1024,
                                     _ forward: (_ rows: [Int], _ tape: Tape) -> Var) -> Tensor {
        let tape = Tape()
        tape.training = false
        let out = Tensor(rows: n, cols: d)
        var r0 = 0
        while r0 < n {
            let r1 = min(n, r0 + block)
            tape.reset()
            let v = tape.value(forward(Array(r0..<r1), tape))
            precondition(v.rows == r1 - r0 && v.cols == d, "inferInBlocks: the block's output is \(v.rows) × \(v.cols), not \(r1 - r0) × \(d)")
            (out.pointer + r0 * d).update(from: v.pointer, count: (r1 - r0) * d)
            r0 = r1
        }
        return out
    }
}
