import CKATensor

/// A similarity measure between two representations of the same N examples, computed from N×N Gram
/// matrices in float64 (never from D×D matrices, so token layers with 10⁵ features fit in memory).
///
/// A measure works in two steps: `prepare` does the per-layer work that every pair containing the layer
/// shares (an eigendecomposition, neighbour lists, an RDM), `value` combines two prepared layers. Bootstrap
/// and permutation statistics call both on resampled Grams (`LayerGrams.selecting`).
public protocol SimilarityMeasure: Sendable {
    associatedtype Prepared
    /// The name used on the command line and in outputs (`procrustes`, `mutual-knn`, …).
    var name: String { get }
    /// The Grams `prepare` reads.
    var needs: GramKinds { get }
    func prepare(_ grams: LayerGrams) throws -> Prepared
    func value(_ a: Prepared, _ b: Prepared) throws -> Double
}

extension SimilarityMeasure {
    /// The measure between two layers given by their Grams.
    public func value(_ a: LayerGrams, _ b: LayerGrams) throws -> Double {
        try value(prepare(a), prepare(b))
    }
}

/// Which N×N Grams of a layer a measure needs.
public struct GramKinds: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// X̃X̃ᵀ with X̃ the column-centred features (each feature's mean over the examples removed).
    public static let centered = GramKinds(rawValue: 1)
    /// XXᵀ of the features as stored.
    public static let raw = GramKinds(rawValue: 2)
    /// The Gram of the row-centred features (each example's mean over its features removed).
    public static let rowCentered = GramKinds(rawValue: 4)
}

/// The N×N float64 Grams of one layer over N examples (the kinds a set of measures needs).
public struct LayerGrams: Sendable {
    public var centered: Tensor<Double>?
    public var raw: Tensor<Double>?
    public var rowCentered: Tensor<Double>?
    /// Features per example (some RDMs are normalised by it).
    public var features: Int
    /// N.
    public var count: Int

    public init(
        centered: Tensor<Double>? = nil, raw: Tensor<Double>? = nil, rowCentered: Tensor<Double>? = nil,
        features: Int
    ) {
        self.centered = centered; self.raw = raw; self.rowCentered = rowCentered; self.features = features
        count = (centered ?? raw ?? rowCentered)?.shape.first ?? 0
    }

    /// The Grams of in-memory features `[N, …]` (flattened per example), in float64.
    public init<S: TensorScalar>(features x: Tensor<S>, kinds: GramKinds) throws {
        let x = x.flattenedRows.converted(to: Double.self)
        let d = x.rowSize
        var c: Tensor<Double>?, r: Tensor<Double>?, rc: Tensor<Double>?
        if kinds.contains(.centered) { c = try x.centeredGram() }
        if kinds.contains(.raw) { r = try x.gramOfRows() }
        if kinds.contains(.rowCentered) {
            var y = x
            let n = y.rowCount
            y.withUnsafeMutableBufferPointer { p in
                for i in 0..<n {
                    var s = 0.0
                    for j in 0..<d { s += p[i * d + j] }
                    let m = s / Double(max(d, 1))
                    for j in 0..<d { p[i * d + j] -= m }
                }
            }
            rc = try y.gramOfRows()
        }
        self.init(centered: c, raw: r, rowCentered: rc, features: d)
    }

    /// The Grams of the examples `indices` (repeats allowed, as in a bootstrap resample), in that order.
    /// The column-centred Gram is centred again over the selection, so it is exactly the centred Gram of
    /// the selected examples; the other kinds do not depend on the other examples.
    public func selecting(_ indices: [Int]) throws -> LayerGrams {
        func pick(_ g: Tensor<Double>) -> Tensor<Double> {
            let n = g.shape[0], m = indices.count
            var out = Tensor<Double>(shape: [m, m])
            g.withUnsafeBufferPointer { p in
                out.withUnsafeMutableBufferPointer { o in
                    for (a, i) in indices.enumerated() {
                        let row = i * n
                        for (b, j) in indices.enumerated() { o[a * m + b] = p[row + j] }
                    }
                }
            }
            return out
        }
        return LayerGrams(
            centered: try centered.map { try HSIC.centered(pick($0)) }, raw: raw.map(pick),
            rowCentered: rowCentered.map(pick), features: features)
    }

