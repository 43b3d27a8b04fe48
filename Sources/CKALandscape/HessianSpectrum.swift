import CKAIO
import CKATensor
import Foundation

/// The Hessian of a differentiable objective restricted to a set of tensors, as a linear operator on flat
/// `Double` vectors (the scalars of the tensors in the order of the objective's centre), applied through the one
/// `HessianVectorProduct` of the toolkit with the step ε = `relativeStep`·‖θ₀‖ over the tensors. The operator is
/// linear: a vector x is applied as ‖x‖·H(x/‖x‖), so the step is taken along a unit vector.
public struct HessianOperator {
    public let product: HessianVectorProduct
    /// The tensors, in order, and their sizes.
    public let names: [String]
    let shapes: [[Int]]
    /// Number of scalars.
    public let dimension: Int
    /// The absolute finite-difference step ε.
    public let step: Double
    /// Richardson extrapolation of two central differences (see `HessianVectorProduct`).
    public let extrapolated: Bool
    /// The default ε relative to ‖θ₀‖.
    public static let defaultRelativeStep = 1e-3

    public init(
        objective: any DifferentiableLandscapeObjective, parameters: Set<String>,
        relativeStep: Double = defaultRelativeStep,
        extrapolated: Bool = false, split: (any GradientWorkSplit)? = nil
    ) throws {
        self.extrapolated = extrapolated
        guard relativeStep > 0 else { throw LandscapeError.invalidArgument("the Hessian step must be positive") }
        let product = try HessianVectorProduct(
            objective: objective, parameters: parameters, split: split)
        let weights = product.weights
        self.product = product
        names = weights.names
        shapes = weights.names.map { weights[$0]!.shape }
        dimension = weights.scalarCount
        step = relativeStep * product.parameterNorm
    }

    /// The scalars of `p` over this operator's tensors (zero where `p` lacks one).
    public func flatten(_ p: ParameterSet) -> [Double] {
        var out: [Double] = []
        out.reserveCapacity(dimension)
        for (name, shape) in zip(names, shapes) {
            if let t = p[name] {
                let q = t.pointer
                for i in 0..<t.count { out.append(Double(q[i])) }
            } else {
                out.append(contentsOf: repeatElement(0, count: shape.reduce(1, *)))
            }
        }
        return out
    }

    /// `x` as tensors (float32).
    public func unflatten(_ x: [Double], scale: Double = 1) -> ParameterSet {
        var out = ParameterSet(), o = 0
        for (name, shape) in zip(names, shapes) {
            var t = Tensor<Float>(shape: shape)
            let p = t.mutablePointer()
            for i in 0..<t.count { p[i] = Float(x[o + i] * scale) }
            o += t.count
            out.set(name, t)
        }
        return out
    }

    /// H·x (with the step `step`, or another).
    public func callAsFunction(_ x: [Double], step other: Double? = nil) throws -> [Double] {
        let s = Self.norm(x)
        guard s > 0 else { return [Double](repeating: 0, count: x.count) }
        var hx = flatten(
            try product(unflatten(x, scale: 1 / s), step: other ?? step, extrapolated: extrapolated))
        for i in hx.indices { hx[i] *= s }
        return hx
    }

    /// A Rademacher vector (entries ±1, each from one bit of a SplitMix64 stream seeded with `seed`).
    public func rademacher(seed: UInt64) -> [Double] {
        var g = SplitMix64(seed: seed)
        var out = [Double](repeating: 0, count: dimension)
        var bits: UInt64 = 0
        for i in 0..<dimension {
            if i % 64 == 0 { bits = g.next() }
            out[i] = (bits >> UInt64(i % 64)) & 1 == 1 ? 1 : -1
        }
        return out
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double {
        var s = 0.0
        for i in a.indices { s += a[i] * b[i] }
        return s
    }

    static func norm(_ a: [Double]) -> Double { dot(a, a).squareRoot() }
}

/// The tridiagonal matrix T = tridiag(β, α, β) of `steps` Lanczos steps on a symmetric operator from a start
/// vector, with full re-orthogonalisation of every new vector against all earlier ones (twice: "twice is
/// enough"), as PyHessian's `density`. Stops early when the Krylov space is exhausted (β ≤ 1e-10·max|α|).
public struct LanczosTridiagonal: Sendable {
    /// The diagonal αⱼ and the off-diagonal βⱼ (one shorter).
    public var alpha: [Double]
    public var beta: [Double]
    /// The orthonormal Lanczos vectors q₀, q₁, … (kept only when asked).
    public var basis: [[Double]] = []

