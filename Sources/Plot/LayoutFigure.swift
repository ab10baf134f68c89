// The 2-D layout coloured by obs keys, one panel per key side by side, as `sc.pl.umap(adata,
// color=[…])` draws it: title = key, axis labels BASIS1/BASIS2 without ticks, categorical legend
// in the right margin (scanpy's ncol: 1 up to 14 categories, 2 up to 30, 3 beyond), viridis colour
// bar for continuous keys. Points are rasterised straight into a pixel buffer (antialiased discs,
// or single pixels when they are smaller than one), in a seeded random order for categorical keys
// so no category paints over another systematically; continuous keys draw high values last
// (scanpy's sort_order=True); missing values first, in lightgray.
import Foundation

public struct LayoutOptions: Sendable {
    /// obsm key of the 2-D layout (its first two columns).
    public var basis = "X_umap"
    /// obs keys, one panel each.
    public var colors: [String] = ["syncytium_cluster"]
    /// Seed of the draw order.
    public var seed: UInt64 = 0
    /// Side of each panel's square plotting area in pixels.
    public var panelSize = 480
    /// Marker diameter in pixels (nil: from the cell count, as scanpy's size = 120000 / n_cells).
    public var pointSize: Double? = nil
    public init() {}
}

public struct LayoutSummary: Sendable {
    public var cells: Int
    public var panels: Int
    public var width: Int
    public var height: Int
    /// Reading the basis and obs columns.
    public var readSeconds: Double
    /// Drawing and encoding the figure.
    public var drawSeconds: Double
}

