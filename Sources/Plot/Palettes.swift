// Colours as scanpy picks them for `sc.pl.umap(adata, color=key)`:
// - categorical, ≤ 10 categories: matplotlib's default colour cycle (tab10, vega "category10");
// - ≤ 20: scanpy's default_20 (vega_20 reordered, greys removed, colour-blind fixes);
// - ≤ 28: default_28 (zeileis_28); ≤ 102: default_102 (godsnot_102); beyond: grey;
// - missing values (code −1): scanpy's na_color, lightgray;
// - continuous: matplotlib's viridis (its 16 evenly spaced samples, linearly interpolated).
// The palette values are data from scanpy/plotting/palettes.py and matplotlib's tab10/tab20/viridis.

/// An sRGB colour, components 0…1.
public struct RGB: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var r: Double, g: Double, b: Double
    public init(_ r: Double, _ g: Double, _ b: Double) { (self.r, self.g, self.b) = (r, g, b) }
    /// "#rrggbb" (case-insensitive).
    public init(hex: String) {
        let h = hex.hasPrefix("#") ? String(hex.dropFirst()) : hex
        let v = UInt32(h, radix: 16) ?? 0
        self.init(Double(v >> 16 & 0xff) / 255, Double(v >> 8 & 0xff) / 255, Double(v & 0xff) / 255)
    }
    /// The 8-bit components (rounded).
    public var bytes: (UInt8, UInt8, UInt8) {
        func q(_ x: Double) -> UInt8 { UInt8(max(0, min(255, (x * 255).rounded()))) }
        return (q(r), q(g), q(b))
    }
    public var description: String {
        let (r, g, b) = bytes
        return "#" + [r, g, b].map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
    public static let black = RGB(0, 0, 0), white = RGB(1, 1, 1)
    /// scanpy's `na_color`.
    public static let lightgray = RGB(hex: "#d3d3d3")
    public static let grey = RGB(hex: "#808080")
}

public enum Palettes {
    /// matplotlib's tab10 (the default colour cycle).
    public static let category10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                    "#bcbd22", "#17becf"].map { RGB(hex: $0) }
    /// scanpy's default_20 (vega_20_scanpy).
    public static let default20 = ["#1f77b4", "#ff7f0e", "#279e68", "#d62728", "#aa40fc", "#8c564b", "#e377c2", "#b5bd61",
                                   "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
                                   "#dbdb8d", "#9edae5", "#ad494a", "#8c6d31"].map { RGB(hex: $0) }
    /// scanpy's default_28 (zeileis_28).
    public static let default28 = ["#023fa5", "#7d87b9", "#bec1d4", "#d6bcc0", "#bb7784", "#8e063b", "#4a6fe3", "#8595e1",
                                   "#b5bbe3", "#e6afb9", "#e07b91", "#d33f6a", "#11c638", "#8dd593", "#c6dec7", "#ead3c6",
                                   "#f0b98d", "#ef9708", "#0fcfc0", "#9cded6", "#d5eae7", "#f3e1eb", "#f6c4e1", "#f79cd4",
                                   "#7f7f7f", "#c7c7c7", "#1CE6FF", "#336600"].map { RGB(hex: $0) }
    /// scanpy's default_102 (godsnot_102).
    public static let default102 = [
        "#FFFF00", "#1CE6FF", "#FF34FF", "#FF4A46", "#008941", "#006FA6", "#A30059", "#FFDBE5", "#7A4900", "#0000A6",
        "#63FFAC", "#B79762", "#004D43", "#8FB0FF", "#997D87", "#5A0007", "#809693", "#6A3A4C", "#1B4400", "#4FC601",
        "#3B5DFF", "#4A3B53", "#FF2F80", "#61615A", "#BA0900", "#6B7900", "#00C2A0", "#FFAA92", "#FF90C9", "#B903AA",
        "#D16100", "#DDEFFF", "#000035", "#7B4F4B", "#A1C299", "#300018", "#0AA6D8", "#013349", "#00846F", "#372101",
        "#FFB500", "#C2FFED", "#A079BF", "#CC0744", "#C0B9B2", "#C2FF99", "#001E09", "#00489C", "#6F0062", "#0CBD66",
        "#EEC3FF", "#456D75", "#B77B68", "#7A87A1", "#788D66", "#885578", "#FAD09F", "#FF8A9A", "#D157A0", "#BEC459",
        "#456648", "#0086ED", "#886F4C", "#34362D", "#B4A8BD", "#00A6AA", "#452C2C", "#636375", "#A3C8C9", "#FF913F",
        "#938A81", "#575329", "#00FECF", "#B05B6F", "#8CD0FF", "#3B9700", "#04F757", "#C8A1A1", "#1E6E00", "#7900D7",
        "#A77500", "#6367A9", "#A05837", "#6B002C", "#772600", "#D790FF", "#9B9700", "#549E79", "#FFF69F", "#201625",
        "#72418F", "#BC23FF", "#99ADC0", "#3A2465", "#922329", "#5B4534", "#FDE8DC", "#404E55", "#0089A3", "#CB7E98",
        "#A4E804", "#324E72"].map { RGB(hex: $0) }

    /// The colours scanpy gives `n` categories (in category order).
    public static func categorical(_ n: Int) -> [RGB] {
        let p: [RGB]
        if n <= category10.count { p = category10 } else if n <= 20 { p = default20 } else if n <= 28 { p = default28 }
        else if n <= default102.count { p = default102 } else { return [RGB](repeating: .grey, count: n) }
        return Array(p.prefix(n))
    }

    /// The name of the palette `categorical(n)` uses (for legends and tests).
    public static func categoricalName(_ n: Int) -> String {
        n <= 10 ? "category10" : n <= 20 ? "default_20" : n <= 28 ? "default_28" : n <= 102 ? "default_102" : "grey"
    }

    /// matplotlib's viridis at 0, 1/15, …, 1 (the last repeated).
    static let viridisSamples = ["#440154", "#481a6c", "#472f7d", "#414487", "#39568c", "#31688e", "#2a788e", "#23888e",
                                 "#1f988b", "#22a884", "#35b779", "#54c568", "#7ad151", "#a5db36", "#d2e21b", "#fde725",
                                 "#fde725"].map { RGB(hex: $0) }

    /// viridis at t ∈ [0, 1] (clamped; NaN gives lightgray).
    public static func viridis(_ t: Double) -> RGB {
        guard t.isFinite else { return .lightgray }
        let x = max(0, min(1, t)) * 15
        let i = min(Int(x), 14), f = x - Double(i)
        let a = viridisSamples[i], b = viridisSamples[i + 1]
        return RGB(a.r + (b.r - a.r) * f, a.g + (b.g - a.g) * f, a.b + (b.b - a.b) * f)
    }
}
