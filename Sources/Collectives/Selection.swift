// Order statistics of values sharded over ranks, without gathering them: a bisection over the 32-bit
// keys of Float (ordered as the numbers are) with one allreduce of a count per bit. O(shard) memory and
// 32 × O(shard) work per statistic, whatever the rank count; exact (the result is one of the values).

extension Communicator {
    /// The `k`-th smallest (0-based) of all ranks' `values` (no NaN). Collective: every rank calls it
    /// with the same `k`, which must be below the global count.
    public func kthSmallest(_ values: [Float], _ k: Int) throws -> Float {
        let total = try allreduce(value: Int64(values.count), op: .sum)
        guard k >= 0 && Int64(k) < total else {
            throw CollectiveUsageError("kthSmallest: k = \(k) outside 0..<\(total)")
        }
        let keys = values.map(Communicator.orderKey)
        // The smallest key whose count of keys ≤ it exceeds k, bit by bit from the top.
        var lo: UInt32 = 0, hi: UInt32 = .max
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            var c: Int64 = 0
            for key in keys where key <= mid { c += 1 }
            let below = try allreduce(value: c, op: .sum)
            if below > Int64(k) { hi = mid } else { lo = mid + 1 }
        }
        return Communicator.value(ofKey: lo)
    }

    /// The median of all ranks' `values` as numpy computes it (the mean of the two middle values for
    /// an even count, in Double). Collective; nil when no rank holds a value.
    public func median(_ values: [Float]) throws -> Double? {
        let n = Int(try allreduce(value: Int64(values.count), op: .sum))
        guard n > 0 else { return nil }
        if n % 2 == 1 { return Double(try kthSmallest(values, n / 2)) }
        let a = Double(try kthSmallest(values, n / 2 - 1)), b = Double(try kthSmallest(values, n / 2))
        return (a + b) / 2
    }

    /// A UInt32 ordered as the Float it encodes: negative numbers have every bit flipped, others the sign bit set.
    @inline(__always) static func orderKey(_ x: Float) -> UInt32 {
        let b = x.bitPattern
        return b & 0x8000_0000 != 0 ? ~b : b | 0x8000_0000
    }

    @inline(__always) static func value(ofKey k: UInt32) -> Float {
        Float(bitPattern: k & 0x8000_0000 != 0 ? k & 0x7FFF_FFFF : ~k)
    }
}
