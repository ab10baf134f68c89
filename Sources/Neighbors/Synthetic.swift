import TensorCore

/// Clustered embeddings for benchmarks and tests: `clusters` Gaussian blobs in `dim` dimensions.
/// Row g depends only on (seed, g), so any rank count generates the same global matrix; a rank
/// generates only its own rows.
public enum SyntheticEmbeddings {
    public static func rows(_ range: Range<Int>, dim: Int, clusters: Int, spread: Float = 1, seed: UInt64) -> (Tensor, [Int32]) {
        var centres = [Float](repeating: 0, count: clusters * dim)
        var cr = RandomStream(seed: seed, purpose: .custom("synthetic-centres"))
        for i in 0..<centres.count { centres[i] = cr.normal() * 4 }
        let t = Tensor(rows: range.count, cols: dim)
        var labels = [Int32](repeating: 0, count: range.count)
        let p = t.pointer
        let cells = RandomStream(seed: seed, purpose: .custom("synthetic-cells"))
        for (li, g) in range.enumerated() {
            var rng = cells.split(UInt64(g))  // row g's own stream: independent of the rank split
            let c = rng.int(below: clusters)
            labels[li] = Int32(c)
            for j in 0..<dim { p[li * dim + j] = centres[c * dim + j] + spread * rng.normal() }
        }
        return (t, labels)
    }
}
