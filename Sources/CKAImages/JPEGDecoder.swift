internal import CTurboJPEG
import Foundation

/// Decodes JPEG bytes with TurboJPEG the way PIL does: accurate integer IDCT, smooth ("fancy") chroma
/// upsampling, greyscale replicated to RGB, CMYK/YCCK read with Adobe (inverted) polarity and converted with
/// PIL's `cmyk2rgb`. EXIF orientation is ignored (PIL's `open` + `convert('RGB')` ignores it too).
///
/// Decoder warnings that PIL also ignores (extraneous bytes before a marker, a corrupt data segment …) are
/// tolerated; libjpeg's "Premature end of JPEG file" (the data ran out) is an error, as PIL's
/// "image file is truncated". Progressive files with an absurd number of scans are refused (TJFLAG_LIMITSCANS).
func decodeJPEG(_ bytes: UnsafeRawBufferPointer, path: String, maxPixels: Int) throws -> RGBImage {
    guard let handle = tjInitDecompress() else {
        throw ImageError.corrupt(path: path, format: "JPEG", reason: "cannot create a TurboJPEG decompressor")
    }
    defer { tjDestroy(handle) }
    let src = bytes.bindMemory(to: UInt8.self)
    guard let base = src.baseAddress else { throw ImageError.empty(path: path) }
    let size = UInt(src.count)
    func message() -> String { tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown error" }

    // Header: dimensions and colour space.
    var width: Int32 = 0, height: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
    var components: Int
    if tjDecompressHeader3(handle, base, size, &width, &height, &subsamp, &colorspace) == 0 {
        switch colorspace {
        case Int32(TJCS_GRAY.rawValue): components = 1
        case Int32(TJCS_CMYK.rawValue), Int32(TJCS_YCCK.rawValue): components = 4
        default: components = 3
        }
    } else {
        // TurboJPEG 2.x refuses the header of images with unusual chroma sampling factors, which it can
        // still decompress; read the frame header ourselves then.
        guard let frame = JPEGFrameHeader(src) else {
            throw ImageError.corrupt(path: path, format: "JPEG", reason: message())
        }
        width = Int32(frame.width)
        height = Int32(frame.height)
        components = frame.components
    }
    guard width > 0, height > 0 else {
        throw ImageError.corrupt(path: path, format: "JPEG", reason: "zero image size \(width)×\(height)")
    }
    let w = Int(width), h = Int(height)
    guard w * h <= maxPixels else { throw ImageError.tooLarge(path: path, width: w, height: h, limit: maxPixels) }
    guard components == 1 || components == 3 || components == 4 else {
        throw ImageError.corrupt(path: path, format: "JPEG", reason: "unsupported number of components \(components)")
    }

    // TurboJPEG writes at most width × height pixels of the requested format (it scales down, never up).
    let pixelFormat: TJPF, channels: Int
    switch components {
    case 1: (pixelFormat, channels) = (TJPF_GRAY, 1)
    case 4: (pixelFormat, channels) = (TJPF_CMYK, 4)
    default: (pixelFormat, channels) = (TJPF_RGB, 3)
    }
    var decoded = [UInt8](repeating: 0, count: w * h * channels)
    let flags = Int32(TJFLAG_ACCURATEDCT | TJFLAG_LIMITSCANS)
    let status = decoded.withUnsafeMutableBufferPointer { dst in
        tjDecompress2(
            handle, base, size, dst.baseAddress, width, Int32(w * channels), height,
            Int32(pixelFormat.rawValue), flags)
    }
    if status != 0 {
        let text = message()
        let fatal =
            tjGetErrorCode(handle) != Int32(TJERR_WARNING.rawValue) || text.contains("Premature end of JPEG file")
        if fatal { throw ImageError.corrupt(path: path, format: "JPEG", reason: text) }
    }

    switch channels {
    case 3:
        return RGBImage(width: w, height: h, pixels: decoded)
    case 1:
        return RGBImage(width: w, height: h, pixels: expandGrey(decoded, count: w * h))
    default:
        return RGBImage(width: w, height: h, pixels: invertedCMYKToRGB(decoded, count: w * h))
    }
}

/// Grey → RGB by replication.
func expandGrey(_ grey: [UInt8], count: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count * 3)
    grey.withUnsafeBufferPointer { g in
        out.withUnsafeMutableBufferPointer { o in
            for i in 0..<count {
                let v = g[i]
                o[3 * i] = v; o[3 * i + 1] = v; o[3 * i + 2] = v
            }
        }
    }
    return out
}

/// PIL's reading of CMYK JPEGs: raw mode `CMYK;I` (every channel inverted: Adobe polarity), then
/// `convert('RGB')` (`cmyk2rgb`: nk = 255 − K, out = clip(nk − MULDIV255(C, nk))).
func invertedCMYKToRGB(_ cmyk: [UInt8], count: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count * 3)
    cmyk.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { o in
            for i in 0..<count {
                let nk = Int32(s[4 * i + 3])  // 255 − (255 − k)
                for c in 0..<3 {
                    let v = 255 - Int32(s[4 * i + c])
                    let t = v * nk + 128
                    let muldiv = ((t >> 8) + t) >> 8
                    o[3 * i + c] = UInt8(clamping: nk - muldiv)
                }
            }
        }
    }
    return out
}

/// The frame header (SOFn) of a JPEG stream, found by walking the marker segments.
struct JPEGFrameHeader {
    var width: Int
    var height: Int
    var components: Int

    init?(_ b: UnsafeBufferPointer<UInt8>) {
        var i = 2
        while i + 4 <= b.count {
            guard b[i] == 0xFF else { return nil }
            let marker = b[i + 1]
            if marker == 0xFF { i += 1; continue }  // fill byte
            if marker == 0x01 || (0xD0...0xD8).contains(marker) { i += 2; continue }  // no length
            if marker == 0xD9 || marker == 0xDA { return nil }  // EOI / SOS before any frame
            let length = Int(b[i + 2]) << 8 | Int(b[i + 3])
            guard length >= 2, i + 2 + length <= b.count else { return nil }
            let isFrame = (0xC0...0xCF).contains(marker) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
            if isFrame {
                guard length >= 8 else { return nil }
                height = Int(b[i + 5]) << 8 | Int(b[i + 6])
                width = Int(b[i + 7]) << 8 | Int(b[i + 8])
                components = Int(b[i + 9])
                return
            }
            i += 2 + length
        }
        return nil
    }
}