/// SplitMix64: the draw order's random stream (seeded, platform-independent).
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public enum LayoutFigure {
    /// A seeded random permutation of 0..<n (Fisher–Yates).
    public static func drawOrder(_ n: Int, seed: UInt64) -> [Int32] {
        var p = (0..<Int32(n)).map { $0 }
        var rng = SplitMix64(state: seed ^ 0x5EED_0F_D7A3)
        if n > 1 {
            for i in stride(from: n - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                p.swapAt(i, j)
            }
        }
        return p
    }

    /// Marker diameter in pixels for n cells on a panel of side `panel` (scanpy: area 120000/n pt²).
    public static func defaultPointSize(cells n: Int, panel: Int) -> Double {
        let pt = (120_000 / Double(max(n, 1))).squareRoot()
        return min(12, max(1, pt * Double(panel) / 300))
    }

    /// Reads `file` and writes the figure to `output` (.png, .svg or .pdf).
    @discardableResult
    public static func draw(file: String, options: LayoutOptions, output: String) throws -> LayoutSummary {
        _ = try FigureFormat(path: output)
        guard !options.colors.isEmpty else { throw PlotError("give at least one obs key to colour by (--color KEY[,KEY…])") }
        let t0 = Date()
        let src = try FigureSource(file)
        let values = try src.colors(options.colors)
        let (x, y) = try src.basis(options.basis)
        if let n = values.first.map(count), n != x.count {
            throw PlotError("\(file): obsm['\(options.basis)'] has \(x.count) rows but obs has \(n)")
        }
        let t1 = Date()
        let stored = zip(options.colors, values).map { key, v -> [RGB]? in
            if case .categorical(_, let cats) = v { return src.storedPalette(key, categories: cats.count) }
            return nil
        }
        let s = try render(x: x, y: y, keys: options.colors, values: values, basis: options.basis, options: options, output: output,
                           palettes: stored)
        return LayoutSummary(cells: x.count, panels: values.count, width: s.0, height: s.1,
                             readSeconds: t1.timeIntervalSince(t0), drawSeconds: Date().timeIntervalSince(t1))
    }

    static func count(_ v: ColorValues) -> Int {
        switch v { case .categorical(let c, _): return c.count; case .continuous(let d): return d.count }
    }

    static func axisLabel(_ basis: String) -> String {
        let b = basis.hasPrefix("X_") ? String(basis.dropFirst(2)) : basis
        return b.uppercased()
    }

    // Geometry (pixels).
    static let marginLeft = 36.0, marginTop = 44.0, marginBottom = 36.0, legendGap = 14.0, panelGap = 20.0

    /// Draws the panels; returns the figure size.
    public static func render(x: [Float], y: [Float], keys: [String], values: [ColorValues], basis: String,
                              options: LayoutOptions, output: String, palettes: [[RGB]?] = []) throws -> (Int, Int) {
        // A key's colours: uns['<key>_colors'] when the file has them (as scanpy), else scanpy's default.
        func colors(_ p: Int, _ n: Int) -> [RGB] { (p < palettes.count ? palettes[p] : nil) ?? Palettes.categorical(n) }
        let n = x.count
        let S = Double(options.panelSize)
        // Data bounds of the finite points, 2.5 % padding each side (matplotlib's margins are 5 %).
        var (x0, x1, y0, y1) = (Float.infinity, -Float.infinity, Float.infinity, -Float.infinity)
        for i in 0..<n where x[i].isFinite && y[i].isFinite {
            x0 = min(x0, x[i]); x1 = max(x1, x[i]); y0 = min(y0, y[i]); y1 = max(y1, y[i])
        }
        if !(x0 <= x1) { (x0, x1, y0, y1) = (0, 1, 0, 1) }
        if x1 - x0 == 0 { x0 -= 0.5; x1 += 0.5 }
        if y1 - y0 == 0 { y0 -= 0.5; y1 += 0.5 }
        let padX = (x1 - x0) * 0.025, padY = (y1 - y0) * 0.025
        (x0, x1, y0, y1) = (x0 - padX, x1 + padX, y0 - padY, y1 + padY)
        let diameter = options.pointSize ?? defaultPointSize(cells: n, panel: options.panelSize)

        // Legends first (their widths decide the figure's width); measured on a scratch canvas.
        let scratch = try Canvas(width: 1, height: 1, output: "/dev/null/unused.png")
        let legends = values.enumerated().map { p, v -> Legend in
            if case .categorical(_, let cats) = v { return Legend.make(v, colors: colors(p, cats.count), canvas: scratch, height: S) }
            return Legend.make(v, colors: [], canvas: scratch, height: S)
        }
        let panelWidths = legends.map { marginLeft + S + legendGap + $0.width }
        let W = Int((panelWidths.reduce(0, +) + panelGap * Double(max(0, values.count - 1)) + 10).rounded(.up))
        let H = Int(marginTop + S + marginBottom)
        let canvas = try Canvas(width: W, height: H, output: output)
        let order = drawOrder(n, seed: options.seed)
        let raster = try Raster(width: Int(S), height: Int(S))
        var left = 0.0
        for (p, v) in values.enumerated() {
            let px = left + marginLeft, py = marginTop
            // The points.
            raster.pixels.update(repeating: 0, count: raster.stride * raster.height)
            let colorOf: (Int) -> UInt32?
            let drawOrder: [Int32]
            switch v {
            case .categorical(let codes, let cats):
                let pal = colors(p, cats.count).map(Raster.pack)
                let na = Raster.pack(.lightgray)
                colorOf = { i in let c = codes[i]; return c >= 0 && Int(c) < pal.count ? pal[Int(c)] : na }
                // Missing first, then the seeded order.
                let k = Int32(pal.count)
                var missing: [Int32] = [], known: [Int32] = []
                known.reserveCapacity(n)
                for o in order {
                    let c = codes[Int(o)]
                    if c >= 0 && c < k { known.append(o) } else { missing.append(o) }
                }
                drawOrder = missing + known
            case .continuous(let d):
                let (lo, hi) = Legend.range(d)
                let span = hi > lo ? hi - lo : 1
                let na = Raster.pack(.lightgray)
                colorOf = { i in d[i].isFinite ? Raster.pack(Palettes.viridis((d[i] - lo) / span)) : na }
                let missing = order.filter { !d[Int($0)].isFinite }
                let finite = (0..<Int32(n)).filter { d[Int($0)].isFinite }.sorted { (a: Int32, b: Int32) -> Bool in
                    let va = d[Int(a)], vb = d[Int(b)]
                    return va < vb || (va == vb && a < b)
                }
                drawOrder = missing + finite
            }
            let sx = Float(S) / (x1 - x0), sy = Float(S) / (y1 - y0)
            raster.drawPoints(count: n, order: drawOrder, diameter: diameter, position: { i in
                (Double((x[i] - x0) * sx), Double((y1 - y[i]) * sy))
            }, color: colorOf)
            raster.markDirty()
            canvas.image(raster, x: px, y: py)
            // Frame, title, axis labels.
            canvas.strokeRect(x: px, y: py, w: S, h: S, RGB(hex: "#000000"), width: 1)
            canvas.font(size: 16)
            canvas.text(canvas.fitted(keys[p], maxWidth: S), x: px + S / 2, y: py - 14, anchor: .center)
            canvas.font(size: 12)
            canvas.text(axisLabel(basis) + "1", x: px + 4, y: py + S + 18, anchor: .left)
            canvas.text(axisLabel(basis) + "2", x: px - 10, y: py + S - 4, anchor: .left, rotate: 1)
            legends[p].draw(on: canvas, x: px + S + legendGap, y: py, height: S)
            left += panelWidths[p] + panelGap
        }
        try canvas.finish()
        return (W, H)
    }
}

