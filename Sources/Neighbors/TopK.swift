import TensorCore

/// Per-row k smallest (distance, id) pairs, kept sorted ascending; unfilled slots hold (+∞, −1).
/// Storage is two raw buffers owned by this object (no copy-on-write in the hot loops).
public final class TopK: @unchecked Sendable {
    public let k: Int
    public let rows: Int
    @usableFromInline let dist: UnsafeMutablePointer<Float>
    @usableFromInline let idp: UnsafeMutablePointer<Int64>

    public init(rows: Int, k: Int) {
        self.k = k; self.rows = rows
        dist = .allocate(capacity: max(rows * k, 1))
        idp = .allocate(capacity: max(rows * k, 1))
        dist.initialize(repeating: .infinity, count: max(rows * k, 1))
        idp.initialize(repeating: -1, count: max(rows * k, 1))
    }

    /// Lists given as arrays (rows × k each, sorted ascending per row).
    public convenience init(rows: Int, k: Int, distances: [Float], ids: [Int64]) {
        self.init(rows: rows, k: k)
        precondition(distances.count == rows * k && ids.count == rows * k)
        distances.withUnsafeBufferPointer { dist.update(from: $0.baseAddress!, count: rows * k) }
        ids.withUnsafeBufferPointer { idp.update(from: $0.baseAddress!, count: rows * k) }
    }

    deinit { dist.deallocate(); idp.deallocate() }

    public var distances: [Float] { Array(UnsafeBufferPointer(start: dist, count: rows * k)) }
    public var ids: [Int64] { Array(UnsafeBufferPointer(start: idp, count: rows * k)) }

    /// The current k-th smallest distance of `row` (the admission threshold).
    @inline(__always) public func threshold(_ row: Int) -> Float { dist[row * k + k - 1] }

    /// Inserts (d, id) into `row` if it beats the threshold and `id` is not already there.
    @inline(__always)
    public func insertUnique(row: Int, distance d: Float, id: Int64) {
        let base = row * k
        guard d < dist[base + k - 1] else { return }
        for j in 0..<k where idp[base + j] == id { return }
        insert(row: row, distance: d, id: id)
    }

    /// Inserts (d, id) into `row` if it beats the threshold. The caller guarantees `id` is not in the
    /// row already (each candidate pair is offered once).
    @inline(__always)
    public func insert(row: Int, distance d: Float, id: Int64) {
        let base = row * k
        guard d < dist[base + k - 1] else { return }
        var pos = k - 1
        while pos > 0 && dist[base + pos - 1] > d {
            dist[base + pos] = dist[base + pos - 1]; idp[base + pos] = idp[base + pos - 1]; pos -= 1
        }
        dist[base + pos] = d; idp[base + pos] = id
    }

    /// Merges row `from` of another list into row `row` of this one.
    public func merge(row: Int, from other: TopK, row o: Int) {
        for j in 0..<other.k where other.idp[o * other.k + j] >= 0 {
            insert(row: row, distance: other.dist[o * other.k + j], id: other.idp[o * other.k + j])
        }
    }

    /// Merges a candidate list for `row` (any order).
    public func merge(row: Int, distances ds: ArraySlice<Float>, ids cand: ArraySlice<Int64>) {
        for (d, i) in zip(ds, cand) where i >= 0 { insertUnique(row: row, distance: d, id: i) }
    }

    /// Replaces every distance by its square root (squared → Euclidean).
    public func takeSquareRoots() { for i in 0..<(rows * k) { dist[i] = dist[i].squareRoot() } }

    /// Copies row `o` of `other` over row `row`.
    public func copyRow(_ row: Int, from other: TopK, row o: Int) {
        (dist + row * k).update(from: other.dist + o * k, count: k)
        (idp + row * k).update(from: other.idp + o * k, count: k)
    }

