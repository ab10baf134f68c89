import ArgumentParser
import Collectives
import Foundation
import Plot

/// `syncytium plot`: figures of an .h5ad (one process; under mpirun only rank 0 draws).
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Draw the 2-D layout coloured by obs keys (PNG, SVG or PDF), and optionally the training curve and the cluster-vs-label heatmap.",
        discussion: """
            Panels side by side, one per --color key, with scanpy's default palettes (category10 up to 10 \
            categories, default_20, default_28, default_102), a legend in the right margin, viridis and a colour \
            bar for numeric keys. Points are rasterised in a seeded random order. Drawn by one process (rank 0 \
            under mpirun): the layout and the obs columns are read whole.
            """)

    @Argument(help: "An .h5ad (e.g. the output of `syncytium cluster`).") var input: String
    @Option(help: "obs keys to colour by, comma-separated (one panel each).") var color = "syncytium_cluster"
    @Option(help: "Figure of the layout: .png, .svg or .pdf.") var output: String?
    @Option(help: "obsm key of the 2-D layout (its first two columns).") var basis = "X_umap"
    @Option(help: "Seed of the draw order.") var seed: UInt64 = 0
    @Option(help: "Side of each panel in pixels.") var panelSize = 480
    @Option(help: "Marker diameter in pixels (default: from the cell count, as scanpy's 120000/n).") var pointSize: Double?
    @Option(help: "Also draw the per-epoch loss terms (uns['syncytium']['history']) to this file.") var trainingCurve: String?
    @Option(help: "Also draw the cluster-vs-label contingency heatmap to this file.") var heatmap: String?
    @Option(help: "Label column of the heatmap (default: the one the run recorded in uns['syncytium']).") var labelKey: String?
    @Option(help: "Cluster column of the heatmap.") var clusterKey = "syncytium_cluster"
    @Flag(help: "Print JSON.") var json = false

    struct Report: Codable { var files: [String]; var cells: Int?; var panels: Int?; var readSeconds: Double?; var drawSeconds: Double? }

    func validate() throws {
        if output == nil && trainingCurve == nil && heatmap == nil { throw ValidationError("give --output FIG.png (and/or --training-curve, --heatmap)") }
        guard panelSize >= 64 && panelSize <= 8192 else { throw ValidationError("--panel-size must be 64…8192 pixels") }
        if let s = pointSize, !(s > 0 && s <= 64) { throw ValidationError("--point-size must be in (0, 64] pixels") }
    }

    func run() throws {
        let comm = Communicator.world
        guard comm.rank == 0 else { comm.finalize(); return }
        do {
            var report = Report(files: [])
            // Before reading anything: every figure path has a known format.
            for p in [output, trainingCurve, heatmap].compactMap({ $0 }) { _ = try FigureFormat(path: p) }
            if let out = output {
                var o = LayoutOptions()
                o.colors = color.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                o.basis = basis; o.seed = seed; o.panelSize = panelSize; o.pointSize = pointSize
                let s = try LayoutFigure.draw(file: input, options: o, output: out)
                report.files.append(out)
                (report.cells, report.panels, report.readSeconds, report.drawSeconds) = (s.cells, s.panels, s.readSeconds, s.drawSeconds)
                if !json {
                    print("wrote \(out): \(s.width)×\(s.height), \(s.panels) panel(s), \(s.cells) cells; read \(String(format: "%.2f", s.readSeconds)) s, drawn \(String(format: "%.2f", s.drawSeconds)) s")
                }
            }
            if let p = trainingCurve {
                guard let h = try FigureSource(input).lossHistory(), !h.epochs.isEmpty else {
                    throw PlotError("\(input): no uns['syncytium']['history'] (per-epoch losses; written by `syncytium cluster`)")
                }
                try TrainingCurveFigure.render(h, title: "training: per-epoch mean loss terms", output: p)
                report.files.append(p)
                if !json { print("wrote \(p): \(h.terms.count) loss term(s) over \(h.epochs.count) epoch(s)") }
            }
            if let p = heatmap {
                let src = try FigureSource(input)
                guard let label = labelKey ?? src.recordedLabelKey() else {
                    throw PlotError("\(input): no label key recorded in uns['syncytium']; pass --label-key")
                }
                try ContingencyFigure.draw(file: input, clusterKey: clusterKey, labelKey: label, output: p)
                report.files.append(p)
                if !json { print("wrote \(p): obs['\(clusterKey)'] vs obs['\(label)']") }
            }
            if json {
                let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]
                print(String(decoding: try e.encode(report), as: UTF8.self))
            }
        } catch let e as PlotError {
            writeStderr("error: \(e.message)\n")
            comm.finalize()
            throw ExitCode.failure
        }
        comm.finalize()
    }
}
