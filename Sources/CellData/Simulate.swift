import Collectives
import Settings
import TensorCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Parameters of a simulated count matrix: negative-binomial counts for K cell types (some
/// rare), batch effects and cell-to-cell library-size variation. (The `simulation:` section.)
public struct SimulationSpec: SettingsSection {
    @Setting("Cells.", min: 1)
    public var cells = 2000
    @Setting("Genes.", min: 1)
    public var genes = 1000
    @Setting("Cell types.", min: 1)
    public var types = 5
    @Setting("How many of the types are rare.", min: 0)
    public var rareTypes = 1
    @Setting("Fraction of the cells each rare type gets.", min: 0, max: 1)
    public var rareFraction = 0.01
    @Setting("Batches.", min: 1)
    public var batches = 2
    @Setting("Log-scale sd of a gene's per-batch multiplicative effect.", min: 0)
    public var batchEffect = 0.3
    @Setting("Fraction of genes that mark each type.", min: 0, max: 1)
    public var markerFraction = 0.05
    @Setting("Log fold change of a type's marker genes.", min: 0)
    public var markerLogFold = 2.0
    @Setting("NB dispersion φ (variance = μ + φμ²).", min: 0)
    public var dispersion = 0.2
    @Setting("Mean count per gene per cell before type, batch and size effects (log-normal over genes).", min: 1e-9)
    public var meanExpression = 0.3
    @Setting("Log-scale sd of library sizes across cells.", min: 0)
    public var librarySD = 0.4
    @Setting("Random seed.")
    public var seed: UInt64 = 1
    public init() {}

    public func validate() throws {
        if rareTypes >= types && rareTypes > 0 { throw SettingsError(key: "simulation.rare_types", "must be < simulation.types (\(types))") }
        if Double(rareTypes) * rareFraction >= 1 { throw SettingsError(key: "simulation.rare_fraction", "rare types would take every cell (rare_types × rare_fraction ≥ 1)") }
    }
}

/// The simulator's random numbers: a TensorCore `RandomStream` plus the Double-precision
/// distributions negative-binomial counts need (normal, gamma, Poisson).
public struct SimRNG: RandomNumberGenerator {
    var stream: RandomStream
    /// The `.simulation` stream of `seed` (rank 0's, so the same on every rank).
    public init(seed: UInt64) { stream = RandomStream(seed: seed, purpose: .simulation) }
    /// Draws from `stream` (e.g. a `split` child).
    public init(_ stream: RandomStream) { self.stream = stream }
    @inline(__always) public mutating func next() -> UInt64 { stream.next() }
    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always) public mutating func uniform() -> Double { stream.uniformDouble() }
    public mutating func normal() -> Double {
        let u1 = Swift.max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
    /// Gamma(shape k, scale 1), Marsaglia–Tsang.
    public mutating func gamma(_ k: Double) -> Double {
        if k < 1 { return gamma(k + 1) * pow(Swift.max(uniform(), 1e-300), 1 / k) }
        let d = k - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x: Double, v: Double
            repeat { x = normal(); v = 1 + c * x } while v <= 0
            v = v * v * v
            let u = uniform()
            if u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)) { return d * v }
        }
    }
    /// Poisson(λ): multiplication method for small λ, rounded normal approximation above 30.
    public mutating func poisson(_ lambda: Double) -> Int {
        if lambda <= 0 { return 0 }
        if lambda > 30 { return Swift.max(0, Int((lambda + lambda.squareRoot() * normal()).rounded())) }
        let l = exp(-lambda)
        var k = 0, p = 1.0
        repeat { k += 1; p *= uniform() } while p > l
        return k - 1
    }
}

public enum Simulator {
    /// Per-(type, batch) gene means and the type of every cell; the same on every rank.
    public struct Model: Sendable {
        public var means: [[Double]] // [type * batches + batch][gene]
        public var typeNames: [String]
    }

