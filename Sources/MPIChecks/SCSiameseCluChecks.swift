// Multi-rank checks of scSiameseClu's communicating ops (Models/SCSiameseClu): the PPR power
// iteration on a distributed Â and the exact correlation reduction from allreduced Gram matrices.
// Each rank's mean loss weighted as the Trainer weights it (rows / N) must give, on P ranks, the
// global loss and the input gradients of the same computation on one rank.
import Autograd
import Collectives
import GraphLayers
import Models
import Neighbors
import TensorCore

func scSiameseCluChecks(comm: Communicator, expect: (Bool, String) -> Void) throws {
    let p = comm.size, r = comm.rank
    let n = 31, w = 4, d = 3, k = 4
    let layout = unevenLayout(n, ranks: p), all = RowLayout(counts: [n])
    let lo = layout.offsets[r], mine = layout.range(of: r)

    func rows(_ ids: Range<Int>, _ width: Int, _ tag: String) -> Tensor {
        let t = Tensor(rows: ids.count, cols: width)
        for (i, g) in ids.enumerated() {
            var rng = RandomStream(seed: 51, purpose: .custom(tag)).split(UInt64(g))
            for c in 0..<width { t.pointer[i * width + c] = rng.uniform(-1, 1) }
        }
        return t
    }
    func graph(_ ids: Range<Int>) -> GraphShard {
        var rp: [Int64] = [0], c: [Int64] = []
        for g in ids {
            var rng = RandomStream(seed: 52, purpose: .custom("siam-check-a")).split(UInt64(g))
            var row: Set<Int64> = [Int64(g)]
            while row.count < k { row.insert(Int64(rng.int(below: n))) }
            c.append(contentsOf: row.sorted()); rp.append(Int64(c.count))
        }
        return GraphShard(rowPtr: rp, cols: c, values: [Float](repeating: 1, count: c.count))
    }
    struct Result { var loss: Double; var gx: [Float]; var gu: [Float]; var gv: [Float] }
    func evaluate(ids: Range<Int>, lay: RowLayout, c: Communicator) throws -> Result {
        var a = try graph(ids).symmetrized(.max, layout: lay, comm: c)
        a.values = [Float](repeating: 1, count: a.nnz)
        let op = try GraphOperator(graph: try a.symmetricNormalized(selfLoops: false, layout: lay, comm: c), layout: lay, comm: c)
        let tape = Tape()
        let x = tape.variable(rows(ids, w, "x")), u = tape.variable(rows(ids, d, "u")), v = tape.variable(rows(ids, d, "v"))
        let z = try tape.personalizedPageRank(x, op, alpha: 0.3, iterations: 6)
        let red = tape.scale(tape.sum(tape.mul(z, tape.constant(rows(ids, w, "r")))), 1 / Float(max(ids.count, 1)))
        let cr = try tape.crossCorrelationReduction(tape.l2NormalizeRows(u), tape.l2NormalizeRows(v), comm: c)
        let loss = tape.add(red, cr)
        let wt = Float(ids.count) / Float(n)
        let total = try c.allreduce(value: Double(tape.value(loss).scalar) * Double(wt), op: .sum)
        try tape.backward(loss, seed: Tensor.scalar(wt))
        return Result(loss: total, gx: tape.grad(x)!.scalars, gu: tape.grad(u)!.scalars, gv: tape.grad(v)!.scalars)
    }
    let dist = try evaluate(ids: mine, lay: layout, c: comm)
    let solo = try evaluate(ids: 0..<n, lay: all, c: Communicator.solo)
    // Budget: the same sums in another order (halo rows, allreduced Grams): Float ulps, < 1e-5 relative
    // to the largest gradient; a missing halo contribution or rank weight is of order 1e-1.
    func rel(_ a: [Float], _ b: ArraySlice<Float>) -> Float {
        let scale = max(b.map(abs).max() ?? 0, 1e-6)
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    }
    expect(abs(dist.loss - solo.loss) <= 1e-5 * abs(solo.loss), "scsiameseclu ops: loss \(dist.loss) on \(p) ranks vs \(solo.loss) on one")
    let ex = rel(dist.gx, solo.gx[(lo * w)..<((lo + mine.count) * w)])
    let eu = rel(dist.gu, solo.gu[(lo * d)..<((lo + mine.count) * d)]), ev = rel(dist.gv, solo.gv[(lo * d)..<((lo + mine.count) * d)])
    expect(ex < 1e-4, "scsiameseclu ops: PPR input gradients differ from one rank by \(ex)")
    expect(eu < 1e-4 && ev < 1e-4, "scsiameseclu ops: correlation-reduction gradients differ from one rank by \(eu), \(ev)")
}
