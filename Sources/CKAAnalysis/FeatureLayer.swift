import CKAIO
import CKATensor

/// One `[N, D]` feature layer of a store, with its name split into layer and pooling.
public struct FeatureLayer: Sendable, Equatable {
    /// The dataset name as stored (`blocks.7:gap`).
    public let name: String
    /// The layer without the pooling suffix (`blocks.7`); the whole name for pooling `none`.
    public let layer: String
    /// The pooling suffix.
    public let pooling: Pooling
    /// The block index (`blocks.7` → 7), or −1 (e.g. `norm`).
    public let block: Int
    /// The feature width D.
    public let width: Int

    /// Splits `name` at its last `:` when the suffix is a known pooling (`cls`, `gap`, `gap_nocls`);
    /// any other name is a layer with pooling `none` (`LayerName`).
    public init(name: String, width: Int) {
        let parsed = LayerName(name)
        self.name = name
        self.width = width
        layer = parsed.module
        pooling = parsed.pooling
        block = parsed.block ?? -1
    }

    /// The `[N, D]` layers of `test` matching `patterns` (see `select(_:patterns:)`), each checked to exist
    /// with the same width in `train` when a separate training store is given.
    public static func select(_ test: ActivationStore, train: ActivationStore?, patterns: [String]?) throws
        -> [FeatureLayer]
    {
        let selected = try select(test, patterns: patterns)
        guard let train else { return selected }
        for f in selected {
            guard let t = train.layers.first(where: { $0.name == f.name }) else {
                throw AnalysisError.layerMissingInTrain(layer: f.name, trainPath: train.path)
            }
            guard t.shape.count == 2, t.shape[1] == f.width else {
                throw AnalysisError.featureWidthMismatch(
                    layer: f.name, trainPath: train.path,
                    trainWidth: t.shape.dropFirst().reduce(1, *),
                    testPath: test.path, testWidth: f.width)
            }
        }
        return selected
    }

    /// The `[N, D]` feature layers of `store` matching any of `patterns` (`LayerGlob`; all if nil or
    /// empty), in the store's network order. Matching layers that are not `[N, D]` (token layers) are
    /// skipped; if that leaves none, the error says so.
    /// - Throws: `AnalysisError.noLayersMatch` or `.notFeatureMatrix`.
    public static func select(_ store: ActivationStore, patterns: [String]?) throws -> [FeatureLayer] {
        let pats = patterns ?? []
        let matched = store.layers.filter { pats.isEmpty || LayerGlob.matches(any: pats, $0.name) }
        let features = matched.filter { $0.shape.count == 2 }
        if features.isEmpty {
            if let first = matched.first, !pats.isEmpty {
                throw AnalysisError.notFeatureMatrix(path: store.path, layer: first.name, shape: first.shape)
            }
            throw AnalysisError.noLayersMatch(path: store.path, patterns: pats, available: store.layers.map(\.name))
        }
        return features.map { FeatureLayer(name: $0.name, width: $0.shape[1]) }
    }
}

/// The class space of one or two labelled stores.
struct LabelSpace {
    /// Number of classes: the length of `/inputs/classes` if declared, else the largest label + 1.
    var classCount: Int
    /// Class names, if declared.
    var names: [String]?

    func name(_ c: Int) -> String? { names.flatMap { c < $0.count ? $0[c] : nil } }

    /// The labels of `store`, all known (≥ 0) and below its declared class count.
    static func labels(of store: ActivationStore, analysis: String) throws -> [Int] {
        guard let labels = store.labels else { throw AnalysisError.missingLabels(path: store.path, analysis: analysis) }
        var unknown = 0, first = -1
        for (i, l) in labels.enumerated() where l < 0 {
            unknown += 1
            if first < 0 { first = i }
        }
        if unknown > 0 { throw AnalysisError.unknownLabels(path: store.path, count: unknown, firstIndex: first) }
        if let classes = store.classes, let i = labels.firstIndex(where: { $0 >= classes.count }) {
            throw AnalysisError.labelOutOfRange(path: store.path, index: i, label: labels[i], classCount: classes.count)
        }
        return labels
    }

    /// The class space shared by `stores` (their declared class lists must agree where both declare one).
    static func shared(_ stores: [ActivationStore], labels: [[Int]]) throws -> LabelSpace {
        var names: [String]?
        var owner = ""
        for s in stores {
            guard let c = s.classes else { continue }
            if let n = names, n != c {
                let i = zip(n, c).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                let detail = i.map { "class \($0) is '\(n[$0])' vs '\(c[$0])'" } ?? "\(n.count) vs \(c.count) classes"
                throw AnalysisError.classesDiffer(pathA: owner, pathB: s.path, detail: detail)
            }
            names = c
            owner = s.path
        }
        let maxLabel = labels.map { $0.max() ?? -1 }.max() ?? -1
        return LabelSpace(classCount: max(names?.count ?? 0, maxLabel + 1), names: names)
    }
}

/// Checks that two stores hold the same inputs in the same order.
func checkSameInputs(_ a: ActivationStore, _ b: ActivationStore) throws {
    guard a.count == b.count else {
        throw AnalysisError.inputsDiffer(pathA: a.path, pathB: b.path, detail: "N = \(a.count) vs N = \(b.count)")
    }
    if let i = a.ids.indices.first(where: { a.ids[$0] != b.ids[$0] }) {
        let same = Set(a.ids) == Set(b.ids)
        let detail =
            same
            ? "the same ids in another order (first difference at index \(i): '\(a.ids[i])' vs '\(b.ids[i])')"
            : "input \(i) is '\(a.ids[i])' vs '\(b.ids[i])'"
        throw AnalysisError.inputsDiffer(pathA: a.path, pathB: b.path, detail: detail)
    }
}

/// Refuses a training store that holds every test input; otherwise a warning when some inputs are shared.
func leakageWarning(train: ActivationStore, test: ActivationStore, noun: String, consequence: String = "") throws
    -> String?
{
    let shared = sharedIDs(train, test)
    if shared.count == test.count && test.count > 0 {
        throw AnalysisError.queriesAreTrainingInputs(trainPath: train.path, testPath: test.path)
    }
    guard let first = shared.first else { return nil }
    return "\(shared.count) of \(test.count) \(noun) are also training inputs (e.g. '\(first)')\(consequence)"
}

/// Ids that two stores share (for train/test leakage checks).
func sharedIDs(_ a: ActivationStore, _ b: ActivationStore) -> [String] {
    let set = Set(a.ids)
    return b.ids.filter { set.contains($0) }
}
