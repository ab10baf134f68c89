import XCTest
import Foundation
import Collectives
@testable import CellData

final class PreprocessTests: XCTestCase {
    let comm = Communicator.world

    func testExactSumsIgnoreOrder() throws {
        var rng = SystemRandomNumberGenerator()
        let vals = (0..<5000).map { _ in Double.random(in: -3...50, using: &rng) * Double.random(in: 0...1, using: &rng) }
        var a = ExactColumnSums(columns: 1, rows: vals.count)
        var b = ExactColumnSums(columns: 1, rows: vals.count)
        for v in vals { a.add(0, v) }
        for v in vals.reversed() { b.add(0, v) }
        let ta = try a.total(comm)[0], tb = try b.total(comm)[0]
        XCTAssertEqual(ta.bitPattern, tb.bitPattern)
        XCTAssertEqual(ta, vals.reduce(0, +), accuracy: 1e-6 * abs(ta))
    }

    func testBinsAndPercentilesMatchPandasNumpy() {
        // pandas.cut([0, 1, 2, 3, 4], 4) → bins 0,0,1,2,3 (right-closed, lowest edge lowered).
        XCTAssertEqual(Preprocess.equalWidthBins([0, 1, 2, 3, 4], 4), [0, 0, 1, 2, 3])
        // numpy.percentile([1, 2, 3, 4], 10) = 1.3
        XCTAssertEqual(Preprocess.percentile([4, 1, 3, 2], 10), 1.3, accuracy: 1e-12)
    }

    /// subsetRows renumbers the kept cells in their old global order whatever the rows' placement:
    /// rows in ascending order (the prefix path of `RowBlocks`) and the same rows in another local
    /// order (the N-byte mask path) give every cell the same new id and the same entries.
    func testSubsetRowsRenumbersAlikeOnBothPaths() throws {
        var m = TestFiles.counts(rows: 30, cols: 6)
        for r in [0, 7, 8, 29] { m[r] = [Float](repeating: 0, count: 6) }
        let p = TestFiles.path("pp-subset.h5ad")
        try TestFiles.writeH5ad(p, m)
        var ordered = try CellReader.read(p, comm: comm)
        XCTAssertTrue(try RowBlocks(ids: ordered.rowIds, value: 0, comm: comm).ordered)
        var shuffled = ordered
        let perm = Array((0..<ordered.localRows).reversed())
        shuffled.rowIds = perm.map { ordered.rowIds[$0] }
        shuffled.sourceRows = perm.map { ordered.sourceRows[$0] }
        var rowPtr: [Int64] = [0], cols: [Int32] = [], vals: [Float] = []
        for i in perm {
            let a = Int(ordered.rowPtr[i]), b = Int(ordered.rowPtr[i + 1])
            cols += ordered.colIdx[a..<b]; vals += ordered.values[a..<b]; rowPtr.append(Int64(vals.count))
        }
        shuffled.rowPtr = rowPtr; shuffled.colIdx = cols; shuffled.values = vals
        shuffled.obs = ordered.obs.subset(perm)
        XCTAssertFalse(try RowBlocks(ids: shuffled.rowIds, value: 0, comm: comm).ordered)
        let empty = m.filter { $0.reduce(0, +) < 1 }.count  // the four zeroed rows and any the generator left empty
        XCTAssertGreaterThanOrEqual(empty, 4)
        XCTAssertEqual(try Preprocess.filterCells(&ordered, minCounts: 1, comm: comm), empty)
        XCTAssertEqual(try Preprocess.filterCells(&shuffled, minCounts: 1, comm: comm), empty)
        XCTAssertEqual(ordered.nObs, 30 - empty); XCTAssertEqual(shuffled.nObs, 30 - empty)
        XCTAssertEqual(ordered.rowIds, (0..<(30 - empty)).map(Int64.init))
        // Cell by cell (by its input row): the same new id and the same counts.
        var byCell: [Int64: (Int64, [Float])] = [:]
        for i in 0..<ordered.localRows {
            byCell[ordered.sourceRows[i]] = (ordered.rowIds[i], Array(ordered.values[Int(ordered.rowPtr[i])..<Int(ordered.rowPtr[i + 1])]))
        }
        for i in 0..<shuffled.localRows {
            let want = try XCTUnwrap(byCell[shuffled.sourceRows[i]])
            XCTAssertEqual(shuffled.rowIds[i], want.0, "input row \(shuffled.sourceRows[i])")
            XCTAssertEqual(Array(shuffled.values[Int(shuffled.rowPtr[i])..<Int(shuffled.rowPtr[i + 1])]), want.1)
        }
    }