    public init(
        _ apply: ([Double]) throws -> [Double], start: [Double], steps: Int, keepingBasis: Bool = false
    ) throws {
        guard steps >= 1 else { throw LandscapeError.invalidArgument("Lanczos needs at least one step") }
        let n0 = HessianOperator.norm(start)
        guard n0 > 0 else { throw LandscapeError.invalidArgument("Lanczos needs a non-zero start vector") }
        var q = start.map { $0 / n0 }
        var basis: [[Double]] = [q]
        var a: [Double] = [], b: [Double] = []
        for j in 0..<min(steps, start.count) {
            var w = try apply(q)
            let alpha = HessianOperator.dot(w, q)
            a.append(alpha)
            if j + 1 == min(steps, start.count) { break }
            for _ in 0..<2 {
                for v in basis {
                    let c = HessianOperator.dot(w, v)
                    for i in w.indices { w[i] -= c * v[i] }
                }
            }
            let beta = HessianOperator.norm(w)
            if beta <= 1e-10 * (a.map(abs).max() ?? 0) { break }
            b.append(beta)
            q = w.map { $0 / beta }
            basis.append(q)
        }
        alpha = a
        beta = b
        if keepingBasis { self.basis = Array(basis.prefix(a.count)) }
    }

    /// T's eigenvalues (Ritz values, ascending) and the squared first components of its unit eigenvectors
    /// (the Gauss quadrature weights, summing to 1).
    public func ritz() throws -> (values: [Double], weights: [Double]) {
        let m = alpha.count
        var t = Tensor<Double>(shape: [m, m])
        for i in 0..<m {
            t[i, i] = alpha[i]
            if i + 1 < m { t[i, i + 1] = beta[i]; t[i + 1, i] = beta[i] }
        }
        let (values, vectors) = try t.symmetricEigen()
        return ((0..<m).map { values[$0] }, (0..<m).map { vectors[0, $0] * vectors[0, $0] })
    }

    /// The Ritz vector of the largest Ritz value, Σⱼ sⱼ·qⱼ (needs the basis).
    public func topRitzVector() throws -> [Double] {
        let m = alpha.count
        guard basis.count == m, m > 0 else { throw LandscapeError.invalidArgument("Lanczos kept no basis") }
        var t = Tensor<Double>(shape: [m, m])
        for i in 0..<m {
            t[i, i] = alpha[i]
            if i + 1 < m { t[i, i + 1] = beta[i]; t[i + 1, i] = beta[i] }
        }
        let vectors = try t.symmetricEigen().vectors
        var y = [Double](repeating: 0, count: basis[0].count)
        for j in 0..<m {
            let c = vectors[j, m - 1]
            for i in y.indices { y[i] += c * basis[j][i] }
        }
        return y
    }
}

/// A spectral density by stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019; PyHessian's
/// `density`): per run, Lanczos from a normalised Rademacher probe gives nodes θⱼ and weights τⱼ; the density
/// is φ(t) = mean over runs of Σⱼ τⱼ·N(t; θⱼ, σ²).
public struct SpectralDensity: Sendable {
    /// Per run: the nodes (Ritz values) and their weights.
    public var nodes: [[Double]]
    public var weights: [[Double]]

    public init(nodes: [[Double]], weights: [[Double]]) {
        self.nodes = nodes
        self.weights = weights
    }

    /// SLQ with the given probes (each normalised) and `steps` Lanczos steps per probe.
    public init(_ op: HessianOperator, probes: [[Double]], steps: Int) throws {
        var n: [[Double]] = [], w: [[Double]] = []
        for p in probes {
            let r = try LanczosTridiagonal({ try op($0) }, start: p, steps: steps).ritz()
            n.append(r.values)
            w.append(r.weights)
        }
        self.init(nodes: n, weights: w)
    }

