import CKAAnalysis
import CKAIO
import CKATensor
import Foundation
import Testing
import _CKATestSupport

@Suite("Linear probe")
struct ProbeTests {
    @Test("matches scikit-learn's LogisticRegression on the same standardised features and penalty")
    func againstSklearn() throws {
        let cases = try #require((expected["probe"] as? [String: Any])?["cases"] as? [[String: Any]])
        let train = try ActivationStore(path: fixture("probe_train.h5")),
            test = try ActivationStore(path: fixture("probe_test.h5"))
        let xTrain = try train.read("blocks.3:cls"), xTest = try test.read("blocks.3:cls")
        for c in cases {
            let l2 = number(c["l2"])
            let probe = try LogisticProbe.fit(features: xTrain, labels: train.labels!, options: ProbeOptions(l2: l2))
            #expect(probe.stop.converged, "λ = \(l2): \(probe.stop)")
            #expect(abs(probe.loss - number(c["loss"])) < 1e-3, "λ = \(l2): loss \(probe.loss) vs \(number(c["loss"]))")
            // Our optimum is at least as good as sklearn's (same objective).
            #expect(probe.loss <= number(c["loss"]) + 1e-9, "λ = \(l2)")
            let trainAcc = try probe.accuracy(xTrain, labels: train.labels!),
                testAcc = try probe.accuracy(xTest, labels: test.labels!)
            #expect(abs(trainAcc - number(c["train_accuracy"])) <= 1, "λ = \(l2): train \(trainAcc)")
            #expect(abs(testAcc - number(c["test_accuracy"])) <= 1, "λ = \(l2): test \(testAcc)")
            // Probabilities agree too.
            let z = try probe.logits(xTest)
            let ref = (c["test_probabilities"] as! [[NSNumber]]).map { $0.map(\.doubleValue) }
            var worst = 0.0
            for i in 0..<z.rowCount {
                let row = (0..<4).map { Double(z[i, $0]) }
                let m = row.max()!
                let e = row.map { exp($0 - m) }
                let s = e.reduce(0, +)
                for j in 0..<4 { worst = max(worst, abs(e[j] / s - ref[i][j])) }
            }
            #expect(worst < 2e-3, "λ = \(l2): probabilities differ by \(worst)")
            #expect(try abs(probe.objective(xTrain, labels: train.labels!) - probe.loss) < 1e-9)
        }
    }

    @Test("the store-level run: train/test stores, a CSV per layer, a seeded split that is reproducible")
    func stores() throws {
        let train = try ActivationStore(path: fixture("probe_train.h5")),
            test = try ActivationStore(path: fixture("probe_test.h5"))
        let r = try ProbeEvaluation.run(test: test, train: train, options: ProbeOptions(l2: 1e-2))
        #expect(r.rows.map(\.feature.name) == ["blocks.3:cls", "blocks.3:gap"])
        let ref = ((expected["probe"] as! [String: Any])["cases"] as! [[String: Any]])[1]
        #expect(abs(r.rows[0].testAccuracy - number(ref["test_accuracy"])) <= 1)
        // Standardisation makes the probe invariant to reordering and rescaling features.
        #expect(abs(r.rows[1].testAccuracy - r.rows[0].testAccuracy) <= 1)
        #expect(r.csv().hasPrefix("layer,pooling,train_top1,test_top1,loss,iterations,stop\nblocks.3,cls,"))
        let s1 = try ProbeEvaluation.run(test: train, trainFraction: 0.6, seed: 7, options: ProbeOptions(l2: 1e-2))
        let s2 = try ProbeEvaluation.run(test: train, trainFraction: 0.6, seed: 7, options: ProbeOptions(l2: 1e-2))
        #expect(s1.trainCount == 120 && s1.testCount == 80)
        #expect(s1.testIDs == s2.testIDs && s1.rows[0].testAccuracy == s2.rows[0].testAccuracy)
        let s3 = try ProbeEvaluation.run(test: train, trainFraction: 0.6, seed: 8, options: ProbeOptions(l2: 1e-2))
        #expect(s3.testIDs != s1.testIDs)
    }

    @Test("the seeded split is stratified and fixed for a seed")
    func split() {
        let labels = (0..<103).map { $0 % 4 }
        let (train, test) = ProbeEvaluation.stratifiedSplit(labels: labels, trainFraction: 0.5, seed: 1)
        #expect(Set(train).isDisjoint(with: test) && train.count + test.count == 103)
        for c in 0..<4 {
            let n = labels.filter { $0 == c }.count
            #expect(train.filter { labels[$0] == c }.count == Int((0.5 * Double(n)).rounded()))
        }
        #expect(ProbeEvaluation.stratifiedSplit(labels: labels, trainFraction: 0.5, seed: 1).train == train)
        // A one-example class goes to training.
        let (t1, _) = ProbeEvaluation.stratifiedSplit(labels: [0, 0, 0, 1], trainFraction: 0.2, seed: 3)
        #expect(t1.contains(3))
    }

