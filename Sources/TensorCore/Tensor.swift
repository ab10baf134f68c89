// Dense 2-D Float32 tensors, row-major, with copy-on-write storage.

/// Memory behind a `Tensor`: 64-byte aligned Float32 elements, either owned or a view into
/// another storage (the flat parameter and gradient buffers hand out views).
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    /// The storage this one is a view into (kept alive by the view); nil when this storage owns its memory.
    public let owner: AnyObject?

    /// Uninitialised owned memory for `count` elements.
    public init(uninitializedCount count: Int) {
        precondition(count >= 0, "negative element count")
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride,
                                                    alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        owner = nil
    }

    /// Zero-filled owned memory.
    public convenience init(zeroedCount count: Int) {
        self.init(uninitializedCount: count)
        pointer.initialize(repeating: 0, count: count)
    }

    /// A view of `count` elements at `pointer`, which must stay valid while `owner` lives.
    public init(viewing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = pointer
        self.count = count
        self.owner = owner
    }

    deinit {
        if owner == nil { UnsafeMutableRawPointer(pointer).deallocate() }
    }
}

/// A dense row-major `rows × cols` matrix of Float32 (vectors are 1×n or n×1, scalars 1×1).
///
/// Value semantics through copy-on-write: `subscript` setters and `withUnsafeMutableBufferPointer`
/// copy the storage first when it is shared. Kernels that write into a tensor they own (the tape's
/// buffers, the parameter store's views) use `pointer` directly, which never copies.
public struct Tensor: @unchecked Sendable, CustomStringConvertible, Equatable {
    public private(set) var storage: TensorStorage
    public let rows: Int
    public let cols: Int

    public var count: Int { rows * cols }
    public var shape: (rows: Int, cols: Int) { (rows, cols) }
    public var isScalar: Bool { rows == 1 && cols == 1 }

    /// Zero-filled.
    public init(rows: Int, cols: Int) {
        precondition(rows >= 0 && cols >= 0, "negative shape \(rows)×\(cols)")
        self.rows = rows; self.cols = cols
        storage = TensorStorage(zeroedCount: rows * cols)
    }

    /// Uninitialised contents (callers overwrite every element).
    public init(uninitializedRows rows: Int, cols: Int) {
        precondition(rows >= 0 && cols >= 0, "negative shape \(rows)×\(cols)")
        self.rows = rows; self.cols = cols
        storage = TensorStorage(uninitializedCount: rows * cols)
    }

    public init(rows: Int, cols: Int, repeating value: Float) {
        self.init(uninitializedRows: rows, cols: cols)
        storage.pointer.initialize(repeating: value, count: rows * cols)
    }

    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(values.count == rows * cols, "\(values.count) values for a \(rows)×\(cols) tensor")
        self.init(uninitializedRows: rows, cols: cols)
        values.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A tensor over existing storage (a view when `storage` is one), e.g. a parameter's slice of the flat buffer.
    public init(rows: Int, cols: Int, storage: TensorStorage) {
        precondition(storage.count >= rows * cols, "storage of \(storage.count) elements is too small for \(rows)×\(cols)")
        self.rows = rows; self.cols = cols
        self.storage = storage
    }

    public static func scalar(_ v: Float) -> Tensor { Tensor(rows: 1, cols: 1, repeating: v) }
    public static func row(_ v: [Float]) -> Tensor { Tensor(rows: 1, cols: v.count, values: v) }
    public static func column(_ v: [Float]) -> Tensor { Tensor(rows: v.count, cols: 1, values: v) }

    /// The element pointer, without copy-on-write. Write through it only into tensors you own.
    @inlinable public var pointer: UnsafeMutablePointer<Float> { storage.pointer }

    public subscript(r: Int, c: Int) -> Float {
        get {
            precondition(r >= 0 && r < rows && c >= 0 && c < cols, "index (\(r), \(c)) outside \(rows)×\(cols)")
            return storage.pointer[r * cols + c]
        }
        set {
            precondition(r >= 0 && r < rows && c >= 0 && c < cols, "index (\(r), \(c)) outside \(rows)×\(cols)")
            makeUnique()
            storage.pointer[r * cols + c] = newValue
        }
    }

    /// Flat row-major index.
    public subscript(flat i: Int) -> Float {
        get { precondition(i >= 0 && i < count); return storage.pointer[i] }
        set { precondition(i >= 0 && i < count); makeUnique(); storage.pointer[i] = newValue }
    }

    public mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) {
            let s = TensorStorage(uninitializedCount: count)
            s.pointer.update(from: storage.pointer, count: count)
            storage = s
        }
    }

    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer, count: count))
    }

    public mutating func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        makeUnique()
        return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count))
    }

    /// All elements, row-major.
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: count)) }
    /// The value of a 1×1 tensor.
    public var scalar: Float { precondition(count == 1, "scalar of a \(rows)×\(cols) tensor"); return storage.pointer[0] }

    /// A deep copy with its own storage.
    public func copy() -> Tensor {
        let t = Tensor(uninitializedRows: rows, cols: cols)
        t.pointer.update(from: pointer, count: count)
        return t
    }

    /// The same elements seen with another shape of equal element count (shares storage; copy-on-write).
    public func reshaped(rows r: Int, cols c: Int) -> Tensor {
        precondition(r * c == count, "cannot reshape \(rows)×\(cols) to \(r)×\(c)")
        return Tensor(rows: r, cols: c, storage: storage)
    }

    /// Overwrites every element with `v` (in place, no copy-on-write).
    public func fill(_ v: Float) { pointer.update(repeating: v, count: count) }
    /// Copies `other`'s elements into this tensor's storage (in place, no copy-on-write).
    public func assign(from other: Tensor) {
        precondition(other.rows == rows && other.cols == cols, "assign \(other.rows)×\(other.cols) into \(rows)×\(cols)")
        pointer.update(from: other.pointer, count: count)
    }

    public func row(_ r: Int) -> [Float] {
        precondition(r >= 0 && r < rows)
        return Array(UnsafeBufferPointer(start: pointer + r * cols, count: cols))
    }

    public var description: String {
        var s = "Tensor(\(rows)×\(cols))"
        if count <= 64 {
            s += " ["
            for r in 0..<rows {
                s += (r == 0 ? "[" : ", [") + row(r).map { "\($0)" }.joined(separator: ", ") + "]"
            }
            s += "]"
        }
        return s
    }

    /// Same shape and bitwise-equal elements (NaN ≠ NaN as for Float).
    public static func == (a: Tensor, b: Tensor) -> Bool {
        guard a.rows == b.rows && a.cols == b.cols else { return false }
        if a.storage === b.storage { return !(0..<a.count).contains { a.pointer[$0].isNaN } }
        for i in 0..<a.count where a.pointer[i] != b.pointer[i] { return false }
        return true
    }

    /// Largest absolute elementwise difference (shapes must match).
    public func maxAbsDifference(_ other: Tensor) -> Float {
        precondition(other.rows == rows && other.cols == cols)
        var m: Float = 0
        for i in 0..<count { m = max(m, abs(pointer[i] - other.pointer[i])) }
        return m
    }
}
