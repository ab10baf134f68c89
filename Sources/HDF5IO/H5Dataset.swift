import CHDF5

// Datasets: shape and storage, whole and hyperslab (row range, row runs) reads and writes,
// independent or collective on MPI-IO files, numbers, bools and strings.

public final class H5Dataset: H5Object, @unchecked Sendable {
    /// Extent of each dimension (empty for a scalar dataset).
    public let shape: [Int]
    /// Element type as stored.
    public let typeClass: H5TypeClass
    let parallelFile: Bool

    init(id: hid_t, path: String, fileName: String, parallelFile: Bool) throws {
        let space = H5Dget_space(id)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        var dims = [hsize_t](repeating: 0, count: Swift.max(rank, 1))
        if rank > 0 { H5Sget_simple_extent_dims(space, &dims, nil) }
        shape = rank > 0 ? dims.map { Int($0) } : []
        let t = H5Dget_type(id)
        typeClass = H5TypeClass.of(type: t)
        H5Tclose(t)
        self.parallelFile = parallelFile
        super.init(id: id, path: path, fileName: fileName, closer: { H5Dclose($0) })
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// Chunk extents, or nil when contiguous/compact.
    public var chunkShape: [Int]? {
        let dcpl = H5Dget_create_plist(id)
        defer { H5Pclose(dcpl) }
        guard H5Pget_layout(dcpl) == H5D_CHUNKED else { return nil }
        var c = [hsize_t](repeating: 0, count: 8)
        let n = Int(H5Pget_chunk(dcpl, 8, &c))
        return n > 0 ? c.prefix(n).map { Int($0) } : nil
    }

    /// Bytes the dataset occupies in the file.
    public var storageBytes: Int { Int(H5Dget_storage_size(id)) }

    func transferList(_ mode: H5Transfer) throws -> hid_t {
        guard parallelFile else { return ch5_p_default() }
        let dxpl = try h5id(H5Pcreate(ch5_p_dataset_xfer()), "create transfer list")
        try h5(H5Pset_dxpl_mpio(dxpl, mode == .collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT),
               "set MPI-IO transfer mode")
        return dxpl
    }

    func releaseTransfer(_ dxpl: hid_t) { if dxpl != ch5_p_default() { H5Pclose(dxpl) } }

    /// A file dataspace selecting rows [start, start+count) of dimension 0 (all of the others).
    func slabSpace(start: Int, count: Int) throws -> (file: hid_t, mem: hid_t) {
        let fspace = try h5id(H5Dget_space(id), "get dataspace of '\(path)'")
        let rest = shape.dropFirst().map { hsize_t($0) }
        if count == 0 {
            H5Sselect_none(fspace)
            var zero: [hsize_t] = [1]
            let m = H5Screate_simple(1, &zero, nil)
            H5Sselect_none(m)
            return (fspace, m)
        }
        var st = [hsize_t(start)] + rest.map { _ in 0 }
        var ct = [hsize_t(count)] + rest
        do {
            try h5(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &st, nil, &ct, nil),
                   "select rows \(start)..<\(start + count) of '\(path)' in \(fileName)")
        } catch {
            H5Sclose(fspace)
            throw error
        }
        var mdims = [hsize_t(count * rest.reduce(1, { $0 * Int($1) }))]
        let m = H5Screate_simple(1, &mdims, nil)
        return (fspace, m)
    }

    func checkRange(_ start: Int, _ count: Int) throws {
        guard !shape.isEmpty else {
            throw HDF5Error(operation: "'\(path)' in \(fileName) is a scalar; cannot select rows", stack: "")
        }
        guard start >= 0, count >= 0, start + count <= shape[0] else {
            throw HDF5Error(operation: "rows \(start)..<\(start + count) outside '\(path)' (\(shape[0]) rows) in \(fileName)",
                            stack: "")
        }
    }

    func requireNumeric() throws {
        switch typeClass {
        case .integer, .float: return
        default:
            throw HDF5Error(operation: "'\(path)' in \(fileName) holds \(typeClass.name), not numbers", stack: "")
        }
    }

    /// Reads the whole dataset converted to `T` (row-major).
    public func readAll<T: H5Scalar>(as: T.Type = T.self, transfer: H5Transfer = .independent) throws -> [T] {
        try requireNumeric()
        let dxpl = try transferList(transfer)
        defer { releaseTransfer(dxpl) }
        if count == 0 && transfer == .independent { return [] }
        // Uninitialised storage: HDF5 fills it (no zero-fill pass, no per-element generic copy).
        return try [T](unsafeUninitializedCapacity: Swift.max(count, 1)) { buf, n in
            adviseHugePages(UnsafeMutableRawPointer(buf.baseAddress), count * MemoryLayout<T>.stride)
            try h5(H5Dread(id, memType(T.self), ch5_s_all(), ch5_s_all(), dxpl, buf.baseAddress),
                   "read '\(path)' in \(fileName)")
            n = count
        }
    }

