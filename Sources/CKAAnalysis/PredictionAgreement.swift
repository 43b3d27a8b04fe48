import CKAIO
import CKATensor
import Foundation
import _CKASupport

/// Which examples a prediction-agreement value is computed over.
public enum AgreementSubset: String, CaseIterable, Sendable {
    /// Every example.
    case all
    /// Examples both models classify correctly (top-1 = label).
    case bothCorrect = "both_correct"
    /// Examples both models classify wrongly (labels −1 are in neither subset).
    case bothWrong = "both_wrong"
}

/// Which classes the Kendall τ-b of one example is computed over.
public enum RankedClasses: String, CaseIterable, Sendable {
    /// The union of A's top-k and B's top-k classes (default).
    case union
    /// A's top-k classes only.
    case a
}

/// Settings of `PredictionAgreement`.
public struct AgreementOptions: Sendable, Equatable {
    /// The ks of the top-k class sets for Kendall τ-b (a k ≥ C means all classes).
    public var ks: [Int] = [5, 10, 100]
    /// Whose top-k classes the τ-b is restricted to.
    public var classes: RankedClasses = .union
    /// Examples read per chunk (memory: two chunks of `[rows, C]` logits).
    public var chunkRows = 1024

    public init(ks: [Int] = [5, 10, 100], classes: RankedClasses = .union) {
        self.ks = ks
        self.classes = classes
    }
}

/// One value of the agreement report (a row of its CSV).
public struct AgreementValue: Sendable, Equatable {
    /// `kendall_tau_b`, `top1_agreement` or `top1_f1`.
    public let metric: String
    public let subset: AgreementSubset
    /// The k of `kendall_tau_b`; nil for the top-1 metrics.
    public let k: Int?
    /// The value: mean τ-b in [−1, 1]; agreement rate and macro-F1 in [0, 1]; NaN for an empty subset.
    public let value: Double
    /// Examples the value averages over (for τ-b, those whose τ-b is defined).
    public let count: Int
}

/// The result of `PredictionAgreement.run`.
public struct AgreementReport: Sendable {
    public var pathA: String
    public var pathB: String
    public var modelA: String
    public var modelB: String
    public var options: AgreementOptions
    /// Examples N and classes C.
    public var count: Int
    public var classCount: Int
    /// Examples per subset.
    public var subsetCounts: [AgreementSubset: Int]
    /// Kendall τ-b per subset and k, then top-1 agreement and F1 per subset.
    public var values: [AgreementValue]
    public var warnings: [String]

    /// The header of the CSV contract.
    public static let csvHeader = "metric,subset,k,value"

