import Collectives
import Settings
import TensorCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Per-column sums that come out bit-identical whatever the number of ranks or the order of the
/// rows: each value is split into an integer part and a fixed-point fraction, both summed as
/// Int64 (integer addition is associative), then allreduced.
public struct ExactColumnSums {
    public let columns: Int
    let fracBits: Int
    var whole: [Int64]
    var frac: [Int64]

    /// `rows` bounds how many values any column receives in total (all ranks).
    public init(columns: Int, rows: Int) {
        self.columns = columns
        var bits = 0
        while (1 << bits) <= rows { bits += 1 }
        fracBits = Swift.max(20, Swift.min(52, 62 - bits))
        whole = [Int64](repeating: 0, count: columns)
        frac = [Int64](repeating: 0, count: columns)
    }

    @inline(__always)
    public mutating func add(_ column: Int, _ v: Double) {
        let f = v.rounded(.down)
        whole[column] &+= Int64(f)
        frac[column] &+= Int64(((v - f) * Double(Int64(1) << fracBits)).rounded())
    }

    /// Allreduces across ranks and returns the column sums.
    public mutating func total(_ comm: Communicator) throws -> [Double] {
        try comm.allreduce(&whole, op: .sum)
        try comm.allreduce(&frac, op: .sum)
        let scale = 1.0 / Double(Int64(1) << fracBits)
        return (0..<columns).map { Double(whole[$0]) + Double(frac[$0]) * scale }
    }
}

public enum HVGFlavor: String, SettingChoice {
    /// On log-normalised data.
    case seurat
    /// On log-normalised data.
    case cellRanger = "cell_ranger"
    /// On raw counts (loess fit of log variance against log mean, clipped standardised variance).
    case seuratV3 = "seurat_v3"
}

/// Per-gene results of highly-variable-gene selection (global, identical on every rank).
public struct HVGResult: Sendable {
    public var means: [Double]
    public var dispersions: [Double]
    public var dispersionsNorm: [Double]
    public var highlyVariable: [Bool]
    /// Selected gene indices, ascending.
    public var genes: [Int] { highlyVariable.indices.filter { highlyVariable[$0] } }
}

/// Preprocessing with global statistics: every function is called by all ranks together and
/// gives the same result for any rank count (per-gene sums are exact, see ExactColumnSums).
public enum Preprocess {

    /// Library size (sum of counts) of each local cell.
    public static func librarySizes(_ s: CellShard) -> [Double] {
        (0..<s.localRows).map { i in
            var t = 0.0
            for k in Int(s.rowPtr[i])..<Int(s.rowPtr[i + 1]) { t += Double(s.values[k]) }
            return t
        }
    }

    /// Keeps the local rows in `keep` (sorted local indices) and renumbers global row ids over
    /// the cells kept on all ranks (global order preserved).
    public static func subsetRows(_ s: inout CellShard, keep: [Int], comm: Communicator) throws {
        // The kept cells are renumbered 0..<n in the order of their old global ids. Rows placed in
        // ascending blocks (the reader's placement, `RowBlocks`) take a prefix of the kept counts over
        // ranks; any other placement an N-byte mask allreduced over ranks.
        let blocks = try RowBlocks(ids: s.rowIds, value: Int64(keep.count),
                                   alsoAscending: zip(keep, keep.dropFirst()).allSatisfy { $0 < $1 }, comm: comm)
        let newIds: [Int64], n: Int64
        if blocks.ordered {
            let base = blocks.before(comm.rank)
            newIds = keep.indices.map { base + Int64($0) }
            n = blocks.total
        } else {
            var mask = [UInt8](repeating: 0, count: s.nObs)
            for i in keep { mask[Int(s.rowIds[i])] = 1 }
            try comm.allreduce(&mask, op: .max)
            var newId = [Int64](repeating: -1, count: s.nObs)
            var count: Int64 = 0
            for g in 0..<s.nObs where mask[g] != 0 { newId[g] = count; count += 1 }
            newIds = keep.map { newId[Int(s.rowIds[$0])] }
            n = count
        }
        var rowPtr: [Int64] = [0], cols: [Int32] = [], vals: [Float] = []
        for i in keep {
            let a = Int(s.rowPtr[i]), b = Int(s.rowPtr[i + 1])
            cols.append(contentsOf: s.colIdx[a..<b]); vals.append(contentsOf: s.values[a..<b])
            rowPtr.append(Int64(vals.count))
        }
        s.rowIds = newIds
        s.sourceRows = keep.map { s.sourceRows[$0] }
        s.rowPtr = rowPtr; s.colIdx = cols; s.values = vals
        s.obs = s.obs.subset(keep)
        s.nObs = Int(n)
    }