    /// A CSR layout planned from rows in ascending order (prefix of entry counts) equals the plan of
    /// the same rows in another order (every row's length allreduced): each row's offset, the total.
    func testSparsePlanIsTheSameOnBothPaths() throws {
        let lens: [Int64] = [3, 0, 2, 5, 0, 0, 1]
        func plan(_ order: [Int]) throws -> (SparsePlan, [Int64: Int64]) {
            var rowPtr: [Int64] = [0]
            for i in order { rowPtr.append(rowPtr.last! + lens[i]) }
            let ids = order.map(Int64.init)
            let p = try SparsePlan(rowPtr: rowPtr, rowIds: ids, nObs: lens.count, rowRuns: [0..<lens.count], comm: comm)
            return (p, Dictionary(uniqueKeysWithValues: zip(ids, p.indptr)))
        }
        let (a, offsetsA) = try plan(Array(0..<lens.count))
        let (b, offsetsB) = try plan([3, 0, 6, 1, 5, 2, 4])
        XCTAssertEqual(a.nnz, 11); XCTAssertEqual(b.nnz, 11)
        XCTAssertEqual(offsetsA, offsetsB)
        XCTAssertEqual(a.indptr, [0, 3, 3, 5, 10, 10, 10, 11], "with the closing nnz (the last row is here)")
        XCTAssertEqual(a.entryRuns, [0..<11])
        XCTAssertEqual(b.entryRuns.reduce(0) { $0 + $1.count }, 11)
    }

    func testFiltersAndNormalisationOnSmallMatrix() throws {
        var m = TestFiles.counts(rows: 20, cols: 8)
        m[3] = [Float](repeating: 0, count: 8) // an all-zero cell
        let p = TestFiles.path("pp-small.h5ad")
        try TestFiles.writeH5ad(p, m)
        var s = try CellReader.read(p, comm: comm)
        let removed = try Preprocess.filterCells(&s, minCounts: 1, comm: comm)
        XCTAssertEqual(removed, 1)
        XCTAssertEqual(s.nObs, 19)
        XCTAssertFalse(s.obs.index.contains("cell3"))
        XCTAssertEqual(s.rowIds, (0..<19).map { Int64($0) })
        try Preprocess.normalizeTotal(&s, targetSum: 100, comm: comm)
        for t in Preprocess.librarySizes(s) { XCTAssertEqual(t, 100, accuracy: 1e-3) }
        let (mean, variance) = try Preprocess.meanVariance(s, comm: comm)
        let dense = s.denseRows()
        for j in 0..<s.nVars {
            let col = (0..<s.nObs).map { Double(dense[$0 * s.nVars + j]) }
            let mu = col.reduce(0, +) / Double(col.count)
            let v = col.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(col.count - 1)
            XCTAssertEqual(mean[j], mu, accuracy: 1e-9)
            XCTAssertEqual(variance[j], v, accuracy: 1e-9 * max(1, v))
        }
        let scaled = try Preprocess.scale(s, maxValue: 1.5, comm: comm).values
        XCTAssertTrue(scaled.allSatisfy { abs($0) <= 1.5 })
        XCTAssertTrue(scaled.contains { abs($0) == 1.5 }, "clipping should bite at 1.5")
    }

