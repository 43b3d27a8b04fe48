import CKATensor

/// Orthogonal Procrustes similarity of the column-centred features,
/// ‖X̃ᵀỸ‖_* / (‖X̃‖_F ‖Ỹ‖_F) ∈ [0, 1] (1 when one is a rotation and scaling of the other).
///
/// Gram form: with K = X̃X̃ᵀ = F_X F_Xᵀ (F from a pivoted Cholesky factorisation of K), the singular values
/// of X̃ᵀỸ are those of F_XᵀF_Y (r_X × r_Y), and ‖X̃‖²_F = tr K. The angular Procrustes shape distance of
/// Williams et al. (2021) is arccos of this value (netrep's `LinearMetric(alpha=1)` on centred data).
///
/// ### References
/// Ding, Denain & Steinhardt, *Grounding representation similarity with statistical testing*, NeurIPS 2021;
/// Williams, Kunz, Kornblith & Linderman, *Generalized shape metrics on neural representations*, NeurIPS 2021.
public struct ProcrustesSimilarity: SimilarityMeasure {
    public init() {}
    public var name: String { "procrustes" }
    public var needs: GramKinds { .centered }

    public struct Prepared {
        let factor: Tensor<Double>
        let trace: Double
    }

    public func prepare(_ g: LayerGrams) throws -> Prepared {
        let f = try GramFactor(centeredGram: g.require(g.centered, "centred", name))
        guard f.trace > 0 else { throw MeasureError.zeroVariance(measure: name, file: nil, layer: nil) }
        return Prepared(factor: f.factor, trace: f.trace)
    }

    public func value(_ a: Prepared, _ b: Prepared) throws -> Double {
        let c = try a.factor.matmul(b.factor, transposeSelf: true)
        let nuclear = try c.singularValues().reduce(0, +)
        return nuclear / (a.trace * b.trace).squareRoot()
    }
}
