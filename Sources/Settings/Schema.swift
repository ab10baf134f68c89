// The schema of a run spec, read off its default instance: every `@Setting` becomes a leaf with a
// dotted snake_case key (`trainer.batch_size`), its value type, help and range. Nothing else
// declares keys.

/// A group of settings (`data`, `trainer`, a model's hyperparameters, or a whole run spec).
///
/// Every stored property of a section is a `@Setting` or another section; the defaults are the
/// values `init()` gives. `validate()` checks what single-key ranges cannot (e.g. one key relative
/// to another) and throws `SettingsError` naming the key.
public protocol SettingsSection: Codable, Sendable {
    init()
    func validate() throws
}

extension SettingsSection {
    public func validate() throws {}
}

/// A section whose keys depend on one of its settings, e.g. `model:` whose hyperparameters depend
/// on `model.name`. The resolver applies that key first and starts the section from `init(selecting:)`.
public protocol SelectableSection: SettingsSection {
    /// The selecting key within the section (e.g. "name").
    static var selectorKey: String { get }
    /// The section's defaults for the selected variant; throws `SettingsError` for an unknown one.
    init(selecting choice: String) throws
    /// The settings of the section, in order (the selector first), for the schema.
    var settingsChildren: [(label: String, value: Any)] { get }
}

/// One key of a spec.
public struct SettingLeaf: @unchecked Sendable {
    /// snake_case components, e.g. ["trainer", "batch_size"].
    public let path: [String]
    /// The Swift property names along the path (the Codable keys).
    let propertyPath: [String]
    public let help: String
    public let minimum: Double?
    public let maximum: Double?
    public let valueType: any SettingValue.Type
    public let defaultValue: any SettingValue

    public var key: String { path.joined(separator: ".") }
    /// The command-line option of this key: `--batch-size`; a section's `path` or `name` key takes the
    /// section's name (`--output FILE` for output.path, `--model NAME` for model.name).
    public var option: String {
        if path.count == 2, ["path", "name"].contains(path[1]) { return "--" + path[0].replacingOccurrences(of: "_", with: "-") }
        return "--" + path.last!.replacingOccurrences(of: "_", with: "-")
    }

    /// "≥ 1", "in 0…1", "" (no bound).
    public var rangeDescription: String {
        func f(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x) }
        switch (minimum, maximum) {
        case let (lo?, hi?): return "in \(f(lo))…\(f(hi))"
        case let (lo?, nil): return "≥ \(f(lo))"
        case let (nil, hi?): return "≤ \(f(hi))"
        default: return ""
        }
    }
}

public enum SettingsSchema {
    /// The leaves of `section` (its default instance), in declaration order.
    public static func leaves(of section: Any, prefix: [String] = [], propertyPrefix: [String] = []) -> [SettingLeaf] {
        leaves(children: children(of: section), in: section, prefix: prefix, propertyPrefix: propertyPrefix)
    }

    static func leaves(children: [(String, Any)], in section: Any, prefix: [String], propertyPrefix: [String]) -> [SettingLeaf] {
        var out: [SettingLeaf] = []
        for (label, value) in children {
            if let s = value as? AnySetting {
                let name = label.hasPrefix("_") ? String(label.dropFirst()) : label
                out.append(SettingLeaf(path: prefix + [snakeCase(name)], propertyPath: propertyPrefix + [name],
                                       help: s.help, minimum: s.minimum, maximum: s.maximum,
                                       valueType: type(of: s).valueType, defaultValue: s.value))
            } else if value is SettingsSection {
                out += leaves(of: value, prefix: prefix + [snakeCase(label)], propertyPrefix: propertyPrefix + [label])
            } else {
                preconditionFailure("settings: '\(label)' of \(type(of: section)) is neither a @Setting nor a section")
            }
        }
        return out
    }

    /// The direct sections of a spec that select their own keys (label, instance).
    static func selectableSections(of spec: Any) -> [(label: String, section: any SelectableSection)] {
        children(of: spec).compactMap { l, v in (v as? any SelectableSection).map { (l, $0) } }
    }

    static func children(of section: Any) -> [(String, Any)] {
        if let s = section as? any SelectableSection { return s.settingsChildren.map { ($0.label, $0.value) } }
        return Mirror(reflecting: section).children.map { ($0.label ?? "?", $0.value) }
    }

    /// `batchSize` → `batch_size`; an acronym stays one word: `librarySD` → `library_sd`.
    public static func snakeCase(_ s: String) -> String {
        let c = Array(s)
        var out = ""
        for (i, ch) in c.enumerated() {
            if ch.isUppercase && i > 0 {
                let prevLower = c[i - 1].isLowercase || c[i - 1].isNumber
                let nextLower = i + 1 < c.count && c[i + 1].isLowercase
                if prevLower || (c[i - 1].isUppercase && nextLower) { out.append("_") }
            }
            out += ch.lowercased()
        }
        return out
    }
}
