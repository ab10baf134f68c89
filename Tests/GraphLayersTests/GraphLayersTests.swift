import Collectives
import Foundation
import Neighbors
import NN
import TensorCore
import TestSupport
import XCTest
@testable import Autograd
@testable import GraphLayers

/// The graph layers on one process: every op against a dense reference computed here, and its
/// gradient against central finite differences (`GradCheck`'s error budget). The same layers across
/// ranks are checked against one rank by MPIChecks (`--graph-layers`).
final class GraphLayersTests: XCTestCase {
    var rng = RandomStream(seed: 31, purpose: .custom("graph-layers-tests"))
    let solo = Communicator.solo

    func rand(_ r: Int, _ c: Int, _ lo: Float = -1, _ hi: Float = 1) -> Tensor { Tensor.uniform(rows: r, cols: c, lo, hi, rng: &rng) }

    func check(_ name: String, _ inputs: [Tensor], kinds: [GradCheck.InputKind]? = nil, training: Bool = true,
               file: StaticString = #filePath, line: UInt = #line, _ build: (Tape, [Var]) throws -> Var) {
        let r = GradCheck.check(inputs, kinds: kinds, training: training) { t, v in
            do { return try build(t, v) } catch { preconditionFailure("\(name): \(error)") }
        }
        XCTAssertTrue(r.passed, "\(name): \(r)", file: file, line: line)
    }

    /// A directed kNN-like graph on n cells: each row lists itself and `k − 1` other cells.
    func knnLike(_ n: Int, k: Int) -> GraphShard {
        var rp: [Int64] = [0], cols: [Int64] = []
        for i in 0..<n {
            var row: Set<Int64> = [Int64(i)]
            while row.count < k { row.insert(Int64(rng.int(below: n))) }
            cols.append(contentsOf: row.sorted()); rp.append(Int64(cols.count))
        }
        return GraphShard(rowPtr: rp, cols: cols, values: [Float](repeating: 1, count: cols.count))
    }

    func dense(_ g: GraphShard, n: Int) -> [[Double]] {
        var a = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for i in 0..<g.rows { let (c, v) = g.row(i); for (j, x) in zip(c, v) { a[i][Int(j)] += Double(x) } }
        return a
    }

    func denseOperator(_ op: GraphOperator) -> [[Double]] {
        var a = [[Double]](repeating: [Double](repeating: 0, count: op.slots), count: op.rows)
        for i in 0..<op.rows { for e in op.rowPtr[i]..<op.rowPtr[i + 1] { a[i][Int(op.slot[e])] += Double(op.values[e]) } }
        return a
    }

    // MARK: normalisations

    /// PyG's gcn_norm on edge_index = coo(A) (source row, target col), degrees at the target:
    /// Â[j][i] = A[i][j] / √(deg(i)·deg(j)), deg(v) = Σ_u A[u][v]; GCN adds the missing self loops first.
    func testTAGAndGCNNormalisationsAsPyG() throws {
        let n = 9
        let g = knnLike(n, k: 4)
        let layout = RowLayout(counts: [n])
        let a = dense(g, n: n)
        for gcn in [false, true] {
            var aa = a
            if gcn { for i in 0..<n where aa[i][i] == 0 { aa[i][i] = 1 } }
            let deg = (0..<n).map { v in (0..<n).reduce(0.0) { $0 + aa[$1][v] } }
            let op = gcn ? try GraphNormalization.gcn(g, layout: layout, comm: solo) : try GraphNormalization.tagConv(g, layout: layout, comm: solo)
            let got = denseOperator(op)
            for j in 0..<n { for i in 0..<n {
                let want = aa[i][j] > 0 ? aa[i][j] / (deg[i] * deg[j]).squareRoot() : 0
                XCTAssertEqual(got[j][i], want, accuracy: 1e-6, "\(gcn ? "gcn" : "tag") Â[\(j)][\(i)]")
            } }
        }
        let rn = denseOperator(try GraphNormalization.rowNormalized(g, layout: layout, comm: solo))
        for i in 0..<n { for j in 0..<n { XCTAssertEqual(rn[i][j], a[i][j] / 4, accuracy: 1e-7) } }
    }

