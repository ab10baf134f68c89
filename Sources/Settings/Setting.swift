// One declaration per run setting: `@Setting("help", min:, max:) var epochs = 40` in a section struct
// gives the key's type, default, help line and allowed range. The YAML key (`epochs`), the
// command-line option (`--epochs`), the `--help` line, the range check and the resolved YAML printed
// by `--print-config` are all derived from that one line (see `SettingsSchema`, `SettingsResolver`).

/// A type a setting can hold: a number, flag, text, list or enumeration, read from YAML or the
/// command line as text and printed back so that reading the printed text gives the same value.
public protocol SettingValue: Codable, Sendable, Equatable {
    /// What the value must look like, for error messages ("an integer", "one of adam, sgd").
    static var kindDescription: String { get }
    /// Parses command-line or YAML scalar text; nil when the text is not of this kind.
    init?(settingText: String)
    /// Parses a YAML sequence (lists only).
    init?(settingList: [String])
    /// Text that `init(settingText:)` reads back as the same value.
    var settingText: String { get }
    /// The value as a number, for range checks (nil for non-numbers).
    var numericValue: Double? { get }
    /// True for flags: `--name` alone sets true and `--no-name` false.
    static var isFlag: Bool { get }
    /// True for text values (printed quoted).
    static var isText: Bool { get }
    /// True for lists (printed in YAML flow style).
    static var isList: Bool { get }
    /// True for an absent optional value.
    var isNull: Bool { get }
}

extension SettingValue {
    public init?(settingList: [String]) { return nil }
    public var numericValue: Double? { nil }
    public static var isFlag: Bool { false }
    public static var isText: Bool { false }
    public static var isList: Bool { false }
    public var isNull: Bool { false }
}

extension Int: SettingValue {
    public static var kindDescription: String { "an integer" }
    public init?(settingText t: String) { self.init(t.trimmingSpaces) }
    public var settingText: String { String(self) }
    public var numericValue: Double? { Double(self) }
}

extension UInt64: SettingValue {
    public static var kindDescription: String { "a non-negative integer" }
    public init?(settingText t: String) { self.init(t.trimmingSpaces) }
    public var settingText: String { String(self) }
    public var numericValue: Double? { Double(self) }
}

extension Double: SettingValue {
    public static var kindDescription: String { "a finite number" }
    public init?(settingText t: String) {
        guard let v = Double(t.trimmingSpaces), v.isFinite else { return nil }
        self = v
    }
    /// Swift's shortest round-trip representation.
    public var settingText: String { description }
    public var numericValue: Double? { self }
}

extension Float: SettingValue {
    public static var kindDescription: String { "a finite number" }
    public init?(settingText t: String) {
        guard let v = Float(t.trimmingSpaces), v.isFinite else { return nil }
        self = v
    }
    public var settingText: String { description }
    public var numericValue: Double? { Double(self) }
}

extension Bool: SettingValue {
    public static var kindDescription: String { "true or false" }
    public init?(settingText t: String) {
        switch t.trimmingSpaces.lowercased() {
        case "true", "yes", "on", "1": self = true
        case "false", "no", "off", "0": self = false
        default: return nil
        }
    }
    public var settingText: String { self ? "true" : "false" }
    public static var isFlag: Bool { true }
}

extension String: SettingValue {
    public static var kindDescription: String { "text" }
    public init?(settingText t: String) { self = t }
    public var settingText: String { self }
    public static var isText: Bool { true }
}

extension Array: SettingValue where Element == Int {
    public static var kindDescription: String { "a list of integers (a YAML list or 1,2,3)" }
    public init?(settingText t: String) {
        let parts = t.split(separator: ",", omittingEmptySubsequences: false).map { Int(String($0).trimmingSpaces) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        self = parts.map { $0! }
    }
    public init?(settingList items: [String]) {
        let parts = items.map { Int($0.trimmingSpaces) }
        guard parts.allSatisfy({ $0 != nil }) else { return nil }
        self = parts.map { $0! }
    }
    public var settingText: String { map(String.init).joined(separator: ",") }
    public static var isList: Bool { true }
}

extension Optional: SettingValue where Wrapped: SettingValue {
    public static var kindDescription: String { "\(Wrapped.kindDescription), or null" }
    public init?(settingText t: String) {
        switch t.trimmingSpaces {
        case "null", "~", "": self = .none
        default:
            guard let v = Wrapped(settingText: t) else { return nil }
            self = .some(v)
        }
    }
    public init?(settingList items: [String]) {
        guard let v = Wrapped(settingList: items) else { return nil }
        self = .some(v)
    }
    public var settingText: String { map(\.settingText) ?? "null" }
    public var numericValue: Double? { self?.numericValue }
    public static var isText: Bool { Wrapped.isText }
    public static var isList: Bool { Wrapped.isList }
    public var isNull: Bool { self == nil }
}

/// Enumerations spelled by their raw values: `enum Optimizer: String, SettingChoice { case adam, sgd }`.
public protocol SettingChoice: SettingValue, RawRepresentable, CaseIterable where RawValue == String {}

extension SettingChoice {
    public static var kindDescription: String { "one of " + allCases.map(\.rawValue).joined(separator: ", ") }
    public init?(settingText t: String) {
        let s = t.trimmingSpaces
        guard let v = Self.allCases.first(where: { $0.rawValue == s || $0.rawValue.lowercased() == s.lowercased() }) else { return nil }
        self = v
    }
    public var settingText: String { rawValue }
}

/// A run setting: its value, one line of help, and the range it must lie in.
///
/// Codable as its bare value, so a section of settings encodes as a plain mapping of key → value.
/// Only the section's default instance carries the help and range (a decoded one has just the value).
@propertyWrapper
public struct Setting<Value: SettingValue>: Codable, Sendable, Equatable {
    public var wrappedValue: Value
    public let help: String
    public let minimum: Double?
    public let maximum: Double?

    /// - Parameters:
    ///   - help: One line; state the reference implementation's value where there is one.
    ///   - min, max: Inclusive bounds of a numeric value (checked after every override).
    public init(wrappedValue: Value, _ help: String, min: Double? = nil, max: Double? = nil) {
        self.wrappedValue = wrappedValue; self.help = help; minimum = min; maximum = max
    }

    public init(from decoder: Decoder) throws {
        wrappedValue = try decoder.singleValueContainer().decode(Value.self)
        help = ""; minimum = nil; maximum = nil
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(wrappedValue)
    }

    public static func == (a: Self, b: Self) -> Bool { a.wrappedValue == b.wrappedValue }
}

/// What the schema reads off any `Setting`, whatever its value type.
protocol AnySetting {
    var help: String { get }
    var minimum: Double? { get }
    var maximum: Double? { get }
    var value: any SettingValue { get }
    static var valueType: any SettingValue.Type { get }
}

extension Setting: AnySetting {
    var value: any SettingValue { wrappedValue }
    static var valueType: any SettingValue.Type { Value.self }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
