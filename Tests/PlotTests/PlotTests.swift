import XCTest
import Foundation
import Collectives
import HDF5IO
@testable import CellData
@testable import Plot

/// Figures drawn from small .h5ad files written by CellWriter: the PNG decodes, has the size the
/// layout computes, each panel holds pixels of exactly its categories' palette colours (and none of
/// the colours of categories that are absent), the draw order is seeded, and bad inputs give
/// one-line errors.
final class PlotTests: XCTestCase {
    let comm = Communicator.world

    static func dir() -> String {
        let d = NSTemporaryDirectory() + "syncytium-plot-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// n cells in `k` well separated blobs on a circle; obs: `group` (k categories, codes i % k),
    /// `score` (numeric), `half` (2 categories); obsm X_umap; optional per-epoch history.
    func writeFile(_ name: String, cells n: Int, groups k: Int, history: Bool = true, umap: Bool = true) throws -> String {
        let path = Self.dir() + "/" + name
        try? FileManager.default.removeItem(atPath: path)
        var obs = Frame(index: (0..<n).map { "c\($0)" })
        let codes = (0..<n).map { Int32($0 % k) }
        obs.set("group", .categorical(codes: codes, categories: (0..<k).map { "g\($0)" }, ordered: false))
        obs.set("score", .numeric((0..<n).map { Double($0) / Double(n) }))
        obs.set("half", .categorical(codes: (0..<n).map { Int32($0 < n / 2 ? 0 : 1) }, categories: ["a", "b"], ordered: false))
        let vars = Frame(index: ["gene0"])
        let shard = CellShard(nObs: n, nVars: 1, rowIds: (0..<n).map(Int64.init), rowPtr: [Int64](repeating: 0, count: n + 1),
                              colIdx: [], values: [], obs: obs, vars: vars,
                              source: SourceInfo(file: path, format: "anndata", matrixPath: "X", layout: "csr", dtype: "float32", nnz: 0))
        var req = WriteRequest(shard: shard)
        var xy = [Float](repeating: 0, count: 2 * n)
        var rng = SplitMix64(state: 42)
        for i in 0..<n {
            let g = Double(i % k), a = 2 * Double.pi * g / Double(k)
            let jx = Double(rng.next() % 1000) / 1000 - 0.5, jy = Double(rng.next() % 1000) / 1000 - 0.5
            xy[2 * i] = Float(10 * cos(a) + jx); xy[2 * i + 1] = Float(10 * sin(a) + jy)
        }
        req.obsm = umap ? [("X_umap", xy, 2)] : [("X_other", xy, 2)]
        req.clusters = codes
        if history {
            req.uns = [("history", .dict([("epoch", .array([1, 2, 3], width: 0)), ("loss", .array([3, 2, 1.5], width: 0)),
                                          ("recon", .array([2, 1.5, 1.2], width: 0)),
                                          ("kl", .array([0.5, 0.4, 0.3], width: 0)), ("terms", .string("loss,recon,kl"))])),
                       ("spec", .dict([("data", .dict([("label_key", .string("half"))]))]))]
        }
        try CellWriter.write(path, req, comm: comm)
        return path
    }

    func testLayoutPNGHasPaletteColoursOfItsCategories() throws {
        let file = try writeFile("layout.h5ad", cells: 3000, groups: 5)
        let out = Self.dir() + "/layout.png"
        var o = LayoutOptions()
        o.colors = ["group", "half", "score"]
        o.panelSize = 300
        let s = try LayoutFigure.draw(file: file, options: o, output: out)
        XCTAssertEqual(s.cells, 3000)
        XCTAssertEqual(s.panels, 3)
        let img = try DecodedImage.readPNG(out)
        XCTAssertEqual(img.width, s.width)
        XCTAssertEqual(img.height, s.height)
        XCTAssertEqual(img.height, Int(LayoutFigure.marginTop + 300 + LayoutFigure.marginBottom))
        // Panel 1 (group, 5 categories → category10's first 5); panel rectangle from the geometry.
        let x0 = Int(LayoutFigure.marginLeft), y0 = Int(LayoutFigure.marginTop)
        let panel1 = x0..<(x0 + 300), rows = y0..<(y0 + 300)
        let pal = Palettes.category10
        for c in 0..<5 {
            XCTAssertGreaterThan(img.count(pal[c], x: panel1, y: rows), 300, "category \(c) colour \(pal[c]) missing in panel 1")
        }
        // Categories 5…9 do not exist: their colours appear nowhere in the points.
        for c in 5..<10 { XCTAssertEqual(img.count(pal[c], x: panel1, y: rows), 0, "colour \(pal[c]) of an absent category") }
        // Five blobs of equal size: each colour covers a similar area (none painted over systematically).
        let areas = (0..<5).map { img.count(pal[$0], x: panel1, y: rows) }
        XCTAssertLessThan(Double(areas.max()!) / Double(areas.min()!), 1.5, "areas \(areas)")
        // Panel 2 (half): only the first two colours.
        let start2 = Int(s.width) / 3   // a point surely inside panel 2 or later; search the whole figure right of panel 1's legend
        XCTAssertGreaterThan(img.count(pal[0], x: start2..<img.width, y: rows), 0)
        // The continuous panel: its colour bar runs from viridis(0) to viridis(1) (one pixel row per
        // step), and the highest-scoring cells (drawn last) show viridis(1) exactly.
        let lo = Palettes.viridis(0), hi = Palettes.viridis(1)
        XCTAssertGreaterThanOrEqual(img.count(near: lo, tolerance: 1), 14, "the colour bar's bottom row inside its frame")
        XCTAssertGreaterThan(img.count(hi), 16)
    }

    func testOverlappingCategoriesAreDrawnInASeededRandomOrder() throws {
        // All cells at one spot: with a random order both categories stay visible at the rim where
        // the last points land; with the file's order the last category would cover everything.
        let n = 2000
        let x = [Float](repeating: 0, count: n).enumerated().map { Float($0.offset % 40) * 0.01 }
        let y = [Float](repeating: 0, count: n).enumerated().map { Float($0.offset / 40) * 0.01 }
        let codes = (0..<n).map { Int32($0 < n / 2 ? 0 : 1) }   // category 1 last in the file
        var o = LayoutOptions(); o.panelSize = 200; o.pointSize = 6
        let a = Self.dir() + "/order-a.png", b = Self.dir() + "/order-b.png", c = Self.dir() + "/order-c.png"
        _ = try LayoutFigure.render(x: x, y: y, keys: ["k"], values: [.categorical(codes: codes, categories: ["p", "q"])], basis: "X_umap", options: o, output: a)
        _ = try LayoutFigure.render(x: x, y: y, keys: ["k"], values: [.categorical(codes: codes, categories: ["p", "q"])], basis: "X_umap", options: o, output: b)
        o.seed = 1
        _ = try LayoutFigure.render(x: x, y: y, keys: ["k"], values: [.categorical(codes: codes, categories: ["p", "q"])], basis: "X_umap", options: o, output: c)
        let ia = try DecodedImage.readPNG(a), ib = try DecodedImage.readPNG(b), ic = try DecodedImage.readPNG(c)
        XCTAssertEqual(ia.pixels, ib.pixels, "same seed, same picture")
        XCTAssertNotEqual(ia.pixels, ic.pixels, "another seed, another order")
        let p = Palettes.category10
        let n0 = ia.count(p[0]), n1 = ia.count(p[1])
        XCTAssertGreaterThan(n0, 0); XCTAssertGreaterThan(n1, 0)
        XCTAssertLessThan(Double(max(n0, n1)) / Double(min(n0, n1)), 2.0, "one category covers the other: \(n0) vs \(n1)")
        // The permutation is a permutation.
        let perm = LayoutFigure.drawOrder(1000, seed: 5)
        XCTAssertEqual(Set(perm).count, 1000)
        XCTAssertNotEqual(perm, (0..<1000).map { Int32($0) })
    }

    func testStoredColoursInUnsAreUsedAsScanpyDoes() throws {
        let file = try writeFile("stored.h5ad", cells: 600, groups: 3)
        let mine = ["#123456", "#abcdef", "#fedcba"]
        do {
            let f = try H5File.open(file, writable: true)
            _ = try f.root.group("uns").writeStrings("group_colors", mine)
            _ = try f.root.group("uns").writeStrings("half_colors", ["red", "blue"])   // named colours: default palette
            try f.close()
        }
        let src = try FigureSource(file)
        XCTAssertEqual(src.storedPalette("group", categories: 3), mine.map { RGB(hex: $0) })
        XCTAssertNil(src.storedPalette("group", categories: 4), "fewer stored colours than categories")
        XCTAssertNil(src.storedPalette("half", categories: 2))
        var o = LayoutOptions(); o.colors = ["group"]; o.panelSize = 200
        let out = Self.dir() + "/stored.png"
        try LayoutFigure.draw(file: file, options: o, output: out)
        let img = try DecodedImage.readPNG(out)
        for h in mine { XCTAssertGreaterThan(img.count(RGB(hex: h)), 50, h) }
        XCTAssertEqual(img.count(Palettes.category10[1]), 0, "the default palette was used")
    }

    func testPalettesFollowScanpy() {
        XCTAssertEqual(Palettes.categorical(10), Palettes.category10)
        XCTAssertEqual(Palettes.categorical(11), Array(Palettes.default20.prefix(11)))
        XCTAssertEqual(Palettes.categorical(21), Array(Palettes.default28.prefix(21)))
        XCTAssertEqual(Palettes.categorical(29).count, 29)
        XCTAssertEqual(Palettes.categorical(29)[0], RGB(hex: "#FFFF00"))
        XCTAssertEqual(Palettes.default20.count, 20)
        XCTAssertEqual(Palettes.default28.count, 28)
        XCTAssertEqual(Palettes.default102.count, 102)
        XCTAssertEqual(Palettes.default20[2].description, "#279e68")
        XCTAssertEqual(Palettes.viridis(0).description, "#440154")
        XCTAssertEqual(Palettes.viridis(1).description, "#fde725")
    }

    func testTrainingCurveAndHeatmapAndSVGPDF() throws {
        let file = try writeFile("curves.h5ad", cells: 400, groups: 4)
        let src = try FigureSource(file)
        let h = try XCTUnwrap(src.lossHistory())
        XCTAssertEqual(h.epochs, [1, 2, 3])
        XCTAssertEqual(h.terms.map(\.name), ["loss", "recon", "kl"], "the recorded order, not the names' order")
        XCTAssertEqual(src.recordedLabelKey(), "half")
        let dir = Self.dir() + "/figs"
        try? FileManager.default.removeItem(atPath: dir)
        let files = try RunFigures.write(file: file, directory: dir, basis: nil, clusterKey: "syncytium_cluster", labelKey: nil, seed: 0)
        XCTAssertEqual(files.map { ($0 as NSString).lastPathComponent }, ["layout.png", "training.png", "contingency.png"])
        for f in files { XCTAssertGreaterThan(try DecodedImage.readPNG(f).width, 100) }
        // No temporary files left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["contingency.png", "layout.png", "training.png"])
        XCTAssertEqual(ContingencyFigure.table(clusters: [0, 0, 1, -1], labels: [1, 1, 0, 0], nClusters: 2, nLabels: 2), [[0, 2], [1, 0]])
        var o = LayoutOptions(); o.colors = ["group"]
        for ext in ["svg", "pdf"] {
            let p = Self.dir() + "/layout.\(ext)"
            try LayoutFigure.draw(file: file, options: o, output: p)
            let head = try String(decoding: FileHandle(forReadingFrom: URL(fileURLWithPath: p)).readData(ofLength: 64), as: UTF8.self)
            XCTAssertTrue(head.contains(ext == "svg" ? "<?xml" : "%PDF"), head)
        }
    }

    func testBadInputsGiveOneLineErrors() throws {
        let file = try writeFile("bad.h5ad", cells: 50, groups: 2, history: false, umap: false)
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "" } catch let e as PlotError { return e.message } catch { return "other: \(error)" }
        }
        var o = LayoutOptions(); o.colors = ["group"]
        let noBasis = message { try LayoutFigure.draw(file: file, options: o, output: Self.dir() + "/x.png") }
        XCTAssertTrue(noBasis.contains("no obsm['X_umap']") && noBasis.contains("X_other"), noBasis)
        o.basis = "X_other"; o.colors = ["nope"]
        let noKey = message { try LayoutFigure.draw(file: file, options: o, output: Self.dir() + "/x.png") }
        XCTAssertTrue(noKey.contains("no obs column 'nope'") && noKey.contains("group"), noKey)
        let text = Self.dir() + "/not.h5ad"
        try "hello".write(toFile: text, atomically: true, encoding: .utf8)
        let notH5 = message { try LayoutFigure.draw(file: text, options: o, output: Self.dir() + "/x.png") }
        XCTAssertTrue(notH5.contains("not an HDF5 file"), notH5)
        let badExt = message { try LayoutFigure.draw(file: file, options: o, output: Self.dir() + "/x.jpg") }
        XCTAssertTrue(badExt.contains("unknown figure format"), badExt)
        XCTAssertNil(try FigureSource(file).lossHistory())
        for m in [noBasis, noKey, notH5, badExt] { XCTAssertFalse(m.contains("\n"), m) }
        XCTAssertThrowsError(try RunFigures.validateDirectory(text))   // a file, not a directory
        XCTAssertNoThrow(try RunFigures.validateDirectory(Self.dir() + "/new/sub"))
    }
}
