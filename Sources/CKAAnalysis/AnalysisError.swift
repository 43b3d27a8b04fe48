import CKATensor

/// Errors of the analyses (k-NN, linear probe, prediction agreement). Every case names the file (and,
/// where there is one, the layer) and says what was expected, so a user can fix the input.
public enum AnalysisError: Error, Equatable, CustomStringConvertible {
    /// The store has no `/inputs/labels`, but the analysis needs a class per input.
    case missingLabels(path: String, analysis: String)
    /// Some labels are unknown (−1) or negative where every input needs a class.
    case unknownLabels(path: String, count: Int, firstIndex: Int)
    /// A label is not below the number of classes the store declares in `/inputs/classes`.
    case labelOutOfRange(path: String, index: Int, label: Int, classCount: Int)
    /// The two stores declare different class lists.
    case classesDiffer(pathA: String, pathB: String, detail: String)
    /// A test (query) label has no training example.
    case classWithoutTrainingExamples(path: String, trainPath: String, classIndex: Int, className: String?)
    /// `k` is larger than the number of training examples a query can see.
    case kTooLarge(k: Int, trainCount: Int, path: String, leaveOneOut: Bool)
    /// An invalid setting (a non-positive k, temperature, fraction, …).
    case invalidOption(String)
    /// Features of the same layer have different widths in the train and test stores (or the probe).
    case featureWidthMismatch(layer: String, trainPath: String, trainWidth: Int, testPath: String, testWidth: Int)
    /// The layer is not a `[N, D]` feature matrix (e.g. a `[N, T, D]` token layer).
    case notFeatureMatrix(path: String, layer: String, shape: [Int])
    /// No layer of the store matches the globs (or the store has no `[N, D]` layer).
    case noLayersMatch(path: String, patterns: [String], available: [String])
    /// The train store lacks a layer selected in the test store.
    case layerMissingInTrain(layer: String, trainPath: String)
    /// NaN or ±Inf in the features.
    case nonFinite(path: String, layer: String)
    /// The two stores must hold the same inputs in the same order and do not.
    case inputsDiffer(pathA: String, pathB: String, detail: String)
    /// Every query of the test store is also a training input.
    case queriesAreTrainingInputs(trainPath: String, testPath: String)
    /// The store has no `/logits` dataset (or it is not `[N, C]`).
    case missingLogits(path: String, detail: String)
    /// The two stores' logits have different class counts.
    case classCountMismatch(pathA: String, countA: Int, pathB: String, countB: Int)
    /// Fewer than two classes among the training labels: nothing to discriminate.
    case tooFewClasses(path: String, layer: String, classes: Int)
    /// Too few examples to fit or split.
    case tooFewExamples(path: String, detail: String)
    /// A layer that carries no information to classify by: no features, all zeros, or the same for every input.
    case uninformativeLayer(path: String, layer: String, detail: String)

