// Resolves a run spec: defaults ← YAML file ← command-line options, every value checked against the
// schema (unknown key, wrong type, out of range) before any work starts, with one-line errors that
// name the key and where it was set (`run.yaml:4: trainer.batch_size: …`, `--batch-size 0: …`).
import Foundation
import Yams

/// A bad setting: the key, where it was set, what is wrong. One line, ready for the user.
public struct SettingsError: Error, CustomStringConvertible, Sendable {
    public var key: String?
    public var source: String?
    public var message: String
    public init(key: String? = nil, source: String? = nil, _ message: String) {
        self.key = key; self.source = source; self.message = message
    }
    public var description: String {
        [source, key].compactMap { $0 }.map { $0 + ": " }.joined() + message
    }
}

/// The command-line words of a run command, before the settings are resolved: `--config FILE`,
/// `--print-config` and `--help` are the command's own; everything else is settings and positionals.
public struct SettingsCommandLine: Sendable {
    public var configPath: String?
    public var printConfig = false
    public var helpRequested = false
    /// `--json`: the command prints its result as JSON (a report option, not a setting).
    public var json = false
    /// Options and positionals left for `SettingsResolver`.
    public var words: [String] = []

    public init(_ arguments: [String]) throws {
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            switch a {
            case "-h", "--help": helpRequested = true
            case "--print-config": printConfig = true
            case "--json": json = true
            case "--config":
                guard i + 1 < arguments.count else { throw SettingsError(source: "--config", "needs a YAML file path") }
                configPath = arguments[i + 1]; i += 1
            default:
                if a.hasPrefix("--config=") { configPath = String(a.dropFirst("--config=".count)) } else { words.append(a) }
            }
            i += 1
        }
    }
}

public enum SettingsResolver {
    /// A value set by the YAML file or an option, before it is checked against the schema.
    struct Assignment {
        enum Raw { case text(String), list([String]), null }
        var path: [String]
        var raw: Raw
        var source: String
    }

