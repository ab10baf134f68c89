// The run's training curve (each loss term's per-epoch mean, one small panel per term, from
// uns['syncytium']['history']) and the cluster-vs-label contingency heatmap (rows clusters,
// columns labels, each row normalised to the fraction of that cluster's cells; viridis; counts
// on the rows' right).
import Foundation

public enum TrainingCurveFigure {
    /// Draws `history`; one panel per term, up to 4 per row.
    public static func render(_ history: LossHistory, title: String, output: String) throws {
        guard !history.terms.isEmpty, !history.epochs.isEmpty else { throw PlotError("no per-epoch losses to draw") }
        let pw = 320.0, ph = 230.0, ml = 64.0, mr = 16.0, mt = 34.0, mb = 42.0, top = 36.0
        let perRow = min(4, history.terms.count)
        let rows = (history.terms.count + perRow - 1) / perRow
        let W = Int(Double(perRow) * (ml + pw + mr)), H = Int(top + Double(rows) * (mt + ph + mb))
        let c = try Canvas(width: W, height: H, output: output)
        c.font(size: 16)
        c.text(title, x: Double(W) / 2, y: 24, anchor: .center)
        let xs = history.epochs
        let (e0, e1) = (xs.min()!, xs.max()!)
        for (k, term) in history.terms.enumerated() {
            let ox = Double(k % perRow) * (ml + pw + mr) + ml, oy = top + Double(k / perRow) * (mt + ph + mb) + mt
            let finite = term.values.filter(\.isFinite)
            var (lo, hi) = (finite.min() ?? 0, finite.max() ?? 1)
            if hi - lo < 1e-12 * max(1, abs(hi)) { lo -= 0.5 * max(abs(lo), 1e-3); hi += 0.5 * max(abs(hi), 1e-3) }
            let pad = (hi - lo) * 0.05
            (lo, hi) = (lo - pad, hi + pad)
            let xspan = e1 > e0 ? e1 - e0 : 1
            let xlo = e1 > e0 ? e0 : e0 - 0.5
            func X(_ e: Double) -> Double { ox + (e - xlo) / (e1 > e0 ? xspan : 1) * pw }
            func Y(_ v: Double) -> Double { oy + ph - (v - lo) / (hi - lo) * ph }
            c.font(size: 10)
            let grid = RGB(hex: "#e5e5e5")
            for t in Ticks.nice(lo, hi) {
                c.line([(ox, Y(t)), (ox + pw, Y(t))], grid, width: 1)
                c.text(Ticks.label(t), x: ox - 5, y: Y(t) + 3.5, anchor: .right)
            }
            let xticks = e1 > e0 ? Ticks.nice(e0, e1).filter { $0 == $0.rounded() } : [e0]
            for t in xticks {
                c.line([(X(t), oy + ph), (X(t), oy + ph + 4)], .black, width: 1)
                c.text(Ticks.label(t), x: X(t), y: oy + ph + 15, anchor: .center)
            }
            let color = Palettes.category10[k % 10]
            let pts = zip(xs, term.values).filter { $0.1.isFinite }.map { (X($0.0), Y($0.1)) }
            c.line(pts, color, width: 2)
            if pts.count <= 60 { for p in pts { c.circle(x: p.0, y: p.1, r: 2.5, color) } }
            c.strokeRect(x: ox, y: oy, w: pw, h: ph, .black)
            c.font(size: 13)
            c.text(term.name, x: ox + pw / 2, y: oy - 9, anchor: .center)
            c.font(size: 11)
            c.text("epoch", x: ox + pw / 2, y: oy + ph + 32, anchor: .center)
        }
        try c.finish()
    }
}

public enum ContingencyFigure {
    /// counts[cluster][label].
    public static func table(clusters: [Int32], labels: [Int32], nClusters: Int, nLabels: Int) -> [[Int]] {
        var t = [[Int]](repeating: [Int](repeating: 0, count: nLabels), count: nClusters)
        for (a, b) in zip(clusters, labels) where a >= 0 && Int(a) < nClusters && b >= 0 && Int(b) < nLabels { t[Int(a)][Int(b)] += 1 }
        return t
    }

    /// Reads obs[clusterKey] and obs[labelKey] from `file` and draws the heatmap.
    public static func draw(file: String, clusterKey: String, labelKey: String, output: String) throws {
        let src = try FigureSource(file)
        let v = try src.colors([clusterKey, labelKey])
        guard case .categorical(let cc, let cn) = v[0] else { throw PlotError("\(file): obs['\(clusterKey)'] is not categorical") }
        guard case .categorical(let lc, let ln) = v[1] else { throw PlotError("\(file): obs['\(labelKey)'] is not categorical") }
        try render(table(clusters: cc, labels: lc, nClusters: cn.count, nLabels: ln.count), rowNames: cn, columnNames: ln,
                   rowKey: clusterKey, columnKey: labelKey, output: output)
    }

