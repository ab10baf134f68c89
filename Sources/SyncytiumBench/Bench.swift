import Pipelines
import ArgumentParser
import Collectives
import Foundation
import TensorCore

public struct Bench: ParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        abstract: "Benchmarks, each next to a baseline measured in the same run.",
        subcommands: [BenchAllreduce.self, BenchIO.self, BenchKNN.self, BenchDataParallel.self, BenchGemm.self, BenchStep.self, BenchSparse.self, BenchModel.self, BenchLayout.self])
}

struct BenchAllreduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Communicator allreduce vs raw MPI_Allreduce of the same buffer, 4 KiB … 64 MiB.",
        discussion: """
            Each size runs many interleaved reps; a rep's time is the slowest rank's and the table \
            gives medians. Run it on several ranks: `launch/run 2 bench allreduce`.
            """)

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Option(help: "Comma-separated message sizes in bytes (default 4 KiB … 64 MiB in steps of 4x).")
    var sizes: String?

    @Option(help: "Repetitions per size (default: more for small messages, at least 21).")
    var reps: Int?

    struct Output: Codable {
        struct Row: Codable {
            var bytes: Int; var reps: Int
            var oursMedianSeconds: Double; var rawMedianSeconds: Double
            var oursGBps: Double; var rawGBps: Double
            var ratioMedian: Double
        }
        var benchmark = "allreduce"
        var ranks: Int
        var dtype = "float32"
        var op = "sum"
        var rows: [Row]
        /// The largest median ratio over sizes ≥ 1 MiB (the acceptance bar is ≤ 1.05).
        var maxRatioAtLeast1MiB: Double?
    }

    func run() throws {
        let comm = Communicator.world
        comm.orAbort {
            let sizeList = try sizes.map { s in
                try s.split(separator: ",").map { part -> Int in
                    guard let v = Int(part.trimmingCharacters(in: .whitespaces)), v >= 4 else {
                        throw ValidationError("--sizes takes byte counts ≥ 4, comma-separated; got '\(part)'")
                    }
                    return v
                }
            } ?? AllreduceBenchmark.defaultSizes
            let rows = try AllreduceBenchmark(comm: comm).run(sizes: sizeList, repsOverride: reps)
            guard comm.rank == 0 else { return }
            let table = rows.map { r -> Output.Row in
                let ours = median(r.ours), raw = median(r.raw)
                // Algorithmic bandwidth: bytes / median time.
                return .init(bytes: r.bytes, reps: r.reps, oursMedianSeconds: ours, rawMedianSeconds: raw,
                             oursGBps: Double(r.bytes) / ours / 1e9, rawGBps: Double(r.bytes) / raw / 1e9,
                             ratioMedian: median(r.ratios))
            }
            let big = table.filter { $0.bytes >= 1 << 20 }.map(\.ratioMedian)
            let out = Output(ranks: comm.size, rows: table, maxRatioAtLeast1MiB: big.max())
            if json {
                print(try jsonString(out))
            } else {
                print("allreduce float32 sum on \(comm.size) rank(s); medians over interleaved reps")
                print(pad("bytes", 10) + pad("reps", 6) + pad("ours ms", 11) + pad("raw ms", 11)
                      + pad("ours GB/s", 11) + pad("raw GB/s", 11) + pad("ours/raw", 9))
                for r in out.rows {
                    print(pad(formatBytes(r.bytes), 10) + pad("\(r.reps)", 6)
                          + pad(fmt(r.oursMedianSeconds * 1e3, 4), 11) + pad(fmt(r.rawMedianSeconds * 1e3, 4), 11)
                          + pad(fmt(r.oursGBps, 2), 11) + pad(fmt(r.rawGBps, 2), 11) + pad(fmt(r.ratioMedian, 3), 9))
                }
                if let m = out.maxRatioAtLeast1MiB { print("max median ratio for sizes >= 1 MiB: \(fmt(m, 3))") }
            }
        }
    }
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s + " " : String(repeating: " ", count: width - s.count) + s
}


func formatBytes(_ b: Int) -> String {
    if b >= 1 << 20 && b % (1 << 20) == 0 { return "\(b >> 20) MiB" }
    if b >= 1 << 10 && b % (1 << 10) == 0 { return "\(b >> 10) KiB" }
    return "\(b) B"
}
