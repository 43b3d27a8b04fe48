internal import CCairo
import Foundation

/// Metrics of DejaVu Sans as fractions of the font size, used to place text independently of its letters.
enum FontMetrics {
    static let family = "DejaVu Sans"
    /// Height of capitals and digits above the baseline.
    static let capHeight = 0.73
    /// Depth of descenders below the baseline.
    static let descent = 0.24
    /// Distance between baselines of stacked lines.
    static let lineHeight = 1.25
}

/// Where a text's anchor point sits on the text, across its reading direction.
enum VerticalAnchor {
    /// The anchor is on the baseline.
    case baseline
    /// The anchor is half-way up the capitals.
    case middle
    /// The anchor is at the top of the capitals.
    case top
    /// The anchor is at the bottom of the descenders.
    case bottom

    func offset(size: Double) -> Double {
        switch self {
        case .baseline: return 0
        case .middle: return FontMetrics.capHeight * size / 2
        case .top: return FontMetrics.capHeight * size
        case .bottom: return -FontMetrics.descent * size
        }
    }
}

/// One piece of text drawn on a canvas: the SVG writer repeats it as selectable text.
struct TextRecord {
    var text: String
    /// Anchor point in picture coordinates.
    var x: Double
    var y: Double
    /// Rotation in radians, clockwise on the page (−π/2 reads bottom to top).
    var angle: Double
    /// Start of the baseline relative to the anchor, in the rotated frame.
    var dx: Double
    var dy: Double
    var size: Double
    var bold: Bool
    /// Advance width as cairo measured it.
    var width: Double
}

private func configureFonts(_ cr: OpaquePointer) {
    let options = cairo_font_options_create()
    cairo_font_options_set_hint_metrics(options, CAIRO_HINT_METRICS_OFF)
    cairo_font_options_set_hint_style(options, CAIRO_HINT_STYLE_SLIGHT)
    cairo_font_options_set_antialias(options, CAIRO_ANTIALIAS_GRAY)
    cairo_set_font_options(cr, options)
    cairo_font_options_destroy(options)
}

private func selectFont(_ cr: OpaquePointer, size: Double, bold: Bool) {
    cairo_select_font_face(
        cr, FontMetrics.family, CAIRO_FONT_SLANT_NORMAL,
        bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL)
    cairo_set_font_size(cr, size)
}

private func advance(_ cr: OpaquePointer, _ text: String, size: Double, bold: Bool) -> Double {
    guard !text.isEmpty else { return 0 }
    selectFont(cr, size: size, bold: bold)
    var extents = cairo_text_extents_t()
    cairo_text_extents(cr, text, &extents)
    return extents.x_advance
}

/// Measures text before a picture's size is known (cairo on a 1×1 scratch surface).
final class TextMeasurer {
    private let surface: OpaquePointer
    private let cr: OpaquePointer

    init() {
        surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1)
        cr = cairo_create(surface)
        configureFonts(cr)
    }

    deinit {
        cairo_destroy(cr)
        cairo_surface_destroy(surface)
    }

    /// Advance width of `text` at `size` points.
    func width(_ text: String, size: Double, bold: Bool = false) -> Double {
        advance(cr, text, size: size, bold: bold)
    }

    /// The widest of `texts` (0 when empty).
    func maxWidth(_ texts: some Sequence<String>, size: Double, bold: Bool = false) -> Double {
        texts.reduce(0) { Swift.max($0, width($1, size: size, bold: bold)) }
    }
}

/// Marker shapes that tell series apart without colour.
enum MarkerShape: CaseIterable {
    case circle, square, triangle, diamond, invertedTriangle, pentagon
}

/// A cairo context with the few drawing operations the plots need. Units are points.
final class Canvas {
    let cr: OpaquePointer
    let format: OutputFormat
    private(set) var texts: [TextRecord] = []