    /// ∫ tᵏ φ(t) dt without broadening: mean over runs of Σⱼ τⱼ θⱼᵏ, the SLQ estimate of tr(Hᵏ)/n (exact for a
    /// probe's quadratic form vᵀHᵏv/vᵀv when k < 2·steps).
    public func moment(_ k: Int) -> Double {
        var s = 0.0
        for (n, w) in zip(nodes, weights) { for (t, c) in zip(n, w) { s += c * Foundation.pow(t, Double(k)) } }
        return s / Double(max(nodes.count, 1))
    }

    /// The broadened density on `bins` points, as PyHessian's `density_generate`: the grid spans the mean
    /// smallest to the mean largest node ± 0.01, the Gaussians have variance σ² = `sigmaSquared`·max(1, width),
    /// and the curve is normalised to integrate to 1 on the grid.
    public func curve(bins: Int = 10_000, sigmaSquared: Double = 1e-5) -> (grid: [Double], density: [Double]) {
        guard !nodes.isEmpty, bins >= 2 else { return ([], []) }
        let top = nodes.map { $0.max() ?? 0 }.reduce(0, +) / Double(nodes.count) + 0.01
        let bottom = nodes.map { $0.min() ?? 0 }.reduce(0, +) / Double(nodes.count) - 0.01
        let s2 = sigmaSquared * Swift.max(1, top - bottom)
        let dx = (top - bottom) / Double(bins - 1)
        let grid = (0..<bins).map { bottom + Double($0) * dx }
        var density = [Double](repeating: 0, count: bins)
        let c = 1 / (2 * Double.pi * s2).squareRoot()
        for (n, w) in zip(nodes, weights) {
            for (t, tau) in zip(n, w) {
                // Only the grid points within 10σ of the node contribute measurably.
                let lo = Swift.max(0, Int(((t - bottom) - 10 * s2.squareRoot()) / dx))
                let hi = Swift.min(bins - 1, Int(((t - bottom) + 10 * s2.squareRoot()) / dx) + 1)
                if lo > hi { continue }
                for i in lo...hi {
                    let d = grid[i] - t
                    density[i] += tau * c * Foundation.exp(-d * d / (2 * s2))
                }
            }
        }
        let total = density.reduce(0, +) * dx
        if total > 0 { for i in density.indices { density[i] /= total } }
        return (grid, density)
    }
}

/// Hutchinson's trace estimate tr(H) ≈ mean over probes of vᵀHv (Rademacher probes: PyHessian's `trace`).
public struct HutchinsonTrace: Sendable {
    /// vₛᵀHvₛ per probe.
    public var samples: [Double]

    public init(_ op: HessianOperator, probes: [[Double]]) throws {
        samples = try probes.map { HessianOperator.dot($0, try op($0)) }
    }

