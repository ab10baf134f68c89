import ArgumentParser
import CellData
import Collectives
import Foundation
import Pipelines

func countsSource(layer: String?, raw: Bool) throws -> CountsSource {
    if layer != nil && raw { throw ValidationError("pass either --layer or --raw, not both") }
    if let l = layer { return .layer(l) }
    return raw ? .raw : .x
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a cell file's shape, layout, dtype, nnz, obs columns and whether X looks like raw counts.")

    @Argument(help: "An AnnData .h5ad, a 10x v3 .h5 or a legacy X/Y .h5.")
    var file: String

    @Option(help: "Inspect layers/<name> instead of X.")
    var layer: String?

    @Flag(help: "Inspect raw/X instead of X.")
    var raw = false

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let comm = Communicator.world
        let source = try countsSource(layer: layer, raw: raw)
        runDataCommand(comm) {
            let report = try agreeing(comm) { () -> InspectReport? in
                comm.rank == 0 ? try CellReader.inspect(file, counts: source) : nil
            }
            guard let r = report else { return }
            if json { print(try jsonString(r)); return }
            let matrix = r.layout == "none" ? """
                format:   \(r.format) without X (the file stores X = None)
                shape:    \(r.cells) cells × \(r.genes) genes
                """ : """
                format:   \(r.format) (matrix '\(r.matrix)', \(r.layout), \(r.dtype))
                shape:    \(r.cells) cells × \(r.genes) genes
                nnz:      \(r.nnz) (density \(fmt(r.density, 4)))
                counts:   \(r.looksLikeRawCounts ? "looks like raw counts" : "NOT raw counts (non-integer or negative values)") (\(r.sampledValues) values sampled)
                zero cells: \(r.allZeroCellsInSample)
                """
            print("""
                file:     \(r.file)
                \(matrix)
                layers:   \(r.layers.isEmpty ? "none" : r.layers.joined(separator: ", "))\(r.hasRaw ? "; raw/X present" : "")
                var columns: \(r.varColumns.isEmpty ? "none" : r.varColumns.joined(separator: ", "))
                obs columns:
                """)
            for c in r.obsColumns {
                if let order = c.categoryOrder, let counts = c.categoryCounts {
                    let shown = order.prefix(12).map { "\($0) \(counts[$0] ?? 0)" }.joined(separator: ", ")
                    print("  \(c.name): categorical, \(order.count) categories: \(shown)\(order.count > 12 ? ", …" : "")")
                } else {
                    print("  \(c.name): \(c.kind)")
                }
            }
        }
    }
}

struct Simulate: RunCommand {
    typealias Spec = SimulateSpec
    static let positionals = ["output.path"]
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            abstract: "Write a simulated .h5ad: negative-binomial counts, K types (some rare), batches, library sizes.",
            usage: "syncytium simulate OUTPUT [--cells N] [--genes G] [--types K] … [--json]",
            discussion: settingsHelp("Ranks generate and write disjoint row blocks in parallel; the file does not depend on the rank count."))
    }
    @Argument(parsing: .captureForPassthrough, help: "OUTPUT and settings (see below).") var words: [String] = []

    struct Output: Codable { var file: String; var cells: Int; var genes: Int; var nnz: Int64; var seconds: Double; var ranks: Int }

    func execute(_ spec: SimulateSpec, comm: Communicator) throws -> Bool {
        let s = spec.simulation, path = spec.output.path
        let r = try SimulateRun.run(s, output: path, gzip: spec.output.gzip, comm: comm)
        guard comm.rank == 0 else { return true }
        let out = Output(file: path, cells: s.cells, genes: s.genes, nnz: r.nnz, seconds: r.seconds, ranks: comm.size)
        if jsonRequested { print(try jsonString(out)) } else {
            print("wrote \(path): \(s.cells) cells × \(s.genes) genes, nnz \(r.nnz), \(fmt(r.seconds, 2)) s on \(comm.size) rank(s)")
        }
        return true
    }
}

/// `syncytium evaluate`: compare an obs column with reference labels.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score an obs column (e.g. syncytium_cluster) against reference labels: ARI, NMI, ACC.")

    @Argument(help: "An .h5ad file.") var input: String
    @Option(help: "obs column holding the clustering.") var key = "syncytium_cluster"
    @Option(help: "obs column holding the reference labels.") var labelKey = "cell_type"
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let comm = Communicator.world
        runDataCommand(comm) {
            let out = try EvaluateRun.run(input: input, key: key, labelKey: labelKey, comm: comm)
            guard comm.rank == 0 else { return }
            if json { print(try jsonString(out)); return }
            print("\(input): obs['\(key)'] (\(out.clusters) clusters) vs obs['\(labelKey)'] (\(out.classes) classes), \(out.cells) cells")
            print("ARI \(fmt(out.ari, 4))  NMI \(fmt(out.nmi, 4))  ACC \(fmt(out.acc, 4))")
        }
    }
}
