// The resolved spec written out: as YAML (`--print-config`, checkpoints; reading it back with
// `--config` gives the same spec), as a tree (for `uns['syncytium']`), and as help text.

/// A resolved spec as nested sections of values, in declaration order.
public indirect enum SettingsTree: Sendable {
    case section([(String, SettingsTree)])
    case value(any SettingValue)
}

public enum SettingsDocument {
    /// The spec as YAML, every key with its value; with `comments`, each key's help after it.
    public static func yaml<Spec: SettingsSection>(_ spec: Spec, comments: Bool = true) throws -> String {
        let schema = try SettingsResolver.schema(of: spec)
        let values = SettingsSchema.leaves(of: spec)
        var out = ""
        var open: [String] = []
        for (leaf, meta) in zip(values, schema) {
            let sections = Array(leaf.path.dropLast())
            var common = 0
            while common < min(open.count, sections.count) && open[common] == sections[common] { common += 1 }
            open = Array(open.prefix(common))
            for s in sections.dropFirst(common) {
                out += String(repeating: "  ", count: open.count) + s + ":\n"
                open.append(s)
            }
            var line = String(repeating: "  ", count: open.count) + leaf.path.last! + ": " + yamlScalar(leaf.defaultValue)
            if comments && !meta.help.isEmpty {
                let range = meta.rangeDescription
                line += "  # " + meta.help + (range.isEmpty ? "" : " (\(range))")
            }
            out += line + "\n"
        }
        return out
    }

    /// The spec as a tree of sections and values.
    public static func tree<Spec: SettingsSection>(_ spec: Spec) -> SettingsTree {
        var root: [(String, SettingsTree)] = []
        func insert(_ path: ArraySlice<String>, _ v: any SettingValue, into items: inout [(String, SettingsTree)]) {
            let head = path.first!
            if path.count == 1 { items.append((head, .value(v))); return }
            if let i = items.firstIndex(where: { $0.0 == head }), case .section(var sub) = items[i].1 {
                insert(path.dropFirst(), v, into: &sub); items[i].1 = .section(sub)
            } else {
                var sub: [(String, SettingsTree)] = []
                insert(path.dropFirst(), v, into: &sub); items.append((head, .section(sub)))
            }
        }
        for leaf in SettingsSchema.leaves(of: spec) { insert(leaf.path[...], leaf.defaultValue, into: &root) }
        return .section(root)
    }

    /// One line per key: option, YAML key, default, range and help, for a command's `--help`.
    public static func help(_ schema: [SettingLeaf]) -> String {
        var lines: [String] = []
        var section: String? = nil
        let short = Dictionary(grouping: schema, by: { $0.path.last! })
        for leaf in schema {
            let s = leaf.path.count > 1 ? leaf.path[0] : ""
            if s != section { lines.append(s.isEmpty ? "" : "\(s):"); section = s }
            let opt = short[leaf.path.last!]!.count == 1 || leaf.option != "--" + leaf.path.last!.replacingOccurrences(of: "_", with: "-")
                ? leaf.option : "--" + leaf.key.replacingOccurrences(of: "_", with: "-")
            let range = leaf.rangeDescription
            lines.append("  \(opt) (\(leaf.key), default \(yamlScalar(leaf.defaultValue)))\(range.isEmpty ? "" : ", \(range)"): \(leaf.help)")
        }
        return lines.joined(separator: "\n")
    }

    /// A value as YAML: text single-quoted (so 'no' or '1e3' stay text), lists in flow style.
    static func yamlScalar(_ v: any SettingValue) -> String {
        if v.isNull { return "null" }
        let t = v.settingText
        if type(of: v).isText { return "'" + t.replacingOccurrences(of: "'", with: "''") + "'" }
        if type(of: v).isList { return "[" + t.split(separator: ",").joined(separator: ", ") + "]" }
        return t
    }
}
