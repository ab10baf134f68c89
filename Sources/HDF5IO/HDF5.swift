import CHDF5
#if canImport(Glibc)
import Glibc
#endif

// Typed wrappers over the HDF5 C API: files (serial or MPI-IO), groups, datasets, attributes,
// hyperslab reads/writes, independent and collective transfers. Every failing call becomes an
// `HDF5Error` carrying HDF5's own error-stack text; automatic error printing is switched off the
// first time any wrapper is used.

/// A failed HDF5 call: what we were doing, on which object, and HDF5's error stack.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    /// What was attempted, e.g. "open dataset 'X/data'".
    public let operation: String
    /// HDF5's error stack (innermost first), possibly empty.
    public let stack: String
    public init(operation: String, stack: String) {
        self.operation = operation
        self.stack = stack
    }
    public var description: String { stack.isEmpty ? operation : "\(operation): \(stack)" }
}

/// Switches HDF5's automatic error printing off (idempotent, done on first use of any wrapper).
public enum HDF5Errors {
    private static let silenced: Bool = {
        _ = H5open()
        _ = ch5_silence_errors()
        return true
    }()
    public static func silence() { _ = silenced }

    static func currentStack() -> String {
        var buf = [CChar](repeating: 0, count: 2048)
        let n = ch5_error_stack_text(&buf, buf.count)
        ch5_clear_errors()
        if n == 0 { return "" }
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

@inline(__always)
func failure(_ op: @autoclosure () -> String) -> HDF5Error {
    HDF5Error(operation: op(), stack: HDF5Errors.currentStack())
}

@inline(__always)
func h5(_ rc: herr_t, _ op: @autoclosure () -> String) throws {
    if rc < 0 { throw failure(op()) }
}

func cString(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

@inline(__always)
func h5id(_ id: hid_t, _ op: @autoclosure () -> String) throws -> hid_t {
    if id < 0 { throw failure(op()) }
    return id
}

/// Asks the kernel to back a large, not yet touched buffer with transparent huge pages (as numpy
/// does): faulting in 2 MiB pages instead of 4 KiB ones makes filling a fresh multi-GB array
/// several times faster. A no-op for small buffers and off Linux.
@inline(__always)
func adviseHugePages(_ p: UnsafeMutableRawPointer?, _ bytes: Int) {
    #if os(Linux)
    guard let p, bytes >= 8 << 20 else { return }
    let huge = 2 << 20
    let start = (Int(bitPattern: p) + huge - 1) & ~(huge - 1)
    let end = (Int(bitPattern: p) + bytes) & ~(huge - 1)
    if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_HUGEPAGE) }
    #endif
}

/// Numeric element types with a native HDF5 type (HDF5 converts from the file's type on read).
public protocol H5Scalar: Sendable, BitwiseCopyable {
    static var h5NativeType: hid_t { get }
    init()
}
extension Float: H5Scalar { public static var h5NativeType: hid_t { ch5_native_float() } }
extension Double: H5Scalar { public static var h5NativeType: hid_t { ch5_native_double() } }
extension Int8: H5Scalar { public static var h5NativeType: hid_t { ch5_native_int8() } }
extension UInt8: H5Scalar { public static var h5NativeType: hid_t { ch5_native_uint8() } }
extension Int16: H5Scalar { public static var h5NativeType: hid_t { ch5_native_int16() } }
extension UInt16: H5Scalar { public static var h5NativeType: hid_t { ch5_native_uint16() } }
extension Int32: H5Scalar { public static var h5NativeType: hid_t { ch5_native_int32() } }
extension UInt32: H5Scalar { public static var h5NativeType: hid_t { ch5_native_uint32() } }
extension Int64: H5Scalar { public static var h5NativeType: hid_t { ch5_native_int64() } }
extension UInt64: H5Scalar { public static var h5NativeType: hid_t { ch5_native_uint64() } }

/// The class of a dataset's or attribute's element type as stored in the file.
public enum H5TypeClass: Sendable, Equatable {
    case integer(bytes: Int, signed: Bool)
    case float(bytes: Int)
    case string(variableLength: Bool, bytes: Int)
    /// An enum (h5py stores numpy bool as an int8 enum FALSE/TRUE).
    case enumeration(bytes: Int)
    case other(String)

