import CKAIO
import CKATensor
import Foundation
import _CKASupport

/// k-NN accuracy of one feature layer for one k.
public struct KNNRow: Sendable, Equatable {
    /// The feature layer (name, layer without suffix, pooling, block).
    public let feature: FeatureLayer
    public let k: Int
    /// Top-1 and top-5 accuracy in percent.
    public let top1: Double
    public let top5: Double
    /// Queries evaluated.
    public let count: Int
}

/// The result of `KNNEvaluation.run`: accuracy per layer, pooling and k.
public struct KNNReport: Sendable {
    /// The query store and the train store (nil: leave-one-out within the query store).
    public var testPath: String
    public var trainPath: String?
    /// The model name of the query store.
    public var model: String
    public var options: KNNOptions
    public var trainCount: Int
    public var testCount: Int
    public var classCount: Int
    /// One row per layer × k, layers in the store's network order, ks in the asked order.
    public var rows: [KNNRow]
    /// Things the user should know (e.g. train and test share inputs).
    public var warnings: [String]
    /// Wall-clock seconds: reading features, the similarity GEMMs, neighbour selection and voting, and in all.
    public var readSeconds = 0.0
    public var gemmSeconds = 0.0
    public var selectionSeconds = 0.0
    public var totalSeconds = 0.0

    /// True for leave-one-out within one store.
    public var leaveOneOut: Bool { trainPath == nil }

    /// The header of the CSV contract.
    public static let csvHeader = "layer,pooling,k,top1,top5"