    /// Native memory type for T; enums (h5py bools) are read through their base integer type.
    func memType<T: H5Scalar>(_: T.Type) -> hid_t { T.h5NativeType }

    /// Reads rows [start, start+count) along dimension 0 (for a 1-D dataset: elements), row-major.
    public func read<T: H5Scalar>(rows: Range<Int>, as: T.Type = T.self,
                                 transfer: H5Transfer = .independent) throws -> [T] {
        try requireNumeric()
        try checkRange(rows.lowerBound, rows.count)
        let rowWidth = shape.dropFirst().reduce(1, *)
        let total = rows.count * rowWidth
        if rows.isEmpty && transfer == .independent { return [] }
        let (f, m) = try slabSpace(start: rows.lowerBound, count: rows.count)
        defer { H5Sclose(f); H5Sclose(m) }
        let dxpl = try transferList(transfer)
        defer { releaseTransfer(dxpl) }
        return try [T](unsafeUninitializedCapacity: Swift.max(total, 1)) { buf, n in
            adviseHugePages(UnsafeMutableRawPointer(buf.baseAddress), total * MemoryLayout<T>.stride)
            try h5(H5Dread(id, memType(T.self), m, f, dxpl, buf.baseAddress),
                   "read rows \(rows.lowerBound)..<\(rows.upperBound) of '\(path)' in \(fileName)")
            n = total
        }
    }

    /// Reads into caller-provided storage (avoids an extra copy for large slabs).
    public func read<T: H5Scalar>(rows: Range<Int>, into buffer: UnsafeMutableBufferPointer<T>,
                                 transfer: H5Transfer = .independent) throws {
        try requireNumeric()
        try checkRange(rows.lowerBound, rows.count)
        let rowWidth = shape.dropFirst().reduce(1, *)
        guard buffer.count >= rows.count * rowWidth else {
            throw HDF5Error(operation: "buffer too small for rows of '\(path)'", stack: "")
        }
        if rows.isEmpty && transfer == .independent { return }
        let (f, m) = try slabSpace(start: rows.lowerBound, count: rows.count)
        defer { H5Sclose(f); H5Sclose(m) }
        let dxpl = try transferList(transfer)
        defer { releaseTransfer(dxpl) }
        try h5(H5Dread(id, T.h5NativeType, m, f, dxpl, buffer.baseAddress),
               "read rows \(rows.lowerBound)..<\(rows.upperBound) of '\(path)' in \(fileName)")
    }

    /// Reads a boolean dataset (h5py's int8 enum, or any integer: non-zero is true).
    public func readBools(rows: Range<Int>? = nil, transfer: H5Transfer = .independent) throws -> [Bool] {
        let range = rows ?? 0..<(shape.first ?? 1)
        switch typeClass {
        case .integer, .float:
            return try read(rows: range, as: Int64.self, transfer: transfer).map { $0 != 0 }
        case .enumeration(let bytes) where bytes == 1:
            try checkRange(range.lowerBound, range.count)
            var out = [Int8](repeating: 0, count: range.count)
            if range.isEmpty && transfer == .independent { return [] }
            let (f, m) = try slabSpace(start: range.lowerBound, count: range.count)
            defer { H5Sclose(f); H5Sclose(m) }
            let dxpl = try transferList(transfer)
            defer { releaseTransfer(dxpl) }
            let ft = H5Dget_type(id)
            defer { H5Tclose(ft) }
            try out.withUnsafeMutableBytes { b in
                try h5(H5Dread(id, ft, m, f, dxpl, b.baseAddress), "read '\(path)' in \(fileName)")
            }
            return out.map { $0 != 0 }
        default:
            throw HDF5Error(operation: "'\(path)' in \(fileName) holds \(typeClass.name), not booleans", stack: "")
        }
    }

    /// Writes the whole dataset (serial file, or every rank passing identical data collectively).
    public func writeAll<T: H5Scalar>(_ values: [T], transfer: H5Transfer = .independent) throws {
        guard values.count == count else {
            throw HDF5Error(operation: "write \(values.count) values into '\(path)' of \(count) elements", stack: "")
        }
        if values.isEmpty { return }
        let dxpl = try transferList(transfer)
        defer { releaseTransfer(dxpl) }
        try h5(H5Dwrite(id, T.h5NativeType, ch5_s_all(), ch5_s_all(), dxpl, values), "write '\(path)' in \(fileName)")
    }

