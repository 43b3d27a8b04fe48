/// The measures `cka compare --measure` accepts (formats.md §2 names them in outputs).
public enum MeasureName: String, CaseIterable, Sendable, Hashable {
    /// CKA with the comparison's estimator (minibatch, debiased, linear, rbf): the default.
    case cka
    case mutualKNN = "mutual-knn"
    case cknna
    case procrustes
    case svcca
    case pwcca
    case rsa

    /// Parses a comma-separated list (`cka,procrustes`), keeping the order given and dropping repeats.
    public static func list(_ text: String) throws -> [MeasureName] {
        var out: [MeasureName] = []
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            guard let m = MeasureName(rawValue: part) else { throw MeasureError.unknownMeasure(part) }
            if !out.contains(m) { out.append(m) }
        }
        guard !out.isEmpty else { throw MeasureError.unknownMeasure(text) }
        return out
    }
}

/// Settings of the measures beyond CKA.
public struct MeasureOptions: Sendable {
    public var measures: [MeasureName] = [.cka]
    /// Neighbours of the k-NN measures (mutual-knn, cknna).
    public var knnK = 10
    /// Fraction of the variance SVCCA/PWCCA keep.
    public var svccaVariance = 0.99
    public var rdm: RSA.Dissimilarity = .correlation
    public var rsaComparison: RSA.Comparison = .spearman

    public init(measures: [MeasureName] = [.cka]) { self.measures = measures }

    /// The Gram-form measure of a name (nil for `cka`, which has its own engine), as an existential.
    public func measure(_ name: MeasureName) -> (any SimilarityMeasure)? {
        switch name {
        case .cka: return nil
        case .mutualKNN: return MutualKNN(k: knnK)
        case .cknna: return CKNNA(k: knnK)
        case .procrustes: return ProcrustesSimilarity()
        case .svcca: return CanonicalCorrelation(.svcca, variance: svccaVariance)
        case .pwcca: return CanonicalCorrelation(.pwcca, variance: svccaVariance)
        case .rsa: return RSA(rdm: rdm, comparison: rsaComparison)
        }
    }
}

/// Full-set CKA (debiased, linear or rbf estimator) as a `SimilarityMeasure`, for resampling statistics.
/// The same formulas as `FullSetCKA`, on float64 Grams.
public struct FullSetCKAMeasure: SimilarityMeasure {
    public let estimator: CKAEstimator
    public let rbfThreshold: Double
    public let rbfDebiased: Bool

    public init(estimator: CKAEstimator, rbfThreshold: Double = 0.5, rbfDebiased: Bool = false) {
        self.estimator = estimator; self.rbfThreshold = rbfThreshold; self.rbfDebiased = rbfDebiased
    }

    public var name: String { "cka" }
    public var needs: GramKinds { .centered }

    public struct Prepared { let g: Tensor<Double>; let norm: Double }

    public func prepare(_ grams: LayerGrams) throws -> Prepared {
        let k = try grams.require(grams.centered, "centred", name)
        let g: Tensor<Double>
        switch estimator {
        case .linear: g = try HSIC.centered(k)
        case .debiased, .minibatch: g = try HSIC.uCentered(k)
        case .rbf:
            let r = try FullSetCKA.rbfGram(fromLinear: k, threshold: rbfThreshold)
            g = rbfDebiased ? try HSIC.uCentered(r) : try HSIC.centered(r)
        }
        let norm = try HSIC.frobeniusInner(g, g).squareRoot()
        guard norm > 0 else { throw MeasureError.zeroVariance(measure: name, file: nil, layer: nil) }
        return Prepared(g: g, norm: norm)
    }

    public func value(_ a: Prepared, _ b: Prepared) throws -> Double {
        try HSIC.frobeniusInner(a.g, b.g) / (a.norm * b.norm)
    }
}

import CKATensor
