import CKAIO
import CKATensor
import Foundation

/// A landscape objective that also gives the gradient of its loss.
public protocol DifferentiableLandscapeObjective: LandscapeObjective {
    /// The loss at `parameters` and its gradient with respect to every tensor of `center` (same names, same
    /// shapes).
    func valueAndGradient(at parameters: ParameterSet) throws -> (value: LandscapeValue, gradient: ParameterSet)
    /// The weights w_c of the fixed chunks the examples fall into (the batches): the gradient of the loss is
    /// Σ_c `chunkGradient(c)` / Σ_c w_c. Hessian-vector products add the chunks' terms in chunk order, so they
    /// can be computed on several processes with the same bits (default: one chunk of weight 1).
    var gradientChunkWeights: [Double] { get }
    /// The unnormalised gradient sum of chunk `chunk` at `parameters` (default: the gradient of the loss).
    func chunkGradient(at parameters: ParameterSet, chunk: Int) throws -> ParameterSet
}

extension DifferentiableLandscapeObjective {
    public var gradientChunkWeights: [Double] { [1] }
    public func chunkGradient(at parameters: ParameterSet, chunk: Int) throws -> ParameterSet {
        try valueAndGradient(at: parameters).gradient
    }
}

/// How the gradients of a Hessian-vector product are shared among processes (the ranks of an MPI job):
/// nil, or a world of one, computes them all here.
public protocol GradientWorkSplit {
    var rank: Int { get }
    var size: Int { get }
    /// An all-to-all exchange: every process passes a vector (or an empty one) and the same `segments`, one
    /// range per process; each gets segment `rank` of every process's vector, in rank order ([] for an empty one).
    func exchangeSegments(_ values: [Float], segments: [Range<Int>]) throws -> [[Float]]
    /// Every process's `values` (any length), in rank order, on every process.
    func allGather(_ values: [Float]) throws -> [[Float]]
}

/// The largest-magnitude eigenvalue of the Hessian of the loss with respect to a set of parameters, by
/// power iteration with finite-difference Hessian-vector products (as PyHessian does with exact ones):
///
///     H·v ≈ (∇L(θ₀ + ε·v) − ∇L(θ₀ − ε·v)) / (2ε),   λ = vᵀ·H·v,   v ← H·v / ‖H·v‖
///
/// from a seeded Gaussian v₀ over the chosen tensors, stopping when λ changes by less than `tolerance`
/// relative, or after `maxIterations` (two gradients each). If λ(ε) and λ(ε/2) then differ by more than 1 %,
/// ε is divided by 10 and the iteration continues (at most three times; `stepRefinements`).
///
/// **Step and error.** ‖v‖ = 1, and ε = `relativeStep`·‖θ₀‖ over the chosen tensors (default 1e-5). The
/// central difference is exact for a quadratic loss; otherwise its truncation error is O(ε²·‖∇³L‖), and the
/// top eigenvector of a ViT loss is narrow — concentrated on few parameters, so a step that is small for ‖θ‖
/// is large for them: on the test MAE model the curvature along v falls by 2 % at ε = 1e-4·‖θ‖ and by 15 %
/// at 1e-3·‖θ‖ (λ(ε) − λ(ε/2): 7.5e-4 at the default, 1.5e-5 relative). Float32 gradients add a rounding
/// error of about u·‖∇L‖/ε (u = 6e-8), which grows as ε shrinks. `stepError` measures both on the final v: the
/// Rayleigh quotient recomputed with ε/2, as |λ(ε) − λ(ε/2)| (for an O(ε²) truncation error that is ¾ of the
/// error of λ(ε)); it costs two more gradients. Report it with λ.
public struct HessianEigenvalue: Sendable {
    /// The eigenvalue estimate (signed: power iteration finds the largest |λ|).
    public var eigenvalue: Double
    /// Power iterations done.
    public var iterations: Int
    /// |λ_k − λ_{k−1}| / |λ_k| at the end.
    public var relativeChange: Double
    /// The finite-difference step ε finally used.
    public var step: Double
    /// How many times ε was divided by 10 because λ(ε) and λ(ε/2) differed by more than 1 %.
    public var stepRefinements: Int
    /// |λ(ε) − λ(ε/2)| on the final vector.
    public var stepError: Double
    /// λ after each iteration.
    public var history: [Double]
    /// The unit vector v whose Rayleigh quotient is `eigenvalue` (the chosen tensors only).
    public var eigenvector: ParameterSet