    func testTransposeAndRemainingSelfLoops() throws {
        let g = GraphShard(rowPtr: [0, 2, 3, 4], cols: [1, 2, 1, 0], values: [0.5, 0.25, 2, 3])
        let layout = RowLayout(counts: [3])
        let t = try g.transposed(layout: layout, comm: solo)
        XCTAssertEqual(t, GraphShard(rowPtr: [0, 1, 3, 4], cols: [2, 0, 1, 0], values: [3, 0.5, 2, 0.25]))
        let s = t.addingRemainingSelfLoops(layout: layout, rank: 0)
        XCTAssertEqual(s, GraphShard(rowPtr: [0, 2, 4, 6], cols: [0, 2, 0, 1, 0, 2], values: [1, 3, 0.5, 2, 0.25, 1]))
    }

    // MARK: propagation and convolutions

    func randomOperator(rows: Int, inputs: Int, perRow: Int) -> GraphOperator {
        var rp = [0], s: [Int32] = [], v: [Float] = []
        for i in 0..<rows {
            var cols: Set<Int32> = [Int32(i % inputs)]
            while cols.count < min(perRow, inputs) { cols.insert(Int32(rng.int(below: inputs))) }
            for c in cols.sorted() { s.append(c); v.append(rng.uniform(-1, 1)) }
            rp.append(s.count)
        }
        return GraphOperator(rows: rows, inputs: inputs, rowPtr: rp, slot: s, values: v)
    }

    func testPropagateMatchesDenseAndGradients() throws {
        for (rows, inputs, w) in [(5, 5, 3), (3, 6, 1), (7, 4, 5)] {
            let op = randomOperator(rows: rows, inputs: inputs, perRow: 3)
            let x = rand(inputs, w)
            let t = Tape()
            let y = t.value(try t.propagate(t.variable(x), op))
            let a = denseOperator(op)
            for i in 0..<rows { for c in 0..<w {
                let want = (0..<inputs).reduce(0.0) { $0 + a[i][$1] * Double(x[$1, c]) }
                XCTAssertEqual(Double(y[i, c]), want, accuracy: 1e-5)
            } }
            check("propagate \(rows)×\(inputs)", [x]) { t, v in try t.propagate(v[0], op) }
        }
    }

    /// TAGConv = Σ_k Â^k X Θ_k + b, dense reference; gradients of X, Θ_k and b.
    func testTAGConvMatchesSumOfPowers() throws {
        let n = 7, fin = 4, fout = 3
        let g = knnLike(n, k: 3)
        let layout = RowLayout(counts: [n])
        let op = try GraphNormalization.tagConv(g, layout: layout, comm: solo)
        let store = ParameterStore()
        var r = RandomStream(seed: 5)
        let layer = TAGConv(store, "tag", inputs: fin, outputs: fout, hops: 3, rng: &r)
        for v in 0..<layer.bias!.count { layer.bias!.value.pointer[v] = rng.uniform(-1, 1) }
        let x = rand(n, fin)
        let t = Tape()
        let y = t.value(try layer(t.variable(x), graph: op, t))
        let a = denseOperator(op)
        var p = (0..<n).map { i in (0..<fin).map { Double(x[i, $0]) } }   // Â^k X
        var want = [[Double]](repeating: [Double](repeating: 0, count: fout), count: n)
        for k in 0...3 {
            let w = layer.weights[k].value
            for i in 0..<n { for o in 0..<fout { for c in 0..<fin { want[i][o] += p[i][c] * Double(w[c, o]) } } }
            p = (0..<n).map { i in (0..<fin).map { c in (0..<n).reduce(0.0) { $0 + a[i][$1] * p[$1][c] } } }
        }
        for i in 0..<n { for o in 0..<fout {
            XCTAssertEqual(Double(y[i, o]), want[i][o] + Double(layer.bias!.value[0, o]), accuracy: 1e-4)
        } }
        // Gradients: input and every hop's weights (as parameters), through a fresh layer per call.
        let ws = layer.weights.map { $0.value.copy() } + [layer.bias!.value.copy()]
        check("TAGConv", [x] + ws, kinds: [.variable] + Array(repeating: .parameter, count: ws.count)) { t, v in
            var out = t.linear(v[0], v[4], v[5])
            var acc = t.linear(v[0], v[4], nil)
            acc = t.add(try t.propagate(acc, op), t.linear(v[0], v[3], nil))
            acc = t.add(try t.propagate(acc, op), t.linear(v[0], v[2], nil))
            out = t.add(try t.propagate(acc, op), t.linear(v[0], v[1], v[5]))
            return out
        }
        // The layer itself on a sparse input equals the dense input.
        let xs = CSRMatrix(dense: x)
        let t2 = Tape()
        let ys = t2.value(try layer(xs, graph: op, t2))
        XCTAssertLessThan(ys.maxAbsDifference(y), 1e-5)
    }

