import CKATensor

/// SVCCA (Raghu et al. 2017) and PWCCA (Morcos et al. 2018) from the eigendecompositions of the
/// column-centred Grams.
///
/// Each side keeps the fewest top singular directions of its centred features whose squared singular
/// values (the eigenvalues of K) reach `variance` of the total; the reduced set is X̃ projected on them,
/// F = U_k·Λ_k^½. The canonical correlations of two reduced sets are the singular values of U_kᵀV_m
/// (the whitened cross-covariance of F_X and F_Y), so no D×D matrix is formed.
///
/// - SVCCA: the plain mean of all min(k, m) canonical correlations (no epsilon).
/// - PWCCA: Σᵢ wᵢρᵢ with the weights of the authors' released `pwcca.py`: on the side that keeps fewer
///   directions (A on a tie), the data's "canonical directions" uᵀ·F (u: left singular vectors of the
///   whitened cross-covariance, applied to the reduced data itself) are orthonormalised by a QR
///   decomposition, Q; wᵢ ∝ Σⱼ |(QᵀF)ᵢⱼ|, normalised to sum 1. (The released code raises an IndexError
///   when A keeps more directions than B; here that case uses B's side, as its other branch intends.)
///
/// When k_A + k_B > N − 1, at least k_A + k_B − (N − 1) canonical correlations are 1 by construction; PWCCA's
/// weights then depend on the (arbitrary) basis LAPACK picks within that tied subspace.
/// A set that needs N − 1 directions (the whole centred sample space) correlates perfectly with any
/// other: `prepare` refuses it with `MeasureError.tooManyDirections`.
///
/// ### References
/// Raghu, Gilmer, Yosinski & Sohl-Dickstein, *SVCCA*, NeurIPS 2017, arXiv:1706.05806;
/// Morcos, Raghu & Bengio, *Insights on representational similarity … with canonical correlation*,
/// NeurIPS 2018, arXiv:1806.05759; code: github.com/google/svcca (`cca_core.py`, `pwcca.py`).
public struct CanonicalCorrelation: SimilarityMeasure {
    public enum Kind: String, Sendable { case svcca, pwcca }
    public let kind: Kind
    /// Fraction of the variance the kept directions must explain, in (0, 1].
    public let variance: Double

    public init(_ kind: Kind, variance: Double = 0.99) {
        self.kind = kind
        self.variance = variance
    }

    public var name: String { kind.rawValue }
    public var needs: GramKinds { .centered }

    public struct Prepared {
        /// Orthonormal basis U_k `[N, k]` of the reduced set and the kept eigenvalues λ₁…λ_k.
        let basis: Tensor<Double>
        let values: [Double]
        /// Directions kept.
        public var kept: Int { values.count }
    }

    /// How many top directions reach `variance` of the total (eigenvalues in descending order).
    static func keptDirections(_ values: [Double], variance: Double) -> Int {
        let total = values.reduce(0, +)
        var s = 0.0
        for (i, v) in values.enumerated() {
            s += v
            if s >= variance * total { return i + 1 }
        }
        return values.count
    }

    public func prepare(_ g: LayerGrams) throws -> Prepared {
        let f = try GramFactor(centeredGram: g.require(g.centered, "centred", name))
        let (values, vectors) = try f.spectrum()
        guard !values.isEmpty else { throw MeasureError.zeroVariance(measure: name, file: nil, layer: nil) }
        let k = Self.keptDirections(values, variance: variance)
        guard k < f.n - 1 else {
            throw MeasureError.tooManyDirections(measure: name, kept: k, examples: f.n, file: nil, layer: nil)
        }
        let r = vectors.shape[1]
        var basis = Tensor<Double>(shape: [f.n, k])
        vectors.withUnsafeBufferPointer { pv in
            basis.withUnsafeMutableBufferPointer { out in
                for i in 0..<f.n { for j in 0..<k { out[i * k + j] = pv[i * r + j] } }
            }
        }
        return Prepared(basis: basis, values: Array(values.prefix(k)))
    }

    public func value(_ a: Prepared, _ b: Prepared) throws -> Double {
        switch kind {
        case .svcca:
            let rho = try a.basis.matmul(b.basis, transposeSelf: true).singularValues()
            return rho.reduce(0, +) / Double(rho.count)
        case .pwcca:
            // The side with fewer directions (A on a tie) gives the weights.
            let (x, y) = a.kept <= b.kept ? (a, b) : (b, a)
            let (u, rho, _) = try x.basis.matmul(y.basis, transposeSelf: true).singularValueDecomposition()
            // dirnsᵀ = F·u with F = U_k·Λ^½; its QR is U_k·QR(Λ^½·u), and QᵀF = Qᵀ·Λ^½.
            let k = x.kept
            let roots = x.values.map { $0.squareRoot() }
            var b = u
            b.withUnsafeMutableBufferPointer { p in for i in 0..<k { for j in 0..<k { p[i * k + j] *= roots[i] } } }
            let q = try b.householderQ()
            var w = [Double](repeating: 0, count: k)
            q.withUnsafeBufferPointer { p in
                for i in 0..<k { var s = 0.0; for j in 0..<k { s += abs(p[j * k + i]) * roots[j] }; w[i] = s }
            }
            let total = w.reduce(0, +)
            return zip(w, rho).reduce(0) { $0 + $1.0 / total * $1.1 }
        }
    }
}