    func require(_ g: Tensor<Double>?, _ kind: String, _ measure: String) throws -> Tensor<Double> {
        guard let g else { throw MeasureError.missingGram(measure: measure, kind: kind) }
        return g
    }
}

/// Errors of the similarity measures. The comparison driver adds the file and layer.
public enum MeasureError: Error, Equatable, CustomStringConvertible {
    /// SVCCA/PWCCA: the kept directions span the whole centred sample space (N − 1 directions).
    case tooManyDirections(measure: String, kept: Int, examples: Int, file: String?, layer: String?)
    /// k-NN measures: k must be in 1 ..< N (2 ..< N for CKNNA).
    case invalidK(measure: String, k: Int, examples: Int)
    case zeroVariance(measure: String, file: String?, layer: String?)
    case missingGram(measure: String, kind: String)
    case unknownMeasure(String)

    public var description: String {
        func at(_ f: String?, _ l: String?) -> String { l.map { "\(f.map { "\($0): " } ?? "")layer '\($0)': " } ?? "" }
        switch self {
        case let .tooManyDirections(m, k, n, f, l):
            return
                "\(at(f, l))\(m) keeps \(k) directions but only \(n) examples (N − 1 = \(n - 1) centred directions), so every canonical correlation would be 1: use `tokens` cls|gap (or a lower `svccaVariance`)"
        case let .invalidK(m, k, n):
            return "\(m): k = \(k) neighbours needs \(m == "cknna" ? 2 : 1) ≤ k < N = \(n)"
        case let .zeroVariance(m, f, l):
            return "\(at(f, l))\(m) is undefined: the layer has zero variance"
        case let .missingGram(m, kind):
            return "\(m) needs the \(kind) Gram"
        case let .unknownMeasure(s):
            return "unknown measure '\(s)' (measures: cka, mutual-knn, cknna, procrustes, svcca, pwcca, rsa)"
        }
    }

    /// The same error naming a file and layer.
    func at(file: String, layer: String) -> MeasureError {
        switch self {
        case let .tooManyDirections(m, k, n, _, _):
            return .tooManyDirections(measure: m, kept: k, examples: n, file: file, layer: layer)
        case let .zeroVariance(m, _, _): return .zeroVariance(measure: m, file: file, layer: layer)
        default: return self
        }
    }
}

/// A factor of a column-centred Gram K = X̃X̃ᵀ = F·Fᵀ (`[N, r]`, r the numerical rank), by pivoted Cholesky.
/// F = X̃·Q for some Q with orthonormal columns, so every quantity invariant to rotations of the features
/// (Procrustes, CCA) can use F instead of X̃; its thin SVD F = U·S·Wᵀ gives K's eigenvectors U and
/// eigenvalues S² (the squared singular values of X̃). Costs about N²·r + N·r² flops, never D×D.
struct GramFactor {
    let factor: Tensor<Double>
    let n: Int
    /// tr K = ‖X̃‖²_F.
    let trace: Double

    init(centeredGram k: Tensor<Double>) throws {
        let n = k.shape[0]
        var t = 0.0
        k.withUnsafeBufferPointer { p in for i in 0..<n { t += p[i * n + i] } }
        self.n = n
        trace = t
        factor = t > 0 ? try k.pivotedCholeskyFactor() : Tensor(shape: [n, 0])
    }

    /// K's eigenvalues λ₁ ≥ … > 0 (those above N·ε·λ₁) and eigenvectors `[N, r]` (columns), from the SVD of F.
    func spectrum() throws -> (values: [Double], vectors: Tensor<Double>) {
        guard factor.shape[1] > 0 else { return ([], Tensor(shape: [n, 0])) }
        let (u, s, _) = try factor.singularValueDecomposition()
        let values = s.map { $0 * $0 }
        let tol = (values.first ?? 0) * Double(n) * Double.ulpOfOne
        let r = values.prefix { $0 > tol }.count
        let w = u.shape[1]
        var v = Tensor<Double>(shape: [n, r])
        u.withUnsafeBufferPointer { pu in
            v.withUnsafeMutableBufferPointer { out in
                for i in 0..<n { for j in 0..<r { out[i * r + j] = pu[i * w + j] } }
            }
        }
        return (Array(values.prefix(r)), v)
    }
}
