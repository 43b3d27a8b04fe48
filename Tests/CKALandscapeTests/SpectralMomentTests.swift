import CKAIO
import CKALandscape
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// Least squares L(W) = ‖X·Wᵀ − Y‖² / 2N with W [k, d]: its Hessian is I_k ⊗ C, C = XᵀX/N, formed exactly in
/// float64 below. Gradients are float32, as those of the toolkit's objectives (∇W = (XWᵀ − Y)ᵀX / N).
struct LeastSquaresObjective: DifferentiableLandscapeObjective {
    let x: Tensor<Float>, y: Tensor<Float>
    let center: ParameterSet
    var name: String { "least-squares" }

    func residual(_ p: ParameterSet) throws -> Tensor<Float> {
        var r = try x.matmul(p["weight"]!, transposeOther: true)
        let pr = r.mutablePointer(), py = y.pointer
        for i in 0..<r.count { pr[i] -= py[i] }
        return r
    }
    func evaluate(at p: ParameterSet) throws -> LandscapeValue {
        let r = try residual(p)
        return LandscapeValue(loss: r.scalars.reduce(0) { $0 + Double($1) * Double($1) } / Double(2 * x.shape[0]))
    }
    func valueAndGradient(at p: ParameterSet) throws -> (value: LandscapeValue, gradient: ParameterSet) {
        let r = try residual(p)
        var g = try r.matmul(x, transposeSelf: true)
        let pg = g.mutablePointer(), n = Float(x.shape[0])
        for i in 0..<g.count { pg[i] /= n }
        var out = ParameterSet()
        out.set("weight", g)
        return (try evaluate(at: p), out)
    }
}

@Suite("SLQ density moments against the exact eigenvalues of a formed Hessian")
struct SpectralMomentTests {
    /// The issue's criterion: "for a small model whose full Hessian fits in memory, the SLQ density's first four
    /// moments must be within 2 % of the exact eigenvalues' moments". The k-th moment of the density (σ → 0) is
    /// mean over runs of Σⱼ τⱼ θⱼᵏ = mean over Rademacher probes of vᵀHᵏv / n: unbiased, with a per-probe standard
    /// deviation of √(2·(‖Hᵏ‖_F² − Σᵢ (Hᵏ)ᵢᵢ²)) / n. On the tiny ViT of hessian_small.h5 that deviation is 0.9–1.1
    /// times the moment itself (trajectory_small.h5 /slq: one sharp direction dominates Hᵏ), so 2 % at 2σ needs
    /// about 12 600 runs there — not a unit test. The criterion is therefore met on a model whose spectrum is
    /// spread (Marchenko–Pastur: 1 024 parameters, C = XᵀX/N with N = 128 Gaussian examples of 64 features, 16
    /// outputs), where 400 runs of 3 Lanczos steps (exact for moments below 6) bring 4 standard errors below 2 %;
    /// the test checks that design
    /// from the exact variance first, then the moments. All eigenvalues are positive, so the odd moments are not
    /// near zero and a relative criterion is meaningful for all four.
    @Test("400 SLQ runs: the first four moments within 2 % of the exact eigenvalues' moments")
    func momentsWithinTwoPercent() throws {
        let n = 128, d = 64, k = 16, runs = 400
        var rng = SplitMix64(seed: 11)
        let x = try Tensor<Float>(shape: [n, d], scalars: (0..<(n * d)).map { _ in Float(rng.gaussian()) })
        let y = try Tensor<Float>(shape: [n, k], scalars: (0..<(n * k)).map { _ in Float(rng.gaussian()) })
        var w = ParameterSet()
        w.set("weight", try Tensor<Float>(shape: [k, d], scalars: (0..<(k * d)).map { _ in Float(rng.gaussian()) }))
        let objective = LeastSquaresObjective(x: x, y: y, center: w)
        let op = try HessianOperator(objective: objective, parameters: ["weight"], relativeStep: 1e-2)

        // The exact Hessian's spectrum: the eigenvalues of C (float64), each k times.
        var c = Tensor<Double>(shape: [d, d])
        for i in 0..<d {
            for j in 0..<d {
                var s = 0.0
                for r in 0..<n { s += Double(x[r, i]) * Double(x[r, j]) }
                c[i, j] = s / Double(n)
            }
        }
        let lambda = try c.symmetricEigen().values.scalars
        let exact = (1...4).map { p in lambda.reduce(0) { $0 + Foundation.pow($1, Double(p)) } / Double(d) }
        // The per-probe standard deviation of vᵀHᵖv/n (H = I_k ⊗ C): √(2k(‖Cᵖ‖_F² − Σ (Cᵖ)ᵢᵢ²)) / (kd).
        var power = c
        for p in 1...4 {
            if p > 1 { power = try power.matmul(c) }
            var frobenius = 0.0, diagonal = 0.0
            for i in 0..<d {
                for j in 0..<d { frobenius += power[i, j] * power[i, j] }
                diagonal += power[i, i] * power[i, i]
            }
            let sd = (2 * Double(k) * (frobenius - diagonal)).squareRoot() / Double(k * d)
            #expect(4 * sd / Double(runs).squareRoot() < 0.02 * exact[p - 1], "moment \(p): the design is too noisy")
        }

        let probes = (0..<runs).map { op.rademacher(seed: 500 + UInt64($0)) }
        let density = try SpectralDensity(op, probes: probes, steps: 3)
        for p in 1...4 {
            let got = density.moment(p)
            #expect(
                abs(got - exact[p - 1]) <= 0.02 * exact[p - 1],
                "moment \(p): SLQ \(got), exact \(exact[p - 1]) (\(100 * abs(got / exact[p - 1] - 1)) %)")
        }
    }

    /// The tiny ViT: the SLQ moments of the fixture's 64 probes equal their float64 quadratic forms (checked in
    /// HessianSpectrumTests); here those are within 4 standard errors (the exact per-probe deviation / √64) of the
    /// exact eigenvalues' moments — the estimator is unbiased, at the precision 64 runs allow (±1.4 σ/m ≈ 50 %).
    @Test("tiny ViT: the 64-probe SLQ moments are within 4 standard errors of the exact moments")
    func vitWithinStandardErrors() throws {
        let f = try HDF5File(path: HessianFixture.path)
        guard case let .doubles(exact)? = try f.attribute("moments_exact", of: "ce"),
            case let .doubles(probes)? = try f.attribute("moments_probes", of: "ce"),
            case let .doubles(sd)? = try HDF5File(path: TrajectoryFixture.path).attribute("probe_std", of: "slq")
        else {
            Issue.record("fixture attributes missing")
            return
        }
        for p in 0..<4 {
            #expect(abs(probes[p] - exact[p]) <= 4 * sd[p] / 8, "moment \(p + 1)")
        }
    }
}
