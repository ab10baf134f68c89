// Multi-rank check of scNAME's sampled neighbourhood loss (Models/SCNAME, `bank_loss: sampled`): a bank
// sharded unevenly (rank 0 holds no batch cell when P ≥ 3), positives and sampled rows owned anywhere,
// some drawn twice, some positives drawn. Each rank's mean loss weighted as the Trainer weights it
// (batch rows / global batch) must give the global loss, and each rank's gradient the rows of the
// one-rank gradient of the same global batch.
import Autograd
import Collectives
import Models
import TensorCore

func scnameSampledLossChecks(comm: Communicator, expect: (Bool, String) -> Void) throws {
    let p = comm.size, r = comm.rank
    let n = 37, d = 5, k = 4, m = 23
    let layout = unevenLayout(n, ranks: p)
    func unitRow(_ g: Int) -> [Float] {
        var rng = RandomStream(seed: 61, purpose: .custom("scname-check-bank")).split(UInt64(g))
        let v = (0..<d).map { _ in rng.uniform(-1, 1) }
        let s = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return v.map { $0 / s }
    }
    // The global batch: every third cell, except those of rank 0 when P ≥ 3 (an empty rank).
    let batch = (0..<n).filter { $0 % 3 == 1 && !(p >= 3 && layout.owner(ofGlobal: $0).rank == 0) }
    func positives(_ g: Int) -> [Int64] {
        var rng = RandomStream(seed: 62, purpose: .custom("scname-check-pos")).split(UInt64(g))
        return [Int64(g)] + (1..<k).map { e in e == k - 1 && g % 2 == 0 ? -1 : Int64(rng.int(below: n)) }
    }
    var rng = RandomStream(seed: 63, purpose: .custom("scname-check-neg"))
    var negatives = (0..<m).map { _ in Int64(rng.int(below: n)) }
    negatives[0] = Int64(batch[0]); negatives[1] = Int64(batch[0])
    func query(_ g: Int) -> [Float] {
        var rng = RandomStream(seed: 64, purpose: .custom("scname-check-query")).split(UInt64(g))
        return (0..<d).map { _ in rng.uniform(-1, 1) }
    }
    struct Result { var loss: Double; var grad: [Float] }
    func evaluate(bankIds: Range<Int>, queries: [Int], c: Communicator) throws -> Result {
        let bank = Tensor(rows: bankIds.count, cols: d, values: bankIds.flatMap(unitRow))
        let tape = Tape()
        let zt = tape.variable(Tensor(rows: queries.count, cols: d, values: queries.flatMap(query)))
        let loss = try tape.sampledNeighbourContrastiveLoss(
            tape.l2NormalizeRows(zt), bank: bank, positives: queries.flatMap(positives), k: k, negatives: negatives,
            bankTotal: n, localRow: { bankIds.contains(Int($0)) ? Int($0) - bankIds.lowerBound : nil },
            temperature: 0.7, comm: c)
        let wt = Float(queries.count) / Float(batch.count)
        let total = try c.allreduce(value: Double(tape.value(loss).scalar) * Double(wt), op: .sum)
        if queries.isEmpty { return Result(loss: total, grad: []) }   // nothing to differentiate on this rank
        try tape.backward(loss, seed: Tensor.scalar(wt))
        return Result(loss: total, grad: tape.grad(zt)!.scalars)
    }
    let mineRange = layout.range(of: r)
    let myQueries = batch.filter { mineRange.contains($0) }
    let dist = try evaluate(bankIds: mineRange, queries: myQueries, c: comm)
    let solo = try evaluate(bankIds: 0..<n, queries: batch, c: Communicator.solo)
    // Budget: the same Double sums in another order plus Float GEMMs of width d: ulps, < 1e-5 relative;
    // a missing owner's contribution or a wrong weight is of order 1e-1.
    expect(abs(dist.loss - solo.loss) <= 1e-5 * abs(solo.loss), "scname sampled loss: \(dist.loss) on \(p) ranks vs \(solo.loss) on one")
    let first = batch.firstIndex { mineRange.contains($0) } ?? 0
    let ref = solo.grad[(first * d)..<((first + myQueries.count) * d)]
    let scale = max(solo.grad.map(abs).max() ?? 0, 1e-6)
    let err = zip(dist.grad, ref).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    expect(dist.grad.count == ref.count && err < 1e-5, "scname sampled loss: gradients differ from one rank by \(err)")
}
