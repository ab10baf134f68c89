import Foundation
import TensorCore

/// Clustered embeddings for benchmarks and tests: `clusters` Gaussian blobs in `dim` dimensions.
/// Row g depends only on (seed, g), so any rank count generates the same global matrix; a rank
/// generates only its own rows.
public enum SyntheticEmbeddings {
    public static func rows(_ range: Range<Int>, dim: Int, clusters: Int, spread: Float = 1, seed: UInt64) -> (Tensor, [Int32]) {
        var centres = [Float](repeating: 0, count: clusters * dim)
        var cr = Mix(seed: seed ^ 0xC1)
        for i in 0..<centres.count { centres[i] = Float(cr.gaussian()) * 4 }
        let t = Tensor(rows: range.count, cols: dim)
        var labels = [Int32](repeating: 0, count: range.count)
        let p = t.pointer
        for (li, g) in range.enumerated() {
            var rng = Mix(seed: seed &+ UInt64(g) &* 0x9E37_79B9_7F4A_7C15)
            let c = Int(rng.next() % UInt64(clusters))
            labels[li] = Int32(c)
            for j in 0..<dim { p[li * dim + j] = centres[c * dim + j] + spread * Float(rng.gaussian()) }
        }
        return (t, labels)
    }

    struct Mix {
        var s: UInt64
        init(seed: UInt64) { s = seed }
        mutating func next() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) * 0x1.0p-53 }
        mutating func gaussian() -> Double {
            let u = uniform(), v = uniform()
            return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
        }
    }
}