    /// The long CSV contract `metric,subset,k,value` (k empty for the top-1 metrics; `nan` for an
    /// empty subset).
    public func csv() -> String {
        var lines = [AgreementReport.csvHeader]
        for v in values {
            lines.append("\(v.metric),\(v.subset.rawValue),\(v.k.map(String.init) ?? ""),\(csvNumber(v.value))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes `csv()` to `path` (atomically).
    public func writeCSV(to path: String) throws { try AtomicOutput.write(csv(), to: path) }

    /// The value of `metric` for `subset` (and `k`).
    public func value(_ metric: String, _ subset: AgreementSubset, k: Int? = nil) -> Double? {
        values.first { $0.metric == metric && $0.subset == subset && $0.k == k }?.value
    }

    /// A plain-text table: one row per subset, one column per metric.
    public func table() -> String {
        let restricted = options.classes == .union ? "union of both top-k" : "A's top-k"
        var s =
            "\(modelA) vs \(modelB): \(count) inputs, \(classCount) classes; Kendall τ-b over the \(restricted) classes"
        let subsets = AgreementSubset.allCases.filter { subsetCounts[$0] != nil }
        var header = "subset".padding(toLength: 14, withPad: " ", startingAt: 0) + "      n"
        for k in options.ks { header += "  " + "τ-b@\(k)".leftPadded(9) }
        header += "   top-1 agr    top-1 F1"
        s += "\n" + header
        for sub in subsets {
            var line =
                sub.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)
                + String(format: "%7d", subsetCounts[sub] ?? 0)
            for k in options.ks { line += "  " + String(format: "%9.4f", value("kendall_tau_b", sub, k: k) ?? .nan) }
            line += String(
                format: "  %10.4f  %10.4f", value("top1_agreement", sub) ?? .nan, value("top1_f1", sub) ?? .nan)
            s += "\n" + line
        }
        return s
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

/// How alike two models rank classes: Kendall τ-b of their scores over top-k classes, the top-1
/// agreement rate and the macro-F1 of B's top-1 against A's (the seed paper's Figure 4).
///
/// Definitions, per example with logits `a` (model A) and `b` (model B) over C classes:
/// - **top-k classes** of a model: its k highest-scoring classes, equal scores by lower class index
///   (k ≥ C: all classes);
/// - **Kendall τ-b at k**: τ-b (scipy's default, `KendallTau`) between `a[S]` and `b[S]` where S is
///   the union of A's and B's top-k classes (or A's top-k only, `RankedClasses.a`); the reported value
///   is the mean over the examples of the subset whose τ-b is defined (an example whose scores on S
///   are all tied has NaN τ-b and is left out of the mean; so at k = 1 an example whose top-1
///   predictions agree has no τ-b, and one whose predictions differ has τ-b = −1);
/// - **top-1 prediction**: the top-1 class (ties → lower index); **top-1 agreement**: the fraction of
///   examples where A's and B's top-1 predictions agree;
/// - **top-1 F1**: the macro-averaged F1 of B's top-1 predictions scored against A's as the reference,
///   over the classes that occur in either (as `sklearn.metrics.f1_score(a, b, average="macro")`);
/// - **subsets** `all`, `both_correct` (both top-1 predictions equal the label), `both_wrong` (neither
///   does); examples with label −1 belong only to `all`. Without labels only `all` is reported.
public enum PredictionAgreement {
    /// Compares the `/logits` of two stores over the same inputs, reading `chunkRows` examples at a time.
    /// - Throws: `AnalysisError` (no `/logits`, not `[N, C]`, different class counts, different
    ///   inputs, labels that disagree, NaN/Inf logits) or the store's errors.
    public static func run(
        _ a: ActivationStore, _ b: ActivationStore,
        options: AgreementOptions = AgreementOptions()
    ) throws -> AgreementReport {
        let ca = try logitShape(a), cb = try logitShape(b)
        guard ca == cb else {
            throw AnalysisError.classCountMismatch(pathA: a.path, countA: ca, pathB: b.path, countB: cb)
        }
        // The per-class counters (3 per subset) are allocated from the declared C: checked against memory first.
        try MemoryBudget.check(
            [3 * AgreementSubset.allCases.count + max(1, options.chunkRows), ca], elementSize: 8,
            path: a.path, object: "logits")
        try checkSameInputs(a, b)
        if let la = a.labels, let lb = b.labels, la != lb {
            let i = la.indices.first { la[$0] != lb[$0] } ?? 0
            throw AnalysisError.inputsDiffer(
                pathA: a.path, pathB: b.path,
                detail: "input \(i) ('\(a.ids[i])') has label \(la[i]) vs \(lb[i])")
        }
        if let na = a.classes, let nb = b.classes, na != nb {
            throw AnalysisError.classesDiffer(
                pathA: a.path, pathB: b.path, detail: "\(na.count) vs \(nb.count) names, or different names")
        }
        let labels = a.labels ?? b.labels
        var acc = try Accumulator(classCount: ca, options: options, hasLabels: labels != nil)
        let n = a.count
        var start = 0
        while start < n {
            let r = start..<min(n, start + max(1, options.chunkRows))
            let la = try a.readFloatDataset("logits", rows: r), lb = try b.readFloatDataset("logits", rows: r)
            guard allFinite(la) else { throw AnalysisError.nonFinite(path: a.path, layer: "/logits") }
            guard allFinite(lb) else { throw AnalysisError.nonFinite(path: b.path, layer: "/logits") }
            acc.add(la, lb, labels: labels.map { Array($0[r]) })
            start = r.upperBound
        }
        var report = acc.report(pathA: a.path, pathB: b.path, modelA: a.modelName, modelB: b.modelName)
        if labels == nil {
            report.warnings.append("no /inputs/labels in either file: only the subset 'all' is reported")
        }
        return report
    }

    /// The same on logits in memory (`[N, C]` each); `labels` (−1 = unknown) enable the subsets.
    public static func compute(
        logitsA: Tensor<Float>, logitsB: Tensor<Float>, labels: [Int]?,
        options: AgreementOptions = AgreementOptions()
    ) throws -> AgreementReport {
        guard logitsA.rank == 2, logitsB.rank == 2, logitsA.shape == logitsB.shape else {
            throw AnalysisError.invalidOption(
                "agreement: logits of shapes \(describeShape(logitsA.shape)) and \(describeShape(logitsB.shape)), expected the same [N, C]"
            )
        }
        guard labels == nil || labels!.count == logitsA.rowCount else {
            throw AnalysisError.invalidOption("agreement: \(labels!.count) labels for \(logitsA.rowCount) examples")
        }
        guard allFinite(logitsA), allFinite(logitsB) else { throw AnalysisError.nonFinite(path: "", layer: "logits") }
        var acc = try Accumulator(classCount: logitsA.shape[1], options: options, hasLabels: labels != nil)
        acc.add(logitsA, logitsB, labels: labels)
        return acc.report(pathA: "", pathB: "", modelA: "A", modelB: "B")
    }

    /// C of a store's `/logits` `[N, C]`.
    static func logitShape(_ s: ActivationStore) throws -> Int {
        guard s.hasDataset("logits") else {
            throw AnalysisError.missingLogits(path: s.path, detail: "no /logits dataset")
        }
        let ds = try HDF5File(path: s.path).dataset("logits")
        guard ds.shape.count == 2, ds.shape[0] == s.count, ds.shape[1] >= 1, ds.elementType.isFloat else {
            throw AnalysisError.missingLogits(
                path: s.path,
                detail: "/logits holds \(ds.elementType) \(describeShape(ds.shape)) for N = \(s.count) inputs")
        }
        return ds.shape[1]
    }

    /// Running sums over chunks of examples.
    struct Accumulator {
        let c: Int
        let options: AgreementOptions
        let hasLabels: Bool
        var subsets: [AgreementSubset]
        /// Per subset: τ sums and defined counts per k; agreement counts; confusion of (A top-1, B top-1).
        var tauSum: [[Double]]
        var tauCount: [[Int]]
        var agree: [Int]
        var total: [Int]
        var truePositive: [[Int]], predictedA: [[Int]], predictedB: [[Int]]
        var kendall = KendallTau()
        var selector: [TopKSelector]
        var warnedK = Set<Int>()

        init(classCount: Int, options: AgreementOptions, hasLabels: Bool) throws {
            guard classCount >= 1 else { throw AnalysisError.invalidOption("agreement: no classes") }
            guard !options.ks.isEmpty, options.ks.allSatisfy({ $0 >= 1 }) else {
                throw AnalysisError.invalidOption(
                    "`top` values must be at least 1 (got \(options.ks.map(String.init).joined(separator: ",")))")
            }
            c = classCount
            self.options = options
            self.hasLabels = hasLabels
            subsets = hasLabels ? AgreementSubset.allCases : [.all]
            let s = AgreementSubset.allCases.count
            tauSum = Array(repeating: Array(repeating: 0, count: options.ks.count), count: s)
            tauCount = Array(repeating: Array(repeating: 0, count: options.ks.count), count: s)
            agree = Array(repeating: 0, count: s)
            total = Array(repeating: 0, count: s)
            truePositive = Array(repeating: Array(repeating: 0, count: classCount), count: s)
            predictedA = truePositive
            predictedB = truePositive
            selector = options.ks.map { TopKSelector(capacity: min($0, classCount)) }
        }

        mutating func add(_ a: Tensor<Float>, _ b: Tensor<Float>, labels: [Int]?) {
            let rows = a.rowCount
            let ks = options.ks
            var inSet = [Bool](repeating: false, count: c)
            var xs: [Double] = [], ys: [Double] = []
            xs.reserveCapacity(2 * c); ys.reserveCapacity(2 * c)
            var top1 = TopKSelector(capacity: 1)
            for i in 0..<rows {
                let pa = a.pointer + i * c, pb = b.pointer + i * c
                top1.select(pa, count: c, excluding: -1)
                let predA = Int(top1.indices[0])
                top1.select(pb, count: c, excluding: -1)
                let predB = Int(top1.indices[0])
                var member = [0]
                if let labels, labels[i] >= 0 {
                    let okA = predA == labels[i], okB = predB == labels[i]
                    if okA && okB { member.append(1) } else if !okA && !okB { member.append(2) }
                }
                var taus = [Double](repeating: .nan, count: ks.count)
                for (ki, _) in ks.enumerated() {
                    let kk = selector[ki].capacity
                    xs.removeAll(keepingCapacity: true); ys.removeAll(keepingCapacity: true)
                    selector[ki].select(pa, count: c, excluding: -1)
                    var chosen = selector[ki].indices.map(Int.init)
                    if options.classes == .union && kk < c {
                        selector[ki].select(pb, count: c, excluding: -1)
                        for j in 0..<kk { inSet[chosen[j]] = true }
                        for j in selector[ki].indices where !inSet[Int(j)] { chosen.append(Int(j)) }
                        for j in 0..<kk { inSet[chosen[j]] = false }
                    }
                    for cl in chosen { xs.append(Double(pa[cl])); ys.append(Double(pb[cl])) }
                    taus[ki] = kendall.tauB(xs, ys)
                }
                for s in member {
                    total[s] += 1
                    if predA == predB { agree[s] += 1; truePositive[s][predA] += 1 }
                    predictedA[s][predA] += 1
                    predictedB[s][predB] += 1
                    for ki in ks.indices where !taus[ki].isNaN {
                        tauSum[s][ki] += taus[ki]
                        tauCount[s][ki] += 1
                    }
                }
            }
        }

        func report(pathA: String, pathB: String, modelA: String, modelB: String) -> AgreementReport {
            var values: [AgreementValue] = []
            var counts: [AgreementSubset: Int] = [:]
            let all = AgreementSubset.allCases
            for sub in subsets {
                let s = all.firstIndex(of: sub)!
                counts[sub] = total[s]
                for (ki, k) in options.ks.enumerated() {
                    let n = tauCount[s][ki]
                    values.append(
                        AgreementValue(
                            metric: "kendall_tau_b", subset: sub, k: k,
                            value: n > 0 ? tauSum[s][ki] / Double(n) : .nan, count: n))
                }
            }
            for sub in subsets {
                let s = all.firstIndex(of: sub)!
                let n = total[s]
                values.append(
                    AgreementValue(
                        metric: "top1_agreement", subset: sub, k: nil,
                        value: n > 0 ? Double(agree[s]) / Double(n) : .nan, count: n))
            }
            for sub in subsets {
                let s = all.firstIndex(of: sub)!
                // Macro F1 over classes predicted by A or B: F1_c = 2TP / (2TP + FP + FN) = 2TP / (nA_c + nB_c).
                var sum = 0.0, classes = 0
                for cl in 0..<c where predictedA[s][cl] + predictedB[s][cl] > 0 {
                    sum += 2 * Double(truePositive[s][cl]) / Double(predictedA[s][cl] + predictedB[s][cl])
                    classes += 1
                }
                values.append(
                    AgreementValue(
                        metric: "top1_f1", subset: sub, k: nil,
                        value: classes > 0 ? sum / Double(classes) : .nan, count: total[s]))
            }
            var warnings: [String] = []
            for k in options.ks where k >= c {
                warnings.append("k = \(k) is not below the \(c) classes: τ-b@\(k) ranks all classes")
            }
            return AgreementReport(
                pathA: pathA, pathB: pathB, modelA: modelA, modelB: modelB, options: options, count: total[0],
                classCount: c, subsetCounts: counts, values: values, warnings: warnings)
        }
    }
}
