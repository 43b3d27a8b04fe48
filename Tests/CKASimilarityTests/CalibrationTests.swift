import CKAIO
import CKASimilarity
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// Kolmogorov's limiting survival function Q(λ) = 2 Σ (−1)^{j−1} exp(−2j²λ²).
private func kolmogorovSurvival(_ lambda: Double) -> Double {
    guard lambda > 0.2 else { return 1 }
    var s = 0.0
    for j in 1...100 { s += (j % 2 == 1 ? 2 : -2) * exp(-2 * Double(j * j) * lambda * lambda) }
    return min(1, max(0, s))
}

/// KS test of permutation p-values (support k/(P+1)) against their exact null law P(p ≤ k/(P+1)) = k/(P+1);
/// p-value with Stephens' small-sample correction.
private func ksUniformPValue(_ p: [Double], permutations: Int) -> Double {
    let n = Double(p.count), sorted = p.sorted()
    var d = 0.0
    for k in 1...(permutations + 1) {
        let t = Double(k) / Double(permutations + 1)
        let f = Double(sorted.filter { $0 <= t + 1e-12 }.count) / n
        d = max(d, abs(f - t))
    }
    return kolmogorovSurvival((n.squareRoot() + 0.12 + 0.11 / n.squareRoot()) * d)
}

/// Rows of N(0, I_dx) and y = x·W + σ·noise, in minibatches of `b`.
private func sample(_ g: inout SplitMix64, n: Int, w: [[Double]], sigma: Double, independent: Bool = false) throws
    -> (Tensor<Float>, Tensor<Float>)
{
    let dx = w.count, dy = w[0].count
    var x = [Float](), y = [Float]()
    for _ in 0..<n {
        let xi = (0..<dx).map { _ in g.gaussian() }
        let src = independent ? (0..<dx).map { _ in g.gaussian() } : xi
        x += xi.map(Float.init)
        y += (0..<dy).map { j in Float((0..<dx).reduce(0) { $0 + src[$1] * w[$1][j] } + sigma * g.gaussian()) }
    }
    return (try Tensor(shape: [n, dx], scalars: x), try Tensor(shape: [n, dy], scalars: y))
}

@Suite("Calibration of the bootstrap intervals and permutation tests (simulation)")
struct CalibrationTests {
    /// x ~ N(0, I₄), y = xW + σε: population linear CKA = ‖Σxy‖²_F / (‖Σxx‖_F ‖Σyy‖_F) with
    /// Σxx = I, Σxy = W, Σyy = WᵀW + σ²I.
    @Test(
        "Minibatch CKA: the 95 % bootstrap interval (500 resamples) of 300 replicates covers the population CKA 92–98 % of the time"
    )
    func bootstrapCoverage() throws {
        let w: [[Double]] = [[1, 0.5, 0], [0, 1, -0.5], [0.5, 0, 1], [0.2, 0.3, 0.1]]
        let sigma = 1.5
        let dx = 4, dy = 3
        var sxy = 0.0
        for i in 0..<dx { for j in 0..<dy { sxy += w[i][j] * w[i][j] } }
        var syy = [[Double]](repeating: [Double](repeating: 0, count: dy), count: dy)
        for a in 0..<dy {
            for c in 0..<dy {
                syy[a][c] = (0..<dx).reduce(0) { $0 + w[$1][a] * w[$1][c] } + (a == c ? sigma * sigma : 0)
            }
        }
        let normYY = syy.flatMap { $0 }.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let population = sxy / (Double(dx).squareRoot() * normYY)
        var s = StatisticsOptions()
        s.bootstrap = 500
        var covered = 0
        let replicates = 300, batch = 32, batches = 40
        var g = SplitMix64(seed: 2026)
        for r in 0..<replicates {
            let (x, y) = try sample(&g, n: batch * batches, w: w, sigma: sigma)
            s.seed = UInt64(r)
            var acc = MinibatchStatisticsAccumulator(layerCountA: 1, layerCountB: 1, statistics: s)
            for k in 0..<batches {
                let rows = k * batch..<(k + 1) * batch
                try acc.add(representationsA: [x.rows(rows)], representationsB: [y.rows(rows)], ordinal: k)
            }
            let st = try acc.finish().statistics
            if st.ciLow![0][0] <= population && population <= st.ciHigh![0][0] { covered += 1 }
        }
        let rate = Double(covered) / Double(replicates)
        #expect(rate >= 0.92 && rate <= 0.98, "coverage \(rate) of population CKA \(population)")
    }

