import CKATensor

/// Kernel centrings and Hilbert–Schmidt independence criteria on Gram matrices (Double).
///
/// Notation: K and L are `[n, n]` Grams of matched examples, ⟨A, B⟩ = Σᵢⱼ AᵢⱼBᵢⱼ.
///
/// ### References
/// - Gretton et al. 2005, *Measuring statistical dependence with Hilbert–Schmidt norms* (biased HSIC).
/// - Song et al. 2012, *Feature selection via dependence maximization* (unbiased HSIC₁).
/// - Székely & Rizzo 2014, *Partial distance correlation with methods for dissimilarities* (U-centring).
/// - Nguyen, Raghu & Kornblith 2021, *Do wide and deep networks learn the same things?*
///   [arXiv:2010.15327](https://arxiv.org/abs/2010.15327) (minibatch CKA, Eq. 3).
public enum HSIC {
    /// U-centres a Gram matrix (Székely–Rizzo), the building block of the unbiased estimator:
    ///
    ///     K̂ = K with zero diagonal,  c = K̂·1,  mⱼ = cⱼ/(n−2) − Σc / (2(n−1)(n−2))
    ///     K̃ᵢⱼ = K̂ᵢⱼ − mᵢ − mⱼ  (i ≠ j),   K̃ᵢᵢ = 0
    ///
    /// With this, HSIC₁(K, L) = ⟨K̃, L̃⟩ / (n(n−3)) exactly (Song et al.'s formula expanded).
    /// - Throws: `TensorError.shapeMismatch` unless `k` is `[n, n]` with n ≥ 4.
    public static func uCentered(_ k: Tensor<Double>) throws -> Tensor<Double> {
        var out = k
        try uCenter(&out)
        return out
    }

    /// In-place form of `uCentered(_:)`.
    public static func uCenter(_ k: inout Tensor<Double>) throws {
        guard k.rank == 2, k.shape[0] == k.shape[1], k.shape[0] >= 4 else {
            throw TensorError.shapeMismatch(
                op: "U-centring (HSIC₁)", expected: "[n, n] with n ≥ 4", got: describeShape(k.shape))
        }
        let n = k.shape[0]
        k.withUnsafeMutableBufferPointer { p in
            let a = p.baseAddress!
            var m = [Double](repeating: 0, count: n)
            var total = 0.0
            for i in 0..<n {
                a[i * n + i] = 0
                var s = 0.0
                let row = a + i * n
                for j in 0..<n { s += row[j] }
                m[i] = s
                total += s
            }
            let nd = Double(n)
            let shift = total / (2 * (nd - 1) * (nd - 2))
            for i in 0..<n { m[i] = m[i] / (nd - 2) - shift }
            m.withUnsafeBufferPointer { mp in
                for i in 0..<n {
                    let row = a + i * n, mi = mp[i]
                    for j in 0..<n { row[j] -= mi + mp[j] }
                    row[i] = 0
                }
            }
        }
    }

    /// Double-centres a (symmetric) Gram matrix, `HKH` with `H = I − 11ᵀ/n` (the biased, Gretton form):
    /// K̃ᵢⱼ = Kᵢⱼ − rᵢ − rⱼ + r̄, where r are the row means and r̄ their mean (`Tensor.doubleCenter()`).
    public static func centered(_ k: Tensor<Double>) throws -> Tensor<Double> {
        guard k.rank == 2, k.shape[0] == k.shape[1], k.shape[0] >= 2 else {
            throw TensorError.shapeMismatch(
                op: "centring (HSIC₀)", expected: "[n, n] with n ≥ 2", got: describeShape(k.shape))
        }
        var out = k
        out.doubleCenter()
        return out
    }

    /// ⟨A, B⟩ = Σᵢⱼ AᵢⱼBᵢⱼ, accumulated in Double.
    public static func frobeniusInner(_ a: Tensor<Double>, _ b: Tensor<Double>) throws -> Double {
        guard a.shape == b.shape else {
            throw TensorError.shapeMismatch(op: "⟨A, B⟩", expected: describeShape(a.shape), got: describeShape(b.shape))
        }
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                var s = 0.0
                for i in 0..<pa.count { s += pa[i] * pb[i] }
                return s
            }
        }
    }

    /// The unbiased estimator HSIC₁(K, L) of Song et al. (Nguyen et al. Eq. 3). Needs n ≥ 4; can be negative.
    public static func unbiased(_ k: Tensor<Double>, _ l: Tensor<Double>) throws -> Double {
        let n = Double(k.shape.first ?? 0)
        return try frobeniusInner(uCentered(k), uCentered(l)) / (n * (n - 3))
    }

    /// The biased estimator HSIC₀(K, L) = tr(KHLH)/(n−1)² of Gretton et al.
    public static func biased(_ k: Tensor<Double>, _ l: Tensor<Double>) throws -> Double {
        let n = Double(k.shape.first ?? 0)
        return try frobeniusInner(centered(k), centered(l)) / ((n - 1) * (n - 1))
    }
}
