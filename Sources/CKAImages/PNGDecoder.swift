internal import CPNG
import Foundation

/// Decodes PNG bytes with libpng's simplified API into 8-bit RGB, the way PIL's `convert('RGB')` does:
///
/// - grey is replicated; palette entries are looked up;
/// - **alpha is discarded without compositing** (grey+alpha, RGBA and palette transparency alike), as PIL's
///   `convert('RGB')` drops it;
/// - colour-space chunks (`gAMA`, `cHRM`, `sRGB`, `iCCP`, …) are ignored, as PIL ignores them (libpng would
///   otherwise gamma-convert);
/// - 16-bit samples keep their high byte (PIL's `RGB;16B`/`RGBA;16B`/`LA;16B` raw modes). Exception: PIL opens
///   16-bit grey as mode `I;16` and `convert('RGB')` *clips* it to 255 — we keep the high byte instead. 16-bit
///   images with alpha go through libpng's 16→8-bit sRGB reduction, which may differ from the high byte by 1.
func decodePNG(_ bytes: UnsafeRawBufferPointer, path: String, maxPixels: Int) throws -> RGBImage {
    let header = PNGHeader(bytes)
    if let stripped = withoutColorSpaceChunks(bytes) {
        return try stripped.withUnsafeBytes {
            try decodePNGStripped($0, header: header, path: path, maxPixels: maxPixels)
        }
    }
    return try decodePNGStripped(bytes, header: header, path: path, maxPixels: maxPixels)
}

private func decodePNGStripped(
    _ bytes: UnsafeRawBufferPointer, header: PNGHeader?, path: String,
    maxPixels: Int
) throws -> RGBImage {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    func failure() -> ImageError {
        let text = withUnsafeBytes(of: image.message) { raw -> String in
            let chars = raw.bindMemory(to: UInt8.self)
            let end = chars.firstIndex(of: 0) ?? chars.count
            return String(decoding: chars[..<end], as: UTF8.self)
        }
        return .corrupt(path: path, format: "PNG", reason: text.isEmpty ? "libpng error" : text)
    }
    guard png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count) != 0 else { throw failure() }
    let w = Int(image.width), h = Int(image.height)
    guard w > 0, h > 0 else {
        png_image_free(&image)
        throw ImageError.corrupt(path: path, format: "PNG", reason: "zero image size \(w)×\(h)")
    }
    guard w * h <= maxPixels else {
        png_image_free(&image)
        throw ImageError.tooLarge(path: path, width: w, height: h, limit: maxPixels)
    }
    let hasAlpha = image.format & PNGFormat.alpha != 0
    let sixteenBit = (header?.bitDepth ?? 8) == 16

    if sixteenBit && !hasAlpha {
        // Colour-space chunks are gone, so libpng takes 16-bit data as linear and copies it unchanged into a
        // linear (16-bit) buffer; keep the high byte.
        image.format = PNGFormat.linearRGB
        var wide = [UInt16](repeating: 0, count: w * h * 3)
        let ok = wide.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard ok != 0 else { throw failure() }
        var out = [UInt8](repeating: 0, count: w * h * 3)
        wide.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<s.count { o[i] = UInt8(truncatingIfNeeded: s[i] >> 8) }
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }
    if sixteenBit { image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB) }
    if !hasAlpha {
        image.format = PNGFormat.rgb
        var out = [UInt8](repeating: 0, count: w * h * 3)
        let ok = out.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard ok != 0 else { throw failure() }
        return RGBImage(width: w, height: h, pixels: out)
    }
    // With alpha: read RGBA (8-bit sRGB output is not premultiplied) and drop A.
    image.format = PNGFormat.rgba
    var rgba = [UInt8](repeating: 0, count: w * h * 4)
    let ok = rgba.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
    guard ok != 0 else { throw failure() }
    var out = [UInt8](repeating: 0, count: w * h * 3)
    rgba.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { o in
            for i in 0..<(w * h) {
                o[3 * i] = s[4 * i]; o[3 * i + 1] = s[4 * i + 1]; o[3 * i + 2] = s[4 * i + 2]
            }
        }
    }
    return RGBImage(width: w, height: h, pixels: out)
}

/// `png_image.format` values (png.h's nested macros do not all import into Swift).
enum PNGFormat {
    static let alpha = UInt32(PNG_FORMAT_FLAG_ALPHA)
    static let rgb = UInt32(PNG_FORMAT_FLAG_COLOR)
    static let rgba = UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)
    static let linearRGB = UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_LINEAR)
}

/// The IHDR fields we need before libpng runs.
struct PNGHeader {
    var bitDepth: Int
    var colorType: Int

    init?(_ b: UnsafeRawBufferPointer) {
        // signature (8) · length (4) · "IHDR" (4) · width (4) · height (4) · depth (1) · colour type (1)
        guard b.count >= 26, b[12] == 0x49, b[13] == 0x48, b[14] == 0x44, b[15] == 0x52 else { return nil }
        bitDepth = Int(b[24])
        colorType = Int(b[25])
    }
}

/// The PNG bytes without the chunks that would make libpng convert colours (gAMA, cHRM, sRGB, iCCP, cICP,
/// mDCV, cLLI), or nil if there are none. Malformed chunk structure is left for libpng to report.
func withoutColorSpaceChunks(_ b: UnsafeRawBufferPointer) -> [UInt8]? {
    let dropped: Set<String> = ["gAMA", "cHRM", "sRGB", "iCCP", "cICP", "mDCV", "cLLI", "mDCv", "cLLi"]
    var ranges: [Range<Int>] = []  // chunks to remove
    var i = 8
    while i + 12 <= b.count {
        let length = Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
        let end = i + 12 + length
        guard length >= 0, length <= 0x7FFF_FFFF, end <= b.count else { break }
        let type = String(decoding: UnsafeRawBufferPointer(rebasing: b[(i + 4)..<(i + 8)]), as: UTF8.self)
        if type == "IDAT" || type == "IEND" { break }  // colour-space chunks precede IDAT
        if dropped.contains(type) { ranges.append(i..<end) }
        i = end
    }
    if ranges.isEmpty { return nil }
    var out = [UInt8]()
    out.reserveCapacity(b.count)
    var start = 0
    for r in ranges {
        out.append(contentsOf: b[start..<r.lowerBound])
        start = r.upperBound
    }
    out.append(contentsOf: b[start...])
    return out
}
