import CKACheckpoint
import CKAIO
import CKATensor
import Foundation
import _CKASupport

/// A whole `cka hessian` run: the top eigenvalues (Lanczos), the trace (Hutchinson) and the spectral density
/// (SLQ) of the Hessian of a landscape loss at a checkpoint, for the whole model and, with `perBlock`, for each
/// block's diagonal block of the Hessian; `repeats` times with other seeds (the MAE masks stay fixed).
///
/// Seeds (repeat r = 0, 1, …): the Lanczos start of every scope `seed + r`; the S trace probes
/// `seed + 1000 + r·S + s` over the whole model, restricted to each scope (so the per-block estimates add up to
/// the estimate of the block-diagonal part with the same probes); the density probes `seed + 2000 + r·R + j`.
public struct HessianRun {
    /// The settings of a run (the options of `cka hessian`).
    public struct Options: Sendable {
        public var objective: LandscapeObjectiveOptions
        /// Top eigenvalues per scope, and Lanczos steps for them and per density run.
        public var topK = 1
        public var lanczosSteps = 30
        /// Rademacher probes of the Hutchinson trace (per scope and repeat).
        public var traceSamples = 16
        /// SLQ runs of the whole model's density (0: none), its grid and Gaussian variance (× the spectrum's width).
        public var densityRuns = 1
        public var densityBins = 10_000
        public var sigmaSquared = 1e-5
        public var perBlock = false
        public var repeats = 1
        public var seed: UInt64 = 0
        /// Finite-difference step relative to ‖θ‖ of the scope; Richardson extrapolation (twice the cost).
        public var relativeStep = 1e-5
        public var extrapolate = false
        /// Also take the fixed sin-cos position tables.
        public var includeFixed = false
        /// Recorded in the output.
        public var pick = ExamplePick.spread
        public var model = ""
        public var quiet = false

        public init(objective: LandscapeObjectiveOptions) { self.objective = objective }
    }

    /// The numbers of one scope.
    public struct ScopeResult: Sendable {
        public var scope: String
        public var parameterCount: Int
        /// Per repeat: the top-k eigenvalues, descending.
        public var eigenvalues: [[Double]]
        /// Per repeat: |λ₁(ε) − λ₁(ε/2)|, the step error of the largest eigenvalue.
        public var stepErrors: [Double] = []
        /// Per repeat: the Hutchinson estimate.
        public var traces: [HutchinsonTrace]
    }

    /// Everything a run computed, with what the output files need.
    public struct Result: Sendable {
        public var scopes: [ScopeResult]
        /// The whole model's density (all repeats' runs), if any.
        public var density: SpectralDensity?
        public var curve: (grid: [Double], density: [Double])
        public var ids: [String]
        public var maskRows: [UInt8]
        public var patchCount: Int
        public var attributes: [String: HDF5AttributeValue]
    }

    public let options: Options
    public let checkpoint: Checkpoint
    public let teacher: Checkpoint?
    public let examples: LandscapeExamples

    public init(options: Options, checkpoint: Checkpoint, teacher: Checkpoint?, examples: LandscapeExamples) {
        self.options = options
        self.checkpoint = checkpoint
        self.teacher = teacher
        self.examples = examples
    }