    /// scanpy `filter_cells`: drops cells with fewer than `minCounts` total counts or fewer than
    /// `minGenes` expressed genes. Returns how many cells were removed (all ranks).
    @discardableResult
    public static func filterCells(_ s: inout CellShard, minCounts: Double = 0, minGenes: Int = 0,
                                   comm: Communicator) throws -> Int {
        let lib = librarySizes(s)
        let keep = (0..<s.localRows).filter { i in
            lib[i] >= minCounts && Int(s.rowPtr[i + 1] - s.rowPtr[i]) >= minGenes
        }
        let before = s.nObs
        try subsetRows(&s, keep: keep, comm: comm)
        if s.nObs == 0 {
            throw CellDataError(file: s.source.file, object: "X",
                                problem: "no cells left after filtering (min counts \(minCounts), min genes \(minGenes))",
                                fix: "lower the cell filter thresholds")
        }
        if s.nObs < comm.size {
            throw CellDataError(file: s.source.file, object: "X",
                                problem: "only \(s.nObs) cells left after filtering for \(comm.size) ranks",
                                fix: "run with fewer ranks or lower the filter thresholds")
        }
        return before - s.nObs
    }

    /// Number of cells expressing each gene (global).
    public static func cellsPerGene(_ s: CellShard, comm: Communicator) throws -> [Int64] {
        var c = [Int64](repeating: 0, count: s.nVars)
        for (k, j) in s.colIdx.enumerated() where s.values[k] != 0 { c[Int(j)] += 1 }
        try comm.allreduce(&c, op: .sum)
        return c
    }

    /// Keeps the genes in `genes` (ascending global gene indices), renumbering columns.
    public static func subsetGenes(_ s: inout CellShard, _ genes: [Int]) {
        var map = [Int32](repeating: -1, count: s.nVars)
        for (n, g) in genes.enumerated() { map[g] = Int32(n) }
        var rowPtr: [Int64] = [0], cols: [Int32] = [], vals: [Float] = []
        cols.reserveCapacity(s.colIdx.count); vals.reserveCapacity(s.values.count)
        for i in 0..<s.localRows {
            for k in Int(s.rowPtr[i])..<Int(s.rowPtr[i + 1]) {
                let m = map[Int(s.colIdx[k])]
                if m >= 0 { cols.append(m); vals.append(s.values[k]) }
            }
            rowPtr.append(Int64(vals.count))
        }
        s.rowPtr = rowPtr; s.colIdx = cols; s.values = vals
        s.vars = s.vars.subset(genes)
        s.nVars = genes.count
    }

    /// scanpy `filter_genes(min_cells:)`. Returns the kept gene indices (of the input).
    @discardableResult
    public static func filterGenes(_ s: inout CellShard, minCells: Int, comm: Communicator) throws -> [Int] {
        let c = try cellsPerGene(s, comm: comm)
        let keep = (0..<s.nVars).filter { c[$0] >= Int64(minCells) }
        if keep.isEmpty {
            throw CellDataError(file: s.source.file, object: "X", problem: "no genes left after filtering (min cells \(minCells))",
                                fix: "lower the gene filter threshold")
        }
        subsetGenes(&s, keep)
        return keep
    }

    /// Median of all cells' library sizes (every rank), as numpy's median of float32 values. Distributed
    /// selection (`Communicator.median`): no rank holds more than its own cells' sizes.
    public static func medianLibrarySize(_ s: CellShard, comm: Communicator, nonzeroOnly: Bool = false) throws -> Float {
        var lib = librarySizes(s).map { Float($0) }
        if nonzeroOnly { lib = lib.filter { $0 > 0 } }
        // In Double, then rounded once to Float: this equals numpy's float32 result (the sum of two
        // float32 values of similar magnitude is exact in Double, and halving commutes with rounding).
        guard let m = try comm.median(lib) else { return 0 }
        return Float(m)
    }

    /// Size factors of the local cells: library size / median library size over all cells
    /// (the DCA / scDeepCluster convention used by the seed methods' ZINB losses).
    public static func sizeFactors(_ s: CellShard, comm: Communicator) throws -> [Float] {
        let median = Double(try medianLibrarySize(s, comm: comm))
        return librarySizes(s).map { Float(median > 0 ? $0 / median : 0) }
    }

