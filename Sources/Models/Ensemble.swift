// Ensembles of independently trained models: their embeddings side by side, for one final clustering.
import Collectives
import TensorCore

public enum EnsembleEmbedding {
    /// Collective. The members' embeddings side by side, each divided by its global root-mean-square
    /// row norm so every member weighs the same in the distances.
    public static func concatenate(_ parts: [Tensor], comm: Communicator) throws -> Tensor {
        let n = parts[0].rows, width = parts.reduce(0) { $0 + $1.cols }
        var sums = [Double](repeating: 0, count: parts.count + 1)
        for (m, p) in parts.enumerated() {
            var s = 0.0
            for e in 0..<p.count { s += Double(p.pointer[e]) * Double(p.pointer[e]) }
            sums[m] = s
        }
        sums[parts.count] = Double(n)
        try comm.allreduce(&sums, op: .sum)
        let out = Tensor(rows: n, cols: width)
        var c0 = 0
        for (m, p) in parts.enumerated() {
            let scale = Float(1 / max((sums[m] / max(sums[parts.count], 1)).squareRoot(), 1e-12))
            for i in 0..<n { for c in 0..<p.cols { out.pointer[i * width + c0 + c] = p.pointer[i * p.cols + c] * scale } }
            c0 += p.cols
        }
        return out
    }
}
