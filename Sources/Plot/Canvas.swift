// A cairo drawing surface for one figure: PNG (image surface), SVG or PDF (vector surfaces; the
// point layers are embedded as images, as matplotlib's rasterized=True). Units are pixels of the
// PNG; a vector page has the same size in points. Written atomically: a temporary file in the
// target's directory, renamed over the target when complete.
import CCairo
import Foundation

/// A plotting error with a one-line message.
public struct PlotError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What the figure file is, from its extension.
public enum FigureFormat: String, Sendable, CaseIterable {
    case png, svg, pdf
    public init(path: String) throws {
        let ext = (path as NSString).pathExtension.lowercased()
        guard let f = FigureFormat(rawValue: ext) else {
            throw PlotError("\(path): unknown figure format '.\(ext)'; use .png, .svg or .pdf")
        }
        self = f
    }
}

public enum TextAnchor { case left, center, right }

final class Canvas {
    let width: Int, height: Int
    let format: FigureFormat
    let surface: OpaquePointer
    let cr: OpaquePointer
    let target: String
    let temporary: String

    init(width: Int, height: Int, output: String) throws {
        format = try FigureFormat(path: output)
        let dir = (output as NSString).deletingLastPathComponent
        let base = (output as NSString).lastPathComponent
        temporary = (dir.isEmpty ? "." : dir) + "/.\(base).tmp-\(getpid())"
        target = output
        (self.width, self.height) = (width, height)
        switch format {
        case .png: surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, Int32(width), Int32(height))
        case .svg: surface = cairo_svg_surface_create(temporary, Double(width), Double(height))
        case .pdf: surface = cairo_pdf_surface_create(temporary, Double(width), Double(height))
        }
        guard cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS else {
            let m = String(cString: cairo_status_to_string(cairo_surface_status(surface)))
            cairo_surface_destroy(surface)
            throw PlotError("\(output): cannot create a \(width)×\(height) \(format.rawValue) surface (\(m))")
        }
        cr = cairo_create(surface)
        cairo_set_antialias(cr, CAIRO_ANTIALIAS_BEST)
        cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL)
        fill(x: 0, y: 0, w: Double(width), h: Double(height), .white)
    }

    deinit {
        cairo_destroy(cr)
        cairo_surface_destroy(surface)
    }

    /// Finishes the file: PNG encoded to the temporary file, then renamed over the target.
    func finish() throws {
        cairo_surface_flush(surface)
        if format == .png {
            let st = cairo_surface_write_to_png(surface, temporary)
            guard st == CAIRO_STATUS_SUCCESS else {
                unlink(temporary)
                throw PlotError("\(target): cannot write the PNG (\(String(cString: cairo_status_to_string(st))))")
            }
        } else {
            cairo_surface_finish(surface)
            let st = cairo_surface_status(surface)
            guard st == CAIRO_STATUS_SUCCESS else {
                unlink(temporary)
                throw PlotError("\(target): cannot write the \(format.rawValue) (\(String(cString: cairo_status_to_string(st))))")
            }
        }
        guard rename(temporary, target) == 0 else {
            let m = String(cString: strerror(errno))
            unlink(temporary)
            throw PlotError("\(target): cannot rename the finished figure into place (\(m))")
        }
    }

    // MARK: drawing

    func setColor(_ c: RGB, alpha: Double = 1) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha) }

    func fill(x: Double, y: Double, w: Double, h: Double, _ c: RGB) {
        setColor(c); cairo_rectangle(cr, x, y, w, h); cairo_fill(cr)
    }

    func strokeRect(x: Double, y: Double, w: Double, h: Double, _ c: RGB, width lw: Double = 1) {
        setColor(c); cairo_set_line_width(cr, lw)
        // Crisp 1-px lines on the pixel grid.
        cairo_rectangle(cr, x.rounded() + 0.5, y.rounded() + 0.5, w.rounded() - 1, h.rounded() - 1); cairo_stroke(cr)
    }

    func line(_ pts: [(Double, Double)], _ c: RGB, width lw: Double = 1.5) {
        guard let first = pts.first else { return }
        setColor(c); cairo_set_line_width(cr, lw)
        cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND); cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND)
        cairo_move_to(cr, first.0, first.1)
        for p in pts.dropFirst() { cairo_line_to(cr, p.0, p.1) }
        cairo_stroke(cr)
    }

    func circle(x: Double, y: Double, r: Double, _ c: RGB) {
        setColor(c); cairo_arc(cr, x, y, r, 0, 2 * .pi); cairo_fill(cr)
    }

    func font(size: Double, bold: Bool = false) {
        cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL)
        cairo_set_font_size(cr, size)
    }

    /// Advance width of `s` in the current font.
    func textWidth(_ s: String) -> Double {
        var e = cairo_text_extents_t()
        cairo_text_extents(cr, s, &e)
        return e.x_advance
    }

    /// `s` with its baseline at y, anchored at x; `rotate`: quarter turns anticlockwise (1 = reads upward).
    func text(_ s: String, x: Double, y: Double, anchor: TextAnchor = .left, color: RGB = .black, rotate: Int = 0) {
        let w = textWidth(s)
        let dx = anchor == .left ? 0 : anchor == .center ? -w / 2 : -w
        cairo_save(cr)
        cairo_translate(cr, x, y)
        if rotate != 0 { cairo_rotate(cr, -Double(rotate) * .pi / 2) }
        setColor(color)
        cairo_move_to(cr, dx, 0)
        cairo_show_text(cr, s)
        cairo_restore(cr)
    }

    /// `s` shortened with "…" to fit `maxWidth`.
    func fitted(_ s: String, maxWidth: Double) -> String {
        if textWidth(s) <= maxWidth { return s }
        var t = Substring(s)
        while !t.isEmpty && textWidth(t + "…") > maxWidth { t = t.dropLast() }
        return t + "…"
    }

    /// Draws an ARGB32 raster (premultiplied, cairo's layout) with its top-left corner at (x, y).
    func image(_ raster: Raster, x: Double, y: Double) {
        cairo_save(cr)
        cairo_set_source_surface(cr, raster.surface, x, y)
        // Vector outputs keep the pixels as they are (no smoothing of the embedded image).
        cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST)
        cairo_paint(cr)
        cairo_restore(cr)
    }
}