extension Raster {
    /// Opaque premultiplied ARGB32 of a colour.
    static func pack(_ c: RGB) -> UInt32 {
        let (r, g, b) = c.bytes
        return 0xff00_0000 | UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b)
    }

    /// Draws each point in `order` as a disc of `diameter` pixels centred at `position(i)` (pixel
    /// coordinates, y down): antialiased discs (coverage of the pixel by the disc, linear ramp over
    /// one pixel at the edge, blended over what is there) or, below 1.5 pixels, one opaque pixel.
    func drawPoints(count n: Int, order: [Int32], diameter: Double, position: (Int) -> (Double, Double), color: (Int) -> UInt32?) {
        let W = width, H = height, st = stride
        let px = pixels
        if diameter < 1.5 {
            for o in order {
                let i = Int(o)
                let (fx, fy) = position(i)
                guard fx.isFinite, fy.isFinite, let c = color(i) else { continue }
                let ix = Int(fx), iy = Int(fy)
                guard ix >= 0, ix < W, iy >= 0, iy < H else { continue }
                px[iy * st + ix] = c
            }
            return
        }
        let r = diameter / 2
        let reach = Int((r + 1).rounded(.up))
        for o in order {
            let i = Int(o)
            let (cx, cy) = position(i)
            guard cx.isFinite, cy.isFinite, let c = color(i) else { continue }
            let xa = max(0, Int(cx) - reach), xb = min(W - 1, Int(cx) + reach)
            let ya = max(0, Int(cy) - reach), yb = min(H - 1, Int(cy) + reach)
            guard xa <= xb, ya <= yb else { continue }
            let cr = Double(c >> 16 & 0xff), cg = Double(c >> 8 & 0xff), cb = Double(c & 0xff)
            for yy in ya...yb {
                let dy = Double(yy) + 0.5 - cy
                let row = yy * st
                for xx in xa...xb {
                    let dx = Double(xx) + 0.5 - cx
                    let cov = r + 0.5 - (dx * dx + dy * dy).squareRoot()
                    if cov <= 0 { continue }
                    if cov >= 1 { px[row + xx] = c; continue }
                    // Premultiplied "over": out = src·a + dst·(1 − a).
                    let d = px[row + xx], k = 1 - cov
                    let a = cov * 255 + Double(d >> 24) * k
                    let rr = cr * cov + Double(d >> 16 & 0xff) * k
                    let gg = cg * cov + Double(d >> 8 & 0xff) * k
                    let bb = cb * cov + Double(d & 0xff) * k
                    px[row + xx] = UInt32(a.rounded()) << 24 | UInt32(rr.rounded()) << 16 | UInt32(gg.rounded()) << 8 | UInt32(bb.rounded())
                }
            }
        }
    }
}

/// A panel's legend: category swatches with names (columns as scanpy), or a colour bar.
struct Legend {
    enum Kind { case categories([String], [RGB], columns: Int, rowHeight: Double, font: Double), colorbar(lo: Double, hi: Double) }
    var kind: Kind
    var width: Double

