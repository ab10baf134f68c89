import CHDF5

// Errors: every failing HDF5 call becomes an `HDF5Error` carrying HDF5's own error-stack text;
// automatic error printing is switched off the first time any wrapper is used. `h5`/`h5id` are
// the single checks every wrapper's C call goes through.

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

@inline(__always)
func h5id(_ id: hid_t, _ op: @autoclosure () -> String) throws -> hid_t {
    if id < 0 { throw failure(op()) }
    return id
}
