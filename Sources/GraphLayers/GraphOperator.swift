// Sparse graph operators whose input rows are spread over ranks: the building block of graph layers
// (TAGConv, GCN, graph attention, edge losses). Rows this rank does not own arrive through the halo
// exchange (Neighbors' HaloPlan); in the backward pass their gradients go back to their owners.
import Collectives
import Neighbors
import TensorCore

/// A sparse linear map out = Â·in from input rows to output rows.
///
/// Inputs are addressed by slot: slots 0..<localInputs are rows this rank holds (its shard, or a
/// local batch), slots localInputs..<localInputs + haloRows are rows owned by other ranks, fetched
/// by `fetchHalo` in the order of the halo plan. Output row i has entries (slot[e], values[e]) for
/// e in rowPtr[i]..<rowPtr[i+1]; `rowSlot[i]` is the slot of the output row's own cell (for terms
/// on edges, z_i·z_j). A purely local operator (no halo plan) communicates nothing.
public final class GraphOperator: @unchecked Sendable {
    public let rows: Int
    public let localInputs: Int
    public let haloRows: Int
    public var slots: Int { localInputs + haloRows }
    public let rowPtr: [Int]
    public let slot: [Int32]
    public var values: [Float]
    public let rowSlot: [Int32]
    public let halo: HaloPlan?
    public let comm: Communicator?

    public var nnz: Int { slot.count }

    /// A local operator (every input slot held by this rank, no communication).
    public init(rows: Int, inputs: Int, rowPtr: [Int], slot: [Int32], values: [Float], rowSlot: [Int32]? = nil) {
        precondition(rowPtr.count == rows + 1 && rowPtr.last! == slot.count && slot.count == values.count,
                     "GraphOperator: \(rows) rows, row pointer of \(rowPtr.count), \(slot.count) slots, \(values.count) values")
        precondition(slot.allSatisfy { $0 >= 0 && Int($0) < inputs }, "GraphOperator: a slot outside 0..<\(inputs)")
        self.rows = rows; localInputs = inputs; haloRows = 0
        self.rowPtr = rowPtr; self.slot = slot; self.values = values
        self.rowSlot = rowSlot ?? (0..<rows).map { Int32($0) }
        halo = nil; comm = nil
    }

    /// Collective. The operator of this rank's rows of a distributed graph: `graph` holds the rows this
    /// rank owns (global column ids = global input rows, laid out as `layout`); output row i is input
    /// row i (the graph is square). Columns owned elsewhere become halo slots.
    public init(graph: GraphShard, layout: RowLayout, comm: Communicator) throws {
        let r = comm.rank
        let first = Int64(layout.offsets[r]), n = layout.counts[r]
        precondition(graph.rows == n, "GraphOperator: graph has \(graph.rows) rows, the layout gives rank \(r) \(n)")
        let remote = graph.cols.filter { $0 < first || $0 >= first + Int64(n) }
        let plan = try HaloPlan(needed: remote, layout: layout, comm: comm)
        var s = [Int32](repeating: 0, count: graph.nnz)
        for e in 0..<graph.nnz {
            let c = graph.cols[e]
            s[e] = c >= first && c < first + Int64(n) ? Int32(c - first) : Int32(n + plan.index(of: c)!)
        }
        rows = n; localInputs = n; haloRows = plan.rows.count
        rowPtr = graph.rowPtr.map(Int.init); slot = s; values = graph.values
        rowSlot = (0..<n).map { Int32($0) }
        halo = plan; self.comm = comm
    }

    /// Collective (when distributed). The halo input rows of `x` (localInputs × width): haloRows × width.
    public func fetchHalo(_ x: Tensor) throws -> [Float] {
        precondition(x.rows == localInputs, "GraphOperator: input has \(x.rows) rows, expected \(localInputs)")
        guard let halo else { return [] }
        return try halo.fetch(UnsafeBufferPointer(start: x.pointer, count: x.count), width: x.cols)
    }

    /// out[i] = Σ_e values[e]·in[slot[e]] (local; `halo` from `fetchHalo`). `out` is rows × width.
    public func apply(_ x: UnsafePointer<Float>, halo h: [Float], width w: Int, into out: UnsafeMutablePointer<Float>) {
        h.withUnsafeBufferPointer { hp in
            for i in 0..<rows {
                let o = out + i * w
                o.update(repeating: 0, count: w)
                for e in rowPtr[i]..<rowPtr[i + 1] {
                    let s = Int(slot[e]), v = values[e]
                    let src = s < localInputs ? x + s * w : hp.baseAddress! + (s - localInputs) * w
                    for j in 0..<w { o[j] += v * src[j] }
                }
            }
        }
    }

    /// Collective (when distributed); the adjoint of `apply`: gIn[slot[e]] += values[e]·g[i]. The local
    /// slots' part is added into `gx` (localInputs × width); the halo slots' part goes to the rows'
    /// owners and is added into their `gx` (every rank calls this in the same backward step).
    public func applyTranspose(_ g: UnsafePointer<Float>, width w: Int, into gx: UnsafeMutablePointer<Float>) throws {
        var gh = [Float](repeating: 0, count: haloRows * w)
        gh.withUnsafeMutableBufferPointer { hp in
            for i in 0..<rows {
                let gi = g + i * w
                for e in rowPtr[i]..<rowPtr[i + 1] {
                    let s = Int(slot[e]), v = values[e]
                    let dst = s < localInputs ? gx + s * w : hp.baseAddress! + (s - localInputs) * w
                    for j in 0..<w { dst[j] += v * gi[j] }
                }
            }
        }
        if let halo { try gh.withUnsafeBufferPointer { try halo.accumulate($0, width: w, into: gx) } }
    }

