/// Errors thrown by the tensor core. Every case says which operation failed and what it expected.
public enum TensorError: Error, Equatable, CustomStringConvertible {
    /// The shapes handed to `op` do not fit together.
    case shapeMismatch(op: String, expected: String, got: String)
    /// A dimension is too large for the 32-bit integers of BLAS/LAPACK.
    case dimensionTooLarge(op: String, value: Int)
    /// A LAPACK routine returned `info != 0`.
    case lapackFailed(routine: String, info: Int)
    /// The data contains NaN or ±Inf where a finite value is required.
    case nonFinite(op: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, expected, got):
            return "\(op): expected shape \(expected), got \(got)"
        case let .dimensionTooLarge(op, value):
            return "\(op): dimension \(value) exceeds the 32-bit BLAS/LAPACK limit"
        case let .lapackFailed(routine, info):
            return "\(routine) failed with info = \(info)"
        case let .nonFinite(op):
            return "\(op): the data contains NaN or Inf"
        }
    }
}

/// Formats a shape as `[2, 3, 4]`.
@inlinable public func describeShape(_ shape: [Int]) -> String {
    "[" + shape.map(String.init).joined(separator: ", ") + "]"
}
