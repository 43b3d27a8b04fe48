import Foundation

/// Errors of building directions, evaluating losses and reading or writing landscape stores.
public enum LandscapeError: Error, Equatable, CustomStringConvertible {
    /// A parameter the loss needs is absent.
    case missingParameter(name: String, file: String)
    /// A direction or store does not fit the parameters or grid it is used with.
    case mismatch(file: String, what: String, expected: String, got: String)
    /// A grid specification such as `-1:1:51` is malformed.
    case invalidGrid(String)
    /// Anything else the user asked for that cannot be done, with the reason.
    case invalidArgument(String)
    /// A parameter group the loss does not have (e.g. `head` for the MAE loss), with the groups it has.
    case unknownGroup(name: String, loss: String, groups: [String])

    public var description: String {
        switch self {
        case let .missingParameter(name, file): return "\(file): no parameter '\(name)'"
        case let .mismatch(file, what, expected, got): return "\(file): \(what) is \(got), expected \(expected)"
        case let .invalidGrid(s): return "invalid grid '\(s)': expected MIN:MAX:NUM, e.g. -1:1:51"
        case let .invalidArgument(s): return s
        case let .unknownGroup(name, loss, groups):
            return "'\(name)' is not a part of the \(loss) loss (\(groups.joined(separator: ", ")))"
        }
    }
}
