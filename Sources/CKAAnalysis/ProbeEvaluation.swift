import CKAIO
import CKATensor
import Foundation
import _CKASupport

/// A linear probe of one feature layer.
public struct ProbeRow: Sendable {
    public let feature: FeatureLayer
    /// The trained probe.
    public let probe: LogisticProbe
    /// Top-1 accuracy in percent on the training and test examples.
    public let trainAccuracy: Double
    public let testAccuracy: Double
    /// The test logits `[N_test, C]`, when asked for (`keepLogits`).
    public let testLogits: Tensor<Float>?

    package init(
        feature: FeatureLayer, probe: LogisticProbe, trainAccuracy: Double, testAccuracy: Double,
        testLogits: Tensor<Float>?
    ) {
        (self.feature, self.probe, self.trainAccuracy, self.testAccuracy) = (
            feature, probe, trainAccuracy, testAccuracy
        )
        self.testLogits = testLogits
    }
}

/// The result of `ProbeEvaluation.run`.
public struct ProbeReport: Sendable {
    public var testPath: String
    /// The train store, or nil for a seeded split of the test store.
    public var trainPath: String?
    public var model: String
    public var options: ProbeOptions
    /// The split, for a seeded split of one store: the training fraction and the seed.
    public var trainFraction: Double?
    public var seed: UInt64?
    public var trainCount: Int
    public var testCount: Int
    /// Classes C and their names (if declared).
    public var classCount: Int
    public var classes: [String]?
    /// Ids and labels of the test examples, in store order.
    public var testIDs: [String]
    public var testLabels: [Int]
    /// One row per layer, in network order.
    public var rows: [ProbeRow]
    public var warnings: [String]

    /// The header of `csv()`.
    public static let csvHeader = "layer,pooling,train_top1,test_top1,loss,iterations,stop"

