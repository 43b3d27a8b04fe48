/// Why an L-BFGS run stopped.
public enum OptimizerStop: String, Sendable, Equatable {
    /// The largest gradient component fell to the gradient tolerance.
    case gradient
    /// One iteration reduced the objective by at most the relative tolerance.
    case relativeReduction = "relative_reduction"
    /// No step along the search direction decreased the objective (the precision of the objective
    /// is reached).
    case lineSearch = "line_search"
    /// The iteration limit was reached first.
    case maxIterations = "max_iterations"

    /// True for the stops that mean convergence (all but `maxIterations`).
    public var converged: Bool { self != .maxIterations }
}

/// Settings of the L-BFGS minimiser.
public struct LBFGSOptions: Sendable, Equatable {
    /// Iteration limit.
    public var maxIterations = 1000
    /// Stop when `max_i |∂f/∂x_i| ≤ gradientTolerance`.
    public var gradientTolerance = 1e-6
    /// Stop when `(f_prev − f) / max(|f_prev|, |f|, 1) ≤ relativeTolerance` (scipy's `ftol` rule).
    public var relativeTolerance = 1e-12
    /// Correction pairs kept (m).
    public var history = 10

    public init() {}
}

/// The outcome of `lbfgsMinimize`.
struct LBFGSResult {
    var x: [Double]
    var value: Double
    var gradientMax: Double
    var iterations: Int
    var evaluations: Int
    var stop: OptimizerStop
}

/// Minimises a smooth function by limited-memory BFGS: two-loop recursion with the initial scaling
/// `sᵀy / yᵀy`, a backtracking Armijo line search (c₁ = 1e-4, first trial step 1, or `1/‖g‖₂` on the
/// first iteration, halving up to 50 times), and correction pairs kept only when `sᵀy > 1e-10·yᵀy`.
/// Fully deterministic. `evaluate(x, &gradient)` returns f(x) and writes ∇f(x).
func lbfgsMinimize(
    start: [Double], options: LBFGSOptions,
    evaluate: ([Double], inout [Double]) throws -> Double
) rethrows -> LBFGSResult {
    let n = start.count
    var x = start
    var g = [Double](repeating: 0, count: n)
    var f = try evaluate(x, &g)
    var evaluations = 1
    var sHist: [[Double]] = [], yHist: [[Double]] = [], rho: [Double] = []
    var d = [Double](repeating: 0, count: n)
    var xNew = x, gNew = g
    var alphaBuf = [Double](repeating: 0, count: max(1, options.history))
    func maxAbs(_ v: [Double]) -> Double { v.reduce(0) { max($0, abs($1)) } }
    func dot(_ a: [Double], _ b: [Double]) -> Double {
        var s = 0.0
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in for i in 0..<n { s += pa[i] * pb[i] } } }
        return s
    }
    var iteration = 0
    while true {
        let gmax = maxAbs(g)
        if gmax <= options.gradientTolerance {
            return LBFGSResult(
                x: x, value: f, gradientMax: gmax, iterations: iteration, evaluations: evaluations, stop: .gradient)
        }
        if iteration >= options.maxIterations {
            return LBFGSResult(
                x: x, value: f, gradientMax: gmax, iterations: iteration, evaluations: evaluations, stop: .maxIterations
            )
        }
        // Two-loop recursion: d = −H·g.
        for i in 0..<n { d[i] = -g[i] }
        let m = sHist.count
        if m > 0 {
            for j in stride(from: m - 1, through: 0, by: -1) {
                let a = rho[j] * dot(sHist[j], d)
                alphaBuf[j] = a
                let y = yHist[j]
                for i in 0..<n { d[i] -= a * y[i] }
            }
            let gamma = dot(sHist[m - 1], yHist[m - 1]) / dot(yHist[m - 1], yHist[m - 1])
            for i in 0..<n { d[i] *= gamma }
            for j in 0..<m {
                let b = rho[j] * dot(yHist[j], d)
                let s = sHist[j]
                for i in 0..<n { d[i] += s[i] * (alphaBuf[j] - b) }
            }
        }
        var slope = dot(g, d)
        if !(slope < 0) {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            sHist.removeAll(); yHist.removeAll(); rho.removeAll()
            for i in 0..<n { d[i] = -g[i] }
            slope = dot(g, d)
        }
        var step = sHist.isEmpty ? min(1, 1 / max(1e-300, dot(g, g).squareRoot())) : 1
        var fNew = f
        var accepted = false
        for _ in 0..<50 {
            for i in 0..<n { xNew[i] = x[i] + step * d[i] }
            fNew = try evaluate(xNew, &gNew)
            evaluations += 1
            if fNew.isFinite && fNew <= f + 1e-4 * step * slope { accepted = true; break }
            step *= 0.5
        }
        if !accepted || !(fNew < f) {
            return LBFGSResult(
                x: x, value: f, gradientMax: gmax, iterations: iteration, evaluations: evaluations, stop: .lineSearch)
        }
        iteration += 1
        var s = [Double](repeating: 0, count: n), y = s
        for i in 0..<n { s[i] = xNew[i] - x[i]; y[i] = gNew[i] - g[i] }
        let sy = dot(s, y), yy = dot(y, y)
        if sy > 1e-10 * yy && yy > 0 {
            if sHist.count == options.history { sHist.removeFirst(); yHist.removeFirst(); rho.removeFirst() }
            sHist.append(s); yHist.append(y); rho.append(1 / sy)
        }
        let reduction = (f - fNew) / max(abs(f), abs(fNew), 1)
        swap(&x, &xNew); swap(&g, &gNew)
        f = fNew
        if reduction <= options.relativeTolerance {
            return LBFGSResult(
                x: x, value: f, gradientMax: maxAbs(g), iterations: iteration, evaluations: evaluations,
                stop: .relativeReduction)
        }
    }
}