    /// Scans a tile of partial squared distances: for query row `r0 + i` and candidate column j,
    /// the squared distance is `tile[i, j] + colNorm[j] + rowNorm[i]`, where the tile holds −2·q·x.
    /// Candidate j has id `colIds[j]` if given, else `firstId + j`; a candidate whose id equals the
    /// query's own id (`rowIds[i]`, or `selfFirstId + i`) is skipped.
    func scan(tile: UnsafePointer<Float>, ld: Int, rows nq: Int, cols nc: Int, firstRow r0: Int,
                       rowNorm: UnsafePointer<Float>, colNorm: UnsafePointer<Float>,
                       firstId: Int64, colIds: UnsafePointer<Int64>? = nil,
                       selfFirstId: Int64? = nil, rowIds: UnsafePointer<Int64>? = nil) {
        for i in 0..<nq {
            let row = r0 + i
            let qn = rowNorm[i]
            var thr = threshold(row) - qn
            let p = tile + i * ld
            let selfId = rowIds.map { $0[i] } ?? selfFirstId.map { $0 + Int64(i) } ?? -1
            var j = 0
            var thrV = SIMD8<Float>(repeating: thr)
            while j + 8 <= nc {
                let v = UnsafeRawPointer(p + j).loadUnaligned(as: SIMD8<Float>.self)
                    + UnsafeRawPointer(colNorm + j).loadUnaligned(as: SIMD8<Float>.self)
                if anyLane(v .< thrV) {
                    for l in 0..<8 where v[l] < thr {
                        let id = colIds.map { $0[j + l] } ?? firstId + Int64(j + l)
                        if id == selfId { continue }
                        insert(row: row, distance: max(v[l] + qn, 0), id: id)
                        thr = threshold(row) - qn
                    }
                    thrV = SIMD8<Float>(repeating: thr)
                }
                j += 8
            }
            while j < nc {
                let v = p[j] + colNorm[j]
                if v < thr {
                    let id = colIds.map { $0[j] } ?? firstId + Int64(j)
                    if id != selfId {
                        insert(row: row, distance: max(v + qn, 0), id: id)
                        thr = threshold(row) - qn
                    }
                }
                j += 1
            }
        }
    }
}

/// One pass over a tile of −2·q·x for a symmetric distance: updates the rows' lists (candidates are
/// the columns) and the columns' lists (candidates are the rows) at once, so each unordered pair is
/// computed once. Row i has id `rowIdFirst + i` and squared norm `rowNorm[i]`; column j likewise.
/// On a `diagonal` tile (rows and columns are the same points) only pairs j > i are taken.
func scanSymmetric(tile: UnsafePointer<Float>, ld: Int, rows nr: Int, cols nc: Int, diagonal: Bool,
                   rowTop: TopK, rowFirst: Int, rowIdFirst: Int64, rowNorm: UnsafePointer<Float>,
                   colTop: TopK, colFirst: Int, colIdFirst: Int64, colNorm: UnsafePointer<Float>,
                   colAdj: inout [Float]) {
    if colAdj.count < nc { colAdj = [Float](repeating: 0, count: nc) }
    colAdj.withUnsafeMutableBufferPointer { ca in
        let cadj = ca.baseAddress!
        for j in 0..<nc { cadj[j] = colTop.threshold(colFirst + j) - colNorm[j] }
        for i in 0..<nr {
            let qn = rowNorm[i]
            let rid = rowIdFirst + Int64(i)
            var radj = rowTop.threshold(rowFirst + i) - qn
            var radjV = SIMD8<Float>(repeating: radj)
            let qnV = SIMD8<Float>(repeating: qn)
            let p = tile + i * ld
            var j = 0
            if diagonal {
                // Scalar up to the next multiple of 8 past the diagonal, then vectors.
                j = i + 1
                while j < nc && j % 8 != 0 {
                    let rv = p[j] + colNorm[j], cv = p[j] + qn
                    let d2 = max(rv + qn, 0)
                    if rv < radj {
                        rowTop.insert(row: rowFirst + i, distance: d2, id: colIdFirst + Int64(j))
                        radj = rowTop.threshold(rowFirst + i) - qn
                    }
                    if cv < cadj[j] {
                        colTop.insert(row: colFirst + j, distance: d2, id: rid)
                        cadj[j] = colTop.threshold(colFirst + j) - colNorm[j]
                    }
                    j += 1
                }
                radjV = SIMD8<Float>(repeating: radj)
            }
            while j + 8 <= nc {
                let t = UnsafeRawPointer(p + j).loadUnaligned(as: SIMD8<Float>.self)
                let xn = UnsafeRawPointer(colNorm + j).loadUnaligned(as: SIMD8<Float>.self)
                let cthr = UnsafeRawPointer(cadj + j).loadUnaligned(as: SIMD8<Float>.self)
                let rv = t + xn, cv = t + qnV
                if anyLane((rv .< radjV) .| (cv .< cthr)) {
                    for l in 0..<8 {
                        let cid = colIdFirst + Int64(j + l)
                        if cid == rid { continue }
                        let d2 = max(rv[l] + qn, 0)
                        if rv[l] < radj {
                            rowTop.insert(row: rowFirst + i, distance: d2, id: cid)
                            radj = rowTop.threshold(rowFirst + i) - qn
                        }
                        if cv[l] < cadj[j + l] {
                            colTop.insert(row: colFirst + j + l, distance: d2, id: rid)
                            cadj[j + l] = colTop.threshold(colFirst + j + l) - colNorm[j + l]
                        }
                    }
                    radjV = SIMD8<Float>(repeating: radj)
                }
                j += 8
            }
            while j < nc {
                let cid = colIdFirst + Int64(j)
                if cid != rid {
                    let rv = p[j] + colNorm[j], cv = p[j] + qn
                    let d2 = max(rv + qn, 0)
                    if rv < radj {
                        rowTop.insert(row: rowFirst + i, distance: d2, id: cid)
                        radj = rowTop.threshold(rowFirst + i) - qn
                    }
                    if cv < cadj[j] {
                        colTop.insert(row: colFirst + j, distance: d2, id: rid)
                        cadj[j] = colTop.threshold(colFirst + j) - colNorm[j]
                    }
                }
                j += 1
            }
        }
    }
}