    /// scanpy `normalize_total`: divides each cell by (its counts / target); target = median of
    /// the cells' counts when nil. Returns the size factors (counts / target) of the local cells.
    @discardableResult
    public static func normalizeTotal(_ s: inout CellShard, targetSum: Double? = nil,
                                      comm: Communicator) throws -> [Float] {
        let target: Float = try targetSum.map(Float.init) ?? medianLibrarySize(s, comm: comm)
        var factors = [Float](repeating: 1, count: s.localRows)
        for i in 0..<s.localRows {
            var t = 0.0
            let a = Int(s.rowPtr[i]), b = Int(s.rowPtr[i + 1])
            for k in a..<b { t += Double(s.values[k]) }
            let f = Float(t) / target
            factors[i] = f
            if f == 0 { continue }
            for k in a..<b { s.values[k] = s.values[k] / f }
        }
        return factors
    }

    /// Natural log1p of every stored value (zeros stay zero, so the matrix stays sparse).
    public static func log1p(_ s: inout CellShard) {
        for k in s.values.indices { s.values[k] = Foundation_log1pf(s.values[k]) }
    }

    /// Global per-gene mean and unbiased variance of `transform(value)` (zeros included as 0).
    public static func meanVariance(_ s: CellShard, comm: Communicator,
                                    transform: (Float) -> Float = { $0 }) throws -> (mean: [Double], variance: [Double]) {
        let n = Double(s.nObs)
        var sums = ExactColumnSums(columns: s.nVars, rows: s.nObs)
        for k in s.values.indices { sums.add(Int(s.colIdx[k]), Double(transform(s.values[k]))) }
        let mean = try sums.total(comm).map { $0 / n }
        // Second pass: Σ (x - mean)^2 over stored entries, plus the zeros' (n - nnz)·mean².
        var sq = ExactColumnSums(columns: s.nVars, rows: s.nObs)
        var nnz = [Int64](repeating: 0, count: s.nVars)
        for k in s.values.indices {
            let j = Int(s.colIdx[k])
            let d = Double(transform(s.values[k])) - mean[j]
            sq.add(j, d * d)
            nnz[j] += 1
        }
        try comm.allreduce(&nnz, op: .sum)
        let ss = try sq.total(comm)
        let variance = (0..<s.nVars).map { j -> Double in
            let v = (ss[j] + (n - Double(nnz[j])) * mean[j] * mean[j]) / n
            return s.nObs > 1 ? v * n / (n - 1) : v
        }
        return (mean, variance)
    }

