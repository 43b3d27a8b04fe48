import CKATensor
import Foundation

/// Settings of the linear probe.
public struct ProbeOptions: Sendable, Equatable {
    /// λ of the L2 penalty in the objective `(1/N) Σ −log softmax(z_i)[y_i] + (λ/2)‖W‖²_F`
    /// (the bias is not penalised). This is scikit-learn's `LogisticRegression(C = 1/(λ·N))`.
    public var l2 = 1e-2
    /// The optimiser's stopping rule (see `LBFGSOptions`).
    public var optimizer = LBFGSOptions()
    /// Rows per chunk of the GEMMs (the features are kept as `Float`; one chunk at a time is
    /// converted to `Double`).
    public var chunkRows = 4096

    public init(l2: Double = 1e-2) { self.l2 = l2 }

    func validate() throws {
        guard l2 >= 0, l2.isFinite else {
            throw AnalysisError.invalidOption("the L2 penalty must be ≥ 0 and finite (got \(l2))")
        }
        guard optimizer.maxIterations >= 0, optimizer.history >= 1, chunkRows >= 1 else {
            throw AnalysisError.invalidOption("the probe needs max iterations ≥ 0, history ≥ 1 and chunk rows ≥ 1")
        }
    }
}

/// A multinomial logistic-regression probe on frozen features (a linear classifier trained on top of
/// a fixed representation).
///
/// The features are standardised with the training set's mean and standard deviation (population,
/// ddof = 0, as scikit-learn's `StandardScaler`; a constant feature gets scale 1). The probe minimises
///
///     f(W, b) = (1/N) Σ_i −log softmax(W·x̂_i + b)[y_i] + (λ/2)‖W‖²_F
///
/// by deterministic full-batch L-BFGS from W = 0, b = 0 (`LBFGSOptions`: stops when the largest
/// gradient component is ≤ `gradientTolerance`, when an iteration reduces f by a relative
/// `relativeTolerance` or less, when no step decreases f, or after `maxIterations`). The GEMMs run
/// through the tensor core in `Double`, a chunk of rows at a time. With λ > 0 the problem is strictly
/// convex in W, so the optimum matches scikit-learn's `LogisticRegression(C = 1/(λN))` on the same
/// standardised features; with λ = 0 on separable data it has no optimum and the run ends at the
/// iteration limit (`stop == .maxIterations`).
public struct LogisticProbe: Sendable {
    /// Per-feature mean and scale of the standardisation (`x̂ = (x − mean) / scale`), `[D]`.
    public let mean: [Double]
    public let scale: [Double]
    /// Weights `[C, D]` (PyTorch `nn.Linear` layout) and bias `[C]` on the standardised features.
    public let weight: Tensor<Double>
    public let bias: [Double]
    /// The penalty the probe was trained with.
    public let l2: Double
    /// The objective f at the returned weights, on the training set.
    public let loss: Double
    /// Largest gradient component at the returned weights.
    public let gradientMax: Double
    /// L-BFGS iterations and objective evaluations.
    public let iterations: Int
    public let evaluations: Int
    /// Why the optimiser stopped.
    public let stop: OptimizerStop

    /// A probe from its parts (a probe trained elsewhere, e.g. on another rank).
    package init(
        mean: [Double], scale: [Double], weight: Tensor<Double>, bias: [Double], l2: Double, loss: Double,
        gradientMax: Double, iterations: Int, evaluations: Int, stop: OptimizerStop
    ) {
        (self.mean, self.scale, self.weight, self.bias, self.l2) = (mean, scale, weight, bias, l2)
        (self.loss, self.gradientMax, self.iterations, self.evaluations, self.stop) =
            (loss, gradientMax, iterations, evaluations, stop)
    }

    /// Classes C and feature width D.
    public var classCount: Int { weight.shape[0] }
    public var width: Int { weight.shape[1] }

