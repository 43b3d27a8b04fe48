/// How a token representation `[N, T, D]` becomes one vector per example for CKA (formats.md §1).
public enum TokenReduction: String, CaseIterable, Sendable {
    /// The whole `T·D` vector (Raghu et al.; the seed paper). The default.
    case flatten
    /// Token 0 (the CLS token).
    case cls
    /// Mean over all tokens.
    case gap
    /// Mean over tokens 1…T−1 (patch tokens, without CLS).
    case gapNoCLS = "gap_nocls"

    /// Reduces `x` (`[N, T, D]`) to `[N, T·D]` or `[N, D]`. 2-D inputs `[N, D]` pass through unchanged
    /// (a pooled or already-reduced representation). Higher ranks flatten every axis after the first.
    public func apply(_ x: Tensor<Float>) throws -> Tensor<Float> {
        guard x.rank == 3, self != .flatten else { return x.flattenedRows }
        let (n, t, d) = (x.shape[0], x.shape[1], x.shape[2])
        if self == .gapNoCLS && t < 2 {
            throw TensorError.shapeMismatch(op: "tokens gap_nocls", expected: "[N, T ≥ 2, D]", got: describeShape(x.shape))
        }
        var out = Tensor<Float>(shape: [n, d])
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<n {
                    let row = src.baseAddress! + i * t * d, o = dst.baseAddress! + i * d
                    switch self {
                    case .cls:
                        o.update(from: row, count: d)
                    case .gap, .gapNoCLS:
                        let first = self == .gap ? 0 : 1
                        o.update(repeating: 0, count: d)
                        for k in first..<t { let r = row + k * d; for j in 0..<d { o[j] += r[j] } }
                        let inv = 1 / Float(t - first)
                        for j in 0..<d { o[j] *= inv }
                    case .flatten: break
                    }
                }
            }
        }
        return out
    }
}
