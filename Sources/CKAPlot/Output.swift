internal import CCairo
import Foundation
import _CKASupport
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The file formats a picture can be written in, chosen by the file extension.
enum OutputFormat: Sendable {
    case png, svg

    /// The format for `path` (case-insensitive extension), or `PlotError.unsupportedExtension`.
    static func forPath(_ path: String) throws -> OutputFormat {
        let name = path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
        let ext = name.contains(".") ? String(name.split(separator: ".", omittingEmptySubsequences: false).last!) : ""
        switch ext.lowercased() {
        case "png": return .png
        case "svg": return .svg
        default: throw PlotError.unsupportedExtension(path: path, fileExtension: ext)
        }
    }

    /// Device pixels per layout unit. Layouts are in points (1/72 in); PNG is drawn at 144 dpi.
    var scale: Double { self == .png ? 2 : 1 }

    /// A requested output size (pixels for PNG, points for SVG) in layout units, or nil.
    func layoutLength(_ requested: Int?, name: String, path: String) throws -> Double? {
        guard let requested else { return nil }
        guard requested > 0, requested <= 30_000 else {
            throw PlotError.invalidParameter(path: path, what: "\(name) \(requested) is outside 1...30000")
        }
        return Double(requested) / scale
    }
}

/// The final size of a picture: layout units, and pixels for PNG.
struct PictureSize {
    var width: Double
    var height: Double
    var pixelWidth: Int
    var pixelHeight: Int

    /// A size from the layout, keeping an exact requested pixel size when there was one.
    init(width: Double, height: Double, format: OutputFormat, requestedWidth: Int?, requestedHeight: Int?) {
        let w = requestedWidth.map(Double.init).map { $0 / format.scale } ?? width.rounded(.up)
        let h = requestedHeight.map(Double.init).map { $0 / format.scale } ?? height.rounded(.up)
        self.width = w
        self.height = h
        func pixels(_ v: Double) -> Int {
            let p = (v * format.scale).rounded()
            return p.isFinite && p < 1e9 ? Swift.max(Int(p), 0) : Int.max
        }
        pixelWidth = requestedWidth ?? pixels(w)
        pixelHeight = requestedHeight ?? pixels(h)
    }
}

/// Collects the bytes cairo streams out.
private final class ByteSink {
    var bytes: [UInt8] = []
}

private func cairoStatusString(_ status: cairo_status_t) -> String {
    String(cString: cairo_status_to_string(status))
}

/// Draws a picture in memory and writes it to `path` atomically (temporary file, then rename).
func renderPicture(
    to path: String, format: OutputFormat, size: PictureSize, title: String,
    draw: (Canvas) throws -> Void
) throws {
    guard size.width > 0, size.height > 0, size.pixelWidth > 0, size.pixelHeight > 0, size.pixelWidth <= 32_767,
        size.pixelHeight <= 32_767
    else {
        throw PlotError.invalidParameter(
            path: path,
            what: "the picture would be \(size.pixelWidth) × \(size.pixelHeight) pixels; "
                + "cairo draws at most 32767 per side")
    }
    let sink = ByteSink()
    let closure = Unmanaged.passUnretained(sink).toOpaque()
    let write: cairo_write_func_t = { closure, data, length in
        guard let closure, let data else { return CAIRO_STATUS_WRITE_ERROR }
        let sink = Unmanaged<ByteSink>.fromOpaque(closure).takeUnretainedValue()
        sink.bytes.append(contentsOf: UnsafeBufferPointer(start: data, count: Int(length)))
        return CAIRO_STATUS_SUCCESS
    }
    let surface: OpaquePointer
    switch format {
    case .png:
        surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, Int32(size.pixelWidth), Int32(size.pixelHeight))
    case .svg:
        surface = cairo_svg_surface_create_for_stream(write, closure, size.width, size.height)
        cairo_svg_surface_set_document_unit(surface, CAIRO_SVG_UNIT_PT)
    }
    defer { cairo_surface_destroy(surface) }
    var status = cairo_surface_status(surface)
    guard status == CAIRO_STATUS_SUCCESS else {
        throw PlotError.cairo(path: path, status: cairoStatusString(status))
    }
    let cr: OpaquePointer = cairo_create(surface)
    defer { cairo_destroy(cr) }
    cairo_scale(cr, Double(size.pixelWidth) / size.width, Double(size.pixelHeight) / size.height)
    cairo_set_source_rgb(cr, 1, 1, 1)
    cairo_paint(cr)

    let canvas = Canvas(cr: cr, format: format)
    try draw(canvas)
    status = cairo_status(cr)
    guard status == CAIRO_STATUS_SUCCESS else {
        throw PlotError.cairo(path: path, status: cairoStatusString(status))
    }
    switch format {
    case .png:
        cairo_surface_flush(surface)
        status = cairo_surface_write_to_png_stream(surface, write, closure)
    case .svg:
        cairo_surface_finish(surface)
        status = cairo_surface_status(surface)
    }
    guard status == CAIRO_STATUS_SUCCESS else {
        throw PlotError.cairo(path: path, status: cairoStatusString(status))
    }
    var bytes = withExtendedLifetime(sink) { sink.bytes }
    switch format {
    case .png: bytes = insertPhysicalSize(png: bytes, dotsPerInch: 72 * format.scale)
    case .svg: bytes = annotateSVG(bytes, title: title, texts: canvas.texts)
    }
    try writeAtomically(bytes, to: path)
}