    func testGCNConv() throws {
        let n = 6
        let g = knnLike(n, k: 3)
        let op = try GraphNormalization.gcn(g, layout: RowLayout(counts: [n]), comm: solo)
        let store = ParameterStore()
        var r = RandomStream(seed: 6)
        let layer = GCNConv(store, "gcn", inputs: 3, outputs: 2, rng: &r)
        let x = rand(n, 3)
        let t = Tape()
        let y = t.value(try layer(t.variable(x), graph: op, t))
        let a = denseOperator(op), w = layer.weight.value
        for i in 0..<n { for o in 0..<2 {
            var want = 0.0
            for j in 0..<n { for c in 0..<3 { want += a[i][j] * Double(x[j, c]) * Double(w[c, o]) } }
            XCTAssertEqual(Double(y[i, o]), want, accuracy: 1e-5)
        } }
        check("GCNConv input", [x]) { t, v in try layer(v[0], graph: op, t) }
    }

    // MARK: batch norm and dropout

    func testSyncBatchNormOnOneRankIsBatchNorm() throws {
        for training in [true, false] {
            let x = rand(6, 4), gamma = rand(1, 4, 0.5, 1.5), beta = rand(1, 4)
            let rm1 = rand(1, 4), rv1 = rand(1, 4, 0.5, 2)
            let rm2 = rm1.copy(), rv2 = rv1.copy()
            let t = Tape(); t.training = training
            let a = t.value(try t.syncBatchNorm(t.variable(x), gamma: t.variable(gamma), beta: t.variable(beta),
                                                runningMean: rm1, runningVar: rv1, momentum: 0.01, eps: 1e-3, comm: solo))
            let u = Tape(); u.training = training
            let b = u.value(u.batchNorm(u.variable(x), gamma: u.variable(gamma), beta: u.variable(beta),
                                        runningMean: rm2, runningVar: rv2, momentum: 0.01, eps: 1e-3))
            XCTAssertLessThan(a.maxAbsDifference(b), 1e-5, "training \(training)")
            XCTAssertLessThan(rm1.maxAbsDifference(rm2), 1e-6); XCTAssertLessThan(rv1.maxAbsDifference(rv2), 1e-6)
            check("syncBatchNorm training \(training)", [x, gamma, beta], training: training) { t, v in
                try t.syncBatchNorm(v[0], gamma: v[1], beta: v[2], runningMean: Tensor(rows: 1, cols: 4),
                                    runningVar: Tensor(rows: 1, cols: 4, repeating: 1), momentum: 0.01, eps: 1e-3, comm: solo)
            }
        }
    }

    func testKeyedDropoutFollowsTheKeyNotTheRow() {
        let x = Tensor(rows: 4, cols: 64, repeating: 1)
        let stream = RandomStream(seed: 3, purpose: .augmentation)
        let t = Tape()
        let a = t.value(t.dropout(t.constant(x), p: 0.3, stream: stream, keys: [10, 11, 12, 13]))
        let b = t.value(t.dropout(t.constant(x), p: 0.3, stream: stream, keys: [12, 10, 13, 11]))
        XCTAssertEqual(a.row(0), b.row(1)); XCTAssertEqual(a.row(2), b.row(0)); XCTAssertNotEqual(a.row(0), a.row(1))
        let kept = a.scalars.filter { $0 != 0 }
        XCTAssertTrue(kept.allSatisfy { abs($0 - 1 / 0.7) < 1e-6 })
        // 256 draws with keep probability 0.7: 179 expected, sd 7.3; ±5 sd.
        XCTAssertEqual(Double(kept.count), 179.2, accuracy: 37)
        let e = Tape(); e.training = false
        XCTAssertEqual(e.value(e.dropout(e.constant(x), p: 0.3, stream: stream, keys: [1, 2, 3, 4])), x)
    }

    // MARK: attention and edge loss