    struct Reference: Decodable {
        var file: String
        var n_obs: Int
        var n_vars: Int
        var samples: [[Double]]
        var hvg_seurat: [Int]
        var hvg_cell_ranger: [Int]
        var median_target: Double
        var scale_samples: [[Double]]
    }

    struct MedianSamples: Decodable { var samples_median: [[Double]] }
    struct V3: Decodable { var hvg_seurat_v3: [Int]?; var hvg500_seurat_v3: [Int]? }
    struct H500: Decodable { var hvg500_seurat: [Int]?; var hvg500_cell_ranger: [Int]? }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    func value(_ s: CellShard, _ r: Int, _ c: Int) -> Float {
        let (cols, vals) = s.row(r)
        for (k, j) in cols.enumerated() where Int(j) == c { return vals[vals.startIndex + k] }
        return 0
    }

    func testAgreesWithScanpyOnSharedDatasets() throws {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: Self.fixtures.path))?
            .filter { $0.hasSuffix(".reference.json") }.sorted() ?? []
        guard !files.isEmpty else { throw XCTSkip("no reference fixtures") }
        var checked = 0
        for f in files {
            let data = try Data(contentsOf: Self.fixtures.appendingPathComponent(f))
            let ref = try JSONDecoder().decode(Reference.self, from: data)
            let path = "/work/shared/data/" + ref.file
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let raw = try CellReader.read(path, comm: comm)
            XCTAssertEqual(raw.nObs, ref.n_obs)
            // Target sum 1e4.
            var s = raw
            try Preprocess.normalizeTotal(&s, targetSum: 1e4, comm: comm)
            Preprocess.log1p(&s)
            for e in ref.samples {
                let got = Double(value(s, Int(e[0]), Int(e[1])))
                XCTAssertEqual(got, e[2], accuracy: 1e-5 * abs(e[2]), "\(ref.file) [\(e[0]), \(e[1])]")
            }
            for (flavor, want) in [(HVGFlavor.seurat, ref.hvg_seurat), (.cellRanger, ref.hvg_cell_ranger)] {
                let hvg = try Preprocess.highlyVariableGenes(s, nTop: 2000, flavor: flavor, comm: comm)
                let overlap = Set(hvg.genes).intersection(want).count
                let frac = Double(overlap) / Double(max(want.count, 1))
                print("HVG \(flavor.rawValue) \(ref.file): \(overlap)/\(want.count) agree (\(hvg.genes.count) selected)")
                XCTAssertGreaterThanOrEqual(frac, 0.95, "\(ref.file) \(flavor)")
            }
            let h500 = try JSONDecoder().decode(H500.self, from: data)
            for (flavor, want) in [(HVGFlavor.seurat, h500.hvg500_seurat), (.cellRanger, h500.hvg500_cell_ranger)] {
                guard let want else { continue }
                let hvg = try Preprocess.highlyVariableGenes(s, nTop: 500, flavor: flavor, comm: comm)
                let overlap = Set(hvg.genes).intersection(want).count
                print("HVG500 \(flavor.rawValue) \(ref.file): \(overlap)/\(want.count) agree (\(hvg.genes.count) selected)")
                XCTAssertGreaterThanOrEqual(Double(overlap) / Double(max(want.count, 1)), 0.95, "\(ref.file) \(flavor) 500")
            }
            let scaled = try Preprocess.scale(s, maxValue: 10, comm: comm).values
            for e in ref.scale_samples {
                let got = Double(scaled[Int(e[0]) * s.nVars + Int(e[1])])
                XCTAssertEqual(got, e[2], accuracy: 1e-4 * max(1, abs(e[2])), "scale \(ref.file) [\(e[0]), \(e[1])]")
            }
            // seurat_v3 on the raw counts.
            let v3 = try JSONDecoder().decode(V3.self, from: data)
            for (n, wanted) in [(2000, v3.hvg_seurat_v3), (500, v3.hvg500_seurat_v3)] {
                guard let want = wanted else { continue }
                let hvg = try Preprocess.highlyVariableGenes(raw, nTop: n, flavor: .seuratV3, comm: comm)
                let overlap = Set(hvg.genes).intersection(want).count
                print("HVG seurat_v3 top \(n) \(ref.file): \(overlap)/\(want.count) agree")
                XCTAssertGreaterThanOrEqual(Double(overlap) / Double(max(want.count, 1)), 0.95, "\(ref.file) seurat_v3 \(n)")
            }
            // Median target.
            var m = raw
            let median = try Preprocess.medianLibrarySize(m, comm: comm)
            XCTAssertEqual(Double(median), ref.median_target, accuracy: 1e-6 * ref.median_target)
            try Preprocess.normalizeTotal(&m, comm: comm)
            Preprocess.log1p(&m)
            let med = try JSONDecoder().decode(MedianSamples.self, from: data)
            for e in med.samples_median {
                let got = Double(value(m, Int(e[0]), Int(e[1])))
                XCTAssertEqual(got, e[2], accuracy: 1e-5 * abs(e[2]), "median \(ref.file) [\(e[0]), \(e[1])]")
            }
            checked += 1
        }
        if checked == 0 { throw XCTSkip("shared datasets not present") }
    }
}