    /// Runs; `log` gets the cost estimate and progress. With `split`, every process runs this (the same
    /// iterations, with the same bits) and computes its share of each Hessian-vector product's gradients.
    public func run(
        split: (any GradientWorkSplit)? = nil, log: @escaping (String) -> Void = { _ in }
    ) throws -> Result {
        let o = options
        guard o.topK >= 1, o.lanczosSteps >= 1, o.traceSamples >= 1, o.densityRuns >= 0, o.repeats >= 1,
            o.densityBins >= 2, o.relativeStep > 0, o.sigmaSquared > 0
        else {
            throw LandscapeError.invalidArgument(
                "the Hessian run needs k, Lanczos steps, trace samples, repeats ≥ 1, density runs ≥ 0, 2 bins and a positive step"
            )
        }
        let setup = try LandscapeObjectiveSetup(
            o.objective, checkpoint: checkpoint, teacher: teacher, examples: examples)
        guard let objective = setup.objective as? any DifferentiableLandscapeObjective else {
            throw LandscapeError.invalidArgument("the \(setup.objective.name) loss has no gradient")
        }
        let (_, parameters, excluded) = try setup.parameters(groups: nil, includeFixed: o.includeFixed)
        let names = objective.center.names.filter(parameters.contains)
        var scopes: [(scope: String, parameters: [String])] = [("model", names)]
        if o.perBlock { scopes += hessianScopes(names) }
        let operators = try scopes.map {
            try HessianOperator(
                objective: objective, parameters: Set($0.parameters), relativeStep: o.relativeStep,
                extrapolated: o.extrapolate, split: split)
        }
        let model = operators[0]

        // Cost first: one product, timed, times the products to come (next to one forward + backward).
        // (The product first: its first gradient also pays for the buffers' first allocation.)
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try model(model.rademacher(seed: o.seed))
        let gradientStart = DispatchTime.now().uptimeNanoseconds
        _ = try objective.valueAndGradient(at: objective.center)
        let end = DispatchTime.now().uptimeNanoseconds
        let seconds = Double(gradientStart - start) * 1e-9, gradientSeconds = Double(end - gradientStart) * 1e-9
        let topSteps = max(o.lanczosSteps, o.topK)
        let products = o.repeats * (scopes.count * (topSteps + 1 + o.traceSamples) + o.densityRuns * o.lanczosSteps)
        if !o.quiet {
            log(
                "hessian: \(o.objective.loss.rawValue) loss over \(examples.ids.count) examples, \(model.dimension) parameters, \(scopes.count) scope(s)"
            )
            for name in excluded { log("  not included: \(name) — \(objective.fixedParameters[name]!)") }
            log(
                String(
                    format:
                        "hessian: cost estimate: %d Hessian-vector products × %.3f s = %.0f s (one forward + backward: %.3f s; --threads: %d)",
                    products, seconds, Double(products) * seconds, gradientSeconds, blasThreadCount))
        }
        let line = ProgressLine("hessian", quiet: o.quiet)
        var done = 0
        func progress(_ n: Int) {
            done += n
            line.update(CKAProgress(done: done, total: products, unit: "Hessian-vector products"))
        }

        var results = zip(scopes, operators).map {
            ScopeResult(scope: $0.0.scope, parameterCount: $0.1.dimension, eigenvalues: [], traces: [])
        }
        var nodes: [[Double]] = [], weights: [[Double]] = []
        for r in 0..<o.repeats {
            let probes = (0..<o.traceSamples).map {
                model.rademacher(seed: o.seed &+ 1000 &+ UInt64(r * o.traceSamples + $0))
            }
            for (i, op) in operators.enumerated() {
                let top = try topHessianEigenvalues(
                    op, k: o.topK, steps: topSteps, seed: o.seed &+ UInt64(r), checkingStep: true)
                results[i].eigenvalues.append(top.values)
                results[i].stepErrors.append(top.stepError)
                progress(topSteps + 1)
                if !o.quiet && top.stepError > 0.01 * abs(top.values[0]) {
                    line.update(CKAProgress(done: done, total: products, unit: "Hessian-vector products"))
                    log(
                        String(
                            format:
                                "hessian: warning: %@: λ₁ = %.6g changes by %.2g when the step is halved (more than 1 %%): try a smaller --hessian-step or --richardson",
                            results[i].scope, top.values[0], top.stepError))
                }
                let restricted = i == 0 ? probes : probes.map { op.flatten(model.unflatten($0)) }
                results[i].traces.append(try HutchinsonTrace(op, probes: restricted))
                progress(o.traceSamples)
            }
            if o.densityRuns > 0 {
                let d = try SpectralDensity(
                    model,
                    probes: (0..<o.densityRuns).map {
                        model.rademacher(seed: o.seed &+ 2000 &+ UInt64(r * o.densityRuns + $0))
                    }, steps: o.lanczosSteps)
                nodes += d.nodes
                weights += d.weights
                progress(o.densityRuns * o.lanczosSteps)
            }
        }
        let density = nodes.isEmpty ? nil : SpectralDensity(nodes: nodes, weights: weights)
        var attributes: [String: HDF5AttributeValue] = [
            "loss": .string(o.objective.loss.rawValue),
            "checkpoint": .string(URL(fileURLWithPath: o.objective.checkpoint).lastPathComponent),
            "model": .string(o.model), "source": .string(checkpoint.source.rawValue),
            "architecture": .string(checkpoint.architecture.timmName), "heads": .int(checkpoint.architecture.heads),
            "n_examples": .int(examples.ids.count), "pick": .string(o.pick.rawValue),
            "seed": .int(Int(truncatingIfNeeded: o.seed)), "top_k": .int(o.topK), "lanczos_steps": .int(o.lanczosSteps),
            "trace_samples": .int(o.traceSamples), "density_runs": .int(o.densityRuns), "repeats": .int(o.repeats),
            "per_block": .bool(o.perBlock), "hessian_step_relative": .double(o.relativeStep),
            "extrapolated": .bool(o.extrapolate), "sigma_squared": .double(o.sigmaSquared),
            "excluded": .strings(excluded.isEmpty ? ["none"] : excluded),
            "seconds_per_product": .double(seconds), "seconds_per_gradient": .double(gradientSeconds),
            "created_by": .string("cka \(toolkitVersion)"),
        ]
        if let teacher = o.objective.teacher {
            attributes["teacher"] = .string(URL(fileURLWithPath: teacher).lastPathComponent)
        }
        for (k, v) in setup.attributes { attributes[k] = v }
        return Result(
            scopes: results, density: density,
            curve: density?.curve(bins: o.densityBins, sigmaSquared: o.sigmaSquared) ?? ([], []),
            ids: examples.ids, maskRows: setup.maskRows, patchCount: setup.patchCount, attributes: attributes)
    }
}

