import CHDF5

// Element types: the Swift scalars with a native HDF5 type, the type classes found in files, the
// string and bool (h5py's enum) types we write, and the transfer modes of MPI-IO files.

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