    /// scanpy `highly_variable_genes(n_top_genes:, flavor:)` on log-normalised data (seurat:
    /// expm1 first, log dispersion, 20 equal-width mean bins; cell_ranger: percentile bins,
    /// median/MAD normalisation).
    public static func highlyVariableGenes(_ s: CellShard, nTop: Int, flavor: HVGFlavor = .seurat, nBins: Int = 20,
                                           span: Double = 0.3, comm: Communicator) throws -> HVGResult {
        if flavor == .seuratV3 { return try highlyVariableGenesSeuratV3(s, nTop: nTop, span: span, comm: comm) }
        var (mean, variance) = try meanVariance(s, comm: comm,
                                                transform: flavor == .seurat ? { Foundation_expm1f($0) } : { $0 })
        for j in mean.indices where mean[j] == 0 { mean[j] = 1e-12 }
        var disp = (0..<mean.count).map { variance[$0] / mean[$0] }
        if flavor == .seurat {
            for j in disp.indices {
                disp[j] = disp[j] == 0 ? .nan : Foundation_log(disp[j])
                mean[j] = Foundation_log1p(mean[j])
            }
        }
        let bins: [Int]
        var avg = [Double](), dev = [Double]()
        switch flavor {
        case .seurat:
            bins = equalWidthBins(mean, nBins)
            let nb = (bins.max() ?? 0) + 1
            avg = [Double](repeating: .nan, count: nb); dev = avg
            for b in 0..<nb {
                let v = disp.indices.filter { bins[$0] == b && !disp[$0].isNaN }.map { disp[$0] }
                if v.isEmpty { continue }
                let m = v.reduce(0, +) / Double(v.count)
                avg[b] = m
                dev[b] = v.count > 1 ? (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count - 1)).squareRoot() : .nan
                if dev[b].isNaN { dev[b] = avg[b]; avg[b] = 0 }
            }
        case .seuratV3:
            fatalError("handled above")
        case .cellRanger:
            let edges = [-Double.infinity] + stride(from: 10.0, through: 100.0, by: 5.0).map { percentile(mean, $0) } + [Double.infinity]
            bins = mean.map { x in
                var i = 0
                while i + 1 < edges.count && !(edges[i] < x && x <= edges[i + 1]) { i += 1 }
                return i
            }
            let nb = edges.count - 1
            avg = [Double](repeating: .nan, count: nb); dev = avg
            for b in 0..<nb {
                let v = disp.indices.filter { bins[$0] == b }.map { disp[$0] }
                if v.isEmpty { continue }
                let med = median(v)
                avg[b] = med
                dev[b] = median(v.map { abs($0 - med) }) / 0.6744897501960817
            }
        }
        let norm = disp.indices.map { (disp[$0] - avg[bins[$0]]) / dev[bins[$0]] }
        var valid = norm.filter { !$0.isNaN }
        valid.sort(by: >)
        let n = Swift.min(nTop, valid.count)
        let cut = n > 0 ? valid[n - 1] : .infinity
        let hv = norm.map { ($0.isNaN ? -.infinity : $0) >= cut }
        return HVGResult(means: mean, dispersions: disp, dispersionsNorm: norm, highlyVariable: hv)
    }

    /// scanpy `highly_variable_genes(flavor: "seurat_v3")` on raw counts (no batches): a loess
    /// (degree 2, `span`) of log10 variance on log10 mean gives each gene a regularised sd; counts
    /// are clipped at mean + sd·√n and the genes ranked by the variance of the standardised,
    /// clipped counts. `dispersionsNorm` holds that normalised variance.
    public static func highlyVariableGenesSeuratV3(_ s: CellShard, nTop: Int, span: Double = 0.3,
                                                   comm: Communicator) throws -> HVGResult {
        let (mean, variance) = try meanVariance(s, comm: comm)
        let genes = (0..<s.nVars).filter { variance[$0] > 0 }
        let fitted = loess(x: genes.map { log10(mean[$0]) }, y: genes.map { log10(variance[$0]) }, span: span)
        var regStd = [Double](repeating: 1, count: s.nVars)  // 10^0 for constant genes, as scanpy
        for (k, g) in genes.enumerated() { regStd[g] = pow(10, fitted[k]).squareRoot() }
        let n = Double(s.nObs)
        let clip = (0..<s.nVars).map { regStd[$0] * n.squareRoot() + mean[$0] }
        var sum = ExactColumnSums(columns: s.nVars, rows: s.nObs)
        var sq = ExactColumnSums(columns: s.nVars, rows: s.nObs)
        for k in s.values.indices {
            let j = Int(s.colIdx[k])
            let v = Swift.min(Double(s.values[k]), clip[j])
            sum.add(j, v); sq.add(j, v * v)
        }
        let sums = try sum.total(comm), sqs = try sq.total(comm)
        let normVar = (0..<s.nVars).map { j in
            (n * mean[j] * mean[j] + sqs[j] - 2 * sums[j] * mean[j]) / ((n - 1) * regStd[j] * regStd[j])
        }
        // Top nTop by normalised variance (ties broken by gene order).
        let order = (0..<s.nVars).sorted { normVar[$0] > normVar[$1] || (normVar[$0] == normVar[$1] && $0 < $1) }
        var hv = [Bool](repeating: false, count: s.nVars)
        for g in order.prefix(nTop) { hv[g] = true }
        return HVGResult(means: mean, dispersions: variance, dispersionsNorm: normVar, highlyVariable: hv)
    }

    /// Local quadratic regression (loess, tricube weights, the q = ⌊n·span⌋ nearest points in x)
    /// evaluated directly at every x (Cleveland's surface = "direct").
    public static func loess(x: [Double], y: [Double], span: Double) -> [Double] {
        let n = x.count
        guard n > 0 else { return [] }
        let order = (0..<n).sorted { x[$0] < x[$1] }
        let xs = order.map { x[$0] }, ys = order.map { y[$0] }
        let q = Swift.min(n, Swift.max(3, Int(Double(n) * span)))
        var fittedSorted = [Double](repeating: 0, count: n)
        var lo = 0  // window [lo, lo + q) of the q nearest neighbours, slid along the sorted x
        for i in 0..<n {
            let x0 = xs[i]
            while lo + q < n && x0 - xs[lo] > xs[lo + q] - x0 { lo += 1 }
            let hi = lo + q
            var dmax = Swift.max(x0 - xs[lo], xs[hi - 1] - x0)
            if dmax <= 0 { dmax = 1e-300 }
            // Weighted least squares for y ≈ b0 + b1 (x - x0) + b2 (x - x0)^2.
            var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0, t0 = 0.0, t1 = 0.0, t2 = 0.0
            for k in lo..<hi {
                let d = xs[k] - x0
                let r = abs(d) / dmax
                if r >= 1 { continue }
                let c = 1 - r * r * r
                let w = c * c * c
                let d2 = d * d
                s0 += w; s1 += w * d; s2 += w * d2; s3 += w * d2 * d; s4 += w * d2 * d2
                t0 += w * ys[k]; t1 += w * d * ys[k]; t2 += w * d2 * ys[k]
            }
            // Solve the 3×3 normal equations by Cramer's rule; fall back to lower degree if singular.
            let det = s0 * (s2 * s4 - s3 * s3) - s1 * (s1 * s4 - s3 * s2) + s2 * (s1 * s3 - s2 * s2)
            if abs(det) > 1e-12 * Swift.max(1, abs(s0 * s2 * s4)) {
                fittedSorted[i] = (t0 * (s2 * s4 - s3 * s3) - s1 * (t1 * s4 - s3 * t2) + s2 * (t1 * s3 - s2 * t2)) / det
            } else {
                let det2 = s0 * s2 - s1 * s1
                fittedSorted[i] = abs(det2) > 1e-300 ? (t0 * s2 - s1 * t1) / det2 : (s0 > 0 ? t0 / s0 : ys[i])
            }
        }
        var fitted = [Double](repeating: 0, count: n)
        for (k, i) in order.enumerated() { fitted[i] = fittedSorted[k] }
        return fitted
    }

    /// pandas.cut(x, bins: n) bin numbers (right-closed, lowest edge lowered by 0.1% of the range).
    static func equalWidthBins(_ x: [Double], _ n: Int) -> [Int] {
        guard let mn = x.min(), let mx = x.max() else { return [] }
        if mn == mx { return x.map { _ in 0 } }
        let step = (mx - mn) / Double(n)
        var edges = (0...n).map { Double($0) * step + mn }
        edges[0] -= (mx - mn) * 0.001
        edges[n] = mx
        return x.map { v in
            // First edge >= v, minus one.
            var lo = 0, hi = n
            while lo < hi { let m = (lo + hi) / 2; if edges[m] < v { lo = m + 1 } else { hi = m } }
            return Swift.max(0, lo - 1)
        }
    }

    /// numpy.percentile (linear interpolation).
    static func percentile(_ x: [Double], _ q: Double) -> Double {
        let s = x.sorted()
        let pos = (q / 100) * Double(s.count - 1)
        let lo = Int(pos.rounded(.down)), hi = Swift.min(lo + 1, s.count - 1)
        let f = pos - Double(lo)
        return s[lo] + (s[hi] - s[lo]) * f
    }

    /// scanpy `scale(max_value:)`: zero mean, unit (unbiased) variance per gene, clipped to
    /// ±maxValue. Returns the dense local rows (localRows × nVars, row-major): centring makes the
    /// matrix dense, so this is the one step that leaves sparse storage.
    public static func scale(_ s: CellShard, maxValue: Float? = 10, comm: Communicator) throws -> (values: [Float], mean: [Double], std: [Double]) {
        let (mean, variance) = try meanVariance(s, comm: comm)
        let std = variance.map { $0 == 0 ? 1 : $0.squareRoot() }
        var out = [Float](repeating: 0, count: s.localRows * s.nVars)
        for i in 0..<s.localRows {
            let base = i * s.nVars
            for j in 0..<s.nVars { out[base + j] = Float((0 - mean[j]) / std[j]) }
            for k in Int(s.rowPtr[i])..<Int(s.rowPtr[i + 1]) {
                let j = Int(s.colIdx[k])
                out[base + j] = Float((Double(s.values[k]) - mean[j]) / std[j])
            }
            if let m = maxValue {
                for j in 0..<s.nVars { out[base + j] = Swift.min(Swift.max(out[base + j], -m), m) }
            }
        }
        return (out, mean, std)
    }
}

// libm through Glibc/Darwin, named so call sites read clearly.
@inline(__always) func Foundation_log1pf(_ x: Float) -> Float { log1pf(x) }
@inline(__always) func Foundation_expm1f(_ x: Float) -> Float { expm1f(x) }
@inline(__always) func Foundation_log(_ x: Double) -> Double { log(x) }
@inline(__always) func Foundation_log1p(_ x: Double) -> Double { log1p(x) }