    func denseAttention(_ z: Tensor, pattern: [[Int]]? = nil) -> [[Double]] {
        let n = z.rows, d = z.cols
        return (0..<n).map { i in
            let js = pattern?[i] ?? Array(0..<n)
            let s = js.map { j in (0..<d).reduce(0.0) { $0 + Double(z[i, $1]) * Double(z[j, $1]) } }
            let m = s.max()!, e = s.map { Foundation.exp($0 - m) }, tot = e.reduce(0, +)
            return (0..<d).map { c in zip(js, e).reduce(0.0) { $0 + $1.1 / tot * Double(z[$1.0, c]) } }
        }
    }

    func testGlobalAttentionByBlocksIsTheDenseSoftmax() throws {
        for (n, d, br, bc) in [(7, 3, 3, 5), (12, 4, 256, 2048), (1, 2, 1, 1), (9, 5, 2, 4)] {
            let z = rand(n, d, -1.5, 1.5)
            let t = Tape()
            let y = t.value(try t.globalSelfAttention(t.variable(z), comm: solo, blockRows: br, blockCols: bc))
            let want = denseAttention(z)
            for i in 0..<n { for c in 0..<d { XCTAssertEqual(Double(y[i, c]), want[i][c], accuracy: 1e-5) } }
            check("global attention n \(n) blocks \(br)×\(bc)", [z]) { t, v in
                try t.globalSelfAttention(v[0], comm: solo, blockRows: br, blockCols: bc)
            }
        }
    }

    func testGraphAttentionAndEdgeLoss() throws {
        let n = 8, d = 3
        let op = randomOperator(rows: n, inputs: n, perRow: 4)
        let z = rand(n, d, -1.5, 1.5)
        let pattern = (0..<n).map { i in (op.rowPtr[i]..<op.rowPtr[i + 1]).map { Int(op.slot[$0]) } }
        let t = Tape()
        let y = t.value(try t.graphSelfAttention(t.variable(z), op))
        let want = denseAttention(z, pattern: pattern)
        for i in 0..<n { for c in 0..<d { XCTAssertEqual(Double(y[i, c]), want[i][c], accuracy: 1e-5) } }
        check("graph attention", [z]) { t, v in try t.graphSelfAttention(v[0], op) }
        // The full pattern is the global attention.
        let full = GraphOperator(rows: n, inputs: n, rowPtr: (0...n).map { $0 * n }, slot: (0..<(n * n)).map { Int32($0 % n) },
                                 values: [Float](repeating: 1, count: n * n))
        let u = Tape()
        XCTAssertLessThan(u.value(try u.graphSelfAttention(u.variable(z), full)).maxAbsDifference(
            u.value(try u.globalSelfAttention(u.variable(z), comm: solo))), 1e-5)
        // Edge loss value and gradient; targets and row weights.
        let targets = (0..<op.nnz).map { _ in rng.uniform(0, 1) }, weights = (0..<n).map { _ in rng.uniform(0.5, 2) }
        let l = t.value(try t.edgeReconstructionLoss(t.variable(z), op, targets: targets, rowWeights: weights)).scalar
        var ref = 0.0
        for i in 0..<n { for e in op.rowPtr[i]..<op.rowPtr[i + 1] {
            let j = Int(op.slot[e])
            let s = (0..<d).reduce(0.0) { $0 + Double(z[i, $1]) * Double(z[j, $1]) }
            let r = 1 / (1 + Foundation.exp(-s)) - Double(targets[e])
            ref += Double(weights[i]) * r * r
        } }
        XCTAssertEqual(Double(l), ref / Double(n), accuracy: 1e-5)
        check("edge loss", [z]) { t, v in try t.edgeReconstructionLoss(v[0], op, targets: targets, rowWeights: weights) }
        let perEntry = (0..<targets.count).map { Float(1 + $0 % 3) * 0.5 }
        let lu = t.value(try t.edgeReconstructionLoss(t.variable(z), op, targets: targets, rowWeights: weights, edgeWeights: perEntry)).scalar
        var refU = 0.0
        for i in 0..<n { for e in op.rowPtr[i]..<op.rowPtr[i + 1] {
            let j = Int(op.slot[e])
            let s = (0..<d).reduce(0.0) { $0 + Double(z[i, $1]) * Double(z[j, $1]) }
            let r = 1 / (1 + Foundation.exp(-s)) - Double(targets[e])
            refU += Double(weights[i]) * Double(perEntry[e]) * r * r
        } }
        XCTAssertEqual(Double(lu), refU / Double(n), accuracy: 1e-5)
        check("edge loss with entry weights", [z]) { t, v in
            try t.edgeReconstructionLoss(v[0], op, targets: targets, rowWeights: weights, edgeWeights: perEntry)
        }
    }