    public static func model(_ spec: SimulationSpec) -> Model {
        var rng = SimRNG(seed: spec.seed)
        let base = (0..<spec.genes).map { _ in spec.meanExpression * exp(1.2 * rng.normal() - 0.72) }
        var typeMeans: [[Double]] = []
        for _ in 0..<spec.types {
            var m = base
            let nMarkers = Swift.max(1, Int(Double(spec.genes) * spec.markerFraction))
            for _ in 0..<nMarkers {
                let g = Int(rng.next() % UInt64(spec.genes))
                m[g] *= exp(spec.markerLogFold * (0.5 + rng.uniform()))
            }
            typeMeans.append(m)
        }
        var means: [[Double]] = []
        for t in 0..<spec.types {
            for _ in 0..<spec.batches {
                means.append(typeMeans[t].map { $0 * exp(spec.batchEffect * rng.normal()) })
            }
        }
        let names = (0..<spec.types).map { t in t >= spec.types - spec.rareTypes ? "rare\(t)" : "type\(t)" }
        return Model(means: means, typeNames: names)
    }

    /// Type of cell `i` (rare types get `rareFraction` each; the others share the rest).
    static func cellType(_ i: Int, _ spec: SimulationSpec, _ u: Double) -> Int {
        let common = Swift.max(spec.types - spec.rareTypes, 1)
        let rareTotal = spec.rareFraction * Double(spec.rareTypes)
        if spec.rareTypes > 0 && u < rareTotal {
            return common + Swift.min(Int(u / spec.rareFraction), spec.rareTypes - 1)
        }
        let v = (u - (spec.rareTypes > 0 ? rareTotal : 0)) / (1 - (spec.rareTypes > 0 ? rareTotal : 0))
        return Swift.min(Int(v * Double(common)), common - 1)
    }

    /// Generates rows `rows` (each row from its own seeded stream, so the matrix does not depend
    /// on how rows are split over ranks).
    public static func generate(_ spec: SimulationSpec, model: Model, rows: Range<Int>) -> CellShard {
        var rowPtr: [Int64] = [0], cols: [Int32] = [], vals: [Float] = []
        var types: [Int32] = [], batches: [Int32] = [], libs: [Double] = []
        let r = 1 / spec.dispersion
        let cells = RandomStream(seed: spec.seed, purpose: .custom("simulate-cells"))
        for i in rows {
            var rng = SimRNG(cells.split(UInt64(i)))
            let t = cellType(i, spec, rng.uniform())
            let b = Int(rng.next() % UInt64(Swift.max(spec.batches, 1)))
            let size = exp(spec.librarySD * rng.normal())
            let m = model.means[t * spec.batches + b]
            for g in 0..<spec.genes {
                let mu = m[g] * size
                // P(0) of NB(μ, φ) = (1 + φ μ)^(-1/φ); most entries stop here.
                let p0 = exp(-r * log1p(spec.dispersion * mu))
                let u = rng.uniform()
                if u < p0 { continue }
                var c = 0
                if mu < 50 {
                    // Inverse CDF from k = 1 on: P(k+1) = P(k) (k + r) / (k + 1) · μ / (r + μ).
                    let q = mu / (r + mu)
                    var pk = p0, cum = p0
                    while cum <= u && c < 100_000 {
                        pk *= (Double(c) + r) / Double(c + 1) * q
                        c += 1
                        cum += pk
                    }
                    c = Swift.max(c, 1)
                } else {
                    // Gamma–Poisson draws (P(0) is negligible here).
                    repeat { c = rng.poisson(rng.gamma(r) * mu / r) } while c == 0
                }
                cols.append(Int32(g)); vals.append(Float(c))
            }
            rowPtr.append(Int64(vals.count))
            types.append(Int32(t)); batches.append(Int32(b)); libs.append(size)
        }
        var obs = Frame(index: rows.map { "cell\($0)" })
        obs.set("cell_type", .categorical(codes: types, categories: model.typeNames, ordered: false))
        obs.set("batch", .categorical(codes: batches, categories: (0..<spec.batches).map { "batch\($0)" }, ordered: false))
        obs.set("size_factor_true", .numeric(libs))
        var vars = Frame(index: (0..<spec.genes).map { "gene\($0)" })
        vars.set("gene_ids", .strings((0..<spec.genes).map { "SIM\($0)" }))
        let info = SourceInfo(file: "simulated", format: "anndata", matrixPath: "X", layout: "csr", dtype: "float32",
                              nnz: Int64(vals.count))
        return CellShard(nObs: spec.cells, nVars: spec.genes, rowIds: rows.map { Int64($0) }, rowPtr: rowPtr,
                         colIdx: cols, values: vals, obs: obs, vars: vars, source: info)
    }
}