    /// Writes `values` into rows [start, start+rows) along dimension 0. With `.collective`, every
    /// rank of the file must call it (a rank with nothing to write passes an empty array).
    public func write<T: H5Scalar>(_ values: [T], rowStart: Int, transfer: H5Transfer = .collective) throws {
        let rowWidth = shape.dropFirst().reduce(1, *)
        guard rowWidth > 0, values.count % rowWidth == 0 else {
            throw HDF5Error(operation: "write \(values.count) values into rows of width \(rowWidth) of '\(path)'",
                            stack: "")
        }
        let rows = values.count / rowWidth
        try checkRange(rowStart, rows)
        if rows == 0 && transfer == .independent { return }
        let (f, m) = try slabSpace(start: rowStart, count: rows)
        defer { H5Sclose(f); H5Sclose(m) }
        let dxpl = try transferList(transfer)
        defer { releaseTransfer(dxpl) }
        try values.withUnsafeBytes { b in
            try h5(H5Dwrite(id, T.h5NativeType, m, f, dxpl, b.baseAddress ?? UnsafeRawPointer(bitPattern: 8)),
                   "write rows \(rowStart)..<\(rowStart + rows) of '\(path)' in \(fileName)")
        }
    }

    /// Writes `values` into the row runs `runs` (ascending, disjoint ranges along dimension 0),
    /// in one call with a union selection; values hold the runs' rows back to back. With
    /// `.collective` every rank calls it (a rank with no rows passes empty `runs` and values).
    public func write<T: H5Scalar>(_ values: [T], runs: [Range<Int>], transfer: H5Transfer = .collective) throws {
        let rowWidth = shape.dropFirst().reduce(1, *)
        let rows = runs.reduce(0) { $0 + $1.count }
        guard values.count == rows * rowWidth else {
            throw HDF5Error(operation: "write \(values.count) values into \(rows) rows of width \(rowWidth) of '\(path)'",
                            stack: "")
        }
        for r in runs { try checkRange(r.lowerBound, r.count) }
        if rows == 0 && transfer == .independent { return }
        let fspace = try h5id(H5Dget_space(id), "get dataspace of '\(path)'")
        defer { H5Sclose(fspace) }
        let rest = shape.dropFirst().map { hsize_t($0) }
        var first = true
        for r in runs where !r.isEmpty {
            var st = [hsize_t(r.lowerBound)] + rest.map { _ in 0 }
            var ct = [hsize_t(r.count)] + rest
            try h5(H5Sselect_hyperslab(fspace, first ? H5S_SELECT_SET : H5S_SELECT_OR, &st, nil, &ct, nil),
                   "select rows \(r) of '\(path)' in \(fileName)")
            first = false
        }
        var mdims = [hsize_t(Swift.max(values.count, 1))]
        let mspace = H5Screate_simple(1, &mdims, nil)
        defer { H5Sclose(mspace) }
        if first { H5Sselect_none(fspace); H5Sselect_none(mspace) }
        let dxpl = try transferList(transfer)
        defer { releaseTransfer(dxpl) }
        try values.withUnsafeBytes { b in
            try h5(H5Dwrite(id, T.h5NativeType, mspace, fspace, dxpl, b.baseAddress ?? UnsafeRawPointer(bitPattern: 8)),
                   "write \(runs.count) row runs of '\(path)' in \(fileName)")
        }
    }

    /// Reads string elements (variable-length or fixed) in `rows` (all when nil).
    public func readStrings(rows: Range<Int>? = nil, transfer: H5Transfer = .independent) throws -> [String] {
        guard case .string(let variable, let width) = typeClass else {
            throw HDF5Error(operation: "'\(path)' in \(fileName) holds \(typeClass.name), not strings", stack: "")
        }
        let range = rows ?? 0..<(shape.first ?? 1)
        if shape.isEmpty {
            guard range == 0..<1 else { throw HDF5Error(operation: "'\(path)' is a scalar", stack: "") }
        } else {
            try checkRange(range.lowerBound, range.count)
        }
        if range.isEmpty && transfer == .independent { return [] }
        let f: hid_t, m: hid_t
        if shape.isEmpty {
            f = H5Dget_space(id); m = H5Screate(H5S_SCALAR)
        } else {
            (f, m) = try slabSpace(start: range.lowerBound, count: range.count)
        }
        defer { H5Sclose(f); H5Sclose(m) }
        let dxpl = try transferList(transfer)
        defer { releaseTransfer(dxpl) }
        let what = "read strings \(range.lowerBound)..<\(range.upperBound) of '\(path)' in \(fileName)"
        if variable {
            let t = try variableStringType()
            defer { H5Tclose(t) }
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: Swift.max(range.count, 1))
            try h5(H5Dread(id, t, m, f, dxpl, &ptrs), what)
            defer { _ = H5Dvlen_reclaim(t, m, ch5_p_default(), &ptrs) }
            return ptrs.prefix(range.count).map { $0.map { String(cString: $0) } ?? "" }
        } else {
            let ft = H5Dget_type(id)
            defer { H5Tclose(ft) }
            let t = H5Tcopy(ft)
            defer { H5Tclose(t) }
            var buf = [UInt8](repeating: 0, count: Swift.max(width * range.count, 1))
            try h5(H5Dread(id, t, m, f, dxpl, &buf), what)
            return (0..<range.count).map { decodeFixed(buf[($0 * width)..<(($0 + 1) * width)]) }
        }
    }
}

