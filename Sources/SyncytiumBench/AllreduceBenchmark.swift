import Pipelines
import Collectives
import TensorCore

/// Allreduce timing: the Communicator's in-place allreduce next to a raw `MPI_Allreduce` call on
/// the same buffer, interleaved rep by rep (alternating which goes first) so both see the same
/// machine noise. A rep's time is the slowest rank's. The rows carry every rep's time; the caller
/// summarises them (the `bench allreduce` command takes TensorCore's median), which keeps
/// Collectives free of a statistics dependency.
public struct AllreduceBenchmark {
    public struct Row: Sendable {
        public let bytes: Int
        public let reps: Int
        /// Seconds per rep (the slowest rank's), Communicator allreduce; `reps` values, same on every rank.
        public let ours: [Double]
        /// Seconds per rep (the slowest rank's), raw MPI_Allreduce; `reps` values, same on every rank.
        public let raw: [Double]
        /// Per-rep ratio ours / raw.
        public var ratios: [Double] { zip(ours, raw).map { $0 / $1 } }
    }

    public let comm: Communicator
    public init(comm: Communicator) { self.comm = comm }

    /// 4 KiB … 64 MiB in steps of 4×.
    public static let defaultSizes: [Int] = (0...7).map { 4096 << (2 * $0) }

    /// Repetitions for a size: more for small messages, at least 21 for large ones.
    public static func reps(forBytes bytes: Int) -> Int { Swift.max(21, Swift.min(400, (256 << 20) / bytes)) }

    public func run(sizes: [Int] = defaultSizes, repsOverride: Int? = nil) throws -> [Row] {
        var rows: [Row] = []
        for bytes in sizes {
            let count = bytes / MemoryLayout<Float>.stride
            let reps = repsOverride ?? Self.reps(forBytes: bytes)
            var buffer = [Float](repeating: 0, count: count)
            for i in 0..<count { buffer[i] = Float((i &+ comm.rank) % 7) * 0.25 }
            var ours = [Double](repeating: 0, count: reps)
            var raw = [Double](repeating: 0, count: reps)
            try buffer.withUnsafeMutableBufferPointer { buf in
                // Warm-up: both paths, a few times.
                for _ in 0..<3 {
                    try comm.allreduce(buf, op: .sum)
                    try rawAllreduce(buf)
                }
                for r in 0..<reps {
                    if r % 2 == 0 {
                        ours[r] = try timeOurs(buf)
                        raw[r] = try timeRaw(buf)
                    } else {
                        raw[r] = try timeRaw(buf)
                        ours[r] = try timeOurs(buf)
                    }
                }
            }
            // The slowest rank defines each rep.
            try comm.allreduce(&ours, op: .max)
            try comm.allreduce(&raw, op: .max)
            rows.append(Row(bytes: bytes, reps: reps, ours: ours, raw: raw))
        }
        return rows
    }

    private func timeOurs(_ buf: UnsafeMutableBufferPointer<Float>) throws -> Double {
        try comm.barrier()
        let t0 = Communicator.time()
        try comm.allreduce(buf, op: .sum)
        return Communicator.time() - t0
    }

    private func timeRaw(_ buf: UnsafeMutableBufferPointer<Float>) throws -> Double {
        try comm.barrier()
        let t0 = Communicator.time()
        try rawAllreduce(buf)
        return Communicator.time() - t0
    }

    private func rawAllreduce(_ buf: UnsafeMutableBufferPointer<Float>) throws {
        try comm.bareAllreduceSum(buf)
    }
}
