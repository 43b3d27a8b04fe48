import CKATensor

/// Cosine similarities of the rows from their raw Gram G: Gᵢⱼ/√(GᵢᵢGⱼⱼ) (rows L2-normalised; a zero row
/// normalises to zero, as `torch.nn.functional.normalize`).
func cosineMatrix(_ g: Tensor<Double>) -> Tensor<Double> {
    let n = g.shape[0]
    var out = g
    out.withUnsafeMutableBufferPointer { p in
        let inv = (0..<n).map { i in p[i * n + i] > 0 ? 1 / p[i * n + i].squareRoot() : 0 }
        for i in 0..<n { for j in 0..<n { p[i * n + j] *= inv[i] * inv[j] } }
    }
    return out
}

/// For each row of a similarity matrix, the `k` most similar other rows, most similar first
/// (self excluded; ties go to the lower index). `[N][k]`.
func nearestNeighbours(_ s: Tensor<Double>, k: Int) -> [[Int]] {
    let n = s.shape[0]
    return s.withUnsafeBufferPointer { p in
        (0..<n).map { i in
            var idx: [Int] = [], val: [Double] = []
            idx.reserveCapacity(k + 1); val.reserveCapacity(k + 1)
            let row = p.baseAddress! + i * n
            for j in 0..<n where j != i {
                let v = row[j]
                if idx.count == k, !(v > val[k - 1]) { continue }
                var pos = idx.count
                while pos > 0 && v > val[pos - 1] { pos -= 1 }  // after equal values: lower index first
                idx.insert(j, at: pos); val.insert(v, at: pos)
                if idx.count > k { idx.removeLast(); val.removeLast() }
            }
            return idx
        }
    }
}

/// Mutual k-nearest-neighbour alignment (Huh et al. 2024): rows L2-normalised, each example's `k` nearest
/// other examples by inner product (self excluded, ties to the lower index); the value is the mean over
/// examples of |kNN_A(i) ∩ kNN_B(i)| / k, in [0, 1].
///
/// ### References
/// Huh, Cheung, Wang & Isola, *The Platonic Representation Hypothesis*, ICML 2024, arXiv:2405.07987;
/// code: github.com/minyoungg/platonic-rep (`metrics.py`, `mutual_knn`).
public struct MutualKNN: SimilarityMeasure {
    public let k: Int
    public init(k: Int = 10) { self.k = k }
    public var name: String { "mutual-knn" }
    public var needs: GramKinds { .raw }

    public struct Prepared { let neighbours: [Set<Int>] }

    public func prepare(_ g: LayerGrams) throws -> Prepared {
        let raw = try g.require(g.raw, "raw", name)
        let n = raw.shape[0]
        guard k >= 1, k < n else { throw MeasureError.invalidK(measure: name, k: k, examples: n) }
        return Prepared(neighbours: nearestNeighbours(cosineMatrix(raw), k: k).map(Set.init))
    }

    public func value(_ a: Prepared, _ b: Prepared) throws -> Double {
        var total = 0
        for (x, y) in zip(a.neighbours, b.neighbours) { total += x.intersection(y).count }
        return Double(total) / Double(k * a.neighbours.count)
    }
}

/// Centred kernel nearest-neighbour alignment (Huh et al. 2024), as in the authors' `metrics.py`
/// (`cknna`, `unbiased=True`): K, L are the cosine Grams of the L2-normalised rows; the mask keeps the
/// entries (i, j) with j among the k nearest neighbours of i in both (self excluded), and
///
///     s(K, L) = HSIC₁(mask⊙K, mask⊙L)      (Song et al.'s unbiased HSIC, on these non-symmetric matrices)
///     CKNNA   = s(K, L) / (√(s(K, K)·s(L, L)) + 10⁻⁶)
///
/// The reference code's 10⁻⁶ in the denominator is kept so that values match the published ones (so a
/// layer with itself scores slightly below 1). k ≥ 2.
public struct CKNNA: SimilarityMeasure {
    public let k: Int
    public init(k: Int = 10) { self.k = k }
    public var name: String { "cknna" }
    public var needs: GramKinds { .raw }

    public final class Prepared {
        let cosine: Tensor<Double>
        let neighbours: [[Int]]
        let selfTerm: Double
        init(cosine: Tensor<Double>, neighbours: [[Int]], selfTerm: Double) {
            self.cosine = cosine; self.neighbours = neighbours; self.selfTerm = selfTerm
        }
    }

    public func prepare(_ g: LayerGrams) throws -> Prepared {
        let raw = try g.require(g.raw, "raw", name)
        let n = raw.shape[0]
        guard k >= 2, k < n, n >= 4 else { throw MeasureError.invalidK(measure: name, k: k, examples: n) }
        let c = cosineMatrix(raw)
        let nb = nearestNeighbours(c, k: k)
        return Prepared(cosine: c, neighbours: nb, selfTerm: Self.maskedHSIC(c, c, mask: nb))
    }

    public func value(_ a: Prepared, _ b: Prepared) throws -> Double {
        let mask = zip(a.neighbours, b.neighbours).map { x, y in
            let s = Set(y); return x.filter(s.contains).sorted()
        }
        let kl = Self.maskedHSIC(a.cosine, b.cosine, mask: mask)
        return kl / ((a.selfTerm * b.selfTerm).squareRoot() + 1e-6)
    }

    /// Song et al.'s unbiased HSIC of K̃ = mask⊙K and L̃ = mask⊙L (zero diagonal), written for non-symmetric
    /// matrices as in the reference: [Σ K̃ᵢⱼL̃ⱼᵢ + ΣK̃·ΣL̃/((m−1)(m−2)) − 2·1ᵀK̃L̃1/(m−2)] / (m(m−3)).
    /// `mask[i]` lists the columns j kept in row i.
    static func maskedHSIC(_ k: Tensor<Double>, _ l: Tensor<Double>, mask: [[Int]]) -> Double {
        let n = mask.count
        var entries = Set<Int>()
        for (i, js) in mask.enumerated() { for j in js { entries.insert(i * n + j) } }
        var trace = 0.0, sumK = 0.0, sumL = 0.0
        var colK = [Double](repeating: 0, count: n), rowL = [Double](repeating: 0, count: n)
        k.withUnsafeBufferPointer { pk in
            l.withUnsafeBufferPointer { pl in
                for (i, js) in mask.enumerated() {
                    for j in js {
                        let kij = pk[i * n + j], lij = pl[i * n + j]
                        sumK += kij; sumL += lij
                        colK[j] += kij; rowL[i] += lij
                        if entries.contains(j * n + i) { trace += kij * pl[j * n + i] }
                    }
                }
            }
        }
        var cross = 0.0
        for j in 0..<n { cross += colK[j] * rowL[j] }
        let m = Double(n)
        return (trace + sumK * sumL / ((m - 1) * (m - 2)) - 2 * cross / (m - 2)) / (m * (m - 3))
    }
}
