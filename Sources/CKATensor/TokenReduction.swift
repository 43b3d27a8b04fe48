/// How a token representation `[N, T, D]` becomes one vector per example for CKA (formats.md §1): the
/// whole sequence, or one of the `Pooling`s (with its kernel).
public enum TokenReduction: String, CaseIterable, Sendable {
    /// The whole `T·D` vector (Raghu et al.; the seed paper). The default.
    case flatten
    /// Token 0 (the CLS token).
    case cls
    /// Mean over all tokens.
    case gap
    /// Mean over the patch tokens (every prefix token excluded: class, distillation, registers).
    case gapNoCLS = "gap_nocls"

    /// Reduces `x` (`[N, T, D]`) to `[N, T·D]` or `[N, D]`. 2-D inputs `[N, D]` pass through unchanged
    /// (a pooled or already-reduced representation). Higher ranks flatten every axis after the first.
    /// `prefixTokens` leading tokens (class, distillation, registers) are left out by `gapNoCLS`.
    public func apply(_ x: Tensor<Float>, prefixTokens: Int = 1) throws -> Tensor<Float> {
        guard x.rank == 3, self != .flatten else { return x.flattenedRows }
        let (n, t, d) = (x.shape[0], x.shape[1], x.shape[2])
        if self == .gapNoCLS && t <= prefixTokens {
            throw TensorError.shapeMismatch(
                op: "tokens gap_nocls", expected: "[N, T ≥ 2, D]", got: describeShape(x.shape))
        }
        var out = Tensor<Float>(shape: [n, d])
        let pooling: Pooling = self == .cls ? .cls : self == .gap ? .gap : .gapNoCLS
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                pooling.pool(
                    src.baseAddress!, images: n, tokens: t, width: d, prefixTokens: prefixTokens,
                    into: dst.baseAddress!)
            }
        }
        return out
    }
}
