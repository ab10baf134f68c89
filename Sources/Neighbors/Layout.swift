// A 2-D UMAP layout of a kNN graph's fuzzy connectivities (obsm['X_umap'] as scanpy's sc.tl.umap
// writes it), distributed over ranks that each own their rows' edges.
//
// The objective and the rules follow umap-learn 0.5 (umap_.py simplicial_set_embedding,
// find_ab_params, make_epochs_per_sample; layouts.py optimize_layout_euclidean), learnt from its
// source, not copied:
//   - low-dimensional similarity q(d) = 1 / (1 + a·d^(2b)); a, b fitted by least squares to the
//     curve 1 for d < min_dist, exp(−(d − min_dist)/spread) beyond, on 300 points of [0, 3·spread]
//     (scipy's curve_fit is Levenberg–Marquardt from (1, 1); so is `fitAB`).
//   - n_epochs 500 for ≤ 10 000 cells, 200 above; edges with weight < max weight / n_epochs dropped;
//     an edge of weight w is sampled every max/w epochs (epochs_per_sample), and each sample draws
//     negative_sample_rate (5) uniformly random cells as negatives.
//   - attraction coefficient −2ab·d²^(b−1) / (1 + a·d²^b), repulsion 2γb / ((0.001 + d²)(1 + a·d²^b))
//     (γ = repulsion_strength 1), each coordinate's step clipped to ±4, learning rate α = 1·(1 − e/n).
//
// Deviations (measured by the neighbourhood-preservation score, scripts/umap_compare.py):
//   - Synchronous, not Hogwild. umap-learn moves both ends of each edge in place while other threads
//     read them. Here every epoch is split into `subEpochs` colour classes of cells (a hash of the
//     seed and the global cell id): in sub-epoch s only the cells of colour s move, each from the
//     positions all cells had at the end of sub-epoch s − 1; a moving cell walks its own edges in
//     column order updating its own position as it goes (sequential within the cell). The moves of
//     the other end of an edge (umap-learn's move_other) are made by that end itself through the
//     reverse edge, which the symmetric connectivities always hold; so each sampled edge pulls its
//     head `attractionSteps` times (2: once as head and once as the tail of the reverse edge, as in
//     umap-learn, where both directions of an edge are sampled in the same epochs).
//     Where the stand-in pull goes (`moveOther`): umap-learn's move_other pull reaches a cell when the
//     *other* end's row is processed, apart from the cell's own pull-then-negatives sequence. `.before`
//     (the default) gives it that separation: a first pass over the cell's sampled edges takes the
//     stand-in pulls, then the walk pulls once per edge and draws its negatives. `.inWalk` (the
//     earlier default) takes both pulls back to back before the edge's negatives. Same pulls, same
//     negatives, same rates: only the order inside a cell's sub-epoch differs. Measured on the five
//     shared datasets (scNAME embeddings, `syncytium bench layout --input`, 10 seeds each, AMD EPYC,
//     2 ranks), preservation before / in-walk / umap-learn (sc.tl.umap's call, 10 seeds): pbmc
//     .1773 / .1760 / .1753, kidney .1725 / .1716 / .1716, worm .1973 / .1948 / .1965, cite .1536 /
//     .1510 / .1535, baron .3174 / .3152 / .3151 (standard errors 0.0002–0.0006); a Python replica of
//     both orders and of umap-learn's sequential move_other agrees, and a pass *after* the walk
//     scores below all three (worm .1918).
//     Measured (scripts/umap_compare.py; numbers in the note of issue 18): on the five shared
//     datasets the preservation with 1, 4 or 16 colour classes differs by ≤ 0.007 and without a
//     consistent sign (4 chosen: cheap, one allgather per class); one pull per sampled edge instead of
//     two raises the score by 0.01–0.02 on all five, but it halves the attraction against the
//     repulsion (another objective than umap-learn's), so two are kept.
//   - Negative samples are drawn from a RandomStream keyed by (seed, epoch, global cell id) and
//     consumed in the cell's edge order, so the layout is a function of the seed and the graph alone:
//     bit-identical on any rank count (every sum is in a fixed per-cell order).
//   - Initialisation: the first two principal components of the embedding (umap-learn's init='pca'),
//     then umap-learn's rescaling of every axis to [0, 10], plus noise of 1e-4 keyed by cell id;
//     not scanpy's spectral init (an eigenproblem of the whole graph).
//
// Communication. Negative samples are uniform over all cells: a rank's ~5·(sampled edges) negatives
// touch nearly every cell each epoch, so a halo of them would be as large as the whole layout plus
// the request lists. Each sub-epoch therefore allgathers the 2-D positions: 2 floats per cell (8 MB
// at 1M cells on every rank, next to the kNN graph's ~20 edges × 12 bytes per cell); the traffic is
// 8 MB per sub-epoch, small against the O(edges × 6) random reads of the epoch's work at 10^6 cells; it does not
// shrink with P, so at 10^8 on hundreds of ranks it matches the compute (docs/SCALING.md, Limits 5).
import Collectives
import Foundation
import TensorCore

