import CKATensor

/// CKA estimators on the whole set at once, from Gram matrices or representations
/// (Kornblith et al. 2019, and the debiased form of their reference implementation).
///
/// Each function takes `[n, n]` Double Grams (or `[n, …]` representations) of matched examples.
/// ### References
/// Kornblith, Norouzi, Lee & Hinton, *Similarity of Neural Network Representations Revisited*,
/// ICML 2019, [arXiv:1905.00414](https://arxiv.org/abs/1905.00414).
public enum FullSetCKA {
    /// Biased linear (or any-kernel) CKA: ⟨HKH, HLH⟩ / (‖HKH‖_F ‖HLH‖_F).
    public static func biased(_ k: Tensor<Double>, _ l: Tensor<Double>) throws -> Double {
        let kc = try HSIC.centered(k), lc = try HSIC.centered(l)
        return try HSIC.frobeniusInner(kc, lc)
            / (try HSIC.frobeniusInner(kc, kc) * HSIC.frobeniusInner(lc, lc)).squareRoot()
    }

    /// Debiased CKA: HSIC₁(K, L) / √(HSIC₁(K, K) · HSIC₁(L, L)) (n ≥ 4; can be negative).
    public static func debiased(_ k: Tensor<Double>, _ l: Tensor<Double>) throws -> Double {
        let kc = try HSIC.uCentered(k), lc = try HSIC.uCentered(l)
        return try HSIC.frobeniusInner(kc, lc)
            / (try HSIC.frobeniusInner(kc, kc) * HSIC.frobeniusInner(lc, lc)).squareRoot()
    }

    /// Linear CKA of two representations `[n, …]` (flattened per example).
    public static func linear(_ x: Tensor<Float>, _ y: Tensor<Float>, debiased: Bool = false) throws -> Double {
        let k = try x.gram(centered: true), l = try y.gram(centered: true)
        return debiased ? try self.debiased(k, l) : try biased(k, l)
    }

    /// The Gaussian-kernel Gram of the representation whose linear Gram is `k`:
    /// Dᵢⱼ = Kᵢᵢ + Kⱼⱼ − 2Kᵢⱼ, σ² = threshold² · median(D) over all n² entries (zero diagonal
    /// included, as in Kornblith's reference), K_rbf = exp(−D / (2σ²)).
    public static func rbfGram(fromLinear k: Tensor<Double>, threshold: Double = 0.5) throws -> Tensor<Double> {
        guard k.rank == 2, k.shape[0] == k.shape[1] else {
            throw TensorError.shapeMismatch(op: "rbfGram", expected: "[n, n]", got: describeShape(k.shape))
        }
        let n = k.shape[0]
        var d = Tensor<Double>(shape: [n, n])
        k.withUnsafeBufferPointer { kp in
            d.withUnsafeMutableBufferPointer { dp in
                for i in 0..<n {
                    for j in 0..<n {
                        dp[i * n + j] = i == j ? 0 : max(0, kp[i * n + i] + kp[j * n + j] - 2 * kp[i * n + j])
                    }
                }
            }
        }
        let sorted = d.scalars.sorted()
        let m = sorted.count
        let median = m % 2 == 1 ? sorted[m / 2] : (sorted[m / 2 - 1] + sorted[m / 2]) / 2
        let sigma2 = threshold * threshold * median
        guard sigma2 > 0 else {
            throw CKAError.invalidOption("rbf: the median squared distance is 0 (a constant representation)")
        }
        d.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = (-p[i] / (2 * sigma2)).exp } }
        return d
    }

    /// Gaussian-kernel CKA of two representations given by their linear Grams.
    public static func rbf(_ k: Tensor<Double>, _ l: Tensor<Double>, threshold: Double = 0.5, debiased: Bool = false)
        throws -> Double
    {
        let kr = try rbfGram(fromLinear: k, threshold: threshold), lr = try rbfGram(fromLinear: l, threshold: threshold)
        return debiased ? try self.debiased(kr, lr) : try biased(kr, lr)
    }
}

extension Double {
    @inlinable var exp: Double { Foundation.exp(self) }
}
import Foundation