    /// Trains a probe on `features` `[N, D]` with `labels` in `0..<classCount`.
    /// - Parameter classCount: C; nil = the largest label + 1. Every class must have a training example.
    /// - Throws: `AnalysisError` for a shape mismatch, non-finite features, labels outside `0..<C`,
    ///   fewer than two classes, or a class without training examples (paths empty: callers add them).
    public static func fit(
        features: Tensor<Float>, labels: [Int], classCount: Int? = nil,
        options: ProbeOptions = ProbeOptions()
    ) throws -> LogisticProbe {
        try options.validate()
        guard features.rank == 2, features.rowCount == labels.count else {
            throw AnalysisError.invalidOption(
                "probe: features \(describeShape(features.shape)) for \(labels.count) labels, expected [N, D]")
        }
        let n = features.rowCount, d = features.shape[1]
        guard n >= 1 else {
            throw AnalysisError.tooFewExamples(path: "", detail: "the probe needs at least one training example")
        }
        guard allFinite(features) else { throw AnalysisError.nonFinite(path: "", layer: "") }
        let c = classCount ?? ((labels.max() ?? -1) + 1)
        if let i = labels.firstIndex(where: { $0 < 0 || $0 >= c }) {
            throw AnalysisError.labelOutOfRange(path: "", index: i, label: labels[i], classCount: c)
        }
        var perClass = [Int](repeating: 0, count: c)
        for l in labels { perClass[l] += 1 }
        let present = perClass.filter { $0 > 0 }.count
        guard present >= 2 else { throw AnalysisError.tooFewClasses(path: "", layer: "", classes: present) }
        if let missing = perClass.firstIndex(of: 0) {
            throw AnalysisError.classWithoutTrainingExamples(
                path: "", trainPath: "", classIndex: missing, className: nil)
        }
        let (mean, scale) = standardization(features)
        let x = standardized(features, mean: mean, scale: scale)
        let lambda = options.l2
        let problem = SoftmaxProblem(x: x, labels: labels, classCount: c, chunkRows: options.chunkRows)
        let start = [Double](repeating: 0, count: d * c + c)
        let r = try lbfgsMinimize(start: start, options: options.optimizer) { theta, grad in
            try problem.objective(theta, l2: lambda, gradient: &grad)
        }
        // θ holds W as [D, C]; store it as [C, D].
        var w = Tensor<Double>(shape: [c, d])
        w.withUnsafeMutableBufferPointer { p in
            for i in 0..<d { for j in 0..<c { p[j * d + i] = r.x[i * c + j] } }
        }
        return LogisticProbe(
            mean: mean, scale: scale, weight: w, bias: Array(r.x[(d * c)...]), l2: lambda, loss: r.value,
            gradientMax: r.gradientMax, iterations: r.iterations, evaluations: r.evaluations, stop: r.stop)
    }

    /// The logits `[N, C]` of raw (unstandardised) `features` `[N, D]`.
    public func logits(_ features: Tensor<Float>) throws -> Tensor<Float> {
        guard features.rank == 2, features.shape[1] == width else {
            throw AnalysisError.invalidOption(
                "probe: features \(describeShape(features.shape)), expected [N, \(width)]")
        }
        let x = LogisticProbe.standardized(features, mean: mean, scale: scale)
        let problem = SoftmaxProblem(x: x, labels: nil, classCount: classCount, chunkRows: 4096)
        return try problem.logits(theta)
    }

    /// The top-1 class of each row of raw `features` (ties → lower class index).
    public func predict(_ features: Tensor<Float>) throws -> [Int] {
        try LogisticProbe.argmax(logits(features))
    }

    /// Top-1 accuracy in percent on raw `features` with `labels`.
    public func accuracy(_ features: Tensor<Float>, labels: [Int]) throws -> Double {
        let p = try predict(features)
        guard p.count == labels.count, !p.isEmpty else { return .nan }
        return 100 * Double(zip(p, labels).filter { $0 == $1 }.count) / Double(p.count)
    }