// MARK: compound (record-array) datasets

extension H5Dataset {
    /// The members of a compound element type, in file order, with their type class; nil for other
    /// types. anndata before 0.7 stored obs and var as one compound dataset (a numpy record array).
    public var compoundMembers: [(name: String, type: H5TypeClass)]? {
        let t = H5Dget_type(id)
        defer { H5Tclose(t) }
        guard H5Tget_class(t) == H5T_COMPOUND else { return nil }
        var out: [(String, H5TypeClass)] = []
        for i in 0..<UInt32(Swift.max(H5Tget_nmembers(t), 0)) {
            guard let cname = H5Tget_member_name(t, i) else { continue }
            let name = String(cString: cname)
            H5free_memory(cname)
            let mt = H5Tget_member_type(t, i)
            out.append((name, H5TypeClass.of(type: mt)))
            H5Tclose(mt)
        }
        return out
    }

    /// The file type of member `name` (caller closes it).
    func memberFileType(_ name: String) throws -> hid_t {
        let t = H5Dget_type(id)
        defer { H5Tclose(t) }
        let i = H5Tget_member_index(t, name)
        guard i >= 0 else { throw HDF5Error(operation: "'\(path)' in \(fileName) has no member '\(name)'", stack: "") }
        return H5Tget_member_type(t, UInt32(i))
    }

    /// Reads member `name` of a 1-D compound dataset's elements `rows` with the memory type `memberType`
    /// (one member at offset 0: HDF5 picks that field out of each record and converts it).
    func readMember(_ name: String, memberType: hid_t, size: Int, rows: Range<Int>) throws -> [UInt8] {
        try checkRange(rows.lowerBound, rows.count)
        let mem = try h5id(H5Tcreate(H5T_COMPOUND, size), "create compound memory type")
        defer { H5Tclose(mem) }
        try h5(H5Tinsert(mem, name, 0, memberType), "insert member '\(name)'")
        let (f, m) = try slabSpace(start: rows.lowerBound, count: rows.count)
        defer { H5Sclose(f); H5Sclose(m) }
        var buf = [UInt8](repeating: 0, count: Swift.max(rows.count * size, 1))
        try h5(H5Dread(id, mem, m, f, ch5_p_default(), &buf), "read member '\(name)' of '\(path)' in \(fileName)")
        return buf
    }

    /// Member `name` as numbers (integer or float members, converted to T).
    public func readMember<T: H5Scalar>(_ name: String, rows: Range<Int>, as: T.Type = T.self) throws -> [T] {
        let bytes = try readMember(name, memberType: T.h5NativeType, size: MemoryLayout<T>.stride, rows: rows)
        return bytes.withUnsafeBytes { raw in (0..<rows.count).map { raw.load(fromByteOffset: $0 * MemoryLayout<T>.stride, as: T.self) } }
    }

    /// Member `name` as booleans (h5py's bool enum, or an integer member: non-zero is true).
    public func readMemberBools(_ name: String, rows: Range<Int>) throws -> [Bool] {
        let ft = try memberFileType(name)
        defer { H5Tclose(ft) }
        let size = Int(H5Tget_size(ft))
        let bytes = try readMember(name, memberType: ft, size: size, rows: rows)
        return (0..<rows.count).map { r in bytes[(r * size)..<((r + 1) * size)].contains { $0 != 0 } }
    }

    /// Member `name` as strings (fixed-length string members, as numpy's S/U record fields).
    public func readMemberStrings(_ name: String, rows: Range<Int>) throws -> [String] {
        let ft = try memberFileType(name)
        defer { H5Tclose(ft) }
        guard H5Tget_class(ft) == H5T_STRING, H5Tis_variable_str(ft) <= 0 else {
            throw HDF5Error(operation: "member '\(name)' of '\(path)' in \(fileName) is not a fixed-length string", stack: "")
        }
        let width = Int(H5Tget_size(ft))
        let bytes = try readMember(name, memberType: ft, size: width, rows: rows)
        return (0..<rows.count).map { decodeFixed(bytes[($0 * width)..<(($0 + 1) * width)]) }
    }
}
