import Collectives
import NN
import TensorCore

/// Bucketed, overlapped gradient allreduce over a store's flat gradient buffer (as PyTorch DDP).
///
/// The buffer is cut into buckets of about `bucketElements` elements from its end backwards:
/// parameters created last are used last in the forward pass and get their gradients first in the
/// backward pass. As the tape reports each parameter's gradient final, its elements count toward
/// the buckets it overlaps; a full bucket's nonblocking allreduce starts at once — in bucket order,
/// the same on every rank — so communication overlaps the rest of the backward pass. `finish`
/// starts whatever is left and waits for all.
public final class GradientBuckets {
    public let comm: Communicator
    let store: ParameterStore
    /// [start, end) element ranges, in launch order.
    public private(set) var buckets: [Range<Int>] = []
    private var ready: [Int] = []
    private var launched = 0
    private var requests: [CollectiveRequest] = []
    private var seen = Set<Int>()
    public private(set) var launchedEarly = 0

    public init(store: ParameterStore, bucketElements: Int, firstBucketElements: Int? = nil, comm: Communicator) {
        self.comm = comm; self.store = store
        var end = store.count
        var first = true
        while end > 0 {
            let size = first ? (firstBucketElements ?? bucketElements) : bucketElements
            let start = max(0, end - max(size, 1))
            buckets.append(start..<end)
            end = start; first = false
        }
        ready = [Int](repeating: 0, count: buckets.count)
    }

    public func beginStep() {
        launched = 0; requests.removeAll(keepingCapacity: true); seen.removeAll(keepingCapacity: true)
        for i in ready.indices { ready[i] = 0 }
        launchedEarly = 0
    }

    /// The gradient of elements [offset, offset + count) is final.
    public func markReady(offset: Int, count: Int) throws {
        guard comm.size > 1, count > 0, seen.insert(offset).inserted else { return }
        let r = offset..<(offset + count)
        for (b, range) in buckets.enumerated() where range.overlaps(r) {
            ready[b] += r.clamped(to: range).count
        }
        while launched < buckets.count && ready[launched] >= buckets[launched].count {
            try launch(launched); launched += 1; launchedEarly += 1
        }
        // MPI progresses nonblocking collectives only inside MPI calls: poke the ones in flight.
        for r in requests { _ = try r.test() }
    }

    /// Starts the buckets not yet started, waits for every one.
    public func finish() throws {
        guard comm.size > 1 else { return }
        while launched < buckets.count { try launch(launched); launched += 1 }
        for r in requests { try r.wait() }
        requests.removeAll(keepingCapacity: true)
    }

    private func launch(_ b: Int) throws {
        let range = buckets[b]
        let buf = UnsafeMutableBufferPointer(start: store.gradsPointer + range.lowerBound, count: range.count)
        requests.append(try comm.iallreduce(buf, op: .sum))
    }
}