public struct UMAPLayout: Sendable {
    public var minDist = 0.5
    public var spread = 1.0
    /// nil: umap-learn's default (500 for ≤ 10 000 cells, else 200).
    public var epochs: Int? = nil
    public var negativeSampleRate = 5
    public var learningRate = 1.0
    public var repulsion = 1.0
    /// Colour classes of cells per epoch (each a synchronous sub-epoch with its own allgather).
    public var subEpochs = 4
    /// Pulls per sampled edge on its head cell (2 = umap-learn's move_other through the reverse edge).
    public var attractionSteps = 2
    /// Where a moving cell takes the pulls that stand in for umap-learn's move_other (all but one of
    /// `attractionSteps` per sampled edge): `.inWalk` right after the edge's own pull, before its
    /// negatives; `.before` in a pass over the cell's sampled edges ahead of its walk (each toward the
    /// tail's position at the start of the sub-epoch), the walk then pulling once per edge.
    public var moveOther: MoveOther = .before
    public enum MoveOther: String, Sendable, CaseIterable { case inWalk = "in-walk", before }
    public var seed: UInt64 = 0
    /// 2 (umap-learn's default n_components).
    public static let dimensions = 2
    public static let clip: Float = 4

    public init(seed: UInt64 = 0, epochs: Int? = nil) { self.seed = seed; self.epochs = epochs }

    /// umap-learn's default number of epochs for `cells` cells.
    public static func defaultEpochs(cells: Int) -> Int { cells <= 10_000 ? 500 : 200 }

    /// a, b of q(d) = 1/(1 + a d^(2b)) fitted by least squares (Levenberg–Marquardt from (1, 1)) to
    /// the curve 1 for d < minDist and exp(−(d − minDist)/spread) beyond, on 300 points of [0, 3·spread].
    public static func fitAB(spread: Double, minDist: Double) -> (a: Double, b: Double) {
        let m = 300
        let xs = (0..<m).map { 3 * spread * Double($0) / Double(m - 1) }
        let ys = xs.map { $0 < minDist ? 1.0 : exp(-($0 - minDist) / spread) }
        func residuals(_ a: Double, _ b: Double) -> [Double] {
            (0..<m).map { i in 1 / (1 + a * pow(xs[i], 2 * b)) - ys[i] }
        }
        func cost(_ r: [Double]) -> Double { r.reduce(0) { $0 + $1 * $1 } }
        var a = 1.0, b = 1.0, lambda = 1e-3
        var r = residuals(a, b), c = cost(r)
        for _ in 0..<500 {
            // Jacobian of the residuals and the normal equations JᵀJ δ = −Jᵀr (2 × 2).
            var jaa = 0.0, jab = 0.0, jbb = 0.0, ga = 0.0, gb = 0.0
            for i in 0..<m where xs[i] > 0 {
                let p = pow(xs[i], 2 * b), den = (1 + a * p) * (1 + a * p)
                let da = -p / den, db = -a * p * 2 * log(xs[i]) / den
                jaa += da * da; jab += da * db; jbb += db * db; ga += da * r[i]; gb += db * r[i]
            }
            var improved = false
            for _ in 0..<30 {
                let haa = jaa * (1 + lambda), hbb = jbb * (1 + lambda)
                let det = haa * hbb - jab * jab
                guard det != 0 else { lambda *= 10; continue }
                let sa = -(hbb * ga - jab * gb) / det, sb = -(haa * gb - jab * ga) / det
                let na = a + sa, nb = b + sb
                let nr = residuals(na, nb), nc = cost(nr)
                if nc.isFinite && nc < c {
                    let done = abs(c - nc) <= 1e-15 * max(c, 1e-300) || (abs(sa) < 1e-12 * abs(a) && abs(sb) < 1e-12 * abs(b))
                    (a, b, r, c) = (na, nb, nr, nc); lambda = max(lambda / 10, 1e-12); improved = true
                    if done { return (a, b) }
                    break
                }
                lambda *= 10
            }
            if !improved { break }
        }
        return (a, b)
    }