// MARK: - Files

/// Writes `bytes` to `.<name>.partial-<pid>` beside `path` (beside a symbolic link's target), then renames it
/// into place; a FIFO or device is written directly (`AtomicOutput`). On any failure the temporary file is
/// removed and `PlotError.io` is thrown.
func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    let name = AtomicOutput.split(path).name
    guard !name.isEmpty else {
        throw PlotError.invalidParameter(path: path, what: "the path names a directory, not a file")
    }
    do {
        try AtomicOutput.write(bytes, to: path)
    } catch let e as OutputError {
        throw PlotError.io(path: path, operation: "writing", message: e.message)
    }
}

// MARK: - PNG metadata

/// CRC-32 (ISO 3309) as PNG chunks use it.
func crc32(_ bytes: some Sequence<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
    }
    return ~crc
}

/// Adds a `pHYs` chunk after IHDR so that page-layout programs size the picture at `dotsPerInch`.
func insertPhysicalSize(png: [UInt8], dotsPerInch: Double) -> [UInt8] {
    let ihdrEnd = 8 + 4 + 4 + 13 + 4
    guard png.count > ihdrEnd, Array(png[12..<16]) == Array("IHDR".utf8) else { return png }
    func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }
    let perMetre = UInt32((dotsPerInch / 0.0254).rounded())
    let body = Array("pHYs".utf8) + bigEndian(perMetre) + bigEndian(perMetre) + [1]
    let chunk = bigEndian(9) + body + bigEndian(crc32(body))
    return Array(png[..<ihdrEnd]) + chunk + Array(png[ihdrEnd...])
}

// MARK: - SVG text layer

/// Escapes `&`, `<`, `>`, `"` and `'` for XML text and attributes.
func xmlEscaped(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(c)
        }
    }
    return out
}

private func svgNumber(_ v: Double) -> String {
    let r = (v * 1000).rounded() / 1000
    return r == r.rounded() ? String(Int(r)) : String(r)
}

/// Cairo draws glyphs as outlines, so the text would be lost to search, copy and screen readers.
/// This adds a `<title>` and an invisible (`fill-opacity="0"`) layer of `<text>` elements laid over the outlines.
func annotateSVG(_ bytes: [UInt8], title: String, texts: [TextRecord]) -> [UInt8] {
    let svg = String(decoding: bytes, as: UTF8.self)
    guard let open = svg.range(of: "<svg"), let openEnd = svg.range(of: ">", range: open.upperBound..<svg.endIndex),
        let close = svg.range(of: "</svg>", options: .backwards)
    else { return bytes }
    var layer = "<g id=\"text-layer\" fill=\"#000000\" fill-opacity=\"0\" font-family=\"DejaVu Sans, sans-serif\">\n"
    for t in texts {
        var transform = "translate(\(svgNumber(t.x)) \(svgNumber(t.y)))"
        if t.angle != 0 { transform += " rotate(\(svgNumber(t.angle * 180 / Double.pi)))" }
        layer +=
            "<text transform=\"\(transform)\" x=\"\(svgNumber(t.dx))\" y=\"\(svgNumber(t.dy))\" "
            + "font-size=\"\(svgNumber(t.size))\"\(t.bold ? " font-weight=\"bold\"" : "") "
            + "textLength=\"\(svgNumber(t.width))\" lengthAdjust=\"spacingAndGlyphs\">"
            + xmlEscaped(t.text) + "</text>\n"
    }
    layer += "</g>\n"
    let titleElement = title.isEmpty ? "" : "\n<title>\(xmlEscaped(title))</title>"
    let result =
        svg[..<openEnd.upperBound] + titleElement + svg[openEnd.upperBound..<close.lowerBound]
        + layer + svg[close.lowerBound...]
    return Array(result.utf8)
}