final class PCATests: XCTestCase {
    /// n × g rows: a rank-3 signal with scales 3, 2, 1 along random directions, plus N(0, 0.05²) noise.
    func signalData(n: Int, g: Int, seed: UInt64) -> [Float] {
        var rng = SimRNG(seed: seed)
        let basis = (0..<(3 * g)).map { _ in rng.normal() }
        var x = [Float](repeating: 0, count: n * g)
        for i in 0..<n {
            let f = [3 * rng.normal(), 2 * rng.normal(), rng.normal()]
            for j in 0..<g { x[i * g + j] = Float(f[0] * basis[j] + f[1] * basis[g + j] + f[2] * basis[2 * g + j] + 0.05 * rng.normal()) }
        }
        return x
    }

    /// Checks the PCA against properties any correct answer has, computed here from the data alone
    /// (the covariance in Double, no eigensolver): unit, orthogonal components; C·v = λ·v for each;
    /// λ equal to the variance of the data projected on v; descending λ; the k returned pairs are
    /// the top k (the deflated covariance has nothing left as large as the smallest returned λ); the
    /// sign convention; scores = centred data · componentsᵀ. g = 12 runs Rayleigh–Ritz on the whole
    /// space (oversampled block l = g), g = 48 the randomized subspace iteration proper (l = 33 < g).
    func testComponentsAreTheCovariancesTopEigenvectors() throws {
        let comm = Communicator.world
        let n = 300, k = 3
        for g in [12, 48] {
            let orig = signalData(n: n, g: g, seed: 3)
            var x = orig
            let r = try Preprocess.pca(&x, localRows: n, nVars: g, nComps: k, nObs: n, comm: comm)
            XCTAssertEqual(r.nComps, k)
            let l = min(k + 30, g)
            var mean = [Double](repeating: 0, count: g)
            for i in 0..<n { for j in 0..<g { mean[j] += Double(orig[i * g + j]) / Double(n) } }
            var cov = [Double](repeating: 0, count: g * g)
            for i in 0..<n { for a in 0..<g { for b in 0..<g {
                cov[a * g + b] += (Double(orig[i * g + a]) - mean[a]) * (Double(orig[i * g + b]) - mean[b]) / Double(n - 1)
            } } }
            let trace = (0..<g).reduce(0.0) { $0 + cov[$1 * g + $1] }
            let v = (0..<k).map { c in (0..<g).map { Double(r.components[c * g + $0]) } }
            let lambda = r.explainedVariance
            // Error budget. The PCA works in Float (ε_f = 2⁻²⁴): centring, X·Q by sgemm (g-term dot
            // products), the block Q stored in Float after Gram–Schmidt (QᵀQ = I + E, ‖E‖ ≤ 2l·ε_f),
            // components rounded to Float. Rayleigh–Ritz on B = (XQ)ᵀ(XQ)/(n−1) in Double adds only
            // Double rounding, and with a signal/noise eigenvalue ratio of ~10⁴ the subspace iteration
            // has converged far below Float precision after 16 steps. So every quantity below is off
            // by at most a few (g + l)·ε_f relative to λ₁; c = 10 is the margin on "a few".
            let epsF = Double(Float.ulpOfOne) / 2
            let budget = 10 * Double(g + l) * epsF
            XCTAssertEqual(lambda.count, k)
            for c in 0..<k {
                for d in 0..<k {
                    let dot = zip(v[c], v[d]).reduce(0.0) { $0 + $1.0 * $1.1 }
                    XCTAssertEqual(dot, c == d ? 1 : 0, accuracy: budget, "g \(g): v\(c)·v\(d)")
                }
                // C v − λ v.
                var res = 0.0, rayleigh = 0.0
                for a in 0..<g {
                    var cv = 0.0
                    for b in 0..<g { cv += cov[a * g + b] * v[c][b] }
                    res += (cv - lambda[c] * v[c][a]) * (cv - lambda[c] * v[c][a])
                    rayleigh += v[c][a] * cv
                }
                XCTAssertLessThanOrEqual(res.squareRoot(), budget * lambda[0], "g \(g): residual of component \(c)")
                XCTAssertEqual(lambda[c], rayleigh, accuracy: budget * lambda[0], "g \(g): λ\(c) vs vᵀCv")
                // Variance of the scores along the component (they are centred: mean ≈ 0).
                let col = (0..<n).map { Double(r.scores[$0 * k + c]) }
                let varScores = col.reduce(0.0) { $0 + $1 * $1 } / Double(n - 1)
                XCTAssertEqual(varScores, lambda[c], accuracy: budget * lambda[0], "g \(g): variance of scores \(c)")
                XCTAssertEqual(r.explainedVarianceRatio[c], lambda[c] / trace, accuracy: budget * lambda[0] / trace)
                // Sign convention: the largest-magnitude loading is positive.
                let big = v[c].indices.max { abs(v[c][$0]) < abs(v[c][$1]) }!
                XCTAssertGreaterThan(v[c][big], 0, "g \(g): sign of component \(c)")
                if c > 0 { XCTAssertGreaterThan(lambda[c - 1], lambda[c], "g \(g): descending") }
            }
            // Top k: C − Σ λ_c v_c v_cᵀ keeps the other eigenpairs; its Frobenius norm bounds their
            // largest |μ|, and that must be below the smallest λ returned (a missed top eigenpair
            // would leave μ ≥ λ_{k−1} behind).
            var deflated = cov
            for c in 0..<k { for a in 0..<g { for b in 0..<g { deflated[a * g + b] -= lambda[c] * v[c][a] * v[c][b] } } }
            let rest = deflated.reduce(0.0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertLessThan(rest, lambda[k - 1], "g \(g): a top eigenpair is missing")
            // Scores: centred rows times the components (sgemm in Float over g terms).
            for i in 0..<n {
                let row = (0..<g).map { Double(orig[i * g + $0]) - mean[$0] }
                let norm = row.reduce(0.0) { $0 + $1 * $1 }.squareRoot()
                for c in 0..<k {
                    let want = zip(row, v[c]).reduce(0.0) { $0 + $1.0 * $1.1 }
                    XCTAssertEqual(Double(r.scores[i * k + c]), want, accuracy: budget * max(norm, 1e-30), "g \(g): score [\(i), \(c)]")
                }
            }
        }
    }
}
