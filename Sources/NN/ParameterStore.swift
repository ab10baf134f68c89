// The flat parameter store: every trainable value in one contiguous buffer, every gradient in another.
import Foundation
import Autograd
import TensorCore

/// A named parameter (or non-trainable buffer such as batch-norm running statistics) inside a
/// `ParameterStore`. `value` and `grad` are views into the store's flat buffers: writing through
/// them (in place) writes the store.
public final class Parameter {
    public let name: String
    public let rows: Int
    public let cols: Int
    /// Offset (in elements) inside the flat trainable buffer, or inside the state buffer for non-trainable ones.
    public let offset: Int
    public let trainable: Bool
    /// Weak: the store owns its parameters (no cycle, so dropping a model frees its buffers).
    weak var weakStore: ParameterStore?
    var store: ParameterStore {
        guard let s = weakStore else { preconditionFailure("parameter '\(name)' outlived its ParameterStore") }
        return s
    }
    private var cachedGeneration = -1
    private var cachedValue = Tensor(rows: 0, cols: 0)
    private var cachedGrad = Tensor(rows: 0, cols: 0)

    init(name: String, rows: Int, cols: Int, offset: Int, trainable: Bool, store: ParameterStore) {
        self.name = name; self.rows = rows; self.cols = cols; self.offset = offset
        self.trainable = trainable; self.weakStore = store
    }

    public var count: Int { rows * cols }

    private func refresh() {
        guard cachedGeneration != store.generation else { return }
        let vs = trainable ? store.valueStorage : store.stateStorage
        cachedValue = Tensor(rows: rows, cols: cols, storage: TensorStorage(viewing: vs.pointer + offset, count: count, owner: vs))
        if trainable {
            let gs = store.gradStorage
            cachedGrad = Tensor(rows: rows, cols: cols, storage: TensorStorage(viewing: gs.pointer + offset, count: count, owner: gs))
        }
        cachedGeneration = store.generation
    }

    /// The value, a view into the store (no copy).
    public var value: Tensor { refresh(); return cachedValue }
    /// The gradient, a view into the flat gradient buffer (trainable parameters only).
    public var grad: Tensor {
        precondition(trainable, "\(name) is a non-trainable buffer and has no gradient")
        refresh(); return cachedGrad
    }
}

/// All parameters of a model in one contiguous Float32 buffer and their gradients in another,
/// so that one allreduce moves all gradients and one optimiser pass updates everything.
/// Each parameter starts at a multiple of 16 elements (64 bytes); the padding stays zero.
public final class ParameterStore {
    public private(set) var parameters: [Parameter] = []
    private var byName: [String: Parameter] = [:]
    fileprivate(set) var valueStorage = TensorStorage(zeroedCount: 0)
    fileprivate(set) var gradStorage = TensorStorage(zeroedCount: 0)
    fileprivate(set) var stateStorage = TensorStorage(zeroedCount: 0)
    /// Elements in use in the trainable buffers (including alignment padding).
    public private(set) var count = 0
    /// Elements in use in the non-trainable state buffer.
    public private(set) var stateCount = 0
    /// Bumped whenever the flat buffers move (views held by `Parameter` are refreshed).
    public private(set) var generation = 0

    public init() {}

    public subscript(name: String) -> Parameter? { byName[name] }

    /// Number of trainable scalars (without padding).
    public var parameterCount: Int { parameters.filter(\.trainable).reduce(0) { $0 + $1.count } }

    /// Adds a trainable parameter initialised by `initializer` (rows = fan-in, cols = fan-out).
    @discardableResult
    public func add(_ name: String, rows: Int, cols: Int, _ initializer: Initializer, rng: inout RandomStream) -> Parameter {
        let p = register(name, rows, cols, trainable: true)
        initializer.fill(p.value, rng: &rng)
        return p
    }

    /// Adds a non-trainable buffer (saved and loaded with the parameters, never given a gradient).
    @discardableResult
    public func addBuffer(_ name: String, rows: Int, cols: Int, fill: Float = 0) -> Parameter {
        let p = register(name, rows, cols, trainable: false)
        p.value.fill(fill)
        return p
    }

    private func register(_ name: String, _ rows: Int, _ cols: Int, trainable: Bool) -> Parameter {
        precondition(byName[name] == nil, "parameter '\(name)' is already registered")
        precondition(rows > 0 && cols > 0, "parameter '\(name)' needs a positive shape, got \(rows)×\(cols)")
        let n = rows * cols
        let used = trainable ? count : stateCount
        let offset = (used + 15) / 16 * 16
        let needed = offset + n
        if trainable {
            if needed > valueStorage.count {
                let cap = max(needed, valueStorage.count * 2)
                valueStorage = Self.grow(valueStorage, used: count, to: cap)
                gradStorage = Self.grow(gradStorage, used: count, to: cap)
                generation += 1
            }
            count = needed
        } else {
            if needed > stateStorage.count {
                stateStorage = Self.grow(stateStorage, used: stateCount, to: max(needed, stateStorage.count * 2))
                generation += 1
            }
            stateCount = needed
        }
        let p = Parameter(name: name, rows: rows, cols: cols, offset: offset, trainable: trainable, store: self)
        parameters.append(p)
        byName[name] = p
        return p
    }

    private static func grow(_ s: TensorStorage, used: Int, to capacity: Int) -> TensorStorage {
        let n = TensorStorage(zeroedCount: capacity)
        n.pointer.update(from: s.pointer, count: used)
        return n
    }