    @Test(
        "Minibatch CKA under a true null: permutation p-values are uniform (KS p > 0.01) and Holm's family-wise error ≤ α"
    )
    func permutationNull() throws {
        var s = StatisticsOptions()
        s.permutations = 199
        s.correction = .holm
        s.alpha = 0.05
        let w: [[Double]] = [[1, 0], [0, 1], [1, 1]]
        var pFirst: [Double] = []
        var familyErrors = 0
        let replicates = 200, batch = 16, batches = 4
        var g = SplitMix64(seed: 77)
        for r in 0..<replicates {
            // Two layers of A and two of B, every A layer independent of every B layer (4 null cells).
            var xs: [Tensor<Float>] = [], ys: [Tensor<Float>] = []
            for _ in 0..<2 {
                let (x, y) = try sample(&g, n: batch * batches, w: w, sigma: 0.5, independent: true)
                xs.append(x); ys.append(y)
            }
            s.seed = UInt64(1000 + r)
            var acc = MinibatchStatisticsAccumulator(layerCountA: 2, layerCountB: 2, statistics: s)
            for k in 0..<batches {
                let rows = k * batch..<(k + 1) * batch
                try acc.add(
                    representationsA: xs.map { $0.rows(rows) }, representationsB: ys.map { $0.rows(rows) }, ordinal: k)
            }
            let st = try acc.finish().statistics
            pFirst.append(st.pValue![0][0])
            if st.pAdjusted!.flatMap({ $0 }).contains(where: { $0 <= s.alpha }) { familyErrors += 1 }
        }
        let ks = ksUniformPValue(pFirst, permutations: s.permutations)
        #expect(ks > 0.01, "KS p-value \(ks)")
        // Monte Carlo: the family-wise error rate's estimate over 200 replicates has SE ≈ 0.015 at α = 0.05.
        let fwer = Double(familyErrors) / Double(replicates)
        #expect(fwer <= s.alpha + 2 * (s.alpha * (1 - s.alpha) / Double(replicates)).squareRoot(), "FWER \(fwer)")
    }

    @Test("Full-set measures: permutation p-values of procrustes under a true null are uniform (KS p > 0.01)")
    func fullSetPermutationNull() throws {
        var s = StatisticsOptions()
        s.permutations = 59
        var p: [Double] = []
        var g = SplitMix64(seed: 5)
        let w: [[Double]] = [[1, 0], [0, 1], [1, 1]]
        for r in 0..<150 {
            let (x, y) = try sample(&g, n: 24, w: w, sigma: 0.5, independent: true)
            let ga = try LayerGrams(features: x, kinds: .centered), gb = try LayerGrams(features: y, kinds: .centered)
            let obs = try ProcrustesSimilarity().value(ga, gb)
            s.seed = UInt64(r)
            let st = try Resampling.statistics(
                ProcrustesSimilarity(), gramsA: [ga], gramsB: [gb], observed: [[obs]], options: s)
            p.append(st.pValue![0][0])
        }
        let ks = ksUniformPValue(p, permutations: s.permutations)
        #expect(ks > 0.01, "KS p-value \(ks)")
    }
}

@Suite("Resampling helpers")
struct ResamplingTests {
    @Test("Holm and Benjamini–Hochberg adjusted p-values equal statsmodels' multipletests on a fixed vector")
    func corrections() {
        let p = [0.01, 0.04, 0.03, 0.005, 0.5]
        // statsmodels.stats.multitest.multipletests(p, method='holm' / 'fdr_bh')[1]
        expectClose(Resampling.adjust(p, .holm), [0.04, 0.09, 0.09, 0.025, 0.5], atol: 1e-12)
        expectClose(Resampling.adjust(p, .bh), [0.025, 0.05, 0.05, 0.025, 0.5], atol: 1e-12)
        #expect(Resampling.adjust(p, .none) == p)
    }

    @Test("Percentile interval = numpy.percentile (linear); p = (1 + #{null ≥ obs})/(1 + P)")
    func summaries() {
        let v = (0..<11).map { Double($0) }
        let ci = Resampling.percentileInterval(v, level: 0.9)
        expectClose([ci.low, ci.high], [0.5, 9.5], atol: 1e-12)
        #expect(Resampling.pValue(observed: 5, null: [1, 5, 6, 2]) == 3.0 / 5)
    }

    @Test("Minibatch statistics from stores = from in-memory batches; the CKA matrix has the bits of compare")
    func storeEqualsMemory() throws {
        let a = try ActivationStore(path: fixture("cka_a.h5")), b = try ActivationStore(path: fixture("cka_b.h5"))
        var o = CKAOptions(); o.batchSize = 16; o.tokens = .cls
        var s = StatisticsOptions(); s.bootstrap = 20; s.permutations = 10; s.seed = 9
        let la = try CKAComparison.selectLayers(a, patterns: nil), lb = try CKAComparison.selectLayers(b, patterns: nil)
        let fromStore = try MinibatchStatistics.run(a, la, b, lb, options: o, statistics: s)
        let plain = try CKAComparison.run(a, b, options: o)
        #expect(fromStore.matrix == plain.matrix)
        var acc = MinibatchStatisticsAccumulator(layerCountA: la.count, layerCountB: lb.count, statistics: s)
        for k in 0..<(a.count / 16) {
            let rows = k * 16..<(k + 1) * 16
            func rep(_ st: ActivationStore, _ name: String) throws -> Tensor<Float> {
                let x = try st.read(name, rows: rows)
                return x.rank == 3 ? try TokenReduction.cls.apply(x) : x
            }
            try acc.add(
                representationsA: la.map { try rep(a, $0) }, representationsB: lb.map { try rep(b, $0) }, ordinal: k)
        }
        let mem = try acc.finish()
        expectClose(mem.matrix.flatMap { $0 }, fromStore.matrix.flatMap { $0 }, atol: 1e-9)
        expectClose(mem.statistics.pValue!.flatMap { $0 }, fromStore.statistics.pValue!.flatMap { $0 }, atol: 0)
        expectClose(mem.statistics.ciLow!.flatMap { $0 }, fromStore.statistics.ciLow!.flatMap { $0 }, atol: 1e-9)
    }

