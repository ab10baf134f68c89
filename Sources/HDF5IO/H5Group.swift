import CHDF5

// Groups: navigation (exists, kind, members), opening datasets, and creating groups and datasets
// (numeric, bool, scalar, string) with reproducible output (no timestamps, creation order tracked).

public final class H5Group: H5Object, @unchecked Sendable {
    var parallelFile = false

    init(id: hid_t, path: String, fileName: String, file: H5File?) {
        super.init(id: id, path: path, fileName: fileName, closer: { H5Gclose($0) })
    }

    /// Whether a link path (possibly nested, "a/b/c") exists and resolves to an object.
    public func exists(_ name: String) -> Bool {
        var prefix = ""
        for comp in name.split(separator: "/") {
            prefix += (prefix.isEmpty ? "" : "/") + comp
            if H5Lexists(id, prefix, ch5_p_default()) <= 0 { ch5_clear_errors(); return false }
        }
        return kind(of: name) != nil
    }

    /// What `name` is, or nil when it does not exist.
    public func kind(of name: String) -> H5ObjectKind? {
        var prefix = ""
        for comp in name.split(separator: "/") {
            prefix += (prefix.isEmpty ? "" : "/") + comp
            if H5Lexists(id, prefix, ch5_p_default()) <= 0 { ch5_clear_errors(); return nil }
        }
        switch ch5_object_kind(id, name) {
        case 0: return .group
        case 1: return .dataset
        case 2: return .datatype
        default: ch5_clear_errors(); return nil
        }
    }