    /// The CSV contract: `layer,pooling,k,top1,top5`, one row per layer × k; `layer` as stored without
    /// the pooling suffix, `pooling` one of `cls`, `gap`, `gap_nocls`, `none`; accuracies in percent
    /// (the shortest text that reads back to the same double).
    public func csv() -> String {
        var lines = [KNNReport.csvHeader]
        for r in rows {
            lines.append(
                "\(csvField(r.feature.layer)),\(r.feature.pooling.rawValue),\(r.k),\(csvNumber(r.top1)),\(csvNumber(r.top5))"
            )
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes `csv()` to `path` (atomically).
    public func writeCSV(to path: String) throws { try AtomicOutput.write(csv(), to: path) }

    /// A plain-text table: one line per layer and k with top-1 and top-5 accuracy.
    public func table() -> String {
        let mode =
            leaveOneOut
            ? "leave-one-out over \(testCount) inputs" : "\(testCount) queries against \(trainCount) training inputs"
        var s = "\(model): weighted k-NN (T = \(options.temperature)), \(mode), \(classCount) classes"
        let width = max(12, rows.map(\.feature.layer.count).max() ?? 0) + 2
        s +=
            "\n" + "layer".padding(toLength: width, withPad: " ", startingAt: 0) + "pooling    "
            + "    k    top-1    top-5"
        for r in rows {
            s +=
                "\n" + r.feature.layer.padding(toLength: width, withPad: " ", startingAt: 0)
                + r.feature.pooling.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
                + String(format: "%5d  %7.2f  %7.2f", r.k, r.top1, r.top5)
        }
        return s
    }

    /// The curves of Figure 3: for neighbourhood size `k`, one series per pooling of top-1 accuracy
    /// against the block index. Layers without a block index (e.g. `norm`) are placed one after the
    /// last block; other layers without a position are left out.
    public func curves(k: Int) -> [(pooling: Pooling, x: [Double], y: [Double], labels: [String])] {
        let lastBlock = rows.map(\.feature.block).max() ?? -1
        var out: [(pooling: Pooling, x: [Double], y: [Double], labels: [String])] = []
        for p in Pooling.allCases {
            let points = rows.filter { $0.k == k && $0.feature.pooling == p }.compactMap {
                r -> (Double, Double, String)? in
                if r.feature.block >= 0 { return (Double(r.feature.block), r.top1, r.feature.layer) }
                if r.feature.layer == "norm" || r.feature.layer == "fc_norm" {
                    return (Double(lastBlock + 1), r.top1, r.feature.layer)
                }
                return nil
            }.sorted { $0.0 < $1.0 }
            if !points.isEmpty { out.append((p, points.map(\.0), points.map(\.1), points.map(\.2))) }
        }
        return out
    }
}

/// A CSV field (`CSVText.field`: quoted when needed, never a spreadsheet formula).
func csvField(_ s: String) -> String { CSVText.field(s) }

/// DINO's weighted k-NN on the feature layers of activation stores (reference-models.md §5).
public enum KNNEvaluation {
    /// k-NN accuracy of every selected `[N, D]` layer of `test`, against the same layer of `train`,
    /// or leave-one-out within `test` when `train` is nil.
    ///
    /// The training features of one layer are held in memory (`n × D` floats); the queries are read
    /// from the store and classified one chunk at a time (see `KNNOptions.chunkMemory`).
    ///
    /// - Parameter layers: globs over stored names (`blocks.*:cls`, `norm:*`); nil = every `[N, D]` layer.
    /// - Throws: `AnalysisError` (missing or unknown labels, different class lists, a test class with
    ///   no training example, train and test over the same inputs, k larger than the train set,
    ///   a layer missing in the train store or of another width, NaN/Inf) or the store's errors.
    public static func run(
        test: ActivationStore, train: ActivationStore? = nil, layers: [String]? = nil,
        options: KNNOptions = KNNOptions(),
        progress: ((CKAProgress) -> Void)? = nil
    ) throws -> KNNReport {
        try options.validate()
        let clock = DispatchTime.now().uptimeNanoseconds
        func elapsed(since t: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t) * 1e-9 }
        var readSeconds = 0.0, gemmSeconds = 0.0, selectionSeconds = 0.0
        let trainStore = train ?? test
        let testLabels = try LabelSpace.labels(of: test, analysis: "k-NN")
        let trainLabels = train == nil ? testLabels : try LabelSpace.labels(of: trainStore, analysis: "k-NN")
        let space = try LabelSpace.shared(
            train == nil ? [test] : [trainStore, test], labels: [trainLabels, testLabels])
        var warnings: [String] = []
        if let train {
            if let w = try leakageWarning(
                train: train, test: test, noun: "queries", consequence: ": they find themselves")
            {
                warnings.append(w)
            }
            var present = [Bool](repeating: false, count: space.classCount)
            for l in trainLabels { present[l] = true }
            if let missing = testLabels.first(where: { !present[$0] }) {
                throw AnalysisError.classWithoutTrainingExamples(
                    path: test.path, trainPath: train.path, classIndex: missing,
                    className: space.name(missing))
            }
        }
        let available = train == nil ? test.count - 1 : trainStore.count
        if let k = options.ks.max(), k > available {
            throw AnalysisError.kTooLarge(k: k, trainCount: available, path: trainStore.path, leaveOneOut: train == nil)
        }
        let selected = try FeatureLayer.select(test, train: train, patterns: layers)
        var rows: [KNNRow] = []
        var queries = Tensor<Float>(shape: [0])
        for (li, f) in selected.enumerated() {
            let knn: KNNClassifier
            do {
                let t = DispatchTime.now().uptimeNanoseconds
                let x = try trainStore.read(f.name)
                readSeconds += elapsed(since: t)
                try checkInformative(x, path: trainStore.path, layer: f.name)
                knn = try KNNClassifier(features: x, labels: trainLabels, classCount: space.classCount)
            } catch AnalysisError.nonFinite {
                throw AnalysisError.nonFinite(path: trainStore.path, layer: f.name)
            }
            var tally = try knn.makeTally(options: options, leaveOneOut: train == nil)
            let n = test.count
            let chunk = max(
                1, min(n, options.queryChunkSize ?? max(256, options.chunkMemory / max(1, knn.trainCount * 4))))
            var start = 0
            while start < n {
                let r = start..<min(n, start + chunk)
                do {
                    if train == nil {
                        try knn.accumulateLeaveOneOut(rows: r, options: options, into: &tally)
                    } else {
                        let t = DispatchTime.now().uptimeNanoseconds
                        try test.read(f.name, rows: r, into: &queries)
                        readSeconds += elapsed(since: t)
                        try knn.accumulate(
                            queries: queries, labels: Array(testLabels[r]), options: options, into: &tally)
                    }
                } catch AnalysisError.nonFinite {
                    throw AnalysisError.nonFinite(path: test.path, layer: f.name)
                }
                start = r.upperBound
            }
            gemmSeconds += tally.gemmSeconds
            selectionSeconds += tally.selectionSeconds
            for a in tally.accuracies {
                rows.append(KNNRow(feature: f, k: a.k, top1: a.top1, top5: a.top5, count: a.count))
            }
            progress?(CKAProgress(done: li + 1, total: selected.count, unit: "layers"))
        }
        var report = KNNReport(
            testPath: test.path, trainPath: train?.path, model: test.modelName, options: options,
            trainCount: train == nil ? test.count : trainStore.count, testCount: test.count,
            classCount: space.classCount, rows: rows, warnings: warnings)
        report.readSeconds = readSeconds
        report.gemmSeconds = gemmSeconds
        report.selectionSeconds = selectionSeconds
        report.totalSeconds = elapsed(since: clock)
        return report
    }
}