    public init(
        objective: any DifferentiableLandscapeObjective, parameters names: Set<String>, maxIterations: Int = 20,
        tolerance: Double = 1e-3, relativeStep: Double = 1e-5, seed: UInt64 = 0,
        split: (any GradientWorkSplit)? = nil,
        progress: ((Int, Double) -> Void)? = nil
    ) throws {
        guard maxIterations >= 1, relativeStep > 0 else {
            throw LandscapeError.invalidArgument(
                "the Hessian power iteration needs at least one iteration and a positive step")
        }
        let product = try HessianVectorProduct(objective: objective, parameters: names, split: split)
        let weights = product.weights

        var v = FilterNormalizedDirections.gaussian(like: weights, seed: seed)
        Self.scale(&v, by: 1 / Self.norm(v))

        func hessianTimes(_ v: ParameterSet, step: Double) throws -> ParameterSet { try product(v, step: step) }

        var lambda = 0.0, change = Double.infinity, trace: [Double] = []
        var eps = relativeStep * product.parameterNorm
        /// Power iterations from v at the current step; v ends as the vector whose Rayleigh quotient is λ.
        func iterate(_ count: Int) throws {
            for it in 1...count {
                let hv = try hessianTimes(v, step: eps)
                let next = Self.dot(v, hv)
                change = trace.isEmpty ? .infinity : abs(next - lambda) / max(abs(next), 1e-300)
                lambda = next
                trace.append(lambda)
                progress?(trace.count, lambda)
                let n = Self.norm(hv)
                if n == 0 || (it > 1 && change <= tolerance) || it == count { break }
                v = hv
                Self.scale(&v, by: 1 / n)
            }
        }
        try iterate(maxIterations)
        // The same Rayleigh quotient with half the step. If they disagree by more than 1 %, the step is too
        // coarse for this (narrow) eigenvector: shrink it tenfold and iterate on, at most three times.
        var error = abs(lambda - Self.dot(v, try hessianTimes(v, step: eps / 2)))
        var refinements = 0
        while error > 0.01 * abs(lambda), refinements < 3 {
            refinements += 1
            eps /= 10
            try iterate(Swift.max(3, maxIterations / 3))
            error = abs(lambda - Self.dot(v, try hessianTimes(v, step: eps / 2)))
        }
        eigenvalue = lambda
        iterations = trace.count
        relativeChange = change
        step = eps
        stepError = error
        stepRefinements = refinements
        history = trace
        eigenvector = v
    }

    static func dot(_ a: ParameterSet, _ b: ParameterSet) -> Double {
        var s = 0.0
        for name in a.names {
            guard let x = a[name], let y = b[name] else { continue }
            let px = x.pointer, py = y.pointer
            for i in 0..<x.count { s += Double(px[i]) * Double(py[i]) }
        }
        return s
    }

    static func norm(_ a: ParameterSet) -> Double { dot(a, a).squareRoot() }

    static func scale(_ a: inout ParameterSet, by c: Double) {
        for name in a.names {
            var t = a[name]!
            let p = t.mutablePointer(), f = Float(c)
            for i in 0..<t.count { p[i] *= f }
            a.set(name, t)
        }
    }

    /// The result as store attributes (`hessian_…`).
    public var attributes: [String: HDF5AttributeValue] {
        [
            "hessian_max_eigenvalue": .double(eigenvalue), "hessian_iterations": .int(iterations),
            "hessian_relative_change": .double(relativeChange), "hessian_step": .double(step),
            "hessian_step_error": .double(stepError), "hessian_step_refinements": .int(stepRefinements),
            "hessian_history": .doubles(history),
        ]
    }
}

/// Hessian-vector products of a differentiable objective with respect to a set of its parameters, by central
/// differences of backpropagated gradients (every Hessian quantity of the toolkit uses this one product):
///
///     H·v ≈ Σ_c (∇L_c(θ₀ + ε·v) − ∇L_c(θ₀ − ε·v)) / (2ε·Σ_c w_c)
///
/// over the chosen tensors (the others held at θ₀), where ∇L_c is the gradient sum of the objective's chunk c
/// of examples (`DifferentiableLandscapeObjective.chunkGradient`, its batches) and w_c its weight. One product
/// costs two gradients. The step ε is absolute; callers take it relative to `parameterNorm` (see
/// `HessianEigenvalue` for the error of the step).
///
/// **Processes.** With a `GradientWorkSplit` of R processes, the work is dealt out in rounds of R units: a unit
/// is a chunk (both its gradients; the difference) when there are at least R chunks, otherwise one gradient (a
/// chunk at +εv or at −εv). The P values are cut into R segments; after each round, process r receives segment r
/// of every unit's vector (`exchangeSegments`) and adds them in chunk order; at the end the segments are gathered
/// (`allGather`). Every value is thus the same sum in the same order for every R, one process included, and each
/// process sends about P floats per round plus P/R·(R − 1) at the end.
public struct HessianVectorProduct {
    public let objective: any DifferentiableLandscapeObjective
    /// θ₀ restricted to the chosen tensors, in the order of the objective's centre.
    public let weights: ParameterSet
    /// ‖θ₀‖ over the chosen tensors.
    public let parameterNorm: Double
    let split: (any GradientWorkSplit)?

