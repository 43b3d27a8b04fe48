import CKATensor
import Foundation

/// How a random direction is rescaled to the weights it perturbs (Li et al. 2018, `net_plotter.py`).
public enum DirectionNormalization: String, Sendable, CaseIterable, Codable {
    /// Each filter — one slice along the first axis of a tensor of rank ≥ 2 (a row of a Linear weight,
    /// an output filter of a convolution; `cls_token` [1, 1, D] is one filter) — gets the norm of the
    /// matching weight filter: d_f ← d_f·‖w_f‖ / (‖d_f‖ + 1e-10).
    case filter
    /// Each tensor of rank ≥ 2 gets the norm of its weight tensor: d ← d·‖w‖ / ‖d‖.
    case layer
    /// The raw N(0, 1) draw.
    case none
}

/// Seeded Gaussian directions in parameter space, normalised as in Li et al., "Visualizing the Loss
/// Landscape of Neural Nets" (2018), with the semantics of `tomgoldstein/loss-landscape`.
///
/// Entries are i.i.d. N(0, 1) from `SplitMix64(seed:).gaussian()`, drawn tensor by tensor in the
/// parameter set's order, element by element in row-major order, so a seed names the same direction on
/// every machine. Tensors of rank ≤ 1 (biases, LayerNorm γ/β, LayerScale γ) are set to zero when
/// `ignoreBiasAndNorm` is on (`--xignore biasbn`, the default) and to a copy of the weight otherwise,
/// whatever the normalisation — exactly as `normalize_directions_for_weights` does.
public enum FilterNormalizedDirections {
    /// A random direction shaped like `weights`.
    public static func random(
        like weights: ParameterSet, seed: UInt64, normalization: DirectionNormalization = .filter,
        ignoreBiasAndNorm: Bool = true
    ) -> ParameterSet {
        var d = gaussian(like: weights, seed: seed)
        normalize(&d, to: weights, normalization: normalization, ignoreBiasAndNorm: ignoreBiasAndNorm)
        return d
    }

    /// The raw N(0, 1) draw shaped like `weights`, every tensor included (the stream `random` normalises).
    public static func gaussian(like weights: ParameterSet, seed: UInt64) -> ParameterSet {
        var rng = SplitMix64(seed: seed)
        var d = ParameterSet()
        for name in weights.names {
            var t = Tensor<Float>(shape: weights[name]!.shape)
            let p = t.mutablePointer()
            for i in 0..<t.count { p[i] = Float(rng.gaussian()) }
            d.set(name, t)
        }
        return d
    }

    /// Rescales `direction` in place to `weights` (same names and shapes).
    public static func normalize(
        _ direction: inout ParameterSet, to weights: ParameterSet,
        normalization: DirectionNormalization, ignoreBiasAndNorm: Bool
    ) {
        for name in direction.names {
            guard let w = weights[name] else { continue }
            var d = direction[name]!
            let n = d.count
            let dp = d.mutablePointer(), wp = w.pointer
            if w.rank <= 1 {
                if ignoreBiasAndNorm { dp.update(repeating: 0, count: n) } else { dp.update(from: wp, count: n) }
            } else {
                switch normalization {
                case .filter:
                    let filters = w.shape[0], size = n / max(filters, 1)
                    for f in 0..<filters {
                        let scale = Float(norm(wp + f * size, count: size) / (norm(dp + f * size, count: size) + 1e-10))
                        for i in (f * size)..<((f + 1) * size) { dp[i] *= scale }
                    }
                case .layer:
                    let scale = Float(norm(wp, count: n) / norm(dp, count: n))
                    for i in 0..<n { dp[i] *= scale }
                case .none:
                    break
                }
            }
            direction.set(name, d)
        }
    }
}
