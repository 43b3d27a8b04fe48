/// Kendall's rank correlation τ-b, as `scipy.stats.kendalltau(x, y)` computes it by default
/// (reference-models.md §7), in O(n log n).
///
/// With `tot = n(n−1)/2` pairs, `xtie` and `ytie` the pairs tied in x or in y (pairs tied in both
/// included), `ntie` the pairs tied in both, and `dis` the discordant pairs,
///
///     τ_b = (tot − xtie − ytie + ntie − 2·dis) / √(tot − xtie) / √(tot − ytie),  clamped to [−1, 1],
///
/// which equals (P − Q)/√((P + Q + T_x)(P + Q + T_y)). The pairs are sorted by (x, y) and the
/// discordant pairs counted as the strict inversions of the y sequence by merge sort (Knight 1966).
///
/// **NaN cases** (as scipy): fewer than two elements, all x tied, all y tied, or any NaN in x or y
/// (scipy's default `nan_policy='propagate'`). ±Inf are ordinary values (equal infinities tie).
///
/// One `KendallTau` value keeps its buffers between calls, so evaluating many short rankings (one per
/// example) allocates nothing after the first.
public struct KendallTau: Sendable {
    private var order: [Int] = []
    private var ys: [Double] = []
    private var scratch: [Double] = []

    public init() {}

    /// τ-b of the paired samples `x` and `y`, which must have equal lengths (NaN otherwise).
    public static func tauB(_ x: [Double], _ y: [Double]) -> Double {
        var k = KendallTau()
        return k.tauB(x, y)
    }

    /// τ-b of the paired samples `x` and `y`, reusing this value's buffers. Unequal lengths give NaN.
    public mutating func tauB(_ x: [Double], _ y: [Double]) -> Double {
        x.withUnsafeBufferPointer { px in y.withUnsafeBufferPointer { py in tauB(px, py) } }
    }

    /// τ-b of `x` and `y` given as buffers (see `tauB(_:_:)`).
    public mutating func tauB(_ x: UnsafeBufferPointer<Double>, _ y: UnsafeBufferPointer<Double>) -> Double {
        let n = x.count
        guard n == y.count, n >= 2 else { return .nan }
        for i in 0..<n where x[i].isNaN || y[i].isNaN { return .nan }
        if order.count != n {
            order = Array(0..<n)
            ys = Array(repeating: 0, count: n)
            scratch = Array(repeating: 0, count: n)
        } else {
            for i in 0..<n { order[i] = i }
        }
        order.sort { a, b in x[a] < x[b] || (x[a] == x[b] && y[a] < y[b]) }
        // Ties in x, and joint ties, from runs in (x, y) order.
        var xtie = 0, ntie = 0
        var runX = 1, runXY = 1
        for i in 1..<n {
            let p = order[i - 1], q = order[i]
            if x[p] == x[q] {
                runX += 1
                if y[p] == y[q] { runXY += 1 } else { ntie += runXY * (runXY - 1) / 2; runXY = 1 }
            } else {
                xtie += runX * (runX - 1) / 2; runX = 1
                ntie += runXY * (runXY - 1) / 2; runXY = 1
            }
        }
        xtie += runX * (runX - 1) / 2
        ntie += runXY * (runXY - 1) / 2
        for i in 0..<n { ys[i] = y[order[i]] }
        // Within a run of equal x the ys are ascending, so only pairs with x_i < x_j are counted.
        let dis = ys.withUnsafeMutableBufferPointer { a in
            scratch.withUnsafeMutableBufferPointer { t in KendallTau.countInversions(a, t) }
        }
        var ytie = 0, runY = 1
        for i in 1..<n {
            if ys[i] == ys[i - 1] { runY += 1 } else { ytie += runY * (runY - 1) / 2; runY = 1 }
        }
        ytie += runY * (runY - 1) / 2
        let tot = n * (n - 1) / 2
        if xtie == tot || ytie == tot { return .nan }
        let conMinusDis = tot - xtie - ytie + ntie - 2 * dis
        let tau = Double(conMinusDis) / Double(tot - xtie).squareRoot() / Double(tot - ytie).squareRoot()
        return min(1, max(-1, tau))
    }

    /// Sorts `a` ascending (bottom-up merge sort, stable) and returns the number of pairs i < j with
    /// a[i] > a[j] strictly.
    static func countInversions(_ a: UnsafeMutableBufferPointer<Double>, _ t: UnsafeMutableBufferPointer<Double>) -> Int
    {
        let n = a.count
        var inversions = 0
        var src = a, dst = t
        var width = 1
        while width < n {
            var lo = 0
            while lo < n {
                let mid = min(lo + width, n), hi = min(lo + 2 * width, n)
                var i = lo, j = mid, k = lo
                while i < mid && j < hi {
                    if src[j] < src[i] {
                        dst[k] = src[j]; j += 1
                        inversions += mid - i
                    } else {
                        dst[k] = src[i]; i += 1
                    }
                    k += 1
                }
                while i < mid { dst[k] = src[i]; i += 1; k += 1 }
                while j < hi { dst[k] = src[j]; j += 1; k += 1 }
                lo = hi
            }
            swap(&src, &dst)
            width *= 2
        }
        if src.baseAddress != a.baseAddress {
            for i in 0..<n { a[i] = src[i] }
        }
        return inversions
    }
}
