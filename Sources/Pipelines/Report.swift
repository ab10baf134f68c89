// Formatting shared by the commands and benchmarks that report results.
import Foundation

/// Pretty-printed JSON with sorted keys.
public func jsonString<T: Encodable>(_ value: T) throws -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try enc.encode(value), as: UTF8.self)
}

/// `x` with `digits` decimals.
public func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
