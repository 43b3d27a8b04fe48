/// Errors thrown while reading, decoding or listing images.
///
/// Every case names the file it concerns (`"<memory>"` for bytes decoded without a path) and says what was wrong.
/// Malformed input of any kind ends in one of these errors: the decoders never trap on untrusted bytes.
public enum ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file or directory could not be opened or read.
    case unreadable(path: String, reason: String)
    /// The file has zero bytes.
    case empty(path: String)
    /// The first bytes are neither JPEG nor PNG; `found` names the format when it is a known one.
    case unsupportedFormat(path: String, found: String)
    /// The data is truncated or corrupt; `reason` is the decoder's message.
    case corrupt(path: String, format: String, reason: String)
    /// The image's width × height exceeds the decoding limit (checked before any pixel memory is allocated).
    case tooLarge(path: String, width: Int, height: Int, limit: Int)
    /// A directory holds no JPEG or PNG images.
    case noImages(path: String)
    /// A preprocessing parameter is out of range or a description string cannot be parsed.
    case invalidParameter(String)

    /// The file or directory the error concerns (empty for `invalidParameter`).
    public var path: String {
        switch self {
        case let .unreadable(p, _), let .empty(p), let .unsupportedFormat(p, _), let .corrupt(p, _, _),
            let .tooLarge(p, _, _, _), let .noImages(p):
            return p
        case .invalidParameter:
            return ""
        }
    }

    public var description: String {
        switch self {
        case let .unreadable(p, r): return "\(p): cannot read: \(r)"
        case let .empty(p): return "\(p): empty file (0 bytes)"
        case let .unsupportedFormat(p, f): return "\(p): unsupported image format (\(f)); expected JPEG or PNG"
        case let .corrupt(p, f, r): return "\(p): corrupt or truncated \(f): \(r)"
        case let .tooLarge(p, w, h, l):
            return "\(p): image of \(w)×\(h) = \(w * h) pixels exceeds the limit of \(l) pixels"
        case let .noImages(p): return "\(p): no .jpg, .jpeg or .png images found"
        case let .invalidParameter(m): return "invalid preprocessing parameter: \(m)"
        }
    }
}