/// Squared L2 norm of each row of a row-major n × d block.
func rowSquaredNorms(_ x: UnsafePointer<Float>, rows n: Int, dim d: Int) -> [Float] {
    var out = [Float](repeating: 0, count: n)
    for i in 0..<n {
        var s: Float = 0
        let r = x + i * d
        for j in 0..<d { s += r[j] * r[j] }
        out[i] = s
    }
    return out
}

/// Updates `top` with all candidates of a block for the queries `q` (nq × d), tile by tile through
/// sgemm so the distance tile stays in cache. Candidate j has id `colIds[j]` if given, else
/// `firstId + j`; `blockNorms` points at candidate 0's squared norm. A candidate equal to the query's
/// own id (`rowIds[i]`, or `selfFirstId + i`) is skipped.
func searchBlock(queries q: UnsafePointer<Float>, queryNorms qn: [Float], nq: Int,
                 block x: UnsafePointer<Float>, blockNorms xn: UnsafePointer<Float>, nc: Int, dim d: Int,
                 firstId: Int64 = 0, colIds: UnsafePointer<Int64>? = nil,
                 selfFirstId: Int64? = nil, rowIds: UnsafePointer<Int64>? = nil, top: TopK, tile: inout [Float]) {
    let tq = 256, tc = 1024
    if tile.count < tq * tc { tile = [Float](repeating: 0, count: tq * tc) }
    tile.withUnsafeMutableBufferPointer { t in
        qn.withUnsafeBufferPointer { qnp in
            var c0 = 0
            while c0 < nc {
                let cw = min(tc, nc - c0)
                var r0 = 0
                while r0 < nq {
                    let rh = min(tq, nq - r0)
                    Linalg.sgemm(transA: false, transB: true, m: rh, n: cw, k: d, alpha: -2,
                                 a: q + r0 * d, lda: d, b: x + c0 * d, ldb: d, beta: 0, c: t.baseAddress!, ldc: cw)
                    top.scan(tile: t.baseAddress!, ld: cw, rows: rh, cols: cw, firstRow: r0,
                             rowNorm: qnp.baseAddress! + r0, colNorm: xn + c0,
                             firstId: firstId + Int64(c0), colIds: colIds.map { $0 + c0 },
                             selfFirstId: selfFirstId.map { $0 + Int64(r0) }, rowIds: rowIds.map { $0 + r0 })
                    r0 += rh
                }
                c0 += cw
            }
        }
    }
}

/// True if any lane of the mask is set. (The standard library's `any` reduces lane by lane through a
/// non-inlined generic call; this folds halves with vector ORs.)
@inline(__always)
func anyLane(_ m: SIMDMask<SIMD8<Int32>>) -> Bool {
    let v = unsafeBitCast(m, to: SIMD8<Int32>.self)
    let h = v.lowHalf | v.highHalf
    let q = h.lowHalf | h.highHalf
    return (q[0] | q[1]) != 0
}