    static func range(_ d: [Double]) -> (Double, Double) {
        var lo = Double.infinity, hi = -Double.infinity
        for v in d where v.isFinite { lo = min(lo, v); hi = max(hi, v) }
        return lo <= hi ? (lo, hi) : (0, 1)
    }

    static func make(_ v: ColorValues, colors palette: [RGB], canvas: Canvas, height: Double) -> Legend {
        switch v {
        case .categorical(let codes, let cats):
            var names = cats, colors = palette
            if codes.contains(where: { $0 < 0 }) { names.append("NA"); colors.append(.lightgray) }
            let columns = names.count <= 14 ? 1 : names.count <= 30 ? 2 : 3
            let rows = max(1, (names.count + columns - 1) / columns)
            let rowHeight = min(22, height / Double(rows))
            let font = max(7, min(13, rowHeight * 0.62))
            canvas.font(size: font)
            let maxText = 200.0
            let colWidth = rowHeight * 0.9 + 6 + min(maxText, names.map { canvas.textWidth($0) }.max() ?? 0) + 12
            return Legend(kind: .categories(names, colors, columns: columns, rowHeight: rowHeight, font: font),
                          width: colWidth * Double(columns))
        case .continuous(let d):
            let (lo, hi) = range(d)
            canvas.font(size: 11)
            let w = Ticks.nice(lo, hi).map { canvas.textWidth(Ticks.label($0)) }.max() ?? 20
            return Legend(kind: .colorbar(lo: lo, hi: hi), width: 18 + 6 + w + 6)
        }
    }

    func draw(on c: Canvas, x: Double, y: Double, height: Double) {
        switch kind {
        case .categories(let names, let colors, let columns, let rowHeight, let font):
            c.font(size: font)
            let rows = (names.count + columns - 1) / columns
            let colWidth = width / Double(columns)
            let top = y + max(0, (height - Double(rows) * rowHeight) / 2)
            for (i, name) in names.enumerated() {
                let col = i / rows, row = i % rows
                let lx = x + Double(col) * colWidth, ly = top + (Double(row) + 0.5) * rowHeight
                let r = rowHeight * 0.3
                c.circle(x: lx + r + 1, y: ly, r: r, colors[i])
                c.text(c.fitted(name, maxWidth: colWidth - 2 * r - 14), x: lx + 2 * r + 7, y: ly + font * 0.36)
            }
        case .colorbar(let lo, let hi):
            let barH = (height * 0.8).rounded(), top = (y + height * 0.1).rounded(), barW = 16.0
            // One pixel row per step, on the pixel grid (no blended seams).
            for row in 0..<Int(barH) {
                let t = 1 - Double(row) / max(1, barH - 1)
                c.fill(x: x.rounded(), y: top + Double(row), w: barW, h: 1, Palettes.viridis(t))
            }
            c.strokeRect(x: x, y: top, w: barW, h: barH, .black)
            c.font(size: 11)
            let span = hi > lo ? hi - lo : 1
            for t in Ticks.nice(lo, hi) {
                let ty = top + barH * (1 - (t - lo) / span)
                c.line([(x + barW, ty), (x + barW + 4, ty)], .black, width: 1)
                c.text(Ticks.label(t), x: x + barW + 6, y: ty + 4)
            }
        }
    }
}

/// Axis ticks at 1, 2 or 5 × 10^k.
enum Ticks {
    static func nice(_ lo: Double, _ hi: Double, target: Int = 5) -> [Double] {
        guard lo.isFinite, hi.isFinite else { return [] }
        if hi <= lo { return [lo] }
        let raw = (hi - lo) / Double(target)
        let mag = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        var t = (lo / step).rounded(.up) * step
        var out: [Double] = []
        while t <= hi + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        // At least 4 labelled ticks where a finer step allows it (e.g. 1…5 rather than 2, 4).
        if out.count < 4 && target < 20 { return nice(lo, hi, target: target * 2) }
        return out
    }

    static func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        let a = abs(v)
        if a >= 1e5 || a < 1e-3 { return String(format: "%.1e", v) }
        if v == v.rounded() { return String(Int64(v)) }
        var s = String(format: "%.3f", v)
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }
}
