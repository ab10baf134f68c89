import Pipelines
import ArgumentParser
import CellData
import Collectives
import Foundation
import HDF5IO

func currentRSSBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let parts = s.split(separator: " ")
    guard parts.count > 1, let pages = Int(parts[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

struct BenchIO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "io",
        abstract: "Parallel read of X (each rank its rows) next to a plain sequential read of the same bytes.",
        discussion: """
            Rank 0 first reads the whole file once to warm the page cache. Then all ranks read their \
            shards (timed: slowest rank), recording each rank's peak RSS; then rank 0 alone reads X's \
            data/indices/indptr with one process (timed). Run `launch/run 2 bench io FILE`.
            """)

    @Argument(help: "An .h5ad / 10x .h5 file.") var file: String
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Option(help: "Repetitions of each read (median reported).") var reps = 3
    @Flag(help: "Read through MPI-IO instead of per-rank POSIX opens.") var mpiIo = false

    struct RankLine: Codable { var rank: Int; var rows: Int; var nnz: Int; var shardBytes: Int; var peakRSSBytes: Int; var baselineRSSBytes: Int }
    struct Output: Codable {
        var benchmark = "io"
        var mpiIO: Bool
        var file: String
        var ranks: Int
        var cells: Int
        var genes: Int
        var nnz: Int64
        var parallelSeconds: Double
        var sequentialSeconds: Double
        var speedup: Double
        var parallelGBps: Double
        var ranksDetail: [RankLine]
        /// max over ranks of peak RSS / shard bytes.
        var maxRSSOverShard: Double
        /// max over ranks of (peak RSS − RSS before reading) / shard bytes.
        var maxRSSGrowthOverShard: Double
    }

    func run() throws {
        let comm = Communicator.world
        runDataCommand(comm) {
            let baseline = currentRSSBytes()
            if comm.rank == 0 { warmPageCache(file) }
            try comm.barrier()
            var opts = ReadOptions()
            opts.readObsColumns = false
            opts.readFrames = false
            opts.mpiIO = mpiIo
            var times: [Double] = []
            var shard: CellShard?
            for _ in 0..<Swift.max(reps, 1) {
                shard = nil
                try comm.barrier()
                let t0 = Communicator.time()
                shard = try CellReader.read(file, comm: comm, options: opts)
                let dt = Communicator.time() - t0
                times.append(try comm.allreduce(value: dt, op: .max))
            }
            let s = shard!
            let peak = ProcessMemory.read().peak
            let mine = RankLine(rank: comm.rank, rows: s.localRows, nnz: s.localNNZ, shardBytes: s.matrixBytes,
                                peakRSSBytes: peak, baselineRSSBytes: baseline)
            let lines = try comm.allgatherCodable(mine)
            let nnz = try comm.allreduce(value: Int64(s.localNNZ), op: .sum)
            var seqTimes: [Double] = []
            if comm.rank == 0 {
                for _ in 0..<Swift.max(reps, 1) {
                    let t0 = Communicator.time()
                    try sequentialRead(file, layout: s.source)
                    seqTimes.append(Communicator.time() - t0)
                }
            }
            guard comm.rank == 0 else { return }
            let par = times.sorted()[times.count / 2], seq = seqTimes.sorted()[seqTimes.count / 2]
            let bytes = Double(nnz) * 8 + Double(s.nObs + 1) * 8
            let out = Output(mpiIO: mpiIo, file: file, ranks: comm.size, cells: s.nObs, genes: s.nVars, nnz: nnz,
                             parallelSeconds: par, sequentialSeconds: seq, speedup: seq / par,
                             parallelGBps: bytes / par / 1e9, ranksDetail: lines,
                             maxRSSOverShard: lines.map { Double($0.peakRSSBytes) / Double(max($0.shardBytes, 1)) }.max() ?? 0,
                             maxRSSGrowthOverShard: lines.map { Double($0.peakRSSBytes - $0.baselineRSSBytes) / Double(max($0.shardBytes, 1)) }.max() ?? 0)
            if json { print(try jsonString(out)); return }
            print("bench io \(file): \(s.nObs) × \(s.nVars), nnz \(nnz), \(comm.size) rank(s), median of \(reps)")
            print("  parallel read (slowest rank): \(fmt(par, 3)) s   sequential read, 1 process: \(fmt(seq, 3)) s   speedup \(fmt(seq / par, 2))×")
            for l in lines {
                print("  rank \(l.rank): \(l.rows) rows, nnz \(l.nnz), shard \(formatMB(l.shardBytes)), peak RSS \(formatMB(l.peakRSSBytes)) (\(fmt(Double(l.peakRSSBytes) / Double(max(l.shardBytes, 1)), 2))× shard; \(formatMB(l.baselineRSSBytes)) before reading)")
            }
        }
    }

    func warmPageCache(_ path: String) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return }
        var buf = [UInt8](repeating: 0, count: 16 << 20)
        while buf.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
        close(fd)
    }

    /// One process reads all of X's arrays (the same bytes the ranks read together).
    func sequentialRead(_ path: String, layout: SourceInfo) throws {
        let f = try H5File.open(path)
        let m = layout.matrixPath
        if layout.layout == "dense" {
            let d = try f.root.dataset(m)
            _ = try d.readAll(as: Float.self)
        } else {
            _ = try f.root.dataset("\(m)/data").readAll(as: Float.self)
            _ = try f.root.dataset("\(m)/indices").readAll(as: Int32.self)
            _ = try f.root.dataset("\(m)/indptr").readAll(as: Int64.self)
        }
    }
}

func formatMB(_ b: Int) -> String { fmt(Double(b) / 1_048_576, 1) + " MiB" }
