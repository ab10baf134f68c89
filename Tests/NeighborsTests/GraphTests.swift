import Collectives
import Foundation
import TensorCore
import XCTest
@testable import Neighbors

final class GraphTests: XCTestCase {
    let comm = Communicator.world

    struct Reference {
        let x: Tensor
        let k: Int
        let sparse: [String: [Int: [Int: Double]]]
    }

    /// scanpy's own output (scripts/reference_connectivities.py) on 400 clustered points.
    func loadReference() throws -> Reference {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/connectivities.json")
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let pts = (obj["points"] as! [[Double]]).flatMap { $0.map(Float.init) }
        let rows = obj["rows"] as! Int, dim = obj["dim"] as! Int
        var sparse: [String: [Int: [Int: Double]]] = [:]
        for key in ["umap_distances", "umap_connectivities", "gauss_connectivities"] {
            let m = obj[key] as! [String: [Double]]
            var d: [Int: [Int: Double]] = [:]
            for (e, r) in m["row"]!.enumerated() { d[Int(r), default: [:]][Int(m["col"]![e])] = m["val"]![e] }
            sparse[key] = d
        }
        return Reference(x: Tensor(rows: rows, cols: dim, values: pts), k: (obj["n_neighbors"] as! Int) - 1, sparse: sparse)
    }

    func assertGraph(_ g: GraphShard, equals ref: [Int: [Int: Double]], tol: Double, _ what: String) {
        var worst = 0.0, missing = 0
        for i in 0..<g.rows {
            let (c, v) = g.row(i)
            let want = ref[i] ?? [:]
            if want.count != c.count { missing += 1 }
            for (col, val) in zip(c, v) {
                guard let w = want[Int(col)] else { missing += 1; continue }
                worst = max(worst, abs(Double(val) - w))
            }
        }
        XCTAssertEqual(missing, 0, "\(what): \(missing) rows/entries differ in structure")
        XCTAssertLessThan(worst, tol, "\(what): max |Δ| = \(worst)")
    }

    func testMatchesScanpyDistancesAndConnectivities() throws {
        let ref = try loadReference()
        let knn = try ExactKNN.build(ref.x, k: ref.k, comm: comm)
        let layout = try RowLayout(comm: comm, localCount: ref.x.rows)
        assertGraph(GraphShard(knn: knn), equals: ref.sparse["umap_distances"]!, tol: 1e-4, "distances")
        assertGraph(try Connectivities.umap(knn, layout: layout, comm: comm),
                    equals: ref.sparse["umap_connectivities"]!, tol: 1e-4, "umap connectivities")
        assertGraph(try Connectivities.gaussian(knn, layout: layout, comm: comm),
                    equals: ref.sparse["gauss_connectivities"]!, tol: 1e-4, "gauss connectivities")
    }

    func testSymmetrizeAndNormalize() throws {
        // A 4-cell directed graph: 0→1 (0.5), 1→2 (0.4), 2→0 (1.0), 3→0 (0.2).
        let g = GraphShard(rowPtr: [0, 1, 2, 3, 4], cols: [1, 2, 0, 0], values: [0.5, 0.4, 1.0, 0.2])
        let layout = RowLayout(counts: [4])
        let u = try g.symmetrized(.fuzzyUnion, layout: layout, comm: comm)
        XCTAssertEqual(u.rowPtr, [0, 3, 5, 7, 8])
        XCTAssertEqual(u.cols, [1, 2, 3, 0, 2, 0, 1, 0])
        XCTAssertEqual(u.values, [0.5, 1.0, 0.2, 0.5, 0.4, 1.0, 0.4, 0.2])
        let m = try GraphShard(rowPtr: [0, 1, 2], cols: [1, 0], values: [0.5, 0.3]).symmetrized(.fuzzyUnion, layout: RowLayout(counts: [2]), comm: comm)
        XCTAssertEqual(m.values[0], 0.5 + 0.3 - 0.15, accuracy: 1e-6)
        let r = u.rowNormalized()
        for i in 0..<4 { XCTAssertEqual(r.row(i).values.reduce(0, +), 1, accuracy: 1e-6) }
        let s = try u.symmetricNormalized(layout: layout, comm: comm)
        let deg = u.degrees
        XCTAssertEqual(s.values[0], 0.5 / (deg[0] * deg[1]).squareRoot(), accuracy: 1e-6)
        let loops = u.withSelfLoops(layout: layout, rank: 0)
        XCTAssertEqual(Array(loops.row(1).cols), [0, 1, 2])
        XCTAssertEqual(Array(loops.row(1).values), [0.5, 1, 0.4])
    }

    func testMemoryBankMatchesBruteForce() throws {
        let (x, _) = SyntheticEmbeddings.rows(0..<300, dim: 8, clusters: 4, seed: 3)
        let bank = try MemoryBank(initial: x, comm: comm)
        let (q, _) = SyntheticEmbeddings.rows(1000..<1020, dim: 8, clusters: 4, seed: 3)
        let exclude: [Int64] = (0..<20).map { Int64($0 * 7) }
        let (ids, scores) = try bank.nearest(q, k: 5, similarity: .cosine, exclude: exclude, comm: comm)
        func unit(_ t: Tensor, _ i: Int) -> [Double] {
            let v = (0..<8).map { Double(t[i, $0]) }; let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return v.map { $0 / n }
        }
        for i in 0..<20 {
            let qi = unit(q, i)
            let sims = (0..<300).filter { Int64($0) != exclude[i] }.map { j in (zip(qi, unit(x, j)).reduce(0) { $0 + $1.0 * $1.1 }, j) }
                .sorted { $0.0 > $1.0 }
            XCTAssertEqual(ids[(i * 5)..<(i * 5 + 5)].map(Int.init), sims.prefix(5).map(\.1))
            for t in 0..<5 { XCTAssertEqual(Double(scores[i * 5 + t]), sims[t].0, accuracy: 1e-5) }
        }
        // Momentum update moves a row toward the new value and keeps it unit length.
        let before = bank.embeddings.row(3)
        bank.update(localRows: [3], values: Tensor(rows: 1, cols: 8, values: [1, 0, 0, 0, 0, 0, 0, 0]), momentum: 0.9)
        let after = bank.embeddings.row(3)
        XCTAssertEqual(after.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-5)
        XCTAssertGreaterThan(after[0], before[0])
    }
}

final class SpectralCountTests: XCTestCase {
    func testEigengapFindsSeparatedGroups() throws {
        let comm = Communicator.world
        for k in [3, 6] {
            let (x, _) = SyntheticEmbeddings.rows(0..<(150 * k), dim: 10, clusters: k, spread: 0.3, seed: UInt64(k))
            let knn = try ExactKNN.build(x, k: 10, comm: comm)
            let layout = try RowLayout(comm: comm, localCount: x.rows)
            let g = try Connectivities.umap(knn, layout: layout, comm: comm)
            let r = try SpectralClusterCount.estimate(g, layout: layout, maxK: 12, iterations: 80, comm: comm)
            XCTAssertEqual(r.k, k, "eigenvalues \(r.eigenvalues.prefix(10))")
            XCTAssertEqual(r.eigenvalues[0], 1, accuracy: 1e-3)
            XCTAssertTrue(zip(r.eigenvalues, r.eigenvalues.dropFirst()).allSatisfy { $0 >= $1 })
        }
    }
}
