import Foundation
import _CKASupport

/// An 8-bit RGB image: `pixels` holds `height` rows of `width` interleaved R, G, B bytes, top row first.
///
/// This is what PIL's `Image.open(path).convert('RGB')` gives (torchvision's `ImageFolder` loader), and the
/// input of the eval transforms (`Preprocessing`). Decoding matches PIL byte for byte:
///
/// - JPEG (TurboJPEG): accurate IDCT, smooth chroma upsampling; greyscale replicated; CMYK/YCCK read with Adobe
///   polarity and converted with PIL's formula; EXIF orientation ignored, as PIL ignores it.
/// - PNG (libpng): grey, grey+alpha, RGB, RGBA, palette, 1–16 bits, interlaced. **Alpha is discarded, not
///   composited** — like PIL's `convert('RGB')`, which drops it. Gamma/colour-space chunks are ignored, as in
///   PIL. 16-bit samples keep their high byte (PIL would clip 16-bit *grey* to 255; 16-bit images *with alpha*
///   may differ from PIL by 1 level, as libpng rounds them).
public struct RGBImage: Sendable, Equatable {
    /// Columns.
    public let width: Int
    /// Rows.
    public let height: Int
    /// `width · height · 3` bytes, row-major, RGB interleaved.
    public var pixels: [UInt8]

    /// Default cap on `width · height` for decoding (100 megapixels; PIL's own bomb limit is ≈ 179 MP).
    public static let defaultMaxPixels = 100_000_000

    /// An image from raw interleaved RGB bytes.
    /// - Precondition: `width, height ≥ 0` and `pixels.count == width · height · 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(
            width >= 0 && height >= 0 && pixels.count == width * height * 3,
            "RGBImage: \(pixels.count) bytes for \(width)×\(height)×3")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A black image.
    public init(width: Int, height: Int) {
        self.init(width: width, height: height, pixels: [UInt8](repeating: 0, count: width * height * 3))
    }

    /// Decodes a JPEG or PNG file (the format is detected from its first bytes, not from its extension).
    ///
    /// - Throws: `ImageError` when the file cannot be read, is empty, is neither JPEG nor PNG, is corrupt or
    ///   truncated, or has more than `maxPixels` pixels.
    public init(contentsOf url: URL, maxPixels: Int = RGBImage.defaultMaxPixels) throws {
        try self.init(data: try RGBImage.read(url), path: url.path, maxPixels: maxPixels)
    }

    /// The bytes of a file, or `ImageError.unreadable` with a plain reason.
    static func read(_ url: URL) throws -> Data {
        let path = url.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ImageError.unreadable(path: path, reason: "no such file")
        }
        if isDirectory.boolValue { throw ImageError.unreadable(path: path, reason: "is a directory") }
        if let kind = InputFile.nonRegularKind(path) {  // a FIFO would block the read forever
            throw ImageError.unreadable(path: path, reason: "not a regular file (\(kind))")
        }
        do {
            return try Data(contentsOf: url)
        } catch {
            throw ImageError.unreadable(path: path, reason: reason(error))
        }
    }

    /// Decodes JPEG or PNG bytes; `path` only labels errors.
    /// - Throws: `ImageError` (see `init(contentsOf:maxPixels:)`).
    public init<Bytes: ContiguousBytes>(
        data: Bytes, path: String = "<memory>",
        maxPixels: Int = RGBImage.defaultMaxPixels
    ) throws {
        self = try data.withUnsafeBytes { raw in
            if raw.isEmpty { throw ImageError.empty(path: path) }
            switch ImageFormat(detectingRaw: raw) {
            case .jpeg: return try decodeJPEG(raw, path: path, maxPixels: maxPixels)
            case .png: return try decodePNG(raw, path: path, maxPixels: maxPixels)
            case nil: throw ImageError.unsupportedFormat(path: path, found: ImageFormat.describeUnknown(raw))
            }
        }
    }

    static func reason(_ error: any Error) -> String {
        let ns = error as NSError
        if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain,
            let s = strerror(Int32(u.code))
        {
            return String(cString: s)
        }
        if ns.domain == NSCocoaErrorDomain && ns.code == NSFileReadNoPermissionError { return "permission denied" }
        return ns.localizedDescription
    }
}

/// The image formats `RGBImage` decodes.
public enum ImageFormat: String, Sendable, CaseIterable {
    case jpeg, png

    /// Detects the format from the first bytes (JPEG: `FF D8 FF`; PNG: the 8-byte signature); nil otherwise.
    public init?<Bytes: ContiguousBytes>(detecting bytes: Bytes) {
        guard let format = bytes.withUnsafeBytes({ ImageFormat(detectingRaw: $0) }) else { return nil }
        self = format
    }

    init?(detectingRaw bytes: UnsafeRawBufferPointer) {
        let b = Array(bytes.prefix(8))
        if b.count >= 3, b[0] == 0xFF, b[1] == 0xD8, b[2] == 0xFF {
            self = .jpeg
        } else if b == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] {
            self = .png
        } else {
            return nil
        }
    }

    /// A short description of unsupported data, for error messages ("GIF", "WebP", "bytes 00 01 02 03").
    static func describeUnknown(_ bytes: UnsafeRawBufferPointer) -> String {
        let b = Array(bytes.prefix(16))
        func starts(_ s: [UInt8], at o: Int = 0) -> Bool { b.count >= o + s.count && Array(b[o..<o + s.count]) == s }
        let ascii = { (s: String) in Array(s.utf8) }
        if starts(ascii("GIF8")) { return "GIF" }
        if starts(ascii("BM")) { return "BMP" }
        if starts(ascii("RIFF")) && starts(ascii("WEBP"), at: 8) { return "WebP" }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
        if starts(ascii("ftyp"), at: 4) { return "HEIF/AVIF (ISO BMFF)" }
        if starts([0xFF, 0x4F, 0xFF, 0x51]) || starts([0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50]) { return "JPEG 2000" }
        if b.count >= 2, b[0] == UInt8(ascii: "P"), (UInt8(ascii: "1")...UInt8(ascii: "7")).contains(b[1]) {
            return "PNM"
        }
        if starts([0x89, 0x50, 0x4E, 0x47]) { return "damaged PNG signature" }
        if starts([0xFF, 0xD8]) { return "damaged JPEG signature" }
        return "first bytes " + b.prefix(8).map { String(format: "%02X", $0) }.joined(separator: " ")
    }
}