extension HessianRun.Result {
    /// Mean and standard error of the mean of `values` (NaN error for one value).
    static func meanAndError(_ values: [Double]) -> (Double, Double) {
        let m = values.reduce(0, +) / Double(values.count)
        guard values.count > 1 else { return (m, .nan) }
        let v = values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)
        return (m, (v / Double(values.count)).squareRoot())
    }

    /// The rows of the CSV (`scope,quantity,index,value,stderr`): per scope `parameters`, `eigenvalue` 1…k and
    /// `trace` (means over the repeats; the error over the repeats, or Hutchinson's for one repeat), then the
    /// whole model's `density_moment` 1…4 (error over the SLQ runs).
    public var rows: [(scope: String, quantity: String, index: Int, value: Double, stderr: Double)] {
        var out: [(String, String, Int, Double, Double)] = []
        for s in scopes {
            out.append((s.scope, "parameters", 0, Double(s.parameterCount), .nan))
            let k = s.eigenvalues.map(\.count).min() ?? 0
            for i in 0..<k {
                let (m, e) = Self.meanAndError(s.eigenvalues.map { $0[i] })
                out.append((s.scope, "eigenvalue", i + 1, m, e))
            }
            out.append(
                (
                    s.scope, "eigenvalue_step_error", 1, s.stepErrors.reduce(0, +) / Double(max(s.stepErrors.count, 1)),
                    .nan
                ))
            let (m, e) = Self.meanAndError(s.traces.map(\.mean))
            out.append((s.scope, "trace", 0, m, s.traces.count == 1 ? s.traces[0].standardError : e))
        }
        if let density {
            for k in 1...4 {
                let perRun = zip(density.nodes, density.weights).map { n, w in
                    zip(n, w).reduce(0.0) { $0 + $1.1 * Foundation.pow($1.0, Double(k)) }
                }
                let (m, e) = Self.meanAndError(perRun)
                out.append(("model", "density_moment", k, m, e))
            }
        }
        return out
    }

    /// The CSV text (stderr empty where there is none).
    public var csv: String {
        var text = "scope,quantity,index,value,stderr\n"
        for r in rows {
            text +=
                "\(r.scope),\(r.quantity),\(r.index),\(csvNumber(r.value)),\(r.stderr.isNaN ? "" : csvNumber(r.stderr))\n"
        }
        return text
    }

    private func csvNumber(_ v: Double) -> String { String(format: "%.10g", v) }

    /// Writes the HDF5 output (docs/formats.md, "Hessian spectrum") atomically.
    public func write(to path: String) throws {
        try HDF5File.createAtomically(path) { f in
            var attrs = attributes
            attrs["format"] = .string("hessian")
            attrs["format_version"] = .int(1)
            for (k, v) in attrs.sorted(by: { $0.key < $1.key }) { try f.setAttribute(k, v) }
            let n = scopes.count, r = scopes.first?.eigenvalues.count ?? 0
            let k = scopes.first?.eigenvalues.first?.count ?? 0, s = scopes.first?.traces.first?.samples.count ?? 0
            try f.writeStrings("scopes", scopes.map(\.scope))
            try f.createDataset("parameter_counts", type: .int64, shape: [n]).write(
                scopes.map { Int64($0.parameterCount) })
            func doubles(_ name: String, _ shape: [Int], _ v: [Double]) throws {
                try f.createDataset(name, type: .float64, shape: shape).write(
                    try Tensor<Double>(shape: shape, scalars: v))
            }
            try doubles("eigenvalues", [n, r, k], scopes.flatMap { $0.eigenvalues.flatMap { $0 } })
            try doubles("eigenvalue_step_error", [n, r], scopes.flatMap(\.stepErrors))
            try doubles("trace", [n, r], scopes.flatMap { $0.traces.map(\.mean) })
            try doubles("trace_stderr", [n, r], scopes.flatMap { $0.traces.map(\.standardError) })
            try doubles("trace_samples", [n, r, s], scopes.flatMap { $0.traces.flatMap(\.samples) })
            if let density {
                try f.createGroup("density")
                let runs = density.nodes.count, m = density.nodes.map(\.count).max() ?? 0
                func padded(_ rows: [[Double]]) -> [Double] {
                    rows.flatMap { $0 + [Double](repeating: .nan, count: m - $0.count) }
                }
                try doubles("density/nodes", [runs, m], padded(density.nodes))
                try doubles("density/weights", [runs, m], padded(density.weights))
                try doubles("density/grid", [curve.grid.count], curve.grid)
                try doubles("density/values", [curve.density.count], curve.density)
                try doubles("density/moments", [4], (1...4).map { density.moment($0) })
            }
            if !ids.isEmpty { try f.createGroup("inputs"); try f.writeStrings("inputs/ids", ids) }
            if !maskRows.isEmpty, patchCount > 0 {
                try f.createDataset("masks", type: .uint8, shape: [maskRows.count / patchCount, patchCount]).write(
                    maskRows)
            }
        }
    }
}