    public static func render(_ t: [[Int]], rowNames: [String], columnNames: [String], rowKey: String, columnKey: String,
                              output: String) throws {
        guard !t.isEmpty, !columnNames.isEmpty else { throw PlotError("empty contingency table") }
        let scratch = try Canvas(width: 1, height: 1, output: "/dev/null/unused.png")
        let cell = max(14, min(44, 640 / Double(max(t.count, columnNames.count))))
        let font = max(8, min(12, cell * 0.45))
        scratch.font(size: font)
        let rowLabelW = min(220, (rowNames.map { scratch.textWidth($0) }.max() ?? 20)) + 12
        let colLabelH = min(220, (columnNames.map { scratch.textWidth($0) }.max() ?? 20)) + 12
        let countW = scratch.textWidth("n=" + String(t.map { $0.reduce(0, +) }.max() ?? 0)) + 16
        let ml = 40 + rowLabelW, mt = 50.0
        let gw = cell * Double(columnNames.count), gh = cell * Double(t.count)
        let W = Int(ml + gw + countW + 80), H = Int(mt + gh + colLabelH + 30)
        let c = try Canvas(width: W, height: H, output: output)
        c.font(size: 15)
        c.text(c.fitted("\(rowKey) vs \(columnKey) (fraction of each cluster)", maxWidth: Double(W) - 10), x: Double(W) / 2, y: 28, anchor: .center)
        for (i, row) in t.enumerated() {
            let total = row.reduce(0, +)
            for (j, n) in row.enumerated() {
                let f = total > 0 ? Double(n) / Double(total) : 0
                let x = ml + Double(j) * cell, y = mt + Double(i) * cell
                c.fill(x: x, y: y, w: cell, h: cell, Palettes.viridis(f))
                if cell >= 26, n > 0 {
                    c.font(size: min(11, cell * 0.3))
                    c.text(f < 0.005 ? "<.01" : String(format: "%.2f", f), x: x + cell / 2, y: y + cell / 2 + 4, anchor: .center, color: f > 0.6 ? .black : .white)
                }
            }
            c.font(size: font)
            c.text(c.fitted(rowNames[i], maxWidth: rowLabelW - 8), x: ml - 6, y: mt + (Double(i) + 0.5) * cell + font * 0.36, anchor: .right)
            c.text("n=\(total)", x: ml + gw + 6, y: mt + (Double(i) + 0.5) * cell + font * 0.36, color: RGB(hex: "#444444"))
        }
        c.strokeRect(x: ml, y: mt, w: gw, h: gh, .black)
        c.font(size: font)
        for (j, name) in columnNames.enumerated() {
            c.text(c.fitted(name, maxWidth: colLabelH - 8), x: ml + (Double(j) + 0.5) * cell + font * 0.36, y: mt + gh + 6, anchor: .right, rotate: 1)
        }
        c.font(size: 12)
        c.text(columnKey, x: ml + gw / 2, y: Double(H) - 8, anchor: .center)
        c.text(rowKey, x: 16, y: mt + gh / 2, anchor: .center, rotate: 1)
        // Colour bar 0…1.
        let bx = ml + gw + countW + 12, bh = min(gh, 240.0)
        for s in 0..<100 {
            c.fill(x: bx, y: mt + bh * (1 - Double(s + 1) / 100), w: 14, h: bh / 100 + 0.6, Palettes.viridis(Double(s) / 99))
        }
        c.strokeRect(x: bx, y: mt, w: 14, h: bh, .black)
        c.font(size: 10)
        for v in [0.0, 0.5, 1.0] { c.text(Ticks.label(v), x: bx + 18, y: mt + bh * (1 - v) + 3.5) }
        try c.finish()
    }
}

/// The figures of a finished run (`cluster --plot DIR`).
public enum RunFigures {
    /// Writes DIR/layout.png (the layout coloured by the cluster key and the label key), DIR/training.png
    /// (when the file has per-epoch losses) and DIR/contingency.png (when a label key is given or
    /// recorded and present). Returns the files written.
    public static func write(file: String, directory: String, basis: String?, clusterKey: String = "syncytium_cluster",
                             labelKey: String?, seed: UInt64) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let src = try FigureSource(file)
        let columns = src.obsColumns()
        let label = (labelKey ?? src.recordedLabelKey()).flatMap { columns.contains($0) ? $0 : nil }
        var written: [String] = []
        var opts = LayoutOptions()
        // X_umap when the run wrote one; else the learnt embedding's first two coordinates.
        let keys = src.obsmKeys()
        opts.basis = basis ?? (keys.contains("X_umap") ? "X_umap" : "X_syncytium")
        opts.colors = [clusterKey] + (label.map { [$0] } ?? [])
        opts.seed = seed
        let layout = directory + "/layout.png"
        try LayoutFigure.draw(file: file, options: opts, output: layout)
        written.append(layout)
        if let h = try src.lossHistory(), !h.terms.isEmpty, !h.epochs.isEmpty {
            let p = directory + "/training.png"
            try TrainingCurveFigure.render(h, title: "training: per-epoch mean loss terms", output: p)
            written.append(p)
        }
        if let l = label {
            let p = directory + "/contingency.png"
            try ContingencyFigure.draw(file: file, clusterKey: clusterKey, labelKey: l, output: p)
            written.append(p)
        }
        return written
    }

    /// Checks before a run that DIR can be created and written (a one-line error otherwise).
    public static func validateDirectory(_ dir: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) {
            guard isDir.boolValue else { throw PlotError("exists and is not a directory") }
            guard access(dir, W_OK) == 0 else { throw PlotError("the directory is not writable") }
            return
        }
        // The nearest existing ancestor must be a writable directory.
        var p = (dir as NSString).deletingLastPathComponent
        if p.isEmpty { p = "." }
        while !FileManager.default.fileExists(atPath: p, isDirectory: &isDir) {
            let up = (p as NSString).deletingLastPathComponent
            if up == p || up.isEmpty { p = "."; break }
            p = up
        }
        guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir), isDir.boolValue, access(p, W_OK) == 0 else {
            throw PlotError("cannot be created (\(p) is not a writable directory)")
        }
    }
}
