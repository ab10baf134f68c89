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
        XCTAssertEqual(Preprocess.median([5, 1, 3, 2]), 2.5)
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
    func testMatchesFullEigenDecomposition() throws {
        let comm = Communicator.world
        let n = 300, g = 12, k = 3
        var rng = SimRNG(seed: 3)
        // Rank-3 signal with decreasing scales plus small noise.
        let basis = (0..<(3 * g)).map { _ in rng.normal() }
        var x = [Float](repeating: 0, count: n * g)
        for i in 0..<n {
            let f = [3 * rng.normal(), 2 * rng.normal(), rng.normal()]
            for j in 0..<g { x[i * g + j] = Float(f[0] * basis[j] + f[1] * basis[g + j] + f[2] * basis[2 * g + j] + 0.05 * rng.normal()) }
        }
        let orig = x
        let r = try Preprocess.pca(&x, localRows: n, nVars: g, nComps: k, nObs: n, comm: comm)
        // Reference: covariance eigen-decomposition.
        var mean = [Double](repeating: 0, count: g)
        for i in 0..<n { for j in 0..<g { mean[j] += Double(orig[i * g + j]) / Double(n) } }
        var cov = [Double](repeating: 0, count: g * g)
        for i in 0..<n { for a in 0..<g { for b in 0..<g {
            cov[a * g + b] += (Double(orig[i * g + a]) - mean[a]) * (Double(orig[i * g + b]) - mean[b]) / Double(n - 1)
        } } }
        let (ev, vec) = Preprocess.jacobiEigen(cov, n: g)
        let order = (0..<g).sorted { ev[$0] > ev[$1] }
        for c in 0..<k {
            XCTAssertEqual(r.explainedVariance[c], ev[order[c]], accuracy: 1e-3 * ev[order[c]])
            var dot = 0.0
            for j in 0..<g { dot += Double(r.components[c * g + j]) * vec[j * g + order[c]] }
            XCTAssertEqual(abs(dot), 1, accuracy: 1e-4)
        }
        // Scores are the centred data projected on the components.
        let s0 = (0..<g).reduce(0.0) { $0 + (Double(orig[$1]) - mean[$1]) * Double(r.components[$1]) }
        XCTAssertEqual(Double(r.scores[0]), s0, accuracy: 1e-3 * max(1, abs(s0)))
    }
}
