// The one table of models: `--model NAME` resolves here, `syncytium models` lists it, and the
// `model:` section of a run spec takes its keys from the named entry's hyperparameters.
import CellData
import Collectives
import Settings

/// A registered model, type-erased.
public struct ModelEntry: Sendable {
    public let name: String
    public let summary: String
    let defaults: @Sendable () -> any ModelHyperparameters
    let decode: @Sendable (Decoder) throws -> any ModelHyperparameters
    let build: @Sendable (Dataset, any ModelHyperparameters, ModelContext, Communicator) throws -> any Model

    public init<M: Model>(_ model: M.Type) {
        name = M.name; summary = M.summary
        defaults = { M.Hyperparameters() }
        decode = { try M.Hyperparameters(from: $0) }
        build = { data, h, context, comm in
            guard let hh = h as? M.Hyperparameters else { preconditionFailure("hyperparameters of \(type(of: h)) for model \(M.name)") }
            return try M(input: data, hyperparameters: hh, context: context, comm: comm)
        }
    }

    /// Collective. The model for this rank's shard.
    public func make(input: Dataset, hyperparameters: any ModelHyperparameters, context: ModelContext,
                     comm: Communicator) throws -> any Model {
        try build(input, hyperparameters, context, comm)
    }
}

public enum ModelRegistry {
    /// Every model, one line each.
    public static let entries: [ModelEntry] = [
        ModelEntry(SCNAME.self),
        ModelEntry(SCDEFR.self),
        ModelEntry(SCSiameseClu.self),
        ModelEntry(CICL.self),
        ModelEntry(MLPAutoencoder.self),
        ModelEntry(CELLULAR.self),
    ]

    public static func entry(named name: String) throws -> ModelEntry {
        guard let e = entries.first(where: { $0.name == name.lowercased() }) else {
            throw SettingsError(key: "model.name", "unknown model '\(name)': available: " + entries.map(\.name).joined(separator: ", "))
        }
        return e
    }
}

/// Which model a run spec starts from when none is named.
public protocol DefaultModel { static var name: String { get } }

/// The `model:` section: `name` and that model's hyperparameters, side by side in one mapping.
public struct ModelSection<Default: DefaultModel>: SelectableSection {
    public static var selectorKey: String { "name" }
    @Setting("Model (syncytium models lists them).")
    public var name = Default.name
    public var hyperparameters: any ModelHyperparameters

    public init() {
        hyperparameters = (try? ModelRegistry.entry(named: Default.name))?.defaults() ?? NoHyperparameters()
    }

    public init(selecting choice: String) throws {
        let e = try ModelRegistry.entry(named: choice)
        name = e.name
        hyperparameters = e.defaults()
    }

    public var entry: ModelEntry { get throws { try ModelRegistry.entry(named: name) } }

    public var settingsChildren: [(label: String, value: Any)] {
        [("_name", _name)] + Mirror(reflecting: hyperparameters).children.map { ($0.label ?? "?", $0.value) }
    }

    enum Key: String, CodingKey { case name }
    public init(from decoder: Decoder) throws {
        let n = try decoder.container(keyedBy: Key.self).decode(String.self, forKey: .name)
        let e = try ModelRegistry.entry(named: n)
        name = e.name
        hyperparameters = try e.decode(decoder)
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(name, forKey: .name)
        try hyperparameters.encode(to: encoder)
    }

    public func validate() throws { try hyperparameters.validate() }
}

struct NoHyperparameters: ModelHyperparameters {}