    @Test("separable data: 100% accuracy with a small but finite loss; without a penalty the loss keeps falling")
    func separable() throws {
        let labels = (0..<60).map { $0 % 3 }
        let x = clusters(labels: labels, d: 5, spread: 30, seed: 9)
        let probe = try LogisticProbe.fit(features: x, labels: labels, options: ProbeOptions(l2: 1e-3))
        #expect(try probe.accuracy(x, labels: labels) == 100)
        #expect(probe.loss > 0 && probe.loss < 0.1 && probe.stop.converged)
        var o = ProbeOptions(l2: 0)
        o.optimizer.maxIterations = 30
        let free = try LogisticProbe.fit(features: x, labels: labels, options: o)
        #expect(try free.accuracy(x, labels: labels) == 100)
        // No finite optimum without a penalty: the optimiser stops on a rule, far below the penalised loss.
        #expect(
            free.loss < probe.loss / 10, "λ = 0 loss \(free.loss) vs λ = 1e-3 loss \(probe.loss), stop \(free.stop)")
    }

    @Test("degenerate: constant features give the intercept-only model (class frequencies)")
    func degenerate() throws {
        let labels = [0, 0, 0, 1, 2, 2]
        let x = Tensor<Float>(shape: [6, 3], repeating: 4.5)
        let probe = try LogisticProbe.fit(features: x, labels: labels, options: ProbeOptions(l2: 1e-2))
        #expect(probe.scale == [1, 1, 1] && probe.mean == [4.5, 4.5, 4.5])
        let entropy = -(0.5 * log(0.5) + 1.0 / 6 * log(1.0 / 6) + 1.0 / 3 * log(1.0 / 3))
        #expect(abs(probe.loss - entropy) < 1e-6, "\(probe.loss) vs \(entropy)")
        #expect(try probe.predict(x) == Array(repeating: 0, count: 6))
        let w = probe.weight.scalars
        #expect(w.allSatisfy { $0 == 0 })
    }

    @Test("bad input: one class, a class without training examples, NaN features, missing labels")
    func badInput() throws {
        let x = randomTensor([6, 3], seed: 1, as: Float.self)
        #expect(throws: AnalysisError.tooFewClasses(path: "", layer: "", classes: 1)) {
            _ = try LogisticProbe.fit(features: x, labels: [1, 1, 1, 1, 1, 1], classCount: 2)
        }
        #expect(
            throws: AnalysisError.classWithoutTrainingExamples(path: "", trainPath: "", classIndex: 1, className: nil)
        ) {
            _ = try LogisticProbe.fit(features: x, labels: [0, 0, 2, 2, 0, 2])
        }
        var bad = x
        bad[0, 0] = .infinity
        #expect(throws: AnalysisError.nonFinite(path: "", layer: "")) {
            _ = try LogisticProbe.fit(features: bad, labels: [0, 1, 0, 1, 0, 1])
        }
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("nolabels.h5").path
        try writeStore(path, ids: (0..<6).map { "\($0)" }, labels: nil, layers: [("norm:cls", x)])
        #expect(throws: AnalysisError.missingLabels(path: path, analysis: "the linear probe")) {
            _ = try ProbeEvaluation.run(test: ActivationStore(path: path))
        }
        let test = try ActivationStore(path: fixture("probe_test.h5"))
        #expect(throws: AnalysisError.queriesAreTrainingInputs(trainPath: test.path, testPath: test.path)) {
            _ = try ProbeEvaluation.run(test: test, train: test)
        }
        #expect(throws: AnalysisError.self) { _ = try ProbeEvaluation.run(test: test, trainFraction: 1) }
    }

    @Test("save writes a store that agreement reads: /logits, inputs copied, probe weights")
    func save() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = try ActivationStore(path: fixture("probe_train.h5")),
            test = try ActivationStore(path: fixture("probe_test.h5"))
        let r = try ProbeEvaluation.run(test: test, train: train, layers: ["blocks.3:cls"], keepLogits: true)
        let out = dir.appendingPathComponent("probe.h5").path
        try r.save(r.rows[0], to: out)
        let s = try ActivationStore(path: out)
        #expect(s.ids == test.ids && s.labels == test.labels && s.classes == test.classes)
        let logits = try s.readFloatDataset("logits")
        #expect(logits.shape == [100, 4] && logits == r.rows[0].testLogits!)
        #expect(
            try s.readFloatDataset("probe/weight").shape == [4, 10] && s.readFloatDataset("probe/bias").shape == [4])
        let self_ = try PredictionAgreement.run(s, s, options: AgreementOptions(ks: [2]))
        #expect(self_.value("top1_agreement", .all) == 1)
        #expect(try HDF5File(path: out).attribute("probe_layer") == .string("blocks.3:cls"))
    }
}