    /// All trainable values as one 1×count tensor (a view).
    public var flatValues: Tensor { Tensor(rows: 1, cols: count, storage: TensorStorage(viewing: valueStorage.pointer, count: count, owner: valueStorage)) }
    /// All gradients as one 1×count tensor (a view) — the buffer to allreduce.
    public var flatGrads: Tensor { Tensor(rows: 1, cols: count, storage: TensorStorage(viewing: gradStorage.pointer, count: count, owner: gradStorage)) }
    /// All non-trainable state (running statistics) as one 1×stateCount tensor (a view).
    public var flatState: Tensor { Tensor(rows: 1, cols: stateCount, storage: TensorStorage(viewing: stateStorage.pointer, count: stateCount, owner: stateStorage)) }

    /// Raw pointers for optimisers and collectives.
    public var valuesPointer: UnsafeMutablePointer<Float> { valueStorage.pointer }
    public var gradsPointer: UnsafeMutablePointer<Float> { gradStorage.pointer }

    public func zeroGrad() { gradStorage.pointer.update(repeating: 0, count: count) }

    // MARK: save / load

    public enum FormatError: Error, CustomStringConvertible, Equatable {
        case notAParameterFile
        case unsupportedVersion(UInt32)
        case truncated
        case countMismatch(expected: Int, found: Int)
        case nameMismatch(index: Int, expected: String, found: String)
        case shapeMismatch(name: String, expected: String, found: String)
        case kindMismatch(name: String)

        public var description: String {
            switch self {
            case .notAParameterFile: return "not a Syncytium parameter file (bad magic)"
            case .unsupportedVersion(let v): return "parameter file format version \(v) is not supported (this build reads version \(ParameterStore.formatVersion))"
            case .truncated: return "parameter file is truncated"
            case .countMismatch(let e, let f): return "parameter file holds \(f) tensors, the model has \(e)"
            case .nameMismatch(let i, let e, let f): return "tensor \(i) is '\(f)' in the file but '\(e)' in the model"
            case .shapeMismatch(let n, let e, let f): return "'\(n)' is \(f) in the file but \(e) in the model"
            case .kindMismatch(let n): return "'\(n)' is trainable in one of file and model but a buffer in the other"
            }
        }
    }

    public static let magic = Array("SYNCPARM".utf8)
    public static let formatVersion: UInt32 = 1

    /// The binary form: magic "SYNCPARM", UInt32 version, UInt32 tensor count, per tensor
    /// (UInt32 name length, UTF-8 name, UInt8 trainable, Int64 rows, Int64 cols), then all values
    /// (Float32) in registration order; integers and floats little-endian.
    public func serialized() -> [UInt8] {
        var out = Self.magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        put(Self.formatVersion); put(UInt32(parameters.count))
        for p in parameters {
            let nb = Array(p.name.utf8)
            put(UInt32(nb.count)); out.append(contentsOf: nb)
            put(UInt8(p.trainable ? 1 : 0)); put(Int64(p.rows)); put(Int64(p.cols))
        }
        for p in parameters {
            let v = p.value
            for i in 0..<v.count { put(v.pointer[i].bitPattern) }
        }
        return out
    }

    /// Loads values written by `serialized()`; names, order, kinds and shapes must match this store.
    public func load(serialized bytes: [UInt8]) throws {
        var pos = 0
        func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard pos + n <= bytes.count else { throw FormatError.truncated }
            defer { pos += n }
            return bytes[pos..<(pos + n)]
        }
        func get<T: FixedWidthInteger>(_: T.Type) throws -> T {
            let s = try take(MemoryLayout<T>.size)
            var v: T = 0
            for (k, b) in s.enumerated() { v |= T(truncatingIfNeeded: b) << (8 * k) }
            return v
        }
        guard bytes.count >= Self.magic.count, Array(bytes[0..<Self.magic.count]) == Self.magic else { throw FormatError.notAParameterFile }
        pos = Self.magic.count
        let version = try get(UInt32.self)
        guard version == Self.formatVersion else { throw FormatError.unsupportedVersion(version) }
        let n = Int(try get(UInt32.self))
        guard n == parameters.count else { throw FormatError.countMismatch(expected: parameters.count, found: n) }
        for (i, p) in parameters.enumerated() {
            let len = Int(try get(UInt32.self))
            let name = String(decoding: try take(len), as: UTF8.self)
            guard name == p.name else { throw FormatError.nameMismatch(index: i, expected: p.name, found: name) }
            let trainable = try get(UInt8.self) == 1
            let r = Int(try get(Int64.self)), c = Int(try get(Int64.self))
            guard trainable == p.trainable else { throw FormatError.kindMismatch(name: name) }
            guard r == p.rows && c == p.cols else { throw FormatError.shapeMismatch(name: name, expected: "\(p.rows)×\(p.cols)", found: "\(r)×\(c)") }
        }
        let total = parameters.reduce(0) { $0 + $1.count }
        guard bytes.count - pos >= total * 4 else { throw FormatError.truncated }
        for p in parameters {
            let v = p.value
            for i in 0..<v.count { v.pointer[i] = Float(bitPattern: try get(UInt32.self)) }
        }
    }

    public func save(to url: URL) throws {
        let tmp = url.appendingPathExtension("tmp")
        try Data(serialized()).write(to: tmp)
        if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
        try FileManager.default.moveItem(at: tmp, to: url)
    }

    public func load(from url: URL) throws {
        try load(serialized: Array(try Data(contentsOf: url)))
    }
}

extension Tape {
    /// Registers a store parameter (its gradient goes into the store's flat gradient buffer).
    public func param(_ p: Parameter, accumulate: Bool = false) -> Var {
        parameter(p.value, grad: p.grad, accumulate: accumulate)
    }
}