    /// An operator whose output rows are a subset of its inputs (rowSlot), as a batch of seed cells.
    func testRowSlotsSelectTheOutputRowsCell() throws {
        let op = GraphOperator(rows: 2, inputs: 5, rowPtr: [0, 3, 5], slot: [1, 2, 4, 3, 0], values: [0.1, 0.1, 0.1, 0.1, 0.1],
                               rowSlot: [2, 3])
        let z = rand(5, 3)
        check("edge loss with row slots", [z]) { t, v in try t.edgeReconstructionLoss(v[0], op) }
        check("graph attention with row slots", [z]) { t, v in try t.graphSelfAttention(v[0], op) }
    }

    func testOwnedRowsGatherAndScatterGradients() throws {
        let p = OwnedParameter("a", rows: 4, width: 3, fill: 0)
        for e in p.values.indices { p.values[e] = Float(e) }
        let t = Tape()
        let v = try t.ownedRows(p, index: [2, 0, 2], halo: nil)
        XCTAssertEqual(t.value(v).scalars, [6, 7, 8, 0, 1, 2, 6, 7, 8])
        let seed = Tensor(rows: 3, cols: 3, values: (0..<9).map { Float($0) })
        try t.backward(t.mul(v, t.constant(Tensor(rows: 3, cols: 3, repeating: 1))), seed: seed)
        XCTAssertEqual(p.grads, [3, 4, 5, 0, 0, 0, 6 + 0, 7 + 1, 8 + 2, 0, 0, 0].map(Float.init))
        // One Adam step equals NN's Adam on the same values and gradients.
        let store = ParameterStore()
        var r = RandomStream(seed: 1)
        let q = store.add("a", rows: 4, cols: 3, .zeros, rng: &r)
        for e in 0..<12 { q.value.pointer[e] = p.values[e]; q.grad.pointer[e] = p.grads[e] }
        let adam = Adam(store)
        adam.step(lr: 0.1); p.step(lr: 0.1)
        XCTAssertLessThan(zip(p.values, q.value.scalars).map { abs($0 - $1) }.max()!, 1e-6)
        XCTAssertTrue(p.grads.allSatisfy { $0 == 0 })
        let copy = OwnedParameter("a", rows: 4, width: 3, fill: 9)
        copy.restore(state: p.state, steps: p.steps)
        XCTAssertEqual(copy.values, p.values); XCTAssertEqual(copy.state, p.state)
    }

    /// Lazy Adam: a step moves only the rows that took part in it; a touched row follows Adam's rule
    /// with the shared step count, an untouched one keeps its value and moments although its momentum
    /// is non-zero (dense Adam would move it: O(rows) per step).
    func testOwnedParameterStepMovesOnlyTouchedRows() throws {
        let p = OwnedParameter("a", rows: 4, width: 2, fill: 1)
        func pass(_ index: [Int32], grad: Float) throws {
            let t = Tape()
            let v = try t.ownedRows(p, index: index, halo: nil)
            try t.backward(v, seed: Tensor(rows: index.count, cols: 2, repeating: grad))
        }
        try pass([0, 2], grad: 0.5)
        p.step(lr: 0.1)
        XCTAssertEqual(p.touchedRows, [])
        let before = p.state
        try pass([1], grad: -2)
        XCTAssertEqual(p.touchedRows, [1])
        p.step(lr: 0.1)
        let after = p.state
        for r in [0, 2, 3] { XCTAssertEqual(Array(after[(r * 6)..<(r * 6 + 6)]), Array(before[(r * 6)..<(r * 6 + 6)]), "row \(r) moved") }
        // Row 1, step 2 of the shared count, first gradient -2: m = 0.1·g, v = 0.001·g².
        let g: Float = -2, m = 0.1 * g, v = 0.001 * g * g
        let c1: Float = 1 - 0.9 * 0.9, c2: Float = 1 - 0.999 * 0.999
        let expected = 1 - (0.1 / c1) * m / ((v.squareRoot() / c2.squareRoot()) + 1e-8)
        XCTAssertEqual(p.values[2], expected, accuracy: 4 * Float.ulpOfOne * abs(expected) + 1e-6)
        XCTAssertEqual(p.values[3], p.values[2])
        XCTAssertTrue(p.grads.allSatisfy { $0 == 0 })
    }
}