    /// Runs `body`, ending the whole job if it throws (for collective work inside a backward pass,
    /// which cannot throw: an MPI failure there leaves no rank able to continue anyway).
    func mustSucceed(_ body: () throws -> Void) {
        if let comm { comm.orAbort(body) } else {
            do { try body() } catch { preconditionFailure("local graph operator failed: \(error)") }
        }
    }
}

extension GraphShard {
    /// Collective. Gᵀ: every edge i → j (value v) becomes j → i at the owner of j (one alltoallv);
    /// columns sorted within each row.
    public func transposed(layout: RowLayout, comm: Communicator) throws -> GraphShard {
        let first = Int64(layout.offsets[comm.rank])
        var ids = [[Int64]](repeating: [], count: comm.size), vals = [[Float]](repeating: [], count: comm.size)
        for i in 0..<rows {
            for e in Int(rowPtr[i])..<Int(rowPtr[i + 1]) {
                let o = layout.owner(ofGlobal: Int(cols[e])).rank
                ids[o].append(cols[e]); ids[o].append(first + Int64(i)); vals[o].append(values[e])
            }
        }
        let (rIds, _) = try comm.alltoallv(ids.flatMap { $0 }, sendCounts: ids.map(\.count))
        let (rVals, _) = try comm.alltoallv(vals.flatMap { $0 }, sendCounts: vals.map(\.count))
        let n = layout.counts[comm.rank]
        var perRow = [[(Int64, Float)]](repeating: [], count: n)
        for e in 0..<rVals.count { perRow[Int(rIds[2 * e] - first)].append((rIds[2 * e + 1], rVals[e])) }
        var rp = [Int64](repeating: 0, count: n + 1)
        var c: [Int64] = [], v: [Float] = []
        c.reserveCapacity(rVals.count); v.reserveCapacity(rVals.count)
        for i in 0..<n {
            for (col, val) in perRow[i].sorted(by: { $0.0 < $1.0 }) { c.append(col); v.append(val) }
            rp[i + 1] = Int64(c.count)
        }
        return GraphShard(rowPtr: rp, cols: c, values: v)
    }

    /// A + I where the diagonal is missing (existing diagonal entries are kept as they are), as
    /// PyTorch Geometric's `add_remaining_self_loops`.
    public func addingRemainingSelfLoops(layout: RowLayout, rank: Int) -> GraphShard {
        let first = Int64(layout.offsets[rank])
        var rp = [Int64](repeating: 0, count: rows + 1)
        var c: [Int64] = [], v: [Float] = []
        for i in 0..<rows {
            let me = first + Int64(i)
            var placed = false
            for e in Int(rowPtr[i])..<Int(rowPtr[i + 1]) {
                if !placed && cols[e] >= me {
                    if cols[e] != me { c.append(me); v.append(1) }
                    placed = true
                }
                c.append(cols[e]); v.append(values[e])
            }
            if !placed { c.append(me); v.append(1) }
            rp[i + 1] = Int64(c.count)
        }
        return GraphShard(rowPtr: rp, cols: c, values: v)
    }
}

/// The normalised operators of PyTorch Geometric's graph layers for a directed graph given as rows
/// (edge i → j when j is in row i: source i, target j; messages flow from source to target).
public enum GraphNormalization {
    /// TAGConv's D^−½ A D^−½ (gcn_norm without self loops): out_j = Σ_{i → j} x_i / √(d_i d_j) with d
    /// the in-degree (PyG counts degrees at the target), i.e. the symmetrically normalised Aᵀ. Collective.
    public static func tagConv(_ a: GraphShard, layout: RowLayout, comm: Communicator) throws -> GraphOperator {
        let t = try a.transposed(layout: layout, comm: comm)
        return try GraphOperator(graph: try t.symmetricNormalized(selfLoops: false, layout: layout, comm: comm), layout: layout, comm: comm)
    }

    /// GCNConv's D^−½ (A + I) D^−½ with the remaining self loops added, degrees at the target. Collective.
    public static func gcn(_ a: GraphShard, layout: RowLayout, comm: Communicator) throws -> GraphOperator {
        let t = try a.transposed(layout: layout, comm: comm).addingRemainingSelfLoops(layout: layout, rank: comm.rank)
        return try GraphOperator(graph: try t.symmetricNormalized(selfLoops: false, layout: layout, comm: comm), layout: layout, comm: comm)
    }

    /// D^−1 A (each row sums to 1): out_i = mean over row i's columns, weighted. Collective.
    public static func rowNormalized(_ a: GraphShard, layout: RowLayout, comm: Communicator) throws -> GraphOperator {
        try GraphOperator(graph: a.rowNormalized(), layout: layout, comm: comm)
    }
}