    init(cr: OpaquePointer, format: OutputFormat) {
        self.cr = cr
        self.format = format
        configureFonts(cr)
        cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND)
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT)
    }

    /// Device pixels per point (2 for PNG, 1 for SVG).
    var scale: Double { format.scale }

    /// Rounds a coordinate to the device pixel grid (PNG) so that edges stay crisp.
    func snap(_ v: Double) -> Double {
        format == .png ? (v * scale).rounded() / scale : v
    }

    func setColor(_ c: RGBColor, alpha: Double = 1) {
        if alpha >= 1 {
            cairo_set_source_rgb(cr, c.red, c.green, c.blue)
        } else {
            cairo_set_source_rgba(cr, c.red, c.green, c.blue, alpha)
        }
    }

    func fillRect(x: Double, y: Double, width: Double, height: Double, color: RGBColor, alpha: Double = 1) {
        setColor(color, alpha: alpha)
        cairo_rectangle(cr, x, y, width, height)
        cairo_fill(cr)
    }

    func strokeRect(x: Double, y: Double, width: Double, height: Double, color: RGBColor, lineWidth: Double) {
        setColor(color)
        cairo_set_line_width(cr, lineWidth)
        cairo_rectangle(cr, x, y, width, height)
        cairo_stroke(cr)
    }

    func line(
        _ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, color: RGBColor, width: Double,
        alpha: Double = 1, dash: [Double] = []
    ) {
        setColor(color, alpha: alpha)
        cairo_set_line_width(cr, width)
        cairo_set_dash(cr, dash, Int32(dash.count), 0)
        cairo_move_to(cr, x0, y0)
        cairo_line_to(cr, x1, y1)
        cairo_stroke(cr)
        cairo_set_dash(cr, nil, 0, 0)
    }

    /// Strokes connected points; `closed` joins the last point to the first.
    func polyline(
        _ points: [(x: Double, y: Double)], color: RGBColor, width: Double, alpha: Double = 1,
        closed: Bool = false, dash: [Double] = []
    ) {
        guard let first = points.first, points.count > 1 else { return }
        setColor(color, alpha: alpha)
        cairo_set_line_width(cr, width)
        cairo_set_dash(cr, dash, Int32(dash.count), 0)
        defer { cairo_set_dash(cr, nil, 0, 0) }
        cairo_move_to(cr, first.x, first.y)
        for p in points.dropFirst() { cairo_line_to(cr, p.x, p.y) }
        if closed { cairo_close_path(cr) }
        cairo_stroke(cr)
    }

    /// Runs `body` with drawing clipped to a rectangle.
    func clipped(x: Double, y: Double, width: Double, height: Double, _ body: () throws -> Void) rethrows {
        cairo_save(cr)
        cairo_rectangle(cr, x, y, width, height)
        cairo_clip(cr)
        defer { cairo_restore(cr) }
        try body()
    }

    /// A filled marker with a thin white edge, centred on (x, y); `radius` is about half its width.
    func marker(_ shape: MarkerShape, x: Double, y: Double, radius r: Double, color: RGBColor) {
        cairo_new_path(cr)
        func polygon(_ vertices: Int, rotation: Double, radius: Double) {
            for k in 0..<vertices {
                let a = rotation + 2 * Double.pi * Double(k) / Double(vertices)
                let px = x + radius * cos(a), py = y + radius * sin(a)
                if k == 0 { cairo_move_to(cr, px, py) } else { cairo_line_to(cr, px, py) }
            }
            cairo_close_path(cr)
        }
        switch shape {
        case .circle: cairo_arc(cr, x, y, r, 0, 2 * Double.pi)
        case .square: cairo_rectangle(cr, x - r * 0.88, y - r * 0.88, r * 1.76, r * 1.76)
        case .triangle: polygon(3, rotation: -Double.pi / 2, radius: r * 1.25)
        case .invertedTriangle: polygon(3, rotation: Double.pi / 2, radius: r * 1.25)
        case .diamond: polygon(4, rotation: 0, radius: r * 1.25)
        case .pentagon: polygon(5, rotation: -Double.pi / 2, radius: r * 1.1)
        }
        setColor(color)
        cairo_fill_preserve(cr)
        setColor(.white)
        cairo_set_line_width(cr, 0.6)
        cairo_stroke(cr)
    }

    /// Advance width of `text` at `size` points.
    func textWidth(_ text: String, size: Double, bold: Bool = false) -> Double {
        advance(cr, text, size: size, bold: bold)
    }

    /// Draws `text` anchored at (x, y). `align` is the anchor's place along the text (0 start, 0.5 centre,
    /// 1 end); `angle` rotates clockwise on the page about the anchor (−π/2 reads bottom to top).
    func text(
        _ text: String, x: Double, y: Double, size: Double, bold: Bool = false, align: Double = 0,
        vertical: VerticalAnchor = .baseline, angle: Double = 0, color: RGBColor = .ink
    ) {
        guard !text.isEmpty else { return }
        let width = textWidth(text, size: size, bold: bold)
        let dx = -align * width, dy = vertical.offset(size: size)
        cairo_save(cr)
        cairo_translate(cr, x, y)
        if angle != 0 { cairo_rotate(cr, angle) }
        setColor(color)
        cairo_move_to(cr, dx, dy)
        cairo_show_text(cr, text)
        cairo_new_path(cr)
        cairo_restore(cr)
        if format == .svg {
            texts.append(
                TextRecord(
                    text: text, x: x, y: y, angle: angle, dx: dx, dy: dy, size: size, bold: bold,
                    width: width))
        }
    }

    /// Fills a rectangle with the colour map running from `colormap.color(at: 0)` at the bottom to 1 at the top.
    func verticalColormap(x: Double, y: Double, width: Double, height: Double, colormap: Colormap) {
        let pattern = cairo_pattern_create_linear(0, y + height, 0, y)
        defer { cairo_pattern_destroy(pattern) }
        let n = colormap.anchors.count
        for (k, c) in colormap.anchors.enumerated() {
            cairo_pattern_add_color_stop_rgb(pattern, Double(k) / Double(n - 1), c.red, c.green, c.blue)
        }
        cairo_set_source(cr, pattern)
        cairo_rectangle(cr, x, y, width, height)
        cairo_fill(cr)
    }

    /// Paints a raster of `columns × rows` premultiplied ARGB pixels (row 0 at the top) into a rectangle.
    /// `smooth` interpolates bilinearly; otherwise pixels stay sharp squares.
    func raster(
        columns: Int, rows: Int, x: Double, y: Double, width: Double, height: Double, smooth: Bool,
        pixel: (_ column: Int, _ row: Int) -> UInt32
    ) {
        guard columns > 0, rows > 0 else { return }
        let image = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, Int32(columns), Int32(rows))
        defer { cairo_surface_destroy(image) }
        guard cairo_surface_status(image) == CAIRO_STATUS_SUCCESS, let data = cairo_image_surface_get_data(image)
        else { return }
        let stride = Int(cairo_image_surface_get_stride(image))
        for r in 0..<rows {
            let row = UnsafeMutableRawPointer(data + r * stride).assumingMemoryBound(to: UInt32.self)
            for c in 0..<columns { row[c] = pixel(c, r) }
        }
        cairo_surface_mark_dirty(image)
        cairo_save(cr)
        cairo_rectangle(cr, x, y, width, height)
        cairo_clip(cr)
        cairo_translate(cr, x, y)
        cairo_scale(cr, width / Double(columns), height / Double(rows))
        cairo_set_source_surface(cr, image, 0, 0)
        let pattern = cairo_get_source(cr)
        cairo_pattern_set_filter(pattern, smooth ? CAIRO_FILTER_BILINEAR : CAIRO_FILTER_NEAREST)
        cairo_pattern_set_extend(pattern, CAIRO_EXTEND_PAD)
        cairo_paint(cr)
        cairo_restore(cr)
    }
}

/// Packs an opaque colour as a premultiplied ARGB32 pixel.
func argbPixel(_ c: RGBColor) -> UInt32 {
    func byte(_ v: Double) -> UInt32 { UInt32((Swift.min(Swift.max(v, 0), 1) * 255).rounded()) }
    return 0xFF00_0000 | byte(c.red) << 16 | byte(c.green) << 8 | byte(c.blue)
}