    /// The objective f (mean cross-entropy + (λ/2)‖W‖²) of this probe on raw `features` with `labels`.
    public func objective(_ features: Tensor<Float>, labels: [Int]) throws -> Double {
        guard features.rank == 2, features.shape[1] == width, features.rowCount == labels.count else {
            throw AnalysisError.invalidOption(
                "probe: features \(describeShape(features.shape)) for \(labels.count) labels, expected [N, \(width)]")
        }
        if let i = labels.firstIndex(where: { $0 < 0 || $0 >= classCount }) {
            throw AnalysisError.labelOutOfRange(path: "", index: i, label: labels[i], classCount: classCount)
        }
        let x = LogisticProbe.standardized(features, mean: mean, scale: scale)
        let problem = SoftmaxProblem(x: x, labels: labels, classCount: classCount, chunkRows: 4096)
        var g = [Double](repeating: 0, count: theta.count)
        return try problem.objective(theta, l2: l2, gradient: &g)
    }

    /// The parameters as the optimiser sees them: W `[D, C]` row-major, then b.
    var theta: [Double] {
        let c = classCount, d = width
        var t = [Double](repeating: 0, count: d * c + c)
        weight.withUnsafeBufferPointer { p in
            for i in 0..<d { for j in 0..<c { t[i * c + j] = p[j * d + i] } }
        }
        for j in 0..<c { t[d * c + j] = bias[j] }
        return t
    }

    /// Row-wise argmax; ties → lower index.
    static func argmax(_ z: Tensor<Float>) -> [Int] {
        let n = z.rowCount, c = z.rowSize
        var out = [Int](repeating: 0, count: n)
        z.withUnsafeBufferPointer { p in
            for i in 0..<n {
                var best = 0
                for j in 1..<max(1, c) where p[i * c + j] > p[i * c + best] { best = j }
                out[i] = best
            }
        }
        return out
    }

    /// Column mean and population standard deviation (1 for a constant column), in `Double`.
    static func standardization(_ x: Tensor<Float>) -> (mean: [Double], scale: [Double]) {
        let n = x.rowCount, d = x.rowSize
        var mean = [Double](repeating: 0, count: d), varSum = mean
        var lo = [Float](repeating: .infinity, count: d), hi = [Float](repeating: -.infinity, count: d)
        x.withUnsafeBufferPointer { p in
            mean.withUnsafeMutableBufferPointer { m in
                lo.withUnsafeMutableBufferPointer { lo in
                    hi.withUnsafeMutableBufferPointer { hi in
                        for i in 0..<n {
                            for j in 0..<d {
                                let v = p[i * d + j]
                                m[j] += Double(v)
                                lo[j] = min(lo[j], v); hi[j] = max(hi[j], v)
                            }
                        }
                    }
                }
                for j in 0..<d { m[j] /= Double(max(n, 1)) }
                varSum.withUnsafeMutableBufferPointer { s in
                    for i in 0..<n { for j in 0..<d { let e = Double(p[i * d + j]) - m[j]; s[j] += e * e } }
                }
            }
        }
        let scale = (0..<d).map { j in lo[j] == hi[j] ? 1 : (varSum[j] / Double(max(n, 1))).squareRoot() }
        return (mean, scale)
    }

    /// `(x − mean) / scale` per column, as `Float`.
    static func standardized(_ x: Tensor<Float>, mean: [Double], scale: [Double]) -> Tensor<Float> {
        let n = x.rowCount, d = x.rowSize
        var out = Tensor<Float>(shape: [n, d])
        let inv = scale.map { 1 / $0 }
        x.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                mean.withUnsafeBufferPointer { m in
                    inv.withUnsafeBufferPointer { s in
                        for i in 0..<n { for j in 0..<d { o[i * d + j] = Float((Double(p[i * d + j]) - m[j]) * s[j]) } }
                    }
                }
            }
        }
        return out
    }
}

/// Softmax cross-entropy over standardised features held as `Float`, evaluated a chunk of rows at a
/// time in `Double` through the tensor core's GEMM.
struct SoftmaxProblem {
    let x: Tensor<Float>
    let labels: [Int]?
    let classCount: Int
    let chunkRows: Int

