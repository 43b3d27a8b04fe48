import CKATensor
import Foundation

/// Representational similarity analysis (Kriegeskorte, Mur & Bandettini 2008): a representational
/// dissimilarity matrix (RDM) over the examples for each layer, then a correlation between the upper
/// triangles (i < j) of the two RDMs. Definitions follow rsatoolbox (`calc_rdm`, `compare`):
///
/// - `correlation` RDM: 1 − Pearson correlation between two examples' feature vectors (each example's
///   features centred and normalised; Gram form: the row-centred Gram R, dᵢⱼ = 1 − Rᵢⱼ/√(RᵢᵢRⱼⱼ));
/// - `euclidean` RDM: squared Euclidean distance divided by the number of features, as rsatoolbox's
///   `euclidean` (Gram form: (Kᵢᵢ + Kⱼⱼ − 2Kᵢⱼ)/D on the centred Gram);
/// - compared by `spearman` (Pearson of average ranks), `pearson`, or `kendall` (τ_b, as scipy's
///   `kendalltau`, O(m log m)).
///
/// ### References
/// Kriegeskorte, Mur & Bandettini, *Representational similarity analysis*, Front. Syst. Neurosci. 2008;
/// Nili et al., *A toolbox for representational similarity analysis*, PLoS Comput. Biol. 2014 (rsatoolbox).
public struct RSA: SimilarityMeasure {
    public enum Dissimilarity: String, CaseIterable, Sendable { case correlation, euclidean }
    public enum Comparison: String, CaseIterable, Sendable { case spearman, pearson, kendall }
    public let rdm: Dissimilarity
    public let comparison: Comparison

    public init(rdm: Dissimilarity = .correlation, comparison: Comparison = .spearman) {
        self.rdm = rdm
        self.comparison = comparison
    }

    public var name: String { "rsa" }
    public var needs: GramKinds { rdm == .correlation ? .rowCentered : .centered }

    /// The upper triangle of the RDM, as compared: centred and normalised values (pearson), centred and
    /// normalised average ranks (spearman), or the values themselves (kendall).
    public struct Prepared { let vector: [Double] }

    /// The upper triangle (i < j, row-major) of a layer's RDM.
    public func dissimilarities(_ g: LayerGrams) throws -> [Double] {
        let src =
            try rdm == .correlation
            ? g.require(g.rowCentered, "row-centred", name) : g.require(g.centered, "centred", name)
        let n = src.shape[0], d = Double(max(g.features, 1))
        var out: [Double] = []
        out.reserveCapacity(n * (n - 1) / 2)
        src.withUnsafeBufferPointer { p in
            for i in 0..<n {
                for j in (i + 1)..<max(n, i + 1) {
                    switch rdm {
                    case .correlation:
                        let den = (p[i * n + i] * p[j * n + j]).squareRoot()
                        out.append(1 - p[i * n + j] / den)
                    case .euclidean:
                        out.append((p[i * n + i] + p[j * n + j] - 2 * p[i * n + j]) / d)
                    }
                }
            }
        }
        return out
    }

    public func prepare(_ g: LayerGrams) throws -> Prepared {
        let v = try dissimilarities(g)
        switch comparison {
        case .kendall: return Prepared(vector: v)
        case .pearson: return Prepared(vector: try standardised(v))
        case .spearman: return Prepared(vector: try standardised(averageRanks(v)))
        }
    }

    public func value(_ a: Prepared, _ b: Prepared) throws -> Double {
        switch comparison {
        case .kendall: return kendallTauB(a.vector, b.vector)
        case .pearson, .spearman:
            var s = 0.0
            for i in a.vector.indices { s += a.vector[i] * b.vector[i] }
            return s
        }
    }

    private func standardised(_ v: [Double]) throws -> [Double] {
        let mean = v.reduce(0, +) / Double(max(v.count, 1))
        let c = v.map { $0 - mean }
        let norm = c.reduce(0) { $0 + $1 * $1 }.squareRoot()
        guard norm > 0, norm.isFinite else { throw MeasureError.zeroVariance(measure: name, file: nil, layer: nil) }
        return c.map { $0 / norm }
    }
}

/// Ranks 1…m with ties given their average rank (scipy's `rankdata`, method "average").
func averageRanks(_ v: [Double]) -> [Double] {
    let order = v.indices.sorted { v[$0] < v[$1] || (v[$0] == v[$1] && $0 < $1) }
    var ranks = [Double](repeating: 0, count: v.count)
    var i = 0
    while i < order.count {
        var j = i
        while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
        let r = Double(i + j) / 2 + 1
        for t in i...j { ranks[order[t]] = r }
        i = j + 1
    }
    return ranks
}

/// Kendall's τ_b with tie corrections (Knight's O(m log m) algorithm, as scipy's `kendalltau`).
func kendallTauB(_ x: [Double], _ y: [Double]) -> Double {
    let m = x.count
    guard m >= 2 else { return .nan }
    var order = Array(0..<m)
    order.sort { x[$0] < x[$1] || (x[$0] == x[$1] && y[$0] < y[$1]) }
    func tiedPairs(_ same: (Int, Int) -> Bool) -> Int {
        var total = 0, run = 1
        for t in 1..<m {
            if same(order[t - 1], order[t]) { run += 1 } else { total += run * (run - 1) / 2; run = 1 }
        }
        return total + run * (run - 1) / 2
    }
    let tiesX = tiedPairs { x[$0] == x[$1] }
    let tiesXY = tiedPairs { x[$0] == x[$1] && y[$0] == y[$1] }
    // Merge sort of y in x order, counting the swaps (discordant pairs).
    var a = order.map { y[$0] }, buf = a
    var swaps = 0
    var width = 1
    while width < m {
        var lo = 0
        while lo < m {
            let mid = min(lo + width, m), hi = min(lo + 2 * width, m)
            var i = lo, j = mid, k = lo
            while i < mid && j < hi {
                if a[j] < a[i] { buf[k] = a[j]; swaps += mid - i; j += 1 } else { buf[k] = a[i]; i += 1 }
                k += 1
            }
            while i < mid { buf[k] = a[i]; i += 1; k += 1 }
            while j < hi { buf[k] = a[j]; j += 1; k += 1 }
            lo = hi
        }
        swap(&a, &buf)
        width *= 2
    }
    var tiesY = 0, run = 1
    for t in 1..<m { if a[t] == a[t - 1] { run += 1 } else { tiesY += run * (run - 1) / 2; run = 1 } }
    tiesY += run * (run - 1) / 2
    let total = m * (m - 1) / 2
    let concordantMinusDiscordant = Double(total - tiesX - tiesY + tiesXY - 2 * swaps)
    return concordantMinusDiscordant / (Double(total - tiesX) * Double(total - tiesY)).squareRoot()
}
