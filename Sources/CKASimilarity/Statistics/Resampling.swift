import CKATensor
import Foundation

/// How p-values of the cells of one matrix are adjusted for multiple testing.
public enum MultipleTestingCorrection: String, CaseIterable, Sendable {
    /// Holm's step-down (family-wise error ≤ α).
    case holm
    /// Benjamini–Hochberg (false discovery rate ≤ α under independence or positive dependence).
    case bh
    case none
}

/// Bootstrap intervals and permutation tests requested for every cell.
public struct StatisticsOptions: Sendable {
    /// Bootstrap resamples (0: none).
    public var bootstrap = 0
    /// Level of the percentile interval.
    public var confidence = 0.95
    /// Permutations of the null (0: none).
    public var permutations = 0
    /// Arithmetic of minibatch CKA's permuted cross terms (the observed value is always float64).
    public var permutationPrecision: PermutationPrecision = .float32
    public var seed: UInt64 = 0
    public var correction: MultipleTestingCorrection = .holm
    public var alpha = 0.05

    public init() {}

    /// True when nothing is requested.
    public var isEmpty: Bool { bootstrap == 0 && permutations == 0 }
}

/// The arithmetic of minibatch CKA's permutation null. `float32` rounds the U-centred Grams to float32 and sums
/// each chunk of at most `k` = max(b, 682) products in float32 (chunk sums in float64), so a null value differs
/// from its float64 computation by at most about (k + 2)·2⁻²⁴ in CKA units (Cauchy–Schwarz bounds Σ|K̃||L̃| by the
/// self terms); in practice null means and sds agree to ≈ 1e-10, far below the Monte Carlo error of a p-value.
/// `float64` is the reference.
public enum PermutationPrecision: String, Sendable, CaseIterable {
    case float32, float64
}

/// Per-cell statistics of a matrix (`[LA][LB]` each; nil when not requested).
public struct CellStatistics: Sendable, Equatable {
    public var ciLow: [[Double]]?
    public var ciHigh: [[Double]]?
    public var pValue: [[Double]]?
    public var pAdjusted: [[Double]]?
    public var nullMean: [[Double]]?
    public var nullSD: [[Double]]?

    public init() {}

    /// Cells whose adjusted p-value exceeds `alpha` (all false without permutations).
    public func notSignificant(alpha: Double) -> [[Bool]]? {
        pAdjusted.map { $0.map { $0.map { !($0 <= alpha) } } }
    }
}

/// Seeded resampling and the summaries of resampled values. Every draw is a function of (seed, stream,
/// replicate[, batch]) only, so results do not depend on the order in which replicates are computed.
public enum Resampling {
    /// A generator for one replicate of one stream (1: bootstrap, 2: permutations), mixed with SplitMix64.
    public static func generator(seed: UInt64, stream: UInt64, replicate: Int, part: Int = 0) -> SplitMix64 {
        var g = SplitMix64(seed: seed)
        for v in [stream, UInt64(replicate), UInt64(part)] { g = SplitMix64(seed: g.next() ^ v) }
        return g
    }

    /// `n` draws with replacement from 0..<n (a bootstrap resample).
    public static func bootstrapIndices(_ n: Int, seed: UInt64, replicate: Int) -> [Int] {
        var g = generator(seed: seed, stream: 1, replicate: replicate)
        return (0..<n).map { _ in Int(g.next() % UInt64(n)) }
    }