/// A premultiplied ARGB32 pixel buffer (a cairo image surface) that points are drawn into directly.
final class Raster {
    let width: Int, height: Int
    let surface: OpaquePointer
    let stride: Int
    let pixels: UnsafeMutablePointer<UInt32>

    init(width: Int, height: Int) throws {
        (self.width, self.height) = (width, height)
        surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, Int32(width), Int32(height))
        guard cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS, let data = cairo_image_surface_get_data(surface) else {
            cairo_surface_destroy(surface)
            throw PlotError("cannot allocate a \(width)×\(height) raster")
        }
        stride = Int(cairo_image_surface_get_stride(surface)) / 4
        pixels = UnsafeMutableRawPointer(data).bindMemory(to: UInt32.self, capacity: stride * height)
        cairo_surface_flush(surface)
        pixels.update(repeating: 0, count: stride * height)   // transparent
    }

    deinit { cairo_surface_destroy(surface) }

    /// After writing pixels directly, before cairo reads the surface.
    func markDirty() { cairo_surface_mark_dirty(surface) }
}

/// A decoded PNG (for tests and checks): width, height and pixels as 0xAARRGGBB (un-premultiplied
/// for opaque pixels, which is all a figure has).
public struct DecodedImage: Sendable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt32]

    /// Reads a PNG with cairo; a one-line error when it is not one.
    public static func readPNG(_ path: String) throws -> DecodedImage {
        let s = cairo_image_surface_create_from_png(path)
        defer { cairo_surface_destroy(s) }
        let st = cairo_surface_status(s)
        guard st == CAIRO_STATUS_SUCCESS else {
            throw PlotError("\(path): not a readable PNG (\(String(cString: cairo_status_to_string(st))))")
        }
        cairo_surface_flush(s)
        let w = Int(cairo_image_surface_get_width(s)), h = Int(cairo_image_surface_get_height(s))
        let stride = Int(cairo_image_surface_get_stride(s)) / 4
        guard let data = cairo_image_surface_get_data(s) else { throw PlotError("\(path): empty PNG") }
        let p = UnsafeMutableRawPointer(data).bindMemory(to: UInt32.self, capacity: stride * h)
        var out = [UInt32](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w { out[y * w + x] = p[y * stride + x] } }
        return DecodedImage(width: w, height: h, pixels: out)
    }

    /// How many pixels have exactly this colour (opaque).
    public func count(_ c: RGB) -> Int {
        let (r, g, b) = c.bytes
        let v = 0xff00_0000 | UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b)
        return pixels.reduce(0) { $0 + ($1 == v ? 1 : 0) }
    }

    /// How many opaque pixels are within `tolerance` (per 8-bit channel) of this colour.
    public func count(near c: RGB, tolerance: Int) -> Int {
        let (r, g, b) = c.bytes
        return pixels.reduce(0) { n, p in
            guard p >> 24 == 0xff else { return n }
            let ok = abs(Int(p >> 16 & 0xff) - Int(r)) <= tolerance && abs(Int(p >> 8 & 0xff) - Int(g)) <= tolerance
                && abs(Int(p & 0xff) - Int(b)) <= tolerance
            return n + (ok ? 1 : 0)
        }
    }

    /// Pixel counts of the exact colours `colors` inside the rectangle.
    public func count(_ c: RGB, x: Range<Int>, y: Range<Int>) -> Int {
        let (r, g, b) = c.bytes
        let v = 0xff00_0000 | UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b)
        var n = 0
        for yy in y.clamped(to: 0..<height) { for xx in x.clamped(to: 0..<width) where pixels[yy * width + xx] == v { n += 1 } }
        return n
    }
}
