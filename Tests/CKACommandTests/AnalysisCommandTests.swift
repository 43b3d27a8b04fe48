import CKAKit
import Foundation
import Testing
import _CKATestSupport

/// The fixtures of the analysis tests (same package).
func analysisFixture(_ name: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("CKAAnalysisTests/Fixtures/\(name)").path
}

/// The reference values written with the fixtures.
func analysisExpected() throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: analysisFixture("analysis_expected.json")))
    return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
}

/// Parses a CSV without quoted fields into rows of fields (header included).
func csvRows(_ path: String) throws -> [[String]] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
        $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    }
}

@Suite("cka knn, probe and agreement")
struct AnalysisCommandTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// Expects a failed run: exit 1 (or ArgumentParser's 64), a short stderr containing `text`.
    func expectFailure(_ args: [String], _ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try cka(args)
        #expect(r.status != 0 && r.status < 128, "\(args)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains(text), "\(args): \(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.split(separator: "\n").count <= 4, "short: \(r.stderr)", sourceLocation: sourceLocation)
    }

    @Test("--help lists the three commands and their options")
    func help() throws {
        let r = try cka(["--help"])
        for word in ["knn", "probe", "agreement"] { #expect(r.stdout.contains(word)) }
        let knn = try cka(["knn", "--help"])
        for word in ["--train", "--k", "--temperature", "--layers", "--csv", "--plot"] {
            #expect(knn.stdout.contains(word))
        }
        let probe = try cka(["probe", "--help"])
        for word in ["--train", "--split", "--seed", "--l2", "--save", "--csv"] { #expect(probe.stdout.contains(word)) }
        let agr = try cka(["agreement", "--help"])
        for word in ["--top", "--classes", "--csv"] { #expect(agr.stdout.contains(word)) }
    }

    @Test("knn train/test: table, CSV contract equal to the float64 reference, PNG and SVG pictures")
    func knnTrainTest() throws {
        let (csv, png, svg) = (path("knn.csv"), path("knn.png"), path("knn.svg"))
        let r = try cka([
            "knn", analysisFixture("knn_test.h5"), "--train", analysisFixture("knn_train.h5"), "--k", "5,20",
            "--csv", csv, "--plot", png, "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("40 queries against 120 training inputs") && r.stdout.contains("top-1"))
        let rows = try csvRows(csv)
        #expect(rows[0] == ["layer", "pooling", "k", "top1", "top5"] && rows.count == 1 + 5 * 2)
        let ref = try #require(
            (try analysisExpected()["knn"] as? [String: Any])?["train_test"] as? [String: [String: [Double]]])
        for row in rows.dropFirst() {
            let name = row[1] == "none" ? row[0] : "\(row[0]):\(row[1])"
            let e = try #require(ref[name]?[row[2]], "\(row)")
            #expect(Double(row[3]) == e[0] && Double(row[4]) == e[1], "\(row) vs \(e)")
        }
        let head = try Data(contentsOf: URL(fileURLWithPath: png)).prefix(8)
        #expect(head == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        let s = try cka(["knn", analysisFixture("knn_train.h5"), "--layers", "blocks.*:*", "--plot", svg, "--quiet"])
        #expect(s.status == 0 && s.stdout.contains("leave-one-out over 120 inputs"), "\(s.stderr)")
        #expect(try String(contentsOfFile: svg, encoding: .utf8).contains("<svg"))
    }

    @Test("knn bad input: one line, exit ≠ 0, no CSV")
    func knnBadInput() throws {
        let csv = path("bad.csv")
        let noLabels = path("nolabels.h5")
        do {
            let w = try ActivationStoreWriter(
                path: noLabels, ids: (0..<8).map { "x\($0)" }, metadata: StoreMetadata(model: "o"))
            try w.addLayer("norm:cls", kind: .pooled, block: -1, featureShape: [3])
            try w.append(randomTensor([8, 3], seed: 1), to: "norm:cls")
            try w.finish()
        }
        let train = analysisFixture("knn_train.h5"), test = analysisFixture("knn_test.h5")
        try expectFailure(["knn", noLabels, "--csv", csv], "no /inputs/labels")
        try expectFailure(
            ["knn", test, "--train", train, "--k", "500", "--csv", csv], "exceeds the 120 training examples")
        try expectFailure(["knn", train, "--k", "120", "--csv", csv], "leave-one-out")
        try expectFailure(["knn", test, "--k", "0", "--csv", csv], "--k")
        try expectFailure(["knn", test, "--k", "ten", "--csv", csv], "--k")
        try expectFailure(["knn", test, "--plot", path("x.jpg")], "--plot")
        try expectFailure(["knn", test, "--layers", "blocks.0", "--csv", csv], "expected [N, D]")
        try expectFailure(["knn", test, "--train", noLabels, "--csv", csv], noLabels)
        try expectFailure(["knn", test, "--train", test, "--csv", csv], "different inputs")
        try expectFailure(["knn", path("missing.h5")], "no such file")
        #expect(!FileManager.default.fileExists(atPath: csv))
    }

    @Test("probe: seeded split, CSV, --save writes a logits store; --save needs one layer")
    func probe() throws {
        let csv = path("probe.csv"), out = path("probe.h5")
        let r = try cka([
            "probe", analysisFixture("probe_train.h5"), "--split", "0.6", "--seed", "3", "--csv", csv, "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("120 train / 80 test") && r.stdout.contains("blocks.3"))
        let rows = try csvRows(csv)
        #expect(
            rows[0] == ["layer", "pooling", "train_top1", "test_top1", "loss", "iterations", "stop"] && rows.count == 3)
        try expectFailure(
            ["probe", analysisFixture("probe_test.h5"), "--train", analysisFixture("probe_train.h5"), "--save", out],
            "--save writes the probe of one layer")
        #expect(!FileManager.default.fileExists(atPath: out))
        let s = try cka([
            "probe", analysisFixture("probe_test.h5"), "--train", analysisFixture("probe_train.h5"),
            "--layers", "blocks.3:cls", "--l2", "0.01", "--save", out, "--quiet",
        ])
        #expect(s.status == 0, "\(s.stderr)")
        let store = try ActivationStore(path: out)
        #expect(store.count == 100 && store.labels != nil && store.classes == ["w", "x", "y", "z"])
        #expect(try store.readFloatDataset("logits").shape == [100, 4])
        // Test accuracy within a point of scikit-learn's at the same penalty.
        let ref = try #require(((try analysisExpected()["probe"] as? [String: Any])?["cases"] as? [[String: Any]])?[1])
        let acc = try #require(
            s.stdout.split(separator: "\n").first { $0.hasPrefix("blocks.3") }?.split(separator: " "))
        #expect(abs(Double(acc[3])! - (ref["test_accuracy"] as! Double)) <= 1, "\(s.stdout)")
        try expectFailure(["probe", analysisFixture("probe_train.h5"), "--split", "1.5"], "--split")
    }

    @Test("agreement: CSV contract equal to the scipy/sklearn reference, --classes a")
    func agreement() throws {
        let csv = path("agr.csv")
        let a = analysisFixture("agreement_a.h5"), b = analysisFixture("agreement_b.h5")
        let ref = try #require(try analysisExpected()["agreement"] as? [String: Any])
        for (mode, extra) in [("union", [String]()), ("a", ["--classes", "a"])] {
            let r = try cka(["agreement", a, b, "--top", "1,3,5,20", "--csv", csv] + extra)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("both_correct") && r.stdout.contains("60 inputs, 12 classes"))
            #expect(r.stderr.contains("k = 20 is not below the 12 classes"))
            let rows = try csvRows(csv)
            #expect(rows[0] == ["metric", "subset", "k", "value"])
            let expected = try #require(ref[mode] as? [[Any]])
            #expect(rows.count == 1 + expected.count)
            for (row, e) in zip(rows.dropFirst(), expected) {
                #expect(row[0] == e[0] as! String && row[1] == e[1] as! String)
                #expect(row[2] == ((e[2] as? NSNumber).map { "\($0.intValue)" } ?? ""))
                if let v = e[3] as? NSNumber {
                    #expect(abs(Double(row[3])! - v.doubleValue) <= 1e-12, "\(mode) \(row)")
                } else {
                    #expect(row[3] == "nan")
                }
            }
        }
    }

    @Test("agreement bad input: no /logits, other inputs, bad --top")
    func agreementBadInput() throws {
        let a = analysisFixture("agreement_a.h5")
        try expectFailure(["agreement", a, analysisFixture("knn_test.h5")], "no /logits")
        try expectFailure(["agreement", a, analysisFixture("probe_test.h5")], "no /logits")
        try expectFailure(["agreement", a, a, "--top", "0"], "--top")
        try expectFailure(["agreement", a, a, "--classes", "b"], "b")
    }

    @Test("end to end: two probes saved over the same test inputs, then compared by agreement")
    func endToEnd() throws {
        let cls = path("cls.h5"), gap = path("gap.h5"), csv = path("e2e.csv")
        for (layer, out) in [("blocks.3:cls", cls), ("blocks.3:gap", gap)] {
            let r = try cka([
                "probe", analysisFixture("probe_test.h5"), "--train", analysisFixture("probe_train.h5"),
                "--layers", layer, "--save", out, "--quiet",
            ])
            #expect(r.status == 0, "\(r.stderr)")
        }
        let r = try cka(["agreement", cls, gap, "--top", "2,4", "--csv", csv])
        #expect(r.status == 0, "\(r.stderr)")
        let rows = try csvRows(csv)
        #expect(rows.count == 1 + 3 * 2 + 3 + 3)
        // The gap layer is the cls layer's features reversed and doubled: standardised, the same probe.
        let agreementAll = try #require(rows.first { $0[0] == "top1_agreement" && $0[1] == "all" })
        #expect(Double(agreementAll[3])! > 0.95)
    }
}
