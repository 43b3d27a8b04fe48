/// Errors thrown when a picture cannot be drawn or written. Every case names the output path.
public enum PlotError: Error, Equatable, CustomStringConvertible {
    /// The file name ends in neither `.png` nor `.svg`.
    case unsupportedExtension(path: String, fileExtension: String)
    /// There is nothing to draw: no rows, no series, no finite value, …; `what` says which.
    case emptyData(path: String, what: String)
    /// Two sizes that must agree do not (labels against rows, `x` against `y`, …).
    case sizeMismatch(path: String, what: String, expected: Int, got: Int)
    /// A parameter is outside its domain (a non-increasing axis, an empty range, a picture too small, …).
    case invalidParameter(path: String, what: String)
    /// Cairo reported an error; `status` is its `cairo_status_to_string`.
    case cairo(path: String, status: String)
    /// Creating, writing or renaming the file failed; `message` is the system's error text.
    case io(path: String, operation: String, message: String)

    /// A one-line message naming the file and what was wrong.
    public var description: String {
        switch self {
        case let .unsupportedExtension(path, ext):
            return "\(path): unsupported file extension '\(ext)' (use .png or .svg)"
        case let .emptyData(path, what):
            return "\(path): nothing to draw: \(what)"
        case let .sizeMismatch(path, what, expected, got):
            return "\(path): \(what): expected \(expected), got \(got)"
        case let .invalidParameter(path, what):
            return "\(path): \(what)"
        case let .cairo(path, status):
            return "\(path): cairo error: \(status)"
        case let .io(path, operation, message):
            return "\(path): \(operation) failed: \(message)"
        }
    }
}