    public var isNumeric: Bool {
        switch self {
        case .integer, .float, .enumeration: return true
        default: return false
        }
    }
    public var isString: Bool { if case .string = self { return true } else { return false } }

    /// A short numpy-like name: float32, int64, bool/enum8, str, ….
    public var name: String {
        switch self {
        case .integer(let b, let s): return "\(s ? "int" : "uint")\(b * 8)"
        case .float(let b): return "float\(b * 8)"
        case .string(let v, let b): return v ? "str (variable length)" : "str (fixed \(b) bytes)"
        case .enumeration(let b): return "enum\(b * 8)"
        case .other(let s): return s
        }
    }

    static func of(type tid: hid_t) -> H5TypeClass {
        let size = Int(H5Tget_size(tid))
        switch H5Tget_class(tid) {
        case H5T_INTEGER: return .integer(bytes: size, signed: H5Tget_sign(tid) == H5T_SGN_2)
        case H5T_FLOAT: return .float(bytes: size)
        case H5T_STRING: return .string(variableLength: H5Tis_variable_str(tid) > 0, bytes: size)
        case H5T_ENUM: return .enumeration(bytes: size)
        case H5T_COMPOUND: return .other("compound")
        case H5T_REFERENCE: return .other("reference")
        case H5T_ARRAY: return .other("array")
        case H5T_VLEN: return .other("vlen")
        case H5T_OPAQUE: return .other("opaque")
        case H5T_BITFIELD: return .other("bitfield")
        default: return .other("unknown")
        }
    }
}

/// How a dataset transfer runs on an MPI-IO file.
public enum H5Transfer: Sendable {
    /// Each rank on its own (fine for one large contiguous slab per rank).
    case independent
    /// Every rank of the file's communicator calls it (needed for filtered writes; lets MPI-IO aggregate).
    case collective
}

/// Kinds of objects a link can point to.
public enum H5ObjectKind: Sendable { case group, dataset, datatype }

// MARK: - Objects and attributes

/// Any open HDF5 object that can carry attributes (file root group, group, dataset).
public class H5Object: @unchecked Sendable {
    public let id: hid_t
    /// Path of the object inside its file ("/" for the root).
    public let path: String
    /// The file's name (for messages).
    public let fileName: String
    let closer: (hid_t) -> herr_t
    private var closed = false

    init(id: hid_t, path: String, fileName: String, closer: @escaping (hid_t) -> herr_t) {
        self.id = id
        self.path = path
        self.fileName = fileName
        self.closer = closer
    }

    deinit { if !closed { _ = closer(id) } }

    func closeNow() throws {
        guard !closed else { return }
        closed = true
        try h5(closer(id), "close '\(path)' in \(fileName)")
    }

    func childPath(_ name: String) -> String {
        path == "/" ? "/" + name : path + "/" + name
    }

    // MARK: Attributes

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

func decodeFixed(_ bytes: ArraySlice<UInt8>) -> String {
    let trimmed = bytes.prefix { $0 != 0 }
    return String(decoding: trimmed, as: UTF8.self)
}

func variableStringType() throws -> hid_t {
    let t = try h5id(H5Tcopy(ch5_c_s1()), "copy string type")
    H5Tset_size(t, Int(truncatingIfNeeded: ch5_variable()))
    H5Tset_cset(t, H5T_CSET_UTF8)
    return t
}

func boolEnumType() throws -> hid_t {
    let t = try h5id(H5Tenum_create(ch5_native_int8()), "create bool enum type")
    var f: Int8 = 0, tr: Int8 = 1
    H5Tenum_insert(t, "FALSE", &f)
    H5Tenum_insert(t, "TRUE", &tr)
    return t
}

/// Calls `body` with a contiguous array of C string pointers for `values` (valid only inside).
func withCStringPointers<R>(_ values: [String], _ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
    // One buffer holding all strings NUL-terminated, then pointers into it.
    var storage: [CChar] = []
    var offsets: [Int] = []
    offsets.reserveCapacity(values.count)
    for v in values {
        offsets.append(storage.count)
        storage.append(contentsOf: v.utf8.map { CChar(bitPattern: $0) })
        storage.append(0)
    }
    if storage.isEmpty { storage = [0] }
    return try storage.withUnsafeBufferPointer { sb in
        let ptrs: [UnsafePointer<CChar>?] = offsets.map { sb.baseAddress! + $0 }
        return try ptrs.withUnsafeBufferPointer { pb in
            try body(UnsafeRawPointer(pb.baseAddress ?? UnsafePointer(bitPattern: 8)!))
        }
    }
}

// MARK: - Files

/// An open HDF5 file, serial or through MPI-IO on MPI_COMM_WORLD.
public final class H5File: @unchecked Sendable {
    public let id: hid_t
    public let path: String
    /// Opened with the MPI-IO driver (every rank of MPI_COMM_WORLD opened it together).
    public let isParallel: Bool
    public let root: H5Group
    private var closed = false