    var n: Int { x.rowCount }
    var d: Int { x.rowSize }

    /// f(θ) with θ = (W [D, C] row-major, b [C]); writes ∇f into `gradient`.
    func objective(_ theta: [Double], l2: Double, gradient: inout [Double]) throws -> Double {
        let c = classCount, d = self.d, n = self.n
        guard let labels else { return .nan }
        for i in 0..<gradient.count { gradient[i] = 0 }
        var xc = Tensor<Double>(shape: [0]), z = Tensor<Double>(shape: [0])
        var loss = 0.0
        let invN = 1 / Double(max(n, 1))
        var start = 0
        try theta.withUnsafeBufferPointer { th in
            try gradient.withUnsafeMutableBufferPointer { gr in
                let w = MatrixRef(th.baseAddress!, rows: d, cols: c)
                let gw = MutableMatrixRef(gr.baseAddress!, rows: d, cols: c)
                while start < n {
                    let rows = min(chunkRows, n - start)
                    convert(rows: start..<start + rows, into: &xc)
                    z.prepare(shape: [rows, c])
                    let xr = MatrixRef(xc.pointer, rows: rows, cols: d)
                    try gemm(xr, w, into: MutableMatrixRef(z.mutablePointer(), rows: rows, cols: c))
                    let zp = z.mutablePointer()
                    for i in 0..<rows {
                        let row = zp + i * c
                        var mx = -Double.infinity
                        for j in 0..<c { row[j] += th[d * c + j]; mx = max(mx, row[j]) }
                        let y = labels[start + i]
                        let zy = row[y] - mx
                        var sum = 0.0
                        for j in 0..<c { row[j] = Foundation.exp(row[j] - mx); sum += row[j] }
                        // −log p_y = log Σ exp(z_j − max) − (z_y − max)
                        loss += Foundation.log(sum) - zy
                        let inv = 1 / sum
                        for j in 0..<c {
                            let gz = (row[j] * inv - (j == y ? 1 : 0)) * invN
                            row[j] = gz
                            gr[d * c + j] += gz
                        }
                    }
                    // ∇W += X_chunkᵀ · G_chunk
                    try gemm(xr, transposeA: true, MatrixRef(z.pointer, rows: rows, cols: c), beta: 1, into: gw)
                    start += rows
                }
                var penalty = 0.0
                for i in 0..<(d * c) {
                    penalty += th[i] * th[i]
                    gr[i] += l2 * th[i]
                }
                loss = loss * invN + 0.5 * l2 * penalty
            }
        }
        return loss
    }

    /// The logits `[N, C]` for θ.
    func logits(_ theta: [Double]) throws -> Tensor<Float> {
        let c = classCount, d = self.d, n = self.n
        var out = Tensor<Float>(shape: [n, c])
        var xc = Tensor<Double>(shape: [0]), z = Tensor<Double>(shape: [0])
        var start = 0
        try theta.withUnsafeBufferPointer { th in
            let w = MatrixRef(th.baseAddress!, rows: d, cols: c)
            let op = out.mutablePointer()
            while start < n {
                let rows = min(chunkRows, n - start)
                convert(rows: start..<start + rows, into: &xc)
                z.prepare(shape: [rows, c])
                try gemm(
                    MatrixRef(xc.pointer, rows: rows, cols: d), w,
                    into: MutableMatrixRef(z.mutablePointer(), rows: rows, cols: c))
                let zp = z.pointer
                for i in 0..<rows { for j in 0..<c { op[(start + i) * c + j] = Float(zp[i * c + j] + th[d * c + j]) } }
                start += rows
            }
        }
        return out
    }

    private func convert(rows: Range<Int>, into out: inout Tensor<Double>) {
        out.prepare(shape: [rows.count, d])
        let o = out.mutablePointer(), p = x.pointer + rows.lowerBound * d
        for i in 0..<(rows.count * d) { o[i] = Double(p[i]) }
    }
}
