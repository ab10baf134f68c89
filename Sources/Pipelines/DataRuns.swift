// Small data runs: simulate a labelled dataset, score an obs column against labels.
import CellData
import Collectives
import Settings

/// `output:` of `simulate`.
public struct SimulationOutputSettings: SettingsSection, Equatable {
    @Setting("Output .h5ad.")
    public var path = ""
    @Setting("gzip level 0…9 for X (chunked, as anndata's compression='gzip'; null: uncompressed).", min: 0, max: 9)
    public var gzip: Int? = nil
    public init() {}
    public func validate() throws {
        if path.isEmpty { throw SettingsError(key: "output.path", "give the output file (the first argument)") }
    }
}

/// `syncytium simulate`.
public struct SimulateSpec: SettingsSection {
    @Setting("Log level: trace, debug, info, notice, warning, error.")
    public var logLevel = LogLevel.info
    public var simulation = SimulationSpec()
    public var output = SimulationOutputSettings()
    public init() {}
}

public enum SimulateRun {
    /// Collective: ranks generate and write disjoint row blocks; the file does not depend on the rank count.
    public static func run(_ spec: SimulationSpec, output: String, gzip: Int?, comm: Communicator) throws -> (nnz: Int64, seconds: Double) {
        try agreeing(comm) {
            guard spec.cells >= comm.size else {
                throw CellDataError("simulation.cells: \(spec.cells) cells for \(comm.size) ranks; give at least one cell per rank")
            }
        }
        try OutputCheck.verify(output: output, input: "", overwriteInput: false, comm: comm)
        let t0 = Communicator.time()
        let model = Simulator.model(spec)
        let bounds = RowPartition.equalRows(spec.cells, parts: comm.size)
        let shard = Simulator.generate(spec, model: model, rows: bounds[comm.rank]..<bounds[comm.rank + 1])
        var req = WriteRequest(shard: shard)
        req.includeX = true
        req.xCompression = gzip
        req.uns = [("simulation", .dict([
            ("cells", .integer(Int64(spec.cells))), ("genes", .integer(Int64(spec.genes))), ("types", .integer(Int64(spec.types))),
            ("rare_types", .integer(Int64(spec.rareTypes))), ("rare_fraction", .number(spec.rareFraction)),
            ("batches", .integer(Int64(spec.batches))), ("batch_effect", .number(spec.batchEffect)),
            ("dispersion", .number(spec.dispersion)), ("mean_expression", .number(spec.meanExpression)),
            ("library_sd", .number(spec.librarySD)), ("seed", .integer(Int64(bitPattern: spec.seed))),
        ]))]
        try CellWriter.write(output, req, comm: comm)
        let nnz = try comm.allreduce(value: Int64(shard.localNNZ), op: .sum)
        return (nnz, Communicator.time() - t0)
    }
}

public struct EvaluateResult: Sendable, Codable {
    public var cells: Int; public var clusters: Int; public var classes: Int; public var ari: Double; public var nmi: Double; public var acc: Double
}

public enum EvaluateRun {
    /// Collective: obs[key] against obs[labelKey] (read without X).
    public static func run(input: String, key: String, labelKey: String, comm: Communicator) throws -> EvaluateResult {
        let (cells, obs) = try CellReader.readObs(input, columns: [key, labelKey], comm: comm)
        func codes(_ name: String) throws -> [Int32] {
            let col = try agreeing(comm) { () -> ObsColumn in
                guard let c = obs[name] else { throw CellDataError(file: input, object: "obs/\(name)", problem: "missing", fix: "pass an existing obs column") }
                return c
            }
            return try Dataset.codes(of: col, comm: comm).codes
        }
        let pred = try codes(key), truth = try codes(labelKey)
        let s = try Scores.compute(truth: truth, pred: pred, comm: comm)
        let nClusters = Set(try comm.allgatherv(pred.filter { $0 >= 0 }).values).count
        let nClasses = Set(try comm.allgatherv(truth.filter { $0 >= 0 }).values).count
        return EvaluateResult(cells: cells, clusters: nClusters, classes: nClasses, ari: s.ari, nmi: s.nmi, acc: s.acc)
    }
}