    @Test(
        "Permutation null = minibatch CKA recomputed on B's Grams permuted by π, in float64; same bits on 1 or 2 threads"
    )
    func permutationNullReference() throws {
        for nB in [2, 5, 13, 40] { try checkPermutationNull(precision: .float64, layersB: nB, rtol: 1e-9, atol: 1e-13) }
    }

    /// float32 null vs the float64 reference: the documented bound is (k + 2)·2⁻²⁴ in CKA units for chunks of
    /// k ≤ 682 products (≈ 4e-5); rounding errors of random sign make it ≈ √k·2⁻²⁴ ≈ 1.5e-6 at most here (we see
    /// ≈ 1e-7). 1e-5 sits between the two, and is 1000× below the null's standard deviation.
    @Test(
        "Permutation null in float32: null mean and sd within 1e-5 (CKA units) of float64 minibatch CKA on permuted Grams; same bits on 1 or 2 threads"
    )
    func permutationNullFloat32() throws {
        for nB in [2, 5, 13, 40] { try checkPermutationNull(precision: .float32, layersB: nB, rtol: 0, atol: 1e-5) }
    }

    private func checkPermutationNull(precision: PermutationPrecision, layersB nB: Int, rtol: Double, atol: Double)
        throws
    {
        // 3 batches of b = 37 (odd sizes exercise the chunk edges), 3 × nB layers, 19 permutations (groups of 8 + 3).
        // nB = 2, 5, 13, 40: entries of 16, 32, 64 and 160 bytes in float32 (16, 48, 128, 320 in float64), i.e. each
        // fixed-size copy of the gather, padding and its generic loop.
        let b = 37, batches = 3, nA = 3
        var s = StatisticsOptions(); s.permutations = 19; s.seed = 4; s.permutationPrecision = precision
        var rng = SplitMix64(seed: 11)
        func features(_ d: Int) throws -> Tensor<Float> {
            try Tensor(shape: [b, d], scalars: (0..<(b * d)).map { _ in Float(Double(rng.next() % 2001) / 1000 - 1) })
        }
        let xa = try (0..<batches).map { _ in try (0..<nA).map { try features(5 + $0) } }
        let xb = try (0..<batches).map { _ in try (0..<nB).map { try features(4 + $0 % 5) } }
        func run(threads: Int) throws -> CellStatistics {
            try withBLASThreads(threads) {
                var acc = MinibatchStatisticsAccumulator(layerCountA: nA, layerCountB: nB, statistics: s)
                for k in 0..<batches { try acc.add(representationsA: xa[k], representationsB: xb[k], ordinal: k) }
                return try acc.finish().statistics
            }
        }
        let one = try run(threads: 1), two = try run(threads: 2)
        #expect(one == two)
        // Reference: for each replicate, Σ_k HSIC₁(K_k, P L_k Pᵀ) / √(Σ_k HSIC₁(K_k, K_k) · Σ_k HSIC₁(L_k, L_k)).
        let ga = try xa.map { try $0.map { try $0.gram(centered: true) } }
        let gb = try xb.map { try $0.map { try $0.gram(centered: true) } }
        for i in 0..<nA {
            for j in Set([0, nB / 2, nB - 1]).sorted() {  // first, middle and last layer of B (the padding)
                var selfA = 0.0, selfB = 0.0
                for k in 0..<batches {
                    selfA += try HSIC.unbiased(ga[k][i], ga[k][i])
                    selfB += try HSIC.unbiased(gb[k][j], gb[k][j])
                }
                let null = try (0..<s.permutations).map { r -> Double in
                    var cross = 0.0
                    for k in 0..<batches {
                        let perm = Resampling.permutation(b, seed: s.seed, replicate: r, part: k)
                        let l = gb[k][j]
                        let permuted = try Tensor<Double>(
                            shape: [b, b], scalars: (0..<(b * b)).map { l[perm[$0 / b], perm[$0 % b]] })
                        cross += try HSIC.unbiased(ga[k][i], permuted)
                    }
                    return cross / (selfA * selfB).squareRoot()
                }
                let mean = null.reduce(0, +) / Double(null.count)
                let sd = (null.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(null.count - 1)).squareRoot()
                expectClose([one.nullMean![i][j], one.nullSD![i][j]], [mean, sd], rtol: rtol, atol: atol)
            }
        }
    }
}
