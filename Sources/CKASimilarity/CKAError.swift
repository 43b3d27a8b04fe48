/// Errors of CKA computations with the context a user needs to fix the input.
public enum CKAError: Error, Equatable, CustomStringConvertible {
    case batchSize(requested: Int, examples: Int)
    case inputsDiffer(fileA: String, fileB: String, detail: String)
    case noLayersMatch(pattern: String, file: String, available: [String])
    case nonFinite(file: String, layer: String, batch: Int)
    case zeroVariance(file: String, layer: String)
    /// The layer's values are finite but too large or too small for float32 Grams (`detail` says which).
    case outOfRange(file: String, layer: String, detail: String)
    /// The store has no layer at all (no `/activations/…` and no `/grams/…`).
    case noLayers(file: String)
    case gramsMismatch(file: String, layer: String, detail: String)
    case tooManyExamples(estimator: CKAEstimator, examples: Int, limit: Int)
    case invalidOption(String)

    public var description: String {
        switch self {
        case let .batchSize(b, n):
            return "batch size \(b) is invalid: HSIC₁ needs at least 4 examples per batch and at most N = \(n)"
        case let .inputsDiffer(a, b, detail):
            return "\(a) and \(b) hold different inputs: \(detail) (CKA needs the same examples in the same order)"
        case let .noLayersMatch(pattern, file, available):
            let shown = available.prefix(6).joined(separator: ", ") + (available.count > 6 ? ", …" : "")
            return "\(file): no layer matches '\(pattern)' (layers: \(shown))"
        case let .nonFinite(file, layer, batch):
            return "\(file): layer '\(layer)' contains NaN or Inf (minibatch \(batch))"
        case let .zeroVariance(file, layer):
            return "\(file): layer '\(layer)' has zero variance (its self-HSIC is 0, so CKA is undefined)"
        case let .outOfRange(file, layer, detail):
            return "\(file): layer '\(layer)' \(detail)"
        case let .noLayers(file):
            return "\(file): no layers (the store has no /activations/… and no /grams/… datasets)"
        case let .gramsMismatch(file, layer, detail):
            return "\(file): stored Grams of '\(layer)' cannot be used: \(detail)"
        case let .tooManyExamples(est, n, limit):
            return
                "the \(est.rawValue) estimator keeps an N×N Gram per layer; N = \(n) exceeds \(limit) (use `estimator` minibatch)"
        case let .invalidOption(s): return s
        }
    }
}