    /// A uniform random permutation of 0..<n (Fisher–Yates).
    public static func permutation(_ n: Int, seed: UInt64, replicate: Int, part: Int = 0) -> [Int] {
        var g = generator(seed: seed, stream: 2, replicate: replicate, part: part)
        var p = Array(0..<n)
        if n < 2 { return p }
        for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, Int(g.next() % UInt64(i + 1))) }
        return p
    }

    /// The percentile interval of the finite values at `level` (quantiles (1 − level)/2 and (1 + level)/2 with
    /// linear interpolation, as `numpy.percentile`). NaN if no value is finite.
    public static func percentileInterval(_ values: [Double], level: Double) -> (low: Double, high: Double) {
        let v = values.filter(\.isFinite).sorted()
        guard !v.isEmpty else { return (.nan, .nan) }
        func q(_ p: Double) -> Double {
            let h = p * Double(v.count - 1), lo = Int(h.rounded(.down)), hi = min(lo + 1, v.count - 1)
            return v[lo] + (h - Double(lo)) * (v[hi] - v[lo])
        }
        return (q((1 - level) / 2), q((1 + level) / 2))
    }

    /// One-sided permutation p-value (1 + #{null ≥ observed}) / (1 + P).
    public static func pValue(observed: Double, null: [Double]) -> Double {
        Double(1 + null.filter { $0 >= observed }.count) / Double(1 + null.count)
    }

    /// Mean and sample standard deviation (n − 1).
    public static func meanSD(_ v: [Double]) -> (mean: Double, sd: Double) {
        guard !v.isEmpty else { return (.nan, .nan) }
        let m = v.reduce(0, +) / Double(v.count)
        guard v.count > 1 else { return (m, .nan) }
        return (m, (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count - 1)).squareRoot())
    }

    /// Adjusted p-values (same order as `p`).
    public static func adjust(_ p: [Double], _ correction: MultipleTestingCorrection) -> [Double] {
        let m = p.count
        guard m > 0, correction != .none else { return p }
        let order = p.indices.sorted { p[$0] < p[$1] || (p[$0] == p[$1] && $0 < $1) }
        var out = [Double](repeating: 0, count: m)
        switch correction {
        case .holm:
            var running = 0.0
            for (rank, i) in order.enumerated() {
                running = max(running, min(1, Double(m - rank) * p[i]))
                out[i] = running
            }
        case .bh:
            var running = 1.0
            for rank in stride(from: m - 1, through: 0, by: -1) {
                let i = order[rank]
                running = min(running, min(1, Double(m) / Double(rank + 1) * p[i]))
                out[i] = running
            }
        case .none: break
        }
        return out
    }

    /// Fills the statistics of a matrix from per-cell resampled values (`boot[i][j]`, `null[i][j]`).
    static func summarise(observed: [[Double]], boot: [[[Double]]]?, null: [[[Double]]]?, options o: StatisticsOptions)
        -> CellStatistics
    {
        var s = CellStatistics()
        if let boot {
            let ci = boot.map { $0.map { percentileInterval($0, level: o.confidence) } }
            s.ciLow = ci.map { $0.map(\.low) }
            s.ciHigh = ci.map { $0.map(\.high) }
        }
        if let null {
            let p = observed.indices.map { i in
                observed[i].indices.map { j in pValue(observed: observed[i][j], null: null[i][j]) }
            }
            s.pValue = p
            let cols = observed.first?.count ?? 0
            let adj = adjust(p.flatMap { $0 }, o.correction)
            s.pAdjusted = p.indices.map { i in Array(adj[i * cols..<(i + 1) * cols]) }
            let ms = null.map { $0.map(meanSD) }
            s.nullMean = ms.map { $0.map(\.mean) }
            s.nullSD = ms.map { $0.map(\.sd) }
        }
        return s
    }

    /// Bootstrap and permutation statistics of a Gram-form measure over a layer×layer matrix: bootstrap
    /// resamples draw N examples with replacement (the same draw for every cell of a replicate); a
    /// permutation reorders B's examples (rows and columns of its Grams) against A's. A resample on which
    /// the measure is undefined (e.g. too few distinct examples) counts as NaN and is left out of the interval.
    public static func statistics<M: SimilarityMeasure>(
        _ measure: M, gramsA: [LayerGrams], gramsB: [LayerGrams],
        observed: [[Double]], options o: StatisticsOptions,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> CellStatistics {
        let n = gramsA.first?.count ?? 0
        let la = gramsA.count, lb = gramsB.count
        let total = o.bootstrap + o.permutations
        var boot: [[[Double]]]?
        if o.bootstrap > 0 {
            var v = Array(repeating: Array(repeating: [Double](), count: lb), count: la)
            for r in 0..<o.bootstrap {
                let idx = bootstrapIndices(n, seed: o.seed, replicate: r)
                let pa = gramsA.map { try? measure.prepare($0.selecting(idx)) }
                let pb = gramsB.map { try? measure.prepare($0.selecting(idx)) }
                for i in 0..<la {
                    for j in 0..<lb {
                        var x = Double.nan
                        if let a = pa[i], let b = pb[j] { x = (try? measure.value(a, b)) ?? .nan }
                        v[i][j].append(x)
                    }
                }
                progress?(r + 1, total)
            }
            boot = v
        }
        var null: [[[Double]]]?
        if o.permutations > 0 {
            let pa = try gramsA.map { try measure.prepare($0) }
            var v = Array(repeating: Array(repeating: [Double](), count: lb), count: la)
            for r in 0..<o.permutations {
                let perm = permutation(n, seed: o.seed, replicate: r)
                let pb = try gramsB.map { try measure.prepare($0.selecting(perm)) }
                for i in 0..<la { for j in 0..<lb { v[i][j].append(try measure.value(pa[i], pb[j])) } }
                progress?(o.bootstrap + r + 1, total)
            }
            null = v
        }
        return summarise(observed: observed, boot: boot, null: null, options: o)
    }
}