    /// Collective. The first two principal components of this rank's rows of `z` (n × d), rescaled
    /// as umap-learn rescales an initialisation (each axis to [0, 10]) plus noise of 1e-4 keyed by
    /// the global cell id. The mean and covariance are rounded to Float after their allreduce, so
    /// rank-count-dependent summation order (a difference of ~1e-16 relative) reaches the result
    /// only if it straddles a Float rounding boundary.
    public func pcaInitialisation(_ z: Tensor, layout: RowLayout, comm: Communicator) throws -> [Float] {
        let n = z.rows, d = z.cols
        let first = layout.offsets[comm.rank]
        let zs = z.scalars
        var sums = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { sums[j] += Double(zs[i * d + j]) } }
        try comm.allreduce(&sums, op: .sum)
        let total = Double(max(layout.total, 1))
        let mean = sums.map { Double(Float($0 / total)) }
        var cov = [Double](repeating: 0, count: d * d)
        var row = [Double](repeating: 0, count: d)
        for i in 0..<n {
            for j in 0..<d { row[j] = Double(zs[i * d + j]) - mean[j] }
            for j in 0..<d { let rj = row[j]; for l in j..<d { cov[j * d + l] += rj * row[l] } }
        }
        try comm.allreduce(&cov, op: .sum)
        for j in 0..<d { for l in j..<d { let v = Double(Float(cov[j * d + l] / total)); cov[j * d + l] = v; cov[l * d + j] = v } }
        var axes: [[Double]] = []
        if d >= 1 {
            let eig = try SymmetricEigen.decompose(cov, n: d)
            for c in 0..<min(2, d) {
                var v = Array(eig.vectors[((d - 1 - c) * d)..<((d - c) * d)])
                // Sign convention: the largest-magnitude component positive (LAPACK's sign is arbitrary).
                var big = 0
                for j in 0..<d where abs(v[j]) > abs(v[big]) { big = j }
                if v[big] < 0 { v = v.map { -$0 } }
                axes.append(v)
            }
        }
        while axes.count < 2 { axes.append([Double](repeating: 0, count: d)) }
        var y = [Float](repeating: 0, count: n * 2)
        for i in 0..<n {
            for c in 0..<2 {
                var s = 0.0
                for j in 0..<d { s += (Double(zs[i * d + j]) - mean[j]) * axes[c][j] }
                y[i * 2 + c] = Float(s)
            }
        }
        return try rescaled(y, first: first, comm: comm)
    }

    /// Collective. umap-learn's rescaling of an initialisation: each axis to [0, 10], plus noise keyed by cell id.
    func rescaled(_ y: [Float], first: Int, comm: Communicator) throws -> [Float] {
        var lo = [Float](repeating: .infinity, count: 2), hi = [Float](repeating: -.infinity, count: 2)
        for i in 0..<(y.count / 2) { for c in 0..<2 { lo[c] = min(lo[c], y[i * 2 + c]); hi[c] = max(hi[c], y[i * 2 + c]) } }
        try comm.allreduce(&lo, op: .min); try comm.allreduce(&hi, op: .max)
        let noise = RandomStream(seed: seed, purpose: .custom("umap-init"))
        var out = y
        for i in 0..<(y.count / 2) {
            var r = noise.split(UInt64(first + i))
            for c in 0..<2 {
                let w = hi[c] - lo[c]
                out[i * 2 + c] = (w > 0 ? 10 * (y[i * 2 + c] - lo[c]) / w : 0) + 1e-4 * r.normal()
            }
        }
        return out
    }

    /// Collective. Optimises the layout of this rank's rows of the symmetric fuzzy graph `graph`
    /// (connectivities, global columns) from `initial` (this rank's rows × 2). Returns this rank's rows × 2.
    public func optimise(_ graph: GraphShard, initial: [Float], layout: RowLayout, comm: Communicator) throws -> [Float] {
        let n = layout.total, rows = graph.rows, first = layout.offsets[comm.rank]
        precondition(initial.count == rows * 2, "layout: \(initial.count) initial values for \(rows) rows × 2")
        let nEpochs = epochs ?? UMAPLayout.defaultEpochs(cells: n)
        let (a64, b64) = UMAPLayout.fitAB(spread: spread, minDist: minDist)
        let a = Float(a64), b = Float(b64), gamma = Float(repulsion)
        let wmax = try comm.allreduce(value: graph.values.max() ?? 0, op: .max)
        // Edges kept (umap-learn drops weights below max / n_epochs), with their sampling periods.
        var rowPtr = [Int](repeating: 0, count: rows + 1)
        var tail: [Int32] = [], period: [Double] = []
        tail.reserveCapacity(graph.nnz); period.reserveCapacity(graph.nnz)
        for i in 0..<rows {
            for e in Int(graph.rowPtr[i])..<Int(graph.rowPtr[i + 1]) {
                let w = graph.values[e]
                if w > 0, w >= wmax / Float(nEpochs), graph.cols[e] != Int64(first + i) {
                    tail.append(Int32(graph.cols[e])); period.append(Double(wmax) / Double(w))
                }
            }
            rowPtr[i + 1] = tail.count
        }
        let negPeriod = period.map { $0 / Double(negativeSampleRate) }
        var nextSample = period, nextNegative = negPeriod
        let counts = layout.counts.map { $0 * 2 }
        var all = [Float](repeating: 0, count: n * 2)
        all.withUnsafeMutableBufferPointer { p in
            for j in 0..<(rows * 2) { p[first * 2 + j] = initial[j] }
        }
        try all.withUnsafeMutableBufferPointer { try comm.allgatherInPlace($0, counts: counts) }
        let colours = max(1, subEpochs)
        let colourOf = (0..<rows).map { Int(SplitMix64.mix(seed ^ 0xC0_10_0B ^ UInt64(first + $0) &* 0x9E37_79B9_7F4A_7C15) % UInt64(colours)) }
        var members = [[Int]](repeating: [], count: colours)
        for i in 0..<rows { members[colourOf[i]].append(i) }
        let base = RandomStream(seed: seed, purpose: .custom("umap-negatives"))
        var moved = [Float](repeating: 0, count: rows * 2)
        let clip = UMAPLayout.clip
        @inline(__always) func clipped(_ x: Float) -> Float { x > clip ? clip : (x < -clip ? -clip : x) }
        @inline(__always) func attract(_ y0: inout Float, _ y1: inout Float, _ o0: Float, _ o1: Float, _ alpha: Float) {
            let d0 = y0 - o0, d1 = y1 - o1
            let d2 = d0 * d0 + d1 * d1
            if d2 > 0 {
                let p = powf(d2, b)  // d2^(b−1) = p / d2: one powf, not two
                let coeff = -2 * a * b * (p / d2) / (a * p + 1)
                y0 += clipped(coeff * d0) * alpha; y1 += clipped(coeff * d1) * alpha
            }
        }
        for epoch in 0..<nEpochs {
            let alpha = Float(learningRate * (1 - Double(epoch) / Double(nEpochs)))
            let epochStream = base.split(UInt64(epoch))
            let ep = Double(epoch)
            for colour in 0..<colours {
                all.withUnsafeBufferPointer { pos in
                    for i in members[colour] {
                        let g = first + i
                        var y0 = pos[g * 2], y1 = pos[g * 2 + 1]
                        var rng = epochStream.split(UInt64(g))
                        if moveOther == .before && attractionSteps > 1 {
                            for e in rowPtr[i]..<rowPtr[i + 1] where nextSample[e] <= ep {
                                let t = Int(tail[e])
                                for _ in 1..<attractionSteps { attract(&y0, &y1, pos[t * 2], pos[t * 2 + 1], alpha) }
                            }
                        }
                        let walkPulls = moveOther == .before ? min(1, attractionSteps) : attractionSteps
                        for e in rowPtr[i]..<rowPtr[i + 1] where nextSample[e] <= ep {
                            let t = Int(tail[e])
                            let o0 = pos[t * 2], o1 = pos[t * 2 + 1]
                            for _ in 0..<walkPulls { attract(&y0, &y1, o0, o1, alpha) }
                            nextSample[e] += period[e]
                            let negatives = Int((ep - nextNegative[e]) / negPeriod[e])
                            if negatives > 0 {
                                for _ in 0..<negatives {
                                    let k = rng.int(below: n)
                                    if k == g { continue }
                                    let d0 = y0 - pos[k * 2], d1 = y1 - pos[k * 2 + 1]
                                    let d2 = d0 * d0 + d1 * d1
                                    if d2 > 0 {
                                        let coeff = 2 * gamma * b / ((0.001 + d2) * (a * powf(d2, b) + 1))
                                        y0 += clipped(coeff * d0) * alpha; y1 += clipped(coeff * d1) * alpha
                                    } else {
                                        y0 += clip * alpha; y1 += clip * alpha
                                    }
                                }
                                nextNegative[e] += Double(negatives) * negPeriod[e]
                            }
                        }
                        moved[i * 2] = y0; moved[i * 2 + 1] = y1
                    }
                }
                all.withUnsafeMutableBufferPointer { p in
                    for i in members[colour] { p[(first + i) * 2] = moved[i * 2]; p[(first + i) * 2 + 1] = moved[i * 2 + 1] }
                }
                try all.withUnsafeMutableBufferPointer { try comm.allgatherInPlace($0, counts: counts) }
            }
        }
        return Array(all[(first * 2)..<((first + rows) * 2)])
    }

    /// Collective. The whole layout: PCA initialisation of `z` (this rank's rows), then `optimise`.
    public func run(_ graph: GraphShard, embedding z: Tensor, layout: RowLayout, comm: Communicator) throws -> [Float] {
        let start = try pcaInitialisation(z, layout: layout, comm: comm)
        return try optimise(graph, initial: start, layout: layout, comm: comm)
    }
}

