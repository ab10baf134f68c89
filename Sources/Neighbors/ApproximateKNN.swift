import Clustering
import Collectives
import TensorCore

/// Approximate kNN graph by a distributed inverted-file index (IVF) on a k-means quantiser.
///
/// 1. A k-means quantiser with `lists` centroids (default √N) is trained on a sample of the cells.
/// 2. Each cell goes to its nearest centroid's list; list c lives on rank c mod P (one alltoallv).
/// 3. Each cell is a query to its `probes` nearest lists; it is sent once to each rank owning one
///    of them (one alltoallv), searched there exactly by GEMM against those lists' members, and the
///    k best per (query, rank) come back (one alltoallv) to be merged.
/// Data moved per rank: its shard twice plus k candidates per query and probed rank. No rank ever
/// holds more than its shard, its lists and the queries sent to it.
public struct ApproximateKNN {
    public var lists: Int?
    public var probes: Int
    public var trainingPointsPerList: Int
    public var quantiserIterations: Int
    public var seed: UInt64

    public init(lists: Int? = nil, probes: Int = 10, trainingPointsPerList: Int = 40, quantiserIterations: Int = 12,
                seed: UInt64 = 0) {
        self.lists = lists; self.probes = probes; self.trainingPointsPerList = trainingPointsPerList
        self.quantiserIterations = quantiserIterations; self.seed = seed
    }

