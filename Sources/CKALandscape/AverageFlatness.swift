import Foundation

/// Average flatness (Chen, Hsieh & Gong 2022): the mean loss increase E[L(θ₀ + ε)] − L(θ₀) under random
/// weight perturbations ε of a given relative radius.
///
/// Here ε = radius·d with d a filter-normalised Gaussian direction (`FilterNormalizedDirections`,
/// seeds `seed`, `seed + 1`, …), so every filter moves by `radius` times its own norm — the same scale
/// as a landscape grid point at distance `radius` along one axis. Reported with the standard error of the
/// mean over the samples.
public struct AverageFlatness: Sendable, Equatable {
    public var radius: Double
    public var samples: Int
    public var centerLoss: Double
    public var meanIncrease: Double
    public var standardError: Double

    /// Estimates the average flatness of `objective` over `perturbed` parameters.
    public init(
        objective: any LandscapeObjective, perturbed: Set<String>, radius: Double, samples: Int, seed: UInt64,
        normalization: DirectionNormalization = .filter, ignoreBiasAndNorm: Bool = true,
        centerLoss: Double? = nil
    ) throws {
        guard samples >= 1, radius > 0, radius.isFinite else {
            throw LandscapeError.invalidArgument("average flatness needs a radius > 0 and at least one sample")
        }
        let center = objective.center
        let base = try centerLoss ?? objective.evaluate(at: center).loss
        let weights = center.restricted(to: perturbed)
        var increases: [Double] = []
        for i in 0..<samples {
            let d = FilterNormalizedDirections.random(
                like: weights, seed: seed &+ UInt64(i), normalization: normalization,
                ignoreBiasAndNorm: ignoreBiasAndNorm)
            increases.append(try objective.evaluate(at: center.moved(along: [(radius, d)])).loss - base)
        }
        let mean = increases.reduce(0, +) / Double(samples)
        let variance = samples > 1 ? increases.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(samples - 1) : 0
        self.radius = radius
        self.samples = samples
        self.centerLoss = base
        meanIncrease = mean
        standardError = (variance / Double(samples)).squareRoot()
    }
}
