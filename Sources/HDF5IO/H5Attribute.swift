import CHDF5

// Attributes of any object: read (string, string array, numeric) and write (variable- and
// fixed-length strings, numbers, h5py's bool), replacing an existing attribute of the same name.

extension H5Object {
    public func hasAttribute(_ name: String) -> Bool { H5Aexists(id, name) > 0 }

    public func attributeNames() throws -> [String] {
        let n = ch5_num_attrs(id)
        if n < 0 { throw failure("count attributes of '\(path)' in \(fileName)") }
        var out: [String] = []
        for i in 0..<Int(n) {
            let len = H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), nil, 0, ch5_p_default())
            if len < 0 { throw failure("name attribute \(i) of '\(path)' in \(fileName)") }
            var buf = [CChar](repeating: 0, count: Int(len) + 1)
            _ = H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), &buf, buf.count, ch5_p_default())
            out.append(cString(buf))
        }
        return out
    }

    func openAttribute(_ name: String) throws -> hid_t {
        try h5id(H5Aopen(id, name, ch5_p_default()), "open attribute '\(name)' of '\(path)' in \(fileName)")
    }

    /// Type class of an attribute.
    public func attributeType(_ name: String) throws -> H5TypeClass {
        let a = try openAttribute(name)
        defer { H5Aclose(a) }
        let t = H5Aget_type(a)
        defer { H5Tclose(t) }
        return H5TypeClass.of(type: t)
    }

    /// Reads a string attribute (variable-length or fixed; a one-element array is accepted too).
    public func stringAttribute(_ name: String) throws -> String {
        let all = try stringArrayAttribute(name)
        guard let first = all.first else {
            throw HDF5Error(operation: "attribute '\(name)' of '\(path)' in \(fileName) is an empty string array",
                            stack: "")
        }
        return first
    }

    /// Reads a string or string-array attribute.
    public func stringArrayAttribute(_ name: String) throws -> [String] {
        let a = try openAttribute(name)
        defer { H5Aclose(a) }
        let ftype = H5Aget_type(a)
        defer { H5Tclose(ftype) }
        let space = H5Aget_space(a)
        defer { H5Sclose(space) }
        let n = Int(H5Sget_simple_extent_npoints(space))
        let what = "read string attribute '\(name)' of '\(path)' in \(fileName)"
        guard H5Tget_class(ftype) == H5T_STRING else {
            throw HDF5Error(operation: "\(what): stored as \(H5TypeClass.of(type: ftype).name), not a string",
                            stack: "")
        }
        if H5Tis_variable_str(ftype) > 0 {
            let mtype = try variableStringType()
            defer { H5Tclose(mtype) }
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
            try h5(H5Aread(a, mtype, &ptrs), what)
            defer { _ = H5Dvlen_reclaim(mtype, space, ch5_p_default(), &ptrs) }
            return ptrs.map { $0.map { String(cString: $0) } ?? "" }
        } else {
            let size = Int(H5Tget_size(ftype))
            let mtype = H5Tcopy(ftype)
            defer { H5Tclose(mtype) }
            var buf = [UInt8](repeating: 0, count: Swift.max(size * n, 1))
            try h5(H5Aread(a, mtype, &buf), what)
            return (0..<n).map { decodeFixed(buf[($0 * size)..<(($0 + 1) * size)]) }
        }
    }

    /// Reads a numeric attribute (scalar or array) converted to `T`.
    public func numericAttribute<T: H5Scalar>(_ name: String, as: T.Type = T.self) throws -> [T] {
        let a = try openAttribute(name)
        defer { H5Aclose(a) }
        let ftype = H5Aget_type(a)
        defer { H5Tclose(ftype) }
        guard H5TypeClass.of(type: ftype).isNumeric else {
            throw HDF5Error(operation: "attribute '\(name)' of '\(path)' in \(fileName) is \(H5TypeClass.of(type: ftype).name), not numeric", stack: "")
        }
        let space = H5Aget_space(a)
        defer { H5Sclose(space) }
        let n = Int(H5Sget_simple_extent_npoints(space))
        var out = [T](repeating: T(), count: n)
        try h5(H5Aread(a, T.h5NativeType, &out), "read attribute '\(name)' of '\(path)' in \(fileName)")
        return out
    }

    func createAttribute(_ name: String, type: hid_t, space: hid_t) throws -> hid_t {
        if H5Aexists(id, name) > 0 { _ = H5Adelete(id, name) }
        return try h5id(H5Acreate2(id, name, type, space, ch5_p_default(), ch5_p_default()),
                        "create attribute '\(name)' on '\(path)' in \(fileName)")
    }

    /// Writes a scalar variable-length UTF-8 string attribute (as h5py/anndata write them).
    public func setAttribute(_ name: String, _ value: String) throws {
        let t = try variableStringType()
        defer { H5Tclose(t) }
        let s = H5Screate(H5S_SCALAR)
        defer { H5Sclose(s) }
        let a = try createAttribute(name, type: t, space: s)
        defer { H5Aclose(a) }
        try value.withCString { p in
            var ptr: UnsafePointer<CChar>? = p
            try h5(H5Awrite(a, t, &ptr), "write attribute '\(name)' on '\(path)' in \(fileName)")
        }
    }

    /// Writes a scalar fixed-length string attribute.
    public func setFixedStringAttribute(_ name: String, _ value: String) throws {
        let bytes = Array(value.utf8)
        let t = H5Tcopy(ch5_c_s1())
        defer { H5Tclose(t) }
        H5Tset_size(t, Swift.max(bytes.count, 1))
        H5Tset_cset(t, H5T_CSET_UTF8)
        let s = H5Screate(H5S_SCALAR)
        defer { H5Sclose(s) }
        let a = try createAttribute(name, type: t, space: s)
        defer { H5Aclose(a) }
        var buf = bytes.isEmpty ? [0] : bytes
        try h5(H5Awrite(a, t, &buf), "write attribute '\(name)' on '\(path)' in \(fileName)")
    }

    /// Writes a 1-D variable-length string array attribute.
    public func setAttribute(_ name: String, _ values: [String]) throws {
        let t = try variableStringType()
        defer { H5Tclose(t) }
        var dims = [hsize_t(values.count)]
        let s = H5Screate_simple(1, &dims, nil)
        defer { H5Sclose(s) }
        let a = try createAttribute(name, type: t, space: s)
        defer { H5Aclose(a) }
        try withCStringPointers(values) { ptrs in
            try h5(H5Awrite(a, t, ptrs), "write attribute '\(name)' on '\(path)' in \(fileName)")
        }
    }

    /// Writes a numeric attribute: a scalar when `scalar` and one value, else a 1-D array.
    public func setAttribute<T: H5Scalar>(_ name: String, _ values: [T], scalar: Bool = false) throws {
        var dims = [hsize_t(values.count)]
        let s = (scalar && values.count == 1) ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nil)
        defer { H5Sclose(s) }
        let a = try createAttribute(name, type: T.h5NativeType, space: s)
        defer { H5Aclose(a) }
        try h5(H5Awrite(a, T.h5NativeType, values), "write attribute '\(name)' on '\(path)' in \(fileName)")
    }

    /// Writes a scalar boolean attribute the way h5py stores numpy bool (int8 enum FALSE=0, TRUE=1).
    public func setBoolAttribute(_ name: String, _ value: Bool) throws {
        let t = try boolEnumType()
        defer { H5Tclose(t) }
        let s = H5Screate(H5S_SCALAR)
        defer { H5Sclose(s) }
        let a = try createAttribute(name, type: t, space: s)
        defer { H5Aclose(a) }
        var v: Int8 = value ? 1 : 0
        try h5(H5Awrite(a, t, &v), "write attribute '\(name)' on '\(path)' in \(fileName)")
    }
}
