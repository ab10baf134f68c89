// Multi-rank checks of the distributed graph layers (GraphLayers): a small network of every layer —
// TAGConv on sparse input, batch norm over all ranks, per-cell dropout, GCNConv, per-cell owned
// parameters, row-normalised propagation, graph attention, exact block attention, the edge loss —
// trained for one step on P ranks must give the gradients of the same computation on one rank
// (Communicator.solo, every cell), and both must match central finite differences of the global loss.
import Autograd
import Collectives
import GraphLayers
import Neighbors
import NN
import TensorCore

/// Runs the checks; `expect(ok, message)` records a verdict.
func graphLayerChecks(comm: Communicator, expect: (Bool, String) -> Void) throws {
    let p = comm.size, r = comm.rank
    let n = 29, fin = 6, k = 4
    // Rank q holds a share ∝ q + 1 of the cells (uneven on every rank count), in global-id order.
    let weight = p * (p + 1) / 2
    var counts = (0..<p).map { n * ($0 + 1) / weight }
    counts[p - 1] += n - counts.reduce(0, +)
    let layout = RowLayout(counts: counts), all = RowLayout(counts: [n])
    let lo = layout.offsets[r], mine = layout.range(of: r)

    // The data, a function of the global cell id only: sparse features and a kNN-like directed graph
    // (each cell: itself and k − 1 others), values 1.
    func features(_ ids: Range<Int>) throws -> CSRMatrix {
        var rp: [Int64] = [0], ci: [Int32] = [], v: [Float] = []
        for g in ids {
            var rng = RandomStream(seed: 41, purpose: .custom("graph-check-x")).split(UInt64(g))
            for j in 0..<fin where rng.uniform() < 0.6 { ci.append(Int32(j)); v.append(rng.uniform(-1, 1)) }
            rp.append(Int64(ci.count))
        }
        return try CSRMatrix(rows: ids.count, cols: fin, rowPtr: rp, colIdx: ci, values: v)
    }
    func graph(_ ids: Range<Int>) -> GraphShard {
        var rp: [Int64] = [0], c: [Int64] = []
        for g in ids {
            var rng = RandomStream(seed: 42, purpose: .custom("graph-check-a")).split(UInt64(g))
            var row: Set<Int64> = [Int64(g)]
            while row.count < k { row.insert(Int64(rng.int(below: n))) }
            c.append(contentsOf: row.sorted()); rp.append(Int64(c.count))
        }
        return GraphShard(rowPtr: rp, cols: c, values: [Float](repeating: 1, count: c.count))
    }
    /// Fixed weights R of the output reduction, per global cell.
    func reduction(_ ids: Range<Int>, width: Int) -> Tensor {
        let t = Tensor(rows: ids.count, cols: width)
        for (i, g) in ids.enumerated() {
            var rng = RandomStream(seed: 43, purpose: .custom("graph-check-r")).split(UInt64(g))
            for c in 0..<width { t.pointer[i * width + c] = rng.uniform(-1, 1) }
        }
        return t
    }

    /// One network over the cells `ids` of `layout` on `c`; returns the loss var and the tape pieces.
    final class Net {
        let store = ParameterStore()
        let tag: TAGConv, bn: SyncBatchNorm1d, gcn: GCNConv
        let fusion: OwnedParameter
        var touched: Set<Int32> = []
        init(rows: Int, firstId: Int, comm: Communicator) {
            var rng = RandomStream(seed: 44, purpose: .initialization)
            tag = TAGConv(store, "tag", inputs: 6, outputs: 5, hops: 3, rng: &rng)
            bn = SyncBatchNorm1d(store, "bn", features: 5, momentum: 0.01, eps: 1e-3, comm: comm)
            gcn = GCNConv(store, "gcn", inputs: 5, outputs: 3, rng: &rng)
            fusion = OwnedParameter("a", rows: rows, width: 3, fill: 0)
            for i in 0..<rows {     // per-cell values from the global id
                var s = RandomStream(seed: 45, purpose: .custom("graph-check-a")).split(UInt64(firstId + i))
                for j in 0..<3 { fusion.values[i * 3 + j] = s.uniform(0.5, 1.5) }
            }
        }
    }
    struct Built { var loss: Var; var x: Var }
    func forward(_ net: Net, _ tape: Tape, x: Tensor, sparse: CSRMatrix, ids: Range<Int>, lay: RowLayout, c: Communicator,
                 tagOp: GraphOperator, gcnOp: GraphOperator, rowOp: GraphOperator) throws -> Built {
        let xv = tape.variable(x)
        var h = try net.tag(sparse, graph: tagOp, tape)                      // sparse input
        h = tape.add(h, try net.tag(xv, graph: tagOp, tape))                  // and dense (gives dX)
        h = tape.relu(try net.bn(h, tape))
        h = tape.dropout(h, p: 0.25, stream: RandomStream(seed: 46, purpose: .augmentation), keys: ids.map(UInt64.init))
        h = try net.gcn(h, graph: gcnOp, tape)
        // Each cell reads its own fusion row and, at half weight, that of a partner cell that is mostly
        // on another rank: halo reads whose gradients go back to the owner.
        let partner = ids.map { Int64(($0 * 7 + 3) % n) }
        let plan = try HaloPlan(needed: partner.filter { !ids.contains(Int($0)) }, layout: lay, comm: c)
        let partnerIndex = partner.map { g in ids.contains(Int(g)) ? Int32(Int(g) - ids.lowerBound) : Int32(-1 - plan.index(of: g)!) }
        let own = try tape.ownedRows(net.fusion, index: (0..<ids.count).map(Int32.init), halo: nil)
        h = tape.mul(h, tape.add(own, tape.scale(try tape.ownedRows(net.fusion, index: partnerIndex, halo: plan), 0.5)))
        net.touched = Set(net.fusion.touchedRows)
        let zl = try tape.propagate(h, rowOp)
        let out = tape.add(try tape.graphSelfAttention(zl, rowOp),
                           tape.scale(try tape.globalSelfAttention(zl, comm: c, blockRows: 4, blockCols: 7), 0.5))
        let red = tape.scale(tape.sum(tape.mul(out, tape.constant(reduction(ids, width: 3)))), 1 / Float(max(ids.count, 1)))
        return Built(loss: tape.add(red, try tape.edgeReconstructionLoss(h, rowOp)), x: xv)
    }

    /// The global loss and all gradients of a run on `c` over `ids`.
    struct Result { var loss: Double; var store: [Float]; var fusion: [Float]; var x: [Float]; var touched: Set<Int32> }
    func evaluate(ids: Range<Int>, lay: RowLayout, c: Communicator, perturb: ((Net, Tensor) -> Void)? = nil) throws -> Result {
        let net = Net(rows: ids.count, firstId: ids.lowerBound, comm: c)
        let sparse = try features(ids), x = sparse.toDense()
        perturb?(net, x)
        let a = graph(ids)
        let tagOp = try GraphNormalization.tagConv(a, layout: lay, comm: c)
        let gcnOp = try GraphNormalization.gcn(a, layout: lay, comm: c)
        let rowOp = try GraphNormalization.rowNormalized(a, layout: lay, comm: c)
        let tape = Tape()
        let b = try forward(net, tape, x: x, sparse: sparse, ids: ids, lay: lay, c: c, tagOp: tagOp, gcnOp: gcnOp, rowOp: rowOp)
        let w = Float(ids.count) / Float(n)   // the Trainer's weight of this rank's mean loss
        let loss = try c.allreduce(value: Double(tape.value(b.loss).scalar) * Double(w), op: .sum)
        try tape.backward(b.loss, seed: Tensor.scalar(w))
        var g = net.store.flatGrads.scalars
        try c.allreduce(&g, op: .sum)
        return Result(loss: loss, store: g, fusion: net.fusion.grads, x: tape.grad(b.x)?.scalars ?? [], touched: net.touched)
    }

    let solo = try evaluate(ids: 0..<n, lay: all, c: Communicator.solo)
    // A rank without cells (rank 0 when p > 1) must take part in every collective and change nothing.
    if p > 1 {
        var emptyCounts = counts; emptyCounts[1] += emptyCounts[0]; emptyCounts[0] = 0
        let emptyLayout = RowLayout(counts: emptyCounts)
        let e = try evaluate(ids: emptyLayout.range(of: r), lay: emptyLayout, c: comm)
        let scale = max(solo.store.map(abs).max() ?? 0, 1e-6)
        let worst = zip(e.store, solo.store).map { abs($0 - $1) }.max()! / scale
        expect(abs(e.loss - solo.loss) <= 1e-5 * abs(solo.loss) && worst < 1e-4,
               "graph layers with rank 0 empty: loss \(e.loss) vs \(solo.loss) on one, gradients differ by \(worst)")
    }
    let dist = try evaluate(ids: mine, lay: layout, c: comm)
    expect(solo.touched == Set((0..<Int32(n))), "owned rows: one rank touches every row (\(solo.touched.count) of \(n))")
    // Budget: the distributed sums add the same terms in another order (halo rows, allreduced batch
    // statistics, reduce-scattered attention gradients): a few Float ulps of each sum, < 1e-5 relative
    // to the largest gradient; a missing halo contribution or a wrong weight is of order 1e-1.
    func rel(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
        let scale = max(b.map(abs).max() ?? 0, 1e-6)
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    }
    expect(abs(dist.loss - solo.loss) <= 1e-5 * abs(solo.loss), "graph layers: loss \(dist.loss) on \(p) ranks vs \(solo.loss) on one")
    expect(rel(dist.store[...], solo.store[...]) < 1e-4, "graph layers: replicated parameter gradients differ from one rank by \(rel(dist.store[...], solo.store[...]))")
    let fs = solo.fusion[(lo * 3)..<((lo + mine.count) * 3)], xs = solo.x[(lo * fin)..<((lo + mine.count) * fin)]
    expect(rel(dist.fusion[...], fs) < 1e-4, "graph layers: owned per-cell gradients differ from one rank by \(rel(dist.fusion[...], fs))")
    expect(rel(dist.x[...], xs) < 1e-4, "graph layers: input gradients differ from one rank by \(rel(dist.x[...], xs))")

    // Central finite differences of the distributed global loss, every rank perturbing the same element.
    // Float forwards, h = 1e-2: rounding ≈ 1e-7·|L|/h and truncation h²·|L'''| both ≲ 1e-4 here; the
    // tolerance is GradCheck's (2e-3 + 1e-2 relative).
    let h: Float = 1e-2
    var worst: Float = 0, worstWhat = ""
    func fd(_ what: String, analytic: Float, _ set: @escaping (Net, Tensor, Float) -> Void) throws {
        let up = try evaluate(ids: mine, lay: layout, c: comm) { set($0, $1, h) }.loss
        let down = try evaluate(ids: mine, lay: layout, c: comm) { set($0, $1, -h) }.loss
        let numeric = Float((up - down) / Double(2 * h))
        let ratio = abs(numeric - analytic) / (2e-3 + 1e-2 * max(abs(numeric), abs(analytic)))
        if ratio > worst { worst = ratio; worstWhat = "\(what): analytic \(analytic), numeric \(numeric)" }
    }
    let net0 = Net(rows: 1, firstId: 0, comm: Communicator.solo)
    for (pi, param) in net0.store.parameters.enumerated() where param.trainable {
        let e = (pi * 7) % param.count
        try fd("\(param.name)[\(e)]", analytic: solo.store[param.offset + e]) { net, _, d in
            let q = net.store.parameters[pi]; q.value.pointer[e] += d
        }
    }
    for g in [0, 11, n - 1] {   // owned rows and inputs of cells on different ranks
        let owner = layout.owner(ofGlobal: g)
        try fd("a[\(g)]", analytic: solo.fusion[g * 3 + 1]) { net, _, d in if owner.rank == r { net.fusion.values[owner.local * 3 + 1] += d } }
        try fd("x[\(g)]", analytic: solo.x[g * fin + 2]) { _, x, d in if owner.rank == r { x.pointer[owner.local * fin + 2] += d } }
    }
    expect(worst <= 1, "graph layers: finite differences on \(p) ranks, worst \(worst) at \(worstWhat)")

    // Halo plumbing: accumulate is fetch's adjoint, fetchSparse moves variable-length rows.
    let want: [Int64] = r == 0 ? [] : [Int64(n - 1), 0, Int64(lo), Int64(n / 2)]
    let plan = try HaloPlan(needed: want, layout: layout, comm: comm)
    var local = [Float](repeating: 0, count: mine.count)
    let ones = [Float](repeating: 1, count: plan.rows.count)
    try ones.withUnsafeBufferPointer { o in try local.withUnsafeMutableBufferPointer { try plan.accumulate(o, width: 1, into: $0.baseAddress!) } }
    let requests = try comm.allgatherv(plan.rows).values
    let wantCount = mine.map { g in Float(requests.filter { $0 == Int64(g) }.count) }
    expect(local == wantCount, "halo accumulate adds each requester's value at the owner")
    // Lazy Adam: a parameter read only through the halo (rank 0 reads nothing) is touched exactly at
    // the rows its owner served, and one step moves those rows and no other.
    let owned = OwnedParameter("t", rows: mine.count, width: 2, fill: 1)
    let tape = Tape()
    let haloIndex = plan.rows.indices.map { Int32(-1 - $0) }
    let read = try tape.ownedRows(owned, index: haloIndex, halo: plan)
    try tape.backward(read, seed: Tensor(rows: haloIndex.count, cols: 2, repeating: 1))
    let served = Set(mine.filter { g in requests.contains(Int64(g)) }.map { Int32($0 - lo) })
    let touchedBefore = Set(owned.touchedRows)
    owned.step(lr: 0.1)
    let moved = Set((0..<mine.count).filter { owned.values[$0 * 2] != 1 }.map(Int32.init))
    expect(touchedBefore == served && moved == served,
           "owned rows: rank \(r) touched \(touchedBefore.sorted()) and moved \(moved.sorted()); served \(served.sorted())")
    let a = graph(mine)
    let got = try plan.fetchSparse(rowPtr: a.rowPtr, columns: a.cols, values: a.values)
    let ref = graph(0..<n)
    var sparseOK = got.rowPtr.count == plan.rows.count + 1
    for (t, g) in plan.rows.enumerated() where sparseOK {
        let row = ref.row(Int(g))
        sparseOK = Array(got.columns[Int(got.rowPtr[t])..<Int(got.rowPtr[t + 1])]) == Array(row.cols)
    }
    expect(sparseOK, "halo fetchSparse returns the requested rows")
}
