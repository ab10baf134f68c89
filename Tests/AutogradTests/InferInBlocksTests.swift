import XCTest
import TensorCore
@testable import Autograd

/// `Tape.inferInBlocks(globalIds:)`: a cell's output does not depend on which other cells its rank
/// holds, whatever the BLAS kernel does with a call's row count.
final class InferInBlocksTests: XCTestCase {
    /// 1,003 cells (ids with gaps, not a multiple of the block) through a 300 → 40 → 17 network, split
    /// over 1, 2 and 3 "ranks" unevenly: every split gives the same bytes, every call has `block` rows,
    /// and the output equals the plain product up to float rounding (so the blocks hold the right rows).
    func testOutputsAreTheSameBytesOnEverySplit() {
        var rng = RandomStream(seed: 5, purpose: .custom("infer-in-blocks"))
        let n = 1003, g = 300, h = 40, d = 17, block = 128
        let x = Tensor.uniform(rows: n, cols: g, -1, 1, rng: &rng)
        let w1 = Tensor.uniform(rows: g, cols: h, -0.1, 0.1, rng: &rng), w2 = Tensor.uniform(rows: h, cols: d, -0.3, 0.3, rng: &rng)
        let ids: [Int64] = (0..<n).map { (i: Int) -> Int64 in
            let gap: Int = i % 7 == 0 ? 1 : 0
            return Int64(2 * i + gap)
        }
        func run(_ shard: Range<Int>) -> (Tensor, [Int]) {
            var sizes: [Int] = []
            let local = Tensor(rows: shard.count, cols: g)
            for (i, r) in shard.enumerated() { (local.pointer + i * g).update(from: x.pointer + r * g, count: g) }
            let out = Tape.inferInBlocks(globalIds: Array(ids[shard]), cols: d, block: block) { rows, tape in
                sizes.append(rows.count)
                let input = tape.zeros(rows.count, g)
                for (i, r) in rows.enumerated() { (input.pointer + i * g).update(from: local.pointer + r * g, count: g) }
                return tape.matmul(tape.tanh(tape.matmul(tape.constant(input), tape.constant(w1))), tape.constant(w2))
            }
            return (out, sizes)
        }
        let (whole, wholeSizes) = run(0..<n)
        XCTAssertTrue(wholeSizes.allSatisfy { $0 == block }, "call sizes \(wholeSizes)")
        for cuts in [[0, 500, n], [0, 1, 700, n], [0, 333, 667, n], [0, 129, 130, n]] {
            var bytes: [Float] = []
            for p in 0..<(cuts.count - 1) {
                let (o, sizes) = run(cuts[p]..<cuts[p + 1])
                XCTAssertTrue(sizes.allSatisfy { $0 == block }, "cuts \(cuts): call sizes \(sizes)")
                bytes += Array(UnsafeBufferPointer(start: o.pointer, count: o.count))
            }
            XCTAssertEqual(bytes, Array(UnsafeBufferPointer(start: whole.pointer, count: whole.count)), "cuts \(cuts)")
        }
        // Against the product computed directly (tanh(x·w1)·w2 in Double): rounding only, within the
        // worst-case budget of float32 dot products (Higham: |error| ≤ γ_n·Σ|terms|, γ_n = n·u/(1 − n·u),
        // u = 2^-24) for the hidden sums (n = g), a few ulps for tanh, then γ_h for the output sums.
        let u = Double(Float.ulpOfOne) / 2
        func gamma(_ n: Int) -> Double { Double(n) * u / (1 - Double(n) * u) }
        var worst = 0.0
        for r in 0..<n {
            var hid = [Double](repeating: 0, count: h), hidErr = [Double](repeating: 0, count: h)
            for j in 0..<h {
                var s = 0.0, a = 0.0
                for k in 0..<g { let t = Double(x.pointer[r * g + k]) * Double(w1.pointer[k * h + j]); s += t; a += abs(t) }
                hid[j] = tanh(s)
                hidErr[j] = gamma(g) * a + 4 * u   // |tanh'| ≤ 1; float tanh within a few ulps of ≤ 1
            }
            for c in 0..<d {
                var s = 0.0, a = 0.0, e = 0.0
                for j in 0..<h {
                    let w = Double(w2.pointer[j * d + c]); s += hid[j] * w; a += abs((abs(hid[j]) + hidErr[j]) * w); e += hidErr[j] * abs(w)
                }
                let err = abs(s - Double(whole.pointer[r * d + c]))
                worst = max(worst, err / (e + gamma(h) * a))
            }
        }
        XCTAssertLessThanOrEqual(worst, 1, "largest error as a fraction of its rounding budget")
    }
}