/// How well a 2-D layout keeps a kNN graph's neighbourhoods: the mean over cells of the fraction of
/// each cell's graph neighbours (its k other cells in the kNN graph, scanpy's n_neighbors − 1) that
/// are among its k nearest other cells in the layout.
public enum NeighbourhoodPreservation {
    /// Collective. `neighbours`: this rank's rows of the kNN graph (k other cells each, global ids);
    /// `coordinates`: this rank's rows × 2. The layout's k nearest are searched exactly (ring of ranks)
    /// up to `exactLimit` cells, approximately (IVF) above.
    public static func score(neighbours: GraphShard, coordinates: [Float], layout: RowLayout, exactLimit: Int = 200_000,
                             seed: UInt64 = 0, comm: Communicator) throws -> Double {
        let rows = neighbours.rows
        let k = try comm.allreduce(value: Int64((0..<rows).map { Int(neighbours.rowPtr[$0 + 1] - neighbours.rowPtr[$0]) }.max() ?? 0), op: .max)
        guard k > 0, layout.total > Int(k) else { return 0 }
        let y = Tensor(rows: rows, cols: 2, values: coordinates)
        let near = layout.total <= exactLimit ? try ExactKNN.build(y, k: Int(k), comm: comm)
                                              : try ApproximateKNN(seed: seed).build(y, k: Int(k), comm: comm)
        var sums = [0.0, 0.0]
        for i in 0..<rows {
            let mine = Set(near.indices[(i * Int(k))..<((i + 1) * Int(k))])
            let graphRow = neighbours.row(i).cols
            guard !graphRow.isEmpty else { continue }
            sums[0] += Double(graphRow.filter { mine.contains($0) }.count) / Double(graphRow.count)
            sums[1] += 1
        }
        try comm.allreduce(&sums, op: .sum)
        return sums[1] > 0 ? sums[0] / sums[1] : 0
    }
}