    public var mean: Double { samples.reduce(0, +) / Double(max(samples.count, 1)) }
    /// The standard error of the mean (sample standard deviation / √S; NaN for one probe).
    public var standardError: Double {
        guard samples.count > 1 else { return .nan }
        let m = mean
        let v = samples.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(samples.count - 1)
        return (v / Double(samples.count)).squareRoot()
    }
}

/// The k largest eigenvalues of a Hessian by Lanczos with full re-orthogonalisation from a Rademacher start:
/// the k largest Ritz values of `steps` steps (descending).
public func topHessianEigenvalues(_ op: HessianOperator, k: Int, steps: Int, seed: UInt64) throws -> [Double] {
    try topHessianEigenvalues(op, k: k, steps: steps, seed: seed, checkingStep: false).values
}

/// The k largest eigenvalues as above and, with `checkingStep`, the step error of the largest: the Rayleigh
/// quotient of its Ritz vector recomputed with ε/2, |λ(ε) − λ(ε/2)| (one more product; the truncation error
/// of a central difference is O(ε²), so this is ¾ of λ(ε)'s). NaN without the check.
public func topHessianEigenvalues(
    _ op: HessianOperator, k: Int, steps: Int, seed: UInt64, checkingStep: Bool
) throws -> (values: [Double], stepError: Double) {
    let lanczos = try LanczosTridiagonal(
        { try op($0) }, start: op.rademacher(seed: seed), steps: max(steps, k), keepingBasis: checkingStep)
    let values = Array(try lanczos.ritz().values.reversed().prefix(k))
    guard checkingStep else { return (values, .nan) }
    let y = try lanczos.topRitzVector()
    let half = HessianOperator.dot(y, try op(y, step: op.step / 2)) / HessianOperator.dot(y, y)
    return (values, abs(values[0] - half))
}

/// The per-block scopes of a ViT's parameters: `patch_embed` (with `cls_token`, `pos_embed`, register and
/// distillation tokens), `blocks.{i}`, `norm` (with `fc_norm`), `head`, `decoder` (MAE: every `decoder_*` and
/// `mask_token`), in that order; anything else is `other`.
public func hessianScopes(_ names: [String]) -> [(scope: String, parameters: [String])] {
    func scope(_ n: String) -> String {
        if n.hasPrefix("patch_embed.") || ["cls_token", "pos_embed", "reg_token", "dist_token"].contains(n) {
            return "patch_embed"
        }
        if n.hasPrefix("blocks.") { return n.split(separator: ".").prefix(2).joined(separator: ".") }
        if n.hasPrefix("norm.") || n.hasPrefix("fc_norm.") { return "norm" }
        if n.hasPrefix("head.") { return "head" }
        if n.hasPrefix("decoder_") || n == "mask_token" { return "decoder" }
        return "other"
    }
    var order: [String] = [], members: [String: [String]] = [:]
    for n in names {
        let s = scope(n)
        if members[s] == nil { order.append(s) }
        members[s, default: []].append(n)
    }
    func rank(_ s: String) -> (Int, Int) {
        if s == "patch_embed" { return (0, 0) }
        if s.hasPrefix("blocks.") { return (1, Int(s.dropFirst(7)) ?? 0) }
        return (["norm": 2, "head": 3, "decoder": 4][s] ?? 5, 0)
    }
    return order.sorted { rank($0) < rank($1) }.map { ($0, members[$0]!) }
}

/// The extreme eigenvalues of the Hessian at points of a landscape, for Li et al.'s convexity map
/// |λ_min/λ_max| (`cka landscape --curvature-map`): at a point θ, one Lanczos run with full re-orthogonalisation
/// of `steps` steps from the Rademacher vector of `seed` (the same at every point), over the perturbed tensors,
/// with central-difference Hessian-vector products of step ε = `relativeStep`·‖θ‖ (over those tensors, at the
/// point); λ_min and λ_max are the smallest and the largest Ritz values. Cost: `steps` products (2 gradients
/// each) per point.
public struct CurvatureMap {
    public let objective: any DifferentiableLandscapeObjective
    public let parameters: Set<String>
    public let steps: Int
    public let relativeStep: Double
    public let seed: UInt64

    public init(
        objective: any DifferentiableLandscapeObjective, parameters: Set<String>, steps: Int, relativeStep: Double,
        seed: UInt64
    ) throws {
        guard steps >= 2, relativeStep > 0 else {
            throw LandscapeError.invalidArgument("the curvature map needs at least 2 Lanczos steps and a positive step")
        }
        self.objective = objective
        self.parameters = parameters
        self.steps = steps
        self.relativeStep = relativeStep
        self.seed = seed
    }

    /// The Hessian operator at `point` (a full parameter set).
    public func hessian(at point: ParameterSet) throws -> HessianOperator {
        try HessianOperator(
            objective: RecenteredObjective(base: objective, center: point), parameters: parameters,
            relativeStep: relativeStep)
    }

    /// (λ_min, λ_max) at `point`.
    public func extremes(at point: ParameterSet) throws -> (min: Double, max: Double) {
        let op = try hessian(at: point)
        let values = try LanczosTridiagonal({ try op($0) }, start: op.rademacher(seed: seed), steps: steps).ritz()
            .values
        return (values.first!, values.last!)
    }
}

/// A differentiable objective with another centre (the same loss).
struct RecenteredObjective: DifferentiableLandscapeObjective {
    let base: any DifferentiableLandscapeObjective
    let center: ParameterSet
    var name: String { base.name }
    var fixedParameters: [String: String] { base.fixedParameters }
    func evaluate(at parameters: ParameterSet) throws -> LandscapeValue { try base.evaluate(at: parameters) }
    func valueAndGradient(at parameters: ParameterSet) throws -> (value: LandscapeValue, gradient: ParameterSet) {
        try base.valueAndGradient(at: parameters)
    }
}