    public var description: String {
        switch self {
        case let .uninformativeLayer(path, layer, detail):
            return "\(path): layer '\(layer)' \(detail)"
        case let .missingLabels(path, analysis):
            return
                "\(path): no /inputs/labels dataset (\(analysis) needs the class of every input; extract from an ImageFolder layout or write /inputs/labels)"
        case let .unknownLabels(path, count, first):
            return
                "\(path): \(count) input(s) have an unknown label (−1), the first at index \(first); every input needs a class"
        case let .labelOutOfRange(path, index, label, c):
            return "\(at(path))input \(index) has label \(label), expected 0..<\(c) (the number of classes)"
        case let .classesDiffer(a, b, detail):
            return "\(a) and \(b) declare different classes (/inputs/classes): \(detail)"
        case let .classWithoutTrainingExamples(path, train, c, name):
            let cls = "class \(c)\(name.map { " ('\($0)')" } ?? "")"
            if train.isEmpty { return "\(at(path))\(cls) has no training example (every class needs one)" }
            return
                "\(at(path))\(cls) has no training example in \(train) (every class of the test labels, and for the probe every declared class, needs one)"
        case let .kTooLarge(k, n, path, loo):
            return
                "\(at(path))k = \(k) exceeds the \(n) training examples available to each query\(loo ? " (leave-one-out: N − 1)" : "")"
        case let .invalidOption(s):
            return s
        case let .featureWidthMismatch(layer, tp, tw, qp, qw):
            return
                "layer '\(layer)' has \(tw) features in \(tp) but \(qw) in \(qp) (expected the same width: the same model and pooling)"
        case let .notFeatureMatrix(path, layer, shape):
            return
                "\(path): layer '\(layer)' has shape \(describeShape(shape)), expected [N, D] features (extract with `store` pooled for :cls/:gap/:gap_nocls)"
        case let .noLayersMatch(path, patterns, available):
            let shown = available.prefix(8).joined(separator: ", ") + (available.count > 8 ? ", …" : "")
            let what =
                patterns.isEmpty
                ? "no [N, D] feature layer" : "no [N, D] layer matches '\(patterns.joined(separator: ","))'"
            return "\(path): \(what) (layers: \(shown.isEmpty ? "none" : shown))"
        case let .layerMissingInTrain(layer, train):
            return "\(train): no layer '\(layer)' (the train store needs every layer selected in the test store)"
        case let .nonFinite(path, layer):
            return layer.isEmpty
                ? "\(at(path))the features contain NaN or Inf" : "\(at(path))layer '\(layer)' contains NaN or Inf"
        case let .inputsDiffer(a, b, detail):
            return
                "\(a) and \(b) hold different inputs: \(detail) (expected the same inputs in the same order, /inputs/ids)"
        case let .queriesAreTrainingInputs(train, test):
            return
                "every input of \(test) is also in \(train): train and test must hold different inputs (omit the train store for leave-one-out within one store)"
        case let .missingLogits(path, detail):
            return "\(path): \(detail) (expected /logits [N, C], e.g. a saved linear probe (`save`))"
        case let .classCountMismatch(a, ca, b, cb):
            return "\(a) has logits over \(ca) classes but \(b) over \(cb) (expected the same classes)"
        case let .tooFewClasses(path, layer, c):
            return
                "\(at(path))\(layer.isEmpty ? "" : "layer '\(layer)': ")the training labels hold \(c) class(es), expected at least 2"
        case let .tooFewExamples(path, detail):
            return "\(at(path))\(detail)"
        }
    }

    /// `"path: "`, or nothing for errors raised on data in memory.
    private func at(_ path: String) -> String { path.isEmpty ? "" : "\(path): " }
}

/// Formats a value for the CSV contracts: the shortest text that reads back to the same `Double`
/// (`nan` for NaN, which pandas reads as NaN).
func csvNumber(_ v: Double) -> String {
    if v.isNaN { return "nan" }
    if v.isInfinite { return v > 0 ? "inf" : "-inf" }
    return "\(v)"
}

/// Refuses a feature matrix `[N, D]` that no analysis can use (one check for k-NN and probes; `cka compare`
/// refuses the same layers as having zero variance): D = 0, all zeros, or every row the same.
func checkInformative(_ x: Tensor<Float>, path: String, layer: String) throws {
    let n = x.rowCount, d = x.rowSize
    guard d > 0 else {
        throw AnalysisError.uninformativeLayer(path: path, layer: layer, detail: "has no features ([\(n), 0])")
    }
    var allZero = true, constant = true
    x.withUnsafeBufferPointer { p in
        for i in 0..<n * d where p[i] != 0 { allZero = false; break }
        if n > 1 { for i in d..<n * d where p[i] != p[i % d] { constant = false; break } }
    }
    if allZero { throw AnalysisError.uninformativeLayer(path: path, layer: layer, detail: "is all zeros") }
    if constant && n > 1 {
        throw AnalysisError.uninformativeLayer(
            path: path, layer: layer, detail: "is the same for every input (constant features)")
    }
}