    /// One line per layer: `layer,pooling,train_top1,test_top1,loss,iterations,stop` (accuracies in percent,
    /// loss = the training objective).
    public func csv() -> String {
        var lines = [ProbeReport.csvHeader]
        for r in rows {
            lines.append(
                [
                    csvField(r.feature.layer), r.feature.pooling.rawValue, csvNumber(r.trainAccuracy),
                    csvNumber(r.testAccuracy),
                    csvNumber(r.probe.loss), "\(r.probe.iterations)", r.probe.stop.rawValue,
                ].joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes `csv()` to `path` (atomically).
    public func writeCSV(to path: String) throws { try AtomicOutput.write(csv(), to: path) }

    /// A plain-text table.
    public func table() -> String {
        let split =
            trainPath.map { "train \($0) (\(trainCount)), test \(testCount)" }
            ?? "seeded split of \(testPath): \(trainCount) train / \(testCount) test (fraction \(trainFraction ?? 0), seed \(seed ?? 0))"
        var s =
            "\(model): linear probe (multinomial logistic regression, λ = \(options.l2)), \(split), \(classCount) classes"
        let width = max(12, rows.map(\.feature.layer.count).max() ?? 0) + 2
        s +=
            "\n" + "layer".padding(toLength: width, withPad: " ", startingAt: 0) + "pooling    "
            + "train top-1  test top-1      loss   iter  stop"
        for r in rows {
            s +=
                "\n" + r.feature.layer.padding(toLength: width, withPad: " ", startingAt: 0)
                + r.feature.pooling.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
                + String(
                    format: "%11.2f  %10.2f  %8.5f  %5d  ", r.trainAccuracy, r.testAccuracy, r.probe.loss,
                    r.probe.iterations)
                + r.probe.stop.rawValue
        }
        return s
    }

    /// Writes the probe of `row` and its test logits as an activation store that `cka agreement` reads:
    /// `/logits` `[N, C]` float32; `/inputs/ids`, `/inputs/labels` and (if declared) `/inputs/classes`
    /// of the test examples; the probe as `/probe/weight` `[C, D]`, `/probe/bias` `[C]`, `/probe/mean`
    /// and `/probe/scale` `[D]` (float32; `logits = ((x − mean) / scale)·weightᵀ + bias`); and attributes
    /// `probe_layer`, `probe_l2`, `probe_test_top1`, `probe_train_top1`, `probe_iterations`, `probe_stop`.
    /// The file appears only when complete.
    /// - Throws: `AnalysisError.invalidOption` if the row has no test logits, or the writer's errors.
    public func save(_ row: ProbeRow, to path: String) throws {
        guard let logits = row.testLogits else {
            throw AnalysisError.invalidOption(
                "probe of '\(row.feature.name)': the test logits were not kept (run with keepLogits)")
        }
        var meta = StoreMetadata(model: "\(model) probe \(row.feature.name)")
        meta.extra = [
            "probe_layer": .string(row.feature.name), "probe_l2": .double(row.probe.l2),
            "probe_test_top1": .double(row.testAccuracy), "probe_train_top1": .double(row.trainAccuracy),
            "probe_iterations": .int(row.probe.iterations), "probe_stop": .string(row.probe.stop.rawValue),
            "probe_source": .string(
                trainPath.map { "train \($0), test \(testPath)" }
                    ?? "\(testPath), seeded split fraction \(trainFraction ?? 0) seed \(seed ?? 0)"),
        ]
        let w = try ActivationStoreWriter(
            path: path, ids: testIDs, labels: testLabels, classes: classes, metadata: meta)
        do {
            try w.writeDataset("logits", logits)
            try w.writeDataset("probe/weight", row.probe.weight.converted(to: Float.self))
            try w.writeDataset(
                "probe/bias", Tensor(shape: [row.probe.bias.count], scalars: row.probe.bias.map { Float($0) }))
            try w.writeDataset(
                "probe/mean", Tensor(shape: [row.probe.mean.count], scalars: row.probe.mean.map { Float($0) }))
            try w.writeDataset(
                "probe/scale", Tensor(shape: [row.probe.scale.count], scalars: row.probe.scale.map { Float($0) }))
            try w.finish()
        } catch {
            w.abandon()
            throw error
        }
    }
}

/// Linear probes on the feature layers of activation stores.
///
/// Released linear heads of the checkpoints (MoCo-v3 `head`, MAE `fc_norm` + `head`, DINO's
/// interleaved [CLS, GAP] linear weights) are not applied here but by `ClassifierHead` during extraction
/// (`cka extract --store logits`), which writes the same `/logits` dataset.
public enum ProbeEvaluation {
    /// Trains a probe per selected `[N, D]` layer and measures its accuracy: on `train` and `test`
    /// when `train` is given, else on a seeded stratified split of `test` (`stratifiedSplit`).
    ///
    /// - Parameters:
    ///   - layers: globs over stored names; nil = every `[N, D]` layer.
    ///   - trainFraction, seed: the split of one store.
    ///   - keepLogits: keep each layer's test logits in the report (for `ProbeReport.save`).
    /// - Throws: `AnalysisError` (missing or unknown labels, different class lists, a class with no
    ///   training example, a single class, train and test over the same inputs, widths that differ,
    ///   NaN/Inf features, too few examples) or the store's errors.
    public static func run(
        test: ActivationStore, train: ActivationStore? = nil, layers: [String]? = nil,
        trainFraction: Double = 0.5, seed: UInt64 = 0, options: ProbeOptions = ProbeOptions(),
        keepLogits: Bool = false, progress: ((CKAProgress) -> Void)? = nil
    ) throws -> ProbeReport {
        try options.validate()
        let testLabelsAll = try LabelSpace.labels(of: test, analysis: "the linear probe")
        let trainStore = train ?? test
        let trainLabelsAll =
            train == nil ? testLabelsAll : try LabelSpace.labels(of: trainStore, analysis: "the linear probe")
        let space = try LabelSpace.shared(
            train == nil ? [test] : [trainStore, test], labels: [trainLabelsAll, testLabelsAll])
        var warnings: [String] = []
        let trainRows: [Int], testRows: [Int]
        if let train {
            if let w = try leakageWarning(train: train, test: test, noun: "test inputs") { warnings.append(w) }
            trainRows = Array(0..<train.count)
            testRows = Array(0..<test.count)
        } else {
            guard trainFraction > 0, trainFraction < 1 else {
                throw AnalysisError.invalidOption("the training fraction must be in (0, 1) (got \(trainFraction))")
            }
            (trainRows, testRows) = stratifiedSplit(labels: testLabelsAll, trainFraction: trainFraction, seed: seed)
            guard !testRows.isEmpty else {
                throw AnalysisError.tooFewExamples(
                    path: test.path, detail: "the split with training fraction \(trainFraction) leaves no test example")
            }
        }
        let trainLabels = trainRows.map { trainLabelsAll[$0] }
        let testLabels = testRows.map { testLabelsAll[$0] }
        var perClass = [Int](repeating: 0, count: space.classCount)
        for l in trainLabels { perClass[l] += 1 }
        guard perClass.filter({ $0 > 0 }).count >= 2 else {
            throw AnalysisError.tooFewClasses(
                path: trainStore.path, layer: "all layers", classes: perClass.filter { $0 > 0 }.count)
        }
        if let missing = perClass.firstIndex(of: 0) {
            throw AnalysisError.classWithoutTrainingExamples(
                path: test.path, trainPath: trainStore.path, classIndex: missing,
                className: space.name(missing))
        }
        let selected = try FeatureLayer.select(test, train: train, patterns: layers)
        var rows: [ProbeRow] = []
        for (li, f) in selected.enumerated() {
            var xTrain = Tensor<Float>(shape: [0]), xTest = Tensor<Float>(shape: [0])
            if train == nil {
                try test.read(f.name, rowIndices: trainRows, into: &xTrain)
                try test.read(f.name, rowIndices: testRows, into: &xTest)
                try checkInformative(xTrain, path: test.path, layer: f.name)
            } else {
                try trainStore.read(f.name, rows: 0..<trainStore.count, into: &xTrain)
                try checkInformative(xTrain, path: trainStore.path, layer: f.name)
                try test.read(f.name, rows: 0..<test.count, into: &xTest)
            }
            guard allFinite(xTest) else { throw AnalysisError.nonFinite(path: test.path, layer: f.name) }
            let probe: LogisticProbe
            do {
                probe = try LogisticProbe.fit(
                    features: xTrain, labels: trainLabels, classCount: space.classCount, options: options)
            } catch AnalysisError.nonFinite {
                throw AnalysisError.nonFinite(path: trainStore.path, layer: f.name)
            }
            if !probe.stop.converged {
                warnings.append(
                    "\(f.name): L-BFGS stopped at the iteration limit (\(probe.iterations)); largest gradient component \(probe.gradientMax)"
                )
            }
            let logits = try probe.logits(xTest)
            let trainAcc = try probe.accuracy(xTrain, labels: trainLabels)
            let testPred = LogisticProbe.argmax(logits)
            let testAcc =
                100 * Double(zip(testPred, testLabels).filter { $0 == $1 }.count) / Double(max(1, testLabels.count))
            rows.append(
                ProbeRow(
                    feature: f, probe: probe, trainAccuracy: trainAcc, testAccuracy: testAcc,
                    testLogits: keepLogits ? logits : nil))
            progress?(CKAProgress(done: li + 1, total: selected.count, unit: "layers"))
        }
        return ProbeReport(
            testPath: test.path, trainPath: train?.path, model: test.modelName, options: options,
            trainFraction: train == nil ? trainFraction : nil, seed: train == nil ? seed : nil,
            trainCount: trainRows.count, testCount: testRows.count, classCount: space.classCount,
            classes: space.names, testIDs: testRows.map { test.ids[$0] }, testLabels: testLabels, rows: rows,
            warnings: warnings)
    }

    /// A seeded, stratified split of example indices: within each class (in class order) the
    /// indices are shuffled by Fisher–Yates driven by SplitMix64(`seed`) (one generator for all classes,
    /// bounded draws by the high half of a 64×64-bit product), and the first
    /// `max(1, round(fraction · n_c))` (at most n_c) go to training. Both lists are returned ascending.
    /// The same labels, fraction and seed always give the same split, on every platform.
    public static func stratifiedSplit(labels: [Int], trainFraction: Double, seed: UInt64) -> (
        train: [Int], test: [Int]
    ) {
        var byClass: [Int: [Int]] = [:]
        for (i, l) in labels.enumerated() { byClass[l, default: []].append(i) }
        var rng = SplitMix64(seed: seed)
        var train: [Int] = [], test: [Int] = []
        for c in byClass.keys.sorted() {
            var idx = byClass[c]!
            if idx.count > 1 {
                for i in stride(from: idx.count - 1, to: 0, by: -1) {
                    let j = Int(UInt64(i + 1).multipliedFullWidth(by: rng.next()).high)
                    idx.swapAt(i, j)
                }
            }
            let nTrain = min(idx.count, max(1, Int((trainFraction * Double(idx.count)).rounded())))
            train += idx[..<nTrain]
            test += idx[nTrain...]
        }
        return (train.sorted(), test.sorted())
    }
}
