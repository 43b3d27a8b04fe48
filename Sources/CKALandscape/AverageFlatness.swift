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
        let losses = try Self.losses(
            objective: objective, perturbed: perturbed, radii: [radius], samples: samples, seed: seed,
            normalization: normalization, ignoreBiasAndNorm: ignoreBiasAndNorm, centerLoss: centerLoss)
        self.init(radius: radius, centerLoss: losses[0]!, losses: (1...samples).map { losses[$0]! })
    }

    /// The estimate from the centre's loss and the perturbed losses, in sample order.
    public init(radius: Double, centerLoss base: Double, losses: [Double]) {
        let samples = losses.count
        let increases = losses.map { $0 - base }
        let mean = increases.reduce(0, +) / Double(samples)
        let variance = samples > 1 ? increases.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(samples - 1) : 0
        self.radius = radius
        self.samples = samples
        self.centerLoss = base
        meanIncrease = mean
        standardError = (variance / Double(samples)).squareRoot()
    }

    /// The losses of the estimate's evaluations, by task: 0 is the centre, 1 + r·samples + i the i-th sample at
    /// `radii[r]` (direction seed `seed + i`). Only the tasks `include` accepts are evaluated, so the work can be
    /// split; each loss depends on its task alone.
    public static func losses(
        objective: any LandscapeObjective, perturbed: Set<String>, radii: [Double], samples: Int, seed: UInt64,
        normalization: DirectionNormalization = .filter, ignoreBiasAndNorm: Bool = true, centerLoss: Double? = nil,
        include: (Int) -> Bool = { _ in true }
    ) throws -> [Int: Double] {
        let center = objective.center
        let weights = center.restricted(to: perturbed)
        var out: [Int: Double] = [:]
        if include(0) { out[0] = try centerLoss ?? objective.evaluate(at: center).loss }
        for (r, radius) in radii.enumerated() {
            for i in 0..<samples where include(1 + r * samples + i) {
                let d = FilterNormalizedDirections.random(
                    like: weights, seed: seed &+ UInt64(i), normalization: normalization,
                    ignoreBiasAndNorm: ignoreBiasAndNorm)
                out[1 + r * samples + i] = try objective.evaluate(at: center.moved(along: [(radius, d)])).loss
            }
        }
        return out
    }
}
