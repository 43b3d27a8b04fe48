/// Which CKA estimator a result was computed with. Every output names it.
public enum CKAEstimator: String, CaseIterable, Sendable {
    /// Unbiased HSIC₁ averaged over minibatches (Nguyen, Raghu & Kornblith 2021):
    /// CKA = mean HSIC₁(K,L) / √(mean HSIC₁(K,K) · mean HSIC₁(L,L)).
    case minibatch
    /// HSIC₁ on the whole set (= `minibatch` with one batch of all N; Kornblith's `debiased=True`).
    case debiased
    /// The classic biased linear CKA on the whole set (Kornblith et al. 2019).
    case linear
    /// Gaussian-kernel CKA on the whole set, bandwidth σ = threshold · √median(squared distances).
    case rbf
}