    /// - Throws: `LandscapeError.invalidArgument` if the chosen tensors are empty or all zero.
    public init(
        objective: any DifferentiableLandscapeObjective, parameters names: Set<String>,
        split: (any GradientWorkSplit)? = nil
    ) throws {
        weights = objective.center.restricted(to: names)
        guard weights.scalarCount > 0 else {
            throw LandscapeError.invalidArgument("no parameters to take the Hessian over")
        }
        parameterNorm = HessianEigenvalue.norm(weights)
        guard parameterNorm > 0 else {
            throw LandscapeError.invalidArgument("the chosen parameters are all zero: no scale for the step")
        }
        self.objective = objective
        self.split = split
    }

    /// H·v for `v` over (a subset of) the chosen tensors, with the finite-difference step `step`. With
    /// `extrapolated`, Richardson's (4·D(ε/2) − D(ε))/3 of two central differences D: the O(ε²) truncation error
    /// cancels (O(ε⁴) remains) for twice the cost (four gradients).
    public func callAsFunction(_ v: ParameterSet, step: Double, extrapolated: Bool) throws -> ParameterSet {
        guard extrapolated else { return try self(v, step: step) }
        let coarse = try self(v, step: step), fine = try self(v, step: step / 2)
        var out = ParameterSet()
        for name in fine.names {
            var t = Tensor<Float>(shape: fine[name]!.shape)
            let o = t.mutablePointer(), a = fine[name]!.pointer, b = coarse[name]!.pointer
            for i in 0..<t.count { o[i] = Float((4 * Double(a[i]) - Double(b[i])) / 3) }
            out.set(name, t)
        }
        return out
    }

    /// H·v for `v` over (a subset of) the chosen tensors, with the finite-difference step `step`.
    public func callAsFunction(_ v: ParameterSet, step: Double) throws -> ParameterSet {
        let center = objective.center
        let atPlus = try center.moved(along: [(step, v)]), atMinus = try center.moved(along: [(-step, v)])
        let chunkWeights = objective.gradientChunkWeights, chunks = chunkWeights.count
        let names = v.names, count = v.scalarCount
        let size = split?.size ?? 1, rank = split?.rank ?? 0
        // Whole chunks when every process gets one, else single gradients.
        let halves = chunks < size
        let units = halves ? 2 * chunks : chunks

        /// Chunk c's gradient sum at `p`, flat over v's tensors.
        func gradient(_ c: Int, at p: ParameterSet) throws -> [Float] {
            let g = try objective.chunkGradient(at: p, chunk: c)
            var out = [Float]()
            out.reserveCapacity(count)
            for name in names {
                guard let t = g[name], t.count == v[name]!.count else {
                    throw LandscapeError.invalidArgument("the gradient lacks '\(name)'")
                }
                out.append(contentsOf: UnsafeBufferPointer(start: t.pointer, count: t.count))
            }
            return out
        }
        func unit(_ u: Int) throws -> [Float] {
            if halves { return try gradient(u / 2, at: u % 2 == 0 ? atPlus : atMinus) }
            var d = try gradient(u, at: atPlus)
            let m = try gradient(u, at: atMinus)
            for i in d.indices { d[i] -= m[i] }
            return d
        }
        // Σ_c (g⁺_c − g⁻_c) over this process's segment of the values, in chunk order.
        let segments = (0..<size).map { r in count * r / size..<count * (r + 1) / size }
        var sum = [Float](repeating: 0, count: segments[rank].count)
        var plus: [Float] = []
        func add(_ u: Int, _ x: [Float]) throws {
            guard x.count == sum.count else {
                throw LandscapeError.invalidArgument(
                    "a gradient segment from another process has \(x.count) values, not \(sum.count)")
            }
            if !halves {
                for i in sum.indices { sum[i] += x[i] }
            } else if u % 2 == 0 {
                plus = x
            } else {
                for i in sum.indices { sum[i] += plus[i] - x[i] }
            }
        }
        for base in stride(from: 0, to: units, by: size) {
            let mine = try base + rank < units ? unit(base + rank) : []
            let all = try split.map { try $0.exchangeSegments(mine, segments: segments) } ?? [mine]
            for (r, x) in all.enumerated() where base + r < units { try add(base + r, x) }
        }
        if let split, size > 1 {
            let parts = try split.allGather(sum)
            guard parts.map(\.count) == segments.map(\.count) else {
                throw LandscapeError.invalidArgument(
                    "the segments of a Hessian-vector product from other processes differ")
            }
            sum = parts.flatMap { $0 }
        }
        let inv = Float(1 / (chunkWeights.reduce(0, +) * 2 * step))
        var hv = ParameterSet(), o = 0
        for name in names {
            var t = Tensor<Float>(shape: v[name]!.shape)
            let p = t.mutablePointer()
            for i in 0..<t.count { p[i] = sum[o + i] * inv }
            o += t.count
            hv.set(name, t)
        }
        return hv
    }
}