    /// Reads `path` as a YAML settings file; a missing or unreadable file is a one-line error.
    public static func readConfig(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw SettingsError(source: "--config \(path)", "no such file")
        }
        guard !isDir.boolValue else { throw SettingsError(source: "--config \(path)", "is a folder, not a YAML file") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SettingsError(source: "--config \(path)", "cannot be read (permission denied?)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw SettingsError(source: "--config \(path)", "is not UTF-8 text") }
        return text
    }

    /// The spec given by `yaml` (the text of `file`) and the command-line `words`.
    ///
    /// - Parameters:
    ///   - positionals: Keys that bare words on the command line set, in order (e.g. ["data.input"]).
    /// - Throws: `SettingsError` for an unknown key or option, a value of the wrong type, a value
    ///   out of range, or a violated cross-key rule (`validate()`).
    public static func resolve<Spec: SettingsSection>(_: Spec.Type, yaml: String? = nil, file: String? = nil,
                                                      words: [String] = [], positionals: [String] = []) throws -> Spec {
        var assignments: [Assignment] = []
        if let text = yaml { assignments += try yamlAssignments(text, file: file ?? "config") }

        // Selecting keys (model.name) first: they decide the rest of the schema.
        let defaults = Spec()
        var variants: [String: any SelectableSection] = [:]
        for (label, section) in SettingsSchema.selectableSections(of: defaults) {
            let sectionKey = SettingsSchema.snakeCase(label)
            let selector = type(of: section).selectorKey
            var choice: (String, String)? = nil
            for a in assignments where a.path == [sectionKey, selector] { if case .text(let t) = a.raw { choice = (t, a.source) } }
            if let c = try cliValue(words, options: ["--\(sectionKey)", "--\(sectionKey).\(selector)"]) { choice = c }
            if let (name, source) = choice {
                do { variants[label] = try type(of: section).init(selecting: name) } catch var e as SettingsError {
                    e.source = e.source ?? source; e.key = e.key ?? "\(sectionKey).\(selector)"; throw e
                }
            }
        }
        let schema = leaves(of: defaults, variants: variants)
        assignments += try commandLineAssignments(words, schema: schema, positionals: positionals)

        // Start from the defaults (with the selected variants) as a JSON tree, set every assignment.
        var tree = try jsonTree(defaults)
        for (label, v) in variants { tree[label] = try jsonTree(v) }
        var lastSource: [String: String] = [:]
        let byKey = Dictionary(schema.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        for a in assignments {
            let key = a.path.joined(separator: ".")
            guard let leaf = byKey[key] else {
                if schema.contains(where: { $0.path.starts(with: a.path) }) {
                    throw SettingsError(key: key, source: a.source, "is a section, not a value: set one of its keys (\(keysUnder(a.path, schema)))")
                }
                throw SettingsError(source: a.source, "unknown key '\(key)'" + suggestion(key, schema))
            }
            let value = try parse(a.raw, as: leaf, source: a.source)
            try set(&tree, path: leaf.propertyPath, to: try jsonFragment(value))
            lastSource[key] = a.source
        }
        let data = try JSONSerialization.data(withJSONObject: tree)
        let spec: Spec
        do { spec = try JSONDecoder().decode(Spec.self, from: data) } catch let e as SettingsError { throw e } catch {
            throw SettingsError("internal: the resolved settings do not decode (\(error))")
        }

        // Ranges, then each section's own rules.
        let resolvedLeaves = SettingsSchema.leaves(of: spec)
        precondition(resolvedLeaves.map(\.key) == schema.map(\.key), "settings: schema changed while resolving")
        for (leaf, meta) in zip(resolvedLeaves, schema) {
            guard let x = leaf.defaultValue.numericValue else { continue }
            let src = lastSource[meta.key]
            if let lo = meta.minimum, x < lo { throw SettingsError(key: meta.key, source: src, "must be \(meta.rangeDescription), got \(leaf.defaultValue.settingText)") }
            if let hi = meta.maximum, x > hi { throw SettingsError(key: meta.key, source: src, "must be \(meta.rangeDescription), got \(leaf.defaultValue.settingText)") }
        }
        do { try validateSections(spec) } catch var e as SettingsError {
            if e.source == nil, let k = e.key { e.source = lastSource[k] }
            throw e
        }
        return spec
    }

    /// The schema of a resolved spec: its leaves with the help and ranges of the defaults of the
    /// same variants (a decoded spec carries values only).
    public static func schema<Spec: SettingsSection>(of spec: Spec) throws -> [SettingLeaf] {
        var variants: [String: any SelectableSection] = [:]
        for (label, section) in SettingsSchema.selectableSections(of: spec) {
            let selector = type(of: section).selectorKey
            guard let first = section.settingsChildren.first, first.label == "_" + selector || first.label == selector,
                  let s = first.value as? AnySetting, let name = s.value as? String else { continue }
            variants[label] = try type(of: section).init(selecting: name)
        }
        return leaves(of: Spec(), variants: variants)
    }

    // MARK: schema with variants

    static func leaves(of defaults: Any, variants: [String: any SelectableSection]) -> [SettingLeaf] {
        let children = SettingsSchema.children(of: defaults).map { l, v in (l, variants[l].map { $0 as Any } ?? v) }
        return SettingsSchema.leaves(children: children, in: defaults, prefix: [], propertyPrefix: [])
    }

    static func validateSections(_ section: Any) throws {
        if let s = section as? SettingsSection { try s.validate() }
        for (_, v) in SettingsSchema.children(of: section) where v is SettingsSection { try validateSections(v) }
    }

    // MARK: reading assignments

    static func yamlAssignments(_ text: String, file: String) throws -> [Assignment] {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            let line = "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
            throw SettingsError(source: file, "not valid YAML: \(line)")
        }
        guard let node = root else { return [] }
        guard case .mapping = node else { throw SettingsError(source: file, "expected a mapping of settings (key: value) at the top") }
        var out: [Assignment] = []
        func walk(_ n: Node, _ path: [String]) throws {
            let here = n.mark.map { "\(file):\($0.line)" } ?? file
            switch n {
            case .mapping(let m):
                var seen = Set<String>()
                for (k, v) in m {
                    guard let key = k.scalar?.string else { throw SettingsError(source: here, "keys must be plain names") }
                    let norm = key.replacingOccurrences(of: "-", with: "_")
                    guard seen.insert(norm).inserted else {
                        throw SettingsError(key: (path + [norm]).joined(separator: "."), source: k.mark.map { "\(file):\($0.line)" } ?? file, "set twice")
                    }
                    if case .mapping(let inner) = v, inner.count == 0 { continue }
                    try walk(v, path + [norm])
                }
            case .sequence(let s):
                var items: [String] = []
                for item in s {
                    guard let t = item.scalar?.string else {
                        throw SettingsError(key: path.joined(separator: "."), source: here, "a list may hold only plain values")
                    }
                    items.append(t)
                }
                out.append(Assignment(path: path, raw: .list(items), source: here))
            case .scalar(let s):
                let isNull = s.style == .plain && ["null", "~", "Null", "NULL", ""].contains(s.string)
                out.append(Assignment(path: path, raw: isNull ? .null : .text(s.string), source: here))
            case .alias:
                throw SettingsError(key: path.joined(separator: "."), source: here, "YAML aliases are not supported in settings")
            }
        }
        try walk(node, [])
        return out
    }

    /// The value of the first of `options` on the command line, if given (for selecting keys).
    static func cliValue(_ words: [String], options: [String]) throws -> (String, String)? {
        var found: (String, String)? = nil
        var i = 0
        while i < words.count {
            let w = words[i]
            for o in options {
                if w == o {
                    guard i + 1 < words.count else { throw SettingsError(source: o, "needs a value") }
                    found = (words[i + 1], "\(o) \(words[i + 1])")
                } else if w.hasPrefix(o + "=") {
                    found = (String(w.dropFirst(o.count + 1)), w)
                }
            }
            i += 1
        }
        return found
    }

    static func commandLineAssignments(_ words: [String], schema: [SettingLeaf], positionals: [String]) throws -> [Assignment] {
        var out: [Assignment] = []
        var bare: [String] = []
        var i = 0
        while i < words.count {
            let w = words[i]
            guard w.hasPrefix("-"), w.count > 1, Double(w) == nil else { bare.append(w); i += 1; continue }
            guard w.hasPrefix("--") else { throw SettingsError(source: w, "unknown option (options are spelled --name)") }
            var name = String(w.dropFirst(2)), inline: String? = nil
            if let eq = name.firstIndex(of: "=") { inline = String(name[name.index(after: eq)...]); name = String(name[..<eq]) }
            var negated = false
            var leaf = try lookup(name, schema: schema, source: "--" + name)
            if leaf == nil, name.hasPrefix("no-"), let l = try lookup(String(name.dropFirst(3)), schema: schema, source: "--" + name),
               l.valueType.isFlag {
                leaf = l; negated = true
            }
            guard let leaf else { throw SettingsError(source: "--" + name, "unknown option" + suggestion(name, schema, cli: true)) }
            let raw: Assignment.Raw, source: String
            if negated {
                guard inline == nil else { throw SettingsError(source: w, "takes no value") }
                raw = .text("false"); source = w
            } else if let v = inline {
                raw = .text(v); source = w
            } else if leaf.valueType.isFlag {
                if i + 1 < words.count, Bool(settingText: words[i + 1]) != nil {
                    raw = .text(words[i + 1]); source = "\(w) \(words[i + 1])"; i += 1
                } else { raw = .text("true"); source = w }
            } else {
                guard i + 1 < words.count else { throw SettingsError(source: w, "needs a value: \(leaf.valueType.kindDescription)") }
                raw = .text(words[i + 1]); source = "\(w) \(words[i + 1])"; i += 1
            }
            out.append(Assignment(path: leaf.path, raw: raw, source: source))
            i += 1
        }
        guard bare.count <= positionals.count else {
            throw SettingsError(source: bare[positionals.count], "unexpected argument (this command takes \(positionals.isEmpty ? "no file names" : positionals.joined(separator: ", ")))")
        }
        for (k, v) in zip(positionals, bare) {
            out.append(Assignment(path: k.split(separator: ".").map(String.init), raw: .text(v), source: v))
        }
        return out
    }

    /// `--batch-size`, `--trainer.batch-size` → the leaf; a short name must be unambiguous.
    static func lookup(_ option: String, schema: [SettingLeaf], source: String) throws -> SettingLeaf? {
        let norm = option.replacingOccurrences(of: "-", with: "_")
        if let l = schema.first(where: { $0.key == norm }) { return l }
        // `--output FILE` sets output.path and `--model NAME` model.name (see `SettingLeaf.option`).
        if let l = schema.first(where: { $0.path == [norm, "path"] || $0.path == [norm, "name"] }) { return l }
        let matches = schema.filter { $0.path.last == norm }
        if matches.count > 1 {
            throw SettingsError(source: source, "ambiguous: say which one (" + matches.map { "--" + $0.key.replacingOccurrences(of: "_", with: "-") }.joined(separator: ", ") + ")")
        }
        return matches.first
    }

    static func parse(_ raw: Assignment.Raw, as leaf: SettingLeaf, source: String) throws -> any SettingValue {
        let t = leaf.valueType
        let parsed: (any SettingValue)?
        switch raw {
        case .text(let s): parsed = t.init(settingText: s)
        case .list(let items): parsed = t.init(settingList: items)
        case .null: parsed = t.init(settingText: "null")
        }
        guard let v = parsed else {
            let got: String
            switch raw {
            case .text(let s): got = "'\(s)'"
            case .list(let items): got = "a list [\(items.joined(separator: ", "))]"
            case .null: got = "null"
            }
            throw SettingsError(key: leaf.key, source: source, "expected \(t.kindDescription), got \(got)")
        }
        return v
    }

    // MARK: JSON tree

    static func jsonTree(_ value: some Encodable) throws -> [String: Any] {
        let data = try JSONEncoder().encode(value)
        guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw SettingsError("internal: settings do not encode as a mapping")
        }
        return obj
    }