    private init(id: hid_t, path: String, parallel: Bool) throws {
        self.id = id
        self.path = path
        self.isParallel = parallel
        let g = try h5id(H5Gopen2(id, "/", ch5_p_default()), "open root group of \(path)")
        root = H5Group(id: g, path: "/", fileName: path, file: nil)
        root.parallelFile = parallel
    }

    deinit {
        if !closed {
            try? root.closeNow()
            H5Fclose(id)
        }
    }

    /// Closes the file now (otherwise done when the object goes away). Any objects still open
    /// from it keep the file alive in HDF5 until they are released.
    public func close() throws {
        guard !closed else { return }
        closed = true
        try root.closeNow()
        try h5(H5Fclose(id), "close \(path)")
    }

    /// True when `path` exists and has an HDF5 signature.
    public static func isHDF5(_ path: String) -> Bool {
        HDF5Errors.silence()
        let r = H5Fis_hdf5(path)
        ch5_clear_errors()
        return r > 0
    }

    static func accessList(parallel: Bool) throws -> hid_t {
        HDF5Errors.silence()
        let fapl = try h5id(H5Pcreate(ch5_p_file_access()), "create file access list")
        if parallel {
            guard ch5_is_parallel() != 0 else {
                H5Pclose(fapl)
                throw HDF5Error(operation: "this HDF5 library has no MPI-IO support", stack: "")
            }
            guard ch5_mpi_initialized() != 0 else {
                H5Pclose(fapl)
                throw HDF5Error(operation: "MPI-IO file access needs MPI initialised first (use Communicator.world)",
                                stack: "")
            }
            do {
                try h5(H5Pset_fapl_mpio(fapl, ch5_comm_world(), ch5_info_null()), "set MPI-IO file access")
            } catch {
                H5Pclose(fapl)
                throw error
            }
        }
        return fapl
    }

    /// Opens an existing file. With `parallel`, every rank of MPI_COMM_WORLD must call this together.
    public static func open(_ path: String, writable: Bool = false, parallel: Bool = false) throws -> H5File {
        let fapl = try accessList(parallel: parallel)
        defer { H5Pclose(fapl) }
        let id = try h5id(H5Fopen(path, writable ? ch5_acc_rdwr() : ch5_acc_rdonly(), fapl), "open \(path)")
        return try H5File(id: id, path: path, parallel: parallel)
    }

    /// Creates (truncates) a file. With `parallel`, every rank must call this together.
    public static func create(_ path: String, parallel: Bool = false) throws -> H5File {
        let fapl = try accessList(parallel: parallel)
        defer { H5Pclose(fapl) }
        let fcpl = try h5id(H5Pcreate(ch5_p_file_create()), "create file creation list")
        defer { H5Pclose(fcpl) }
        // Track link creation order like h5py does so groups list in insertion order.
        _ = H5Pset_link_creation_order(fcpl, UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED))
        let id = try h5id(H5Fcreate(path, ch5_acc_trunc(), fcpl, fapl), "create \(path)")
        return try H5File(id: id, path: path, parallel: parallel)
    }

    /// Flushes buffers to disk.
    public func flush() throws { try h5(H5Fflush(id, H5F_SCOPE_GLOBAL), "flush \(path)") }
}

// MARK: - Groups

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

// MARK: - Datasets

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
