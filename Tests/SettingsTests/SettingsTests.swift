import XCTest
@testable import Settings

enum Flavour: String, SettingChoice { case plain, fancy }

struct Inner: SettingsSection {
    @Setting("Epochs.", min: 0) var epochs = 40
    @Setting("Learning rate.", min: 0) var lr: Float = 1e-3
    @Setting("Widths.") var dims = [256, 64, 32]
    @Setting("A flag.") var shared = true
    @Setting("Optional text.") var labelKey: String? = nil
    @Setting("A choice.") var flavour = Flavour.plain
    init() {}
    func validate() throws {
        if dims.isEmpty { throw SettingsError(key: "inner.dims", "needs at least one width") }
    }
}

struct Other: SettingsSection {
    @Setting("Epochs of another section.", min: 1) var epochs = 3
    @Setting("Text.") var name = "no"
    init() {}
}

struct Spec: SettingsSection, Equatable {
    @Setting("Seed.") var seed: UInt64 = 0
    var inner = Inner()
    var other = Other()
    init() {}
    static func == (a: Spec, b: Spec) -> Bool {
        a.seed == b.seed && a.inner.epochs == b.inner.epochs && a.inner.lr == b.inner.lr && a.inner.dims == b.inner.dims
            && a.inner.shared == b.inner.shared && a.inner.labelKey == b.inner.labelKey && a.inner.flavour == b.inner.flavour
            && a.other.epochs == b.other.epochs && a.other.name == b.other.name
    }
}

final class SettingsTests: XCTestCase {
    func resolve(_ yaml: String? = nil, _ words: [String] = []) throws -> Spec {
        try SettingsResolver.resolve(Spec.self, yaml: yaml, file: "run.yaml", words: words)
    }

    func testSchemaHasEveryKeyOnceInOrder() {
        let keys = SettingsSchema.leaves(of: Spec()).map(\.key)
        XCTAssertEqual(keys, ["seed", "inner.epochs", "inner.lr", "inner.dims", "inner.shared", "inner.label_key", "inner.flavour",
                              "other.epochs", "other.name"])
    }

    func testYAMLAndOptionsGiveTheSameSpec() throws {
        let yaml = """
            seed: 7
            inner:
              epochs: 12
              lr: 0.0003
              dims: [128, 16]
              shared: false
              label_key: cell_type
              flavour: fancy
            other:
              epochs: 5
              name: 'yes'
            """
        let a = try resolve(yaml)
        let b = try resolve(nil, ["--seed", "7", "--inner.epochs", "12", "--lr=0.0003", "--dims", "128,16", "--no-shared",
                                  "--label-key", "cell_type", "--flavour", "fancy", "--other.epochs", "5", "--name", "yes"])
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.inner.lr, Float("0.0003"))
        XCTAssertEqual(a.other.name, "yes")
        XCTAssertNotEqual(a, Spec())
    }

    func testOptionsOverrideYAML() throws {
        let s = try resolve("inner:\n  epochs: 12\n", ["--inner.epochs", "3"])
        XCTAssertEqual(s.inner.epochs, 3)
    }

    func testPrintedYAMLReadsBackToTheSameSpec() throws {
        var words = ["--seed", "18446744073709551615", "--lr", "1e-05", "--label-key", "it's", "--name", "null text"]
        let s = try resolve(nil, words)
        let text = try SettingsDocument.yaml(s)
        let back = try resolve(text)
        XCTAssertEqual(back, s)
        XCTAssertEqual(try SettingsDocument.yaml(back), text)
        words = []
        XCTAssertEqual(try resolve(try SettingsDocument.yaml(Spec(), comments: false)), Spec())
    }

    func expectError(_ yaml: String?, _ words: [String] = [], contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try resolve(yaml, words)
            XCTFail("no error", file: file, line: line)
        } catch let e as SettingsError {
            let text = e.description
            XCTAssertFalse(text.contains("\n"), "one line: \(text)", file: file, line: line)
            for p in parts { XCTAssertTrue(text.contains(p), "'\(text)' lacks '\(p)'", file: file, line: line) }
        } catch { XCTFail("\(error)", file: file, line: line) }
    }

    func testErrorsNameTheKeyAndWhere() {
        expectError("inner:\n  epocs: 3\n", contains: ["run.yaml:2", "unknown key 'inner.epocs'", "did you mean 'inner.epochs'"])
        expectError("inner:\n  epochs: three\n", contains: ["run.yaml:2", "inner.epochs", "expected an integer", "'three'"])
        expectError("inner:\n  epochs: -1\n", contains: ["run.yaml:2", "inner.epochs", "must be ≥ 0", "-1"])
        expectError(nil, ["--inner.epochs", "-1"], contains: ["--inner.epochs -1", "inner.epochs", "must be ≥ 0"])
        expectError(nil, ["--epochs", "3"], contains: ["--epochs", "ambiguous", "--inner.epochs", "--other.epochs"])
        expectError(nil, ["--lr", "fast"], contains: ["inner.lr", "expected a finite number"])
        expectError(nil, ["--lr", "nan"], contains: ["inner.lr", "expected a finite number"])
        expectError(nil, ["--flavour", "odd"], contains: ["inner.flavour", "one of plain, fancy"])
        expectError(nil, ["--bogus", "1"], contains: ["--bogus", "unknown option"])
        expectError(nil, ["--dims", ""], contains: ["inner.dims"])
        expectError("inner: 3\n", contains: ["inner", "is a section"])
        expectError("- a\n- b\n", contains: ["run.yaml", "mapping"])
        expectError("inner: [\n", contains: ["run.yaml", "not valid YAML"])
        expectError("other:\n  epochs: 0\n", contains: ["other.epochs", "must be ≥ 1"])
        expectError("inner:\n  dims: []\n", contains: ["inner.dims", "needs at least one width"])
        expectError("seed: 1\nseed: 2\n", contains: ["run.yaml", "seed"])
        expectError(nil, ["stray.h5ad"], contains: ["stray.h5ad", "unexpected argument"])
    }

    func testCommandLineSplitsOwnOptions() throws {
        let c = try SettingsCommandLine(["in.h5ad", "--config", "a.yaml", "--print-config", "--epochs", "3"])
        XCTAssertEqual(c.configPath, "a.yaml")
        XCTAssertTrue(c.printConfig)
        XCTAssertEqual(c.words, ["in.h5ad", "--epochs", "3"])
        XCTAssertThrowsError(try SettingsCommandLine(["--config"]))
    }

    func testMissingConfigFileIsOneLine() {
        XCTAssertThrowsError(try SettingsResolver.readConfig("/nonexistent/missing.yaml")) { e in
            XCTAssertEqual("\(e)", "--config /nonexistent/missing.yaml: no such file")
        }
    }
}

final class SnakeCaseTests: XCTestCase {
    func testKeysFromPropertyNames() {
        XCTAssertEqual(SettingsSchema.snakeCase("batchSize"), "batch_size")
        XCTAssertEqual(SettingsSchema.snakeCase("librarySD"), "library_sd")
        XCTAssertEqual(SettingsSchema.snakeCase("bucketMib"), "bucket_mib")
        XCTAssertEqual(SettingsSchema.snakeCase("xyzHTTPServer"), "xyz_http_server")
        XCTAssertEqual(SettingsSchema.snakeCase("seed"), "seed")
    }
}