    /// Names of the links in this group, in name order.
    public func memberNames() throws -> [String] {
        var info = H5G_info_t()
        try h5(H5Gget_info(id, &info), "list group '\(path)' in \(fileName)")
        var out: [String] = []
        for i in 0..<Int(info.nlinks) {
            let len = H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), nil, 0, ch5_p_default())
            if len < 0 { throw failure("name link \(i) of '\(path)' in \(fileName)") }
            var buf = [CChar](repeating: 0, count: Int(len) + 1)
            _ = H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), &buf, buf.count, ch5_p_default())
            out.append(cString(buf))
        }
        return out
    }

    /// Removes the link `name` (the object's space is not reclaimed; h5repack does that).
    /// Collective on a parallel file: every rank removes the same links in the same order.
    public func deleteLink(_ name: String) throws {
        try h5(H5Ldelete(id, name, ch5_p_default()), "delete '\(childPath(name))' in \(fileName)")
    }

    public func group(_ name: String) throws -> H5Group {
        let g = try h5id(H5Gopen2(id, name, ch5_p_default()), "open group '\(childPath(name))' in \(fileName)")
        let out = H5Group(id: g, path: childPath(name), fileName: fileName, file: nil)
        out.parallelFile = parallelFile
        return out
    }

    /// Raw-data chunk cache per open dataset (HDF5's default is 1 MiB, smaller than many
    /// anndata chunks; a chunk that does not fit is re-read and re-inflated for each partial read).
    public static let chunkCacheBytes = 4 << 20

    public func dataset(_ name: String) throws -> H5Dataset {
        let dapl = H5Pcreate(ch5_p_dataset_access())
        defer { if dapl >= 0 { H5Pclose(dapl) } }
        if dapl >= 0 { _ = H5Pset_chunk_cache(dapl, 12_421, H5Group.chunkCacheBytes, 1.0) }
        let d = try h5id(H5Dopen2(id, name, dapl >= 0 ? dapl : ch5_p_default()),
                         "open dataset '\(childPath(name))' in \(fileName)")
        return try H5Dataset(id: d, path: childPath(name), fileName: fileName, parallelFile: parallelFile)
    }

    /// Creates a group (with link creation order tracked, no timestamps so output is reproducible).
    public func createGroup(_ name: String) throws -> H5Group {
        let gcpl = try h5id(H5Pcreate(ch5_p_group_create()), "create group creation list")
        defer { H5Pclose(gcpl) }
        _ = H5Pset_link_creation_order(gcpl, UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED))
        _ = H5Pset_obj_track_times(gcpl, false)
        let g = try h5id(H5Gcreate2(id, name, ch5_p_default(), gcpl, ch5_p_default()),
                         "create group '\(childPath(name))' in \(fileName)")
        let out = H5Group(id: g, path: childPath(name), fileName: fileName, file: nil)
        out.parallelFile = parallelFile
        return out
    }

    func datasetCreationList(chunk: [Int]?, gzip: Int?) throws -> hid_t {
        let dcpl = try h5id(H5Pcreate(ch5_p_dataset_create()), "create dataset creation list")
        _ = H5Pset_obj_track_times(dcpl, false)
        if let chunk {
            var c = chunk.map { hsize_t(Swift.max($0, 1)) }
            try h5(H5Pset_chunk(dcpl, Int32(c.count), &c), "set chunking")
            if let level = gzip { try h5(H5Pset_deflate(dcpl, UInt32(level)), "set gzip") }
        } else if !parallelFile {
            // Contiguous: allocate late (the default), fine serially.
        } else {
            // Parallel contiguous datasets are allocated early anyway; make the fill explicit zeros.
            _ = H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY)
        }
        return dcpl
    }

    /// Creates a numeric dataset of `shape` (no data written yet).
    public func createDataset<T: H5Scalar>(_ name: String, of: T.Type, shape: [Int],
                                           chunk: [Int]? = nil, gzip: Int? = nil) throws -> H5Dataset {
        var dims = shape.map { hsize_t($0) }
        let space = try h5id(H5Screate_simple(Int32(dims.count), &dims, nil), "create dataspace")
        defer { H5Sclose(space) }
        let dcpl = try datasetCreationList(chunk: chunk, gzip: gzip)
        defer { H5Pclose(dcpl) }
        let d = try h5id(H5Dcreate2(id, name, T.h5NativeType, space, ch5_p_default(), dcpl, ch5_p_default()),
                         "create dataset '\(childPath(name))' in \(fileName)")
        return try H5Dataset(id: d, path: childPath(name), fileName: fileName, parallelFile: parallelFile)
    }

    /// Creates and fills a 1-D (or `shape`) numeric dataset in one go (serial files, or every
    /// rank passing the same values collectively).
    @discardableResult
    public func writeDataset<T: H5Scalar>(_ name: String, _ values: [T], shape: [Int]? = nil,
                                          chunk: [Int]? = nil, gzip: Int? = nil) throws -> H5Dataset {
        let d = try createDataset(name, of: T.self, shape: shape ?? [values.count], chunk: chunk, gzip: gzip)
        try d.writeAll(values)
        return d
    }

    /// Creates and fills a 1-D boolean dataset as h5py stores numpy bool (int8 enum FALSE/TRUE).
    @discardableResult
    public func writeBools(_ name: String, _ values: [Bool]) throws -> H5Dataset {
        let t = try boolEnumType()
        defer { H5Tclose(t) }
        var dims = [hsize_t(values.count)]
        let space = try h5id(H5Screate_simple(1, &dims, nil), "create dataspace")
        defer { H5Sclose(space) }
        let dcpl = try datasetCreationList(chunk: nil, gzip: nil)
        defer { H5Pclose(dcpl) }
        let d = try h5id(H5Dcreate2(id, name, t, space, ch5_p_default(), dcpl, ch5_p_default()),
                         "create dataset '\(childPath(name))' in \(fileName)")
        let ds = try H5Dataset(id: d, path: childPath(name), fileName: fileName, parallelFile: parallelFile)
        if !values.isEmpty {
            let raw = values.map { Int8($0 ? 1 : 0) }
            try h5(H5Dwrite(d, t, ch5_s_all(), ch5_s_all(), ch5_p_default(), raw), "write '\(ds.path)'")
        }
        return ds
    }

    /// Creates a scalar numeric dataset.
    @discardableResult
    public func writeScalar<T: H5Scalar>(_ name: String, _ value: T) throws -> H5Dataset {
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let dcpl = try datasetCreationList(chunk: nil, gzip: nil)
        defer { H5Pclose(dcpl) }
        let d = try h5id(H5Dcreate2(id, name, T.h5NativeType, space, ch5_p_default(), dcpl, ch5_p_default()),
                         "create dataset '\(childPath(name))' in \(fileName)")
        let ds = try H5Dataset(id: d, path: childPath(name), fileName: fileName, parallelFile: parallelFile)
        var v = value
        try h5(H5Dwrite(d, T.h5NativeType, ch5_s_all(), ch5_s_all(), ch5_p_default(), &v), "write '\(ds.path)'")
        return ds
    }

    /// Creates a scalar variable-length string dataset.
    @discardableResult
    public func writeScalarString(_ name: String, _ value: String) throws -> H5Dataset {
        let t = try variableStringType()
        defer { H5Tclose(t) }
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let dcpl = try datasetCreationList(chunk: nil, gzip: nil)
        defer { H5Pclose(dcpl) }
        let d = try h5id(H5Dcreate2(id, name, t, space, ch5_p_default(), dcpl, ch5_p_default()),
                         "create dataset '\(childPath(name))' in \(fileName)")
        let ds = try H5Dataset(id: d, path: childPath(name), fileName: fileName, parallelFile: parallelFile)
        try value.withCString { p in
            var ptr: UnsafePointer<CChar>? = p
            try h5(H5Dwrite(d, t, ch5_s_all(), ch5_s_all(), ch5_p_default(), &ptr), "write '\(ds.path)'")
        }
        return ds
    }

    /// Creates a 1-D string dataset: variable-length UTF-8 (as anndata writes), or fixed-length
    /// when `fixedLength` (bytes per element, 0 = longest string).
    @discardableResult
    public func writeStrings(_ name: String, _ values: [String], fixedLength: Int? = nil) throws -> H5Dataset {
        var dims = [hsize_t(values.count)]
        let space = try h5id(H5Screate_simple(1, &dims, nil), "create dataspace")
        defer { H5Sclose(space) }
        let dcpl = try datasetCreationList(chunk: nil, gzip: nil)
        defer { H5Pclose(dcpl) }
        if let fixed = fixedLength {
            let width = Swift.max(fixed == 0 ? (values.map { $0.utf8.count }.max() ?? 1) : fixed, 1)
            let t = H5Tcopy(ch5_c_s1())
            defer { H5Tclose(t) }
            H5Tset_size(t, width)
            H5Tset_cset(t, H5T_CSET_UTF8)
            H5Tset_strpad(t, H5T_STR_NULLPAD)
            let d = try h5id(H5Dcreate2(id, name, t, space, ch5_p_default(), dcpl, ch5_p_default()),
                             "create dataset '\(childPath(name))' in \(fileName)")
            let ds = try H5Dataset(id: d, path: childPath(name), fileName: fileName, parallelFile: parallelFile)
            var buf = [UInt8](repeating: 0, count: Swift.max(width * values.count, 1))
            for (i, v) in values.enumerated() {
                for (j, b) in v.utf8.prefix(width).enumerated() { buf[i * width + j] = b }
            }
            if !values.isEmpty {
                try h5(H5Dwrite(d, t, ch5_s_all(), ch5_s_all(), ch5_p_default(), &buf), "write '\(ds.path)'")
            }
            return ds
        }
        let t = try variableStringType()
        defer { H5Tclose(t) }
        let d = try h5id(H5Dcreate2(id, name, t, space, ch5_p_default(), dcpl, ch5_p_default()),
                         "create dataset '\(childPath(name))' in \(fileName)")
        let ds = try H5Dataset(id: d, path: childPath(name), fileName: fileName, parallelFile: parallelFile)
        if !values.isEmpty {
            try withCStringPointers(values) { ptrs in
                try h5(H5Dwrite(d, t, ch5_s_all(), ch5_s_all(), ch5_p_default(), ptrs), "write '\(ds.path)'")
            }
        }
        return ds
    }
}