    static func jsonFragment(_ value: any SettingValue) throws -> Any {
        let data = try JSONEncoder().encode(value)
        return try JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed)
    }

    static func set(_ tree: inout [String: Any], path: [String], to value: Any) throws {
        guard let first = path.first else { return }
        if path.count == 1 { tree[first] = value; return }
        var sub = tree[first] as? [String: Any] ?? [:]
        try set(&sub, path: Array(path.dropFirst()), to: value)
        tree[first] = sub
    }

    // MARK: messages

    static func keysUnder(_ path: [String], _ schema: [SettingLeaf]) -> String {
        let ks = schema.filter { $0.path.starts(with: path) }.map { $0.path[path.count] }
        var seen = Set<String>()
        return ks.filter { seen.insert($0).inserted }.prefix(8).joined(separator: ", ")
    }

    static func suggestion(_ key: String, _ schema: [SettingLeaf], cli: Bool = false) -> String {
        let k = key.replacingOccurrences(of: "-", with: "_")
        let candidates = cli ? schema.map { $0.path.last! } + schema.map(\.key) : schema.map(\.key)
        guard let best = candidates.min(by: { distance($0, k) < distance($1, k) }), distance(best, k) <= max(2, k.count / 4) else { return "" }
        return cli ? " (did you mean --\(best.replacingOccurrences(of: "_", with: "-"))?)" : " (did you mean '\(best)'?)"
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        if x.isEmpty { return y.count }
        var prev = Array(0...y.count)
        for i in 1...x.count {
            var cur = [i] + [Int](repeating: 0, count: y.count)
            for j in stride(from: 1, through: y.count, by: 1) {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return prev[y.count]
    }
}