    public func build(_ x: Tensor, k: Int, comm: Communicator) throws -> KNNResult {
        let n = x.rows, d = x.cols
        let layout = try RowLayout(comm: comm, localCount: n)
        guard k >= 1 && k < layout.total else {
            throw CollectiveUsageError("kNN with k = \(k) needs more than k cells; there are \(layout.total)")
        }
        let nlist = max(1, min(lists ?? Int(Double(layout.total).squareRoot().rounded()), layout.total / 2))
        let nprobe = min(probes, nlist)
        let kFinal = k
        let k = KNNRefine.searchWidth(k: kFinal, total: layout.total)
        let p = comm.size, me = comm.rank
        let myFirst = Int64(layout.offsets[me])
        let xs = x.scalars

        // 1. Quantiser from a strided sample (the same global rows whatever the rank count).
        let sampleTotal = min(layout.total, nlist * trainingPointsPerList)
        let stride = max(1, layout.total / sampleTotal)
        var sample: [Float] = []
        var g = (layout.offsets[me] + stride - 1) / stride * stride
        while g < layout.offsets[me] + n { let l = g - layout.offsets[me]; sample.append(contentsOf: xs[(l * d)..<(l * d + d)]); g += stride }
        let km = KMeans(k: nlist, restarts: 1, maxIterations: quantiserIterations, tolerance: 1e-3, seed: seed,
                        initialisation: .random)
        let centroids = try km.fit(PointShard(values: sample, count: sample.count / d, dim: d), comm: comm).centres

        // 2. Each cell's `nprobe` nearest lists (the first is its own).
        let probe = TopK(rows: n, k: nprobe)
        var tile: [Float] = []
        let cnorm = centroids.withUnsafeBufferPointer { rowSquaredNorms($0.baseAddress!, rows: nlist, dim: d) }
        let xnorm = xs.withUnsafeBufferPointer { rowSquaredNorms($0.baseAddress!, rows: n, dim: d) }
        if n > 0 {
            xs.withUnsafeBufferPointer { xp in
                centroids.withUnsafeBufferPointer { cp in
                    cnorm.withUnsafeBufferPointer { cn in
                        searchBlock(queries: xp.baseAddress!, queryNorms: xnorm, nq: n, block: cp.baseAddress!,
                                    blockNorms: cn.baseAddress!, nc: nlist, dim: d, top: probe, tile: &tile)
                    }
                }
            }
        }
        func ownerOf(list c: Int64) -> Int { Int(c) % p }
        let probeIds = probe.ids

        // 3. Members to list owners: [gid, list] and the vector.
        var memberIds = [[Int64]](repeating: [], count: p), memberVecs = [[Float]](repeating: [], count: p)
        for i in 0..<n {
            let c = probeIds[i * nprobe]
            let o = ownerOf(list: c)
            memberIds[o].append(myFirst + Int64(i)); memberIds[o].append(c)
            memberVecs[o].append(contentsOf: xs[(i * d)..<(i * d + d)])
        }
        let (mIds, _) = try comm.alltoallv(memberIds.flatMap { $0 }, sendCounts: memberIds.map(\.count))
        let (mVecs, _) = try comm.alltoallv(memberVecs.flatMap { $0 }, sendCounts: memberVecs.map(\.count))
        memberIds = []; memberVecs = []
        // Group members by list (counting sort): contiguous vectors and ids per owned list.
        let mCount = mIds.count / 2
        var listStart = [Int](repeating: 0, count: nlist + 1)
        for m in 0..<mCount { listStart[Int(mIds[2 * m + 1]) + 1] += 1 }
        for c in 0..<nlist { listStart[c + 1] += listStart[c] }
        var fill = listStart
        var members = [Float](repeating: 0, count: mCount * d)
        var membersId = [Int64](repeating: 0, count: mCount)
        for m in 0..<mCount {
            let c = Int(mIds[2 * m + 1]); let slot = fill[c]; fill[c] += 1
            membersId[slot] = mIds[2 * m]
            for j in 0..<d { members[slot * d + j] = mVecs[m * d + j] }
        }
        let memberNorms = members.withUnsafeBufferPointer { rowSquaredNorms($0.baseAddress!, rows: mCount, dim: d) }

        // 4. Queries to the owners of their probed lists: header [gid, m, list…], then the vector.
        var qHead = [[Int64]](repeating: [], count: p), qVecs = [[Float]](repeating: [], count: p)
        var sentTo = [[Int]](repeating: [], count: p)  // local query index, in send order, per destination
        var lists = [Int64](repeating: 0, count: nprobe)
        for i in 0..<n {
            for o in 0..<p {
                var m = 0
                for t in 0..<nprobe where probeIds[i * nprobe + t] >= 0 && ownerOf(list: probeIds[i * nprobe + t]) == o {
                    lists[m] = probeIds[i * nprobe + t]; m += 1
                }
                if m == 0 { continue }
                qHead[o].append(myFirst + Int64(i)); qHead[o].append(Int64(m)); qHead[o].append(contentsOf: lists[0..<m])
                qVecs[o].append(contentsOf: xs[(i * d)..<(i * d + d)])
                sentTo[o].append(i)
            }
        }
        let (rHead, _) = try comm.alltoallv(qHead.flatMap { $0 }, sendCounts: qHead.map(\.count))
        let (rVecs, rVecCounts) = try comm.alltoallv(qVecs.flatMap { $0 }, sendCounts: qVecs.map(\.count))
        qHead = []; qVecs = []
        let nq = rVecs.count / d
        // Parse: per query its gid and lists; per list the queries probing it.
        var qGid = [Int64](repeating: 0, count: nq)
        var byList = [[Int32]](repeating: [], count: nlist)
        var pos = 0
        for q in 0..<nq {
            qGid[q] = rHead[pos]; let m = Int(rHead[pos + 1])
            for t in 0..<m { byList[Int(rHead[pos + 2 + t])].append(Int32(q)) }
            pos += 2 + m
        }
        // 5. Exact search of each owned list against the queries probing it.
        let found = TopK(rows: nq, k: k)
        var qBuf: [Float] = [], qNorm: [Float] = [], qIdBuf: [Int64] = []
        var local = TopK(rows: 0, k: k)
        for c in 0..<nlist where !byList[c].isEmpty && listStart[c + 1] > listStart[c] {
            let qs = byList[c]
            let rows = qs.count
            qBuf.removeAll(keepingCapacity: true); qIdBuf.removeAll(keepingCapacity: true)
            for q in qs { qBuf.append(contentsOf: rVecs[(Int(q) * d)..<(Int(q) * d + d)]); qIdBuf.append(qGid[Int(q)]) }
            qNorm = qBuf.withUnsafeBufferPointer { rowSquaredNorms($0.baseAddress!, rows: rows, dim: d) }
            let lo = listStart[c], cnt = listStart[c + 1] - lo
            local = TopK(rows: rows, k: k)
            // Seed each query's threshold with what it already has from other lists.
            for (r, q) in qs.enumerated() { local.copyRow(r, from: found, row: Int(q)) }
            qBuf.withUnsafeBufferPointer { qp in
                members.withUnsafeBufferPointer { mp in
                    membersId.withUnsafeBufferPointer { idp in
                        qIdBuf.withUnsafeBufferPointer { qid in
                            memberNorms.withUnsafeBufferPointer { mn in
                                searchBlock(queries: qp.baseAddress!, queryNorms: qNorm, nq: rows,
                                            block: mp.baseAddress! + lo * d, blockNorms: mn.baseAddress! + lo, nc: cnt,
                                            dim: d, colIds: idp.baseAddress! + lo, rowIds: qid.baseAddress!,
                                            top: local, tile: &tile)
                            }
                        }
                    }
                }
            }
            for (r, q) in qs.enumerated() { found.copyRow(Int(q), from: local, row: r) }
        }
        // 6. Candidates back to each query's home, in the order the queries came.
        let backCounts = rVecCounts.map { $0 / d * k }
        let (retIds, _) = try comm.alltoallv(found.ids, sendCounts: backCounts)
        let (retDist, _) = try comm.alltoallv(found.distances, sendCounts: backCounts)
        let result = TopK(rows: n, k: k)
        var off = 0
        for o in 0..<p {
            for i in sentTo[o] {
                result.merge(row: i, distances: retDist[off..<(off + k)], ids: retIds[off..<(off + k)])
                off += k
            }
        }
        return try KNNRefine.refine(x, candidates: result, k: kFinal, layout: layout, comm: comm)
    }
}
