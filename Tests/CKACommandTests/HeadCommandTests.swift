import CKAKit
import Foundation
import Testing
import _CKATestSupport

/// The released-head fixtures of `notebooks-export/reference/heads/make_head_fixtures.py` (in the ViT tests).
func headFixture(_ name: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("CKAViTTests/OfficialFixtures/heads/\(name)").path
}

@Suite("cka extract --store logits, then cka agreement")
struct HeadCommandTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// `cka extract` on the fixture inputs (width 32 needs --heads 4).
    func extract(_ checkpoint: String, _ extra: [String], out: String) throws -> RunResult {
        try cka(
            [
                "extract", "--checkpoint", headFixture(checkpoint), "--heads", "4", "--inputs", headFixture("heads.h5"),
                "--out", path(out), "--quiet",
            ] + extra)
    }

    @Test("MoCo-v3 head and DINO linear file: /logits equal to the official logits, labels kept; agreement runs")
    func logitsThenAgreement() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let moco = try extract("mocov3_linear.pth.tar", ["--store", "logits"], out: "moco.h5")
        #expect(moco.status == 0, "\(moco.stderr)")
        #expect(moco.stdout.contains("/logits [4, 10] (class_token)"), "\(moco.stdout)")
        let dino = try extract(
            "dino_backbone.pth",
            [
                "--head", headFixture("dino_linear_n1_avgpool.pth"), "--store", "logits,pooled",
                "--batch-size", "3",
            ], out: "dino.h5")
        #expect(dino.status == 0, "\(dino.stderr)")
        let mae = try extract("mae_finetuned.pth", ["--store", "logits"], out: "mae.h5")
        #expect(mae.status == 0, "\(mae.stderr)")

        let reference = try ActivationStore(path: headFixture("heads.h5"))
        for (file, official, kind) in [
            ("moco.h5", "mocov3", "class_token"), ("dino.h5", "dino_n1_avgpool", "dino_linear"),
            ("mae.h5", "mae", "global_pool"),
        ] {
            let store = try ActivationStore(path: path(file))
            #expect(store.count == 4)
            #expect(store.labels == [3, 1, 4, 1], "labels of the inputs are kept for agreement's subsets")
            #expect(store.attributes["head_kind"]?.stringValue == kind)
            let logits = try store.readFloatDataset("logits"),
                ref = try reference.readFloatDataset("official/\(official)")
            #expect(logits.shape == [4, 10])
            var diff = 0.0, scale = 0.0
            for (a, b) in zip(logits.scalars, ref.scalars) {
                diff = max(diff, abs(Double(a) - Double(b))); scale = max(scale, abs(Double(b)))
            }
            #expect(diff / scale <= 1e-5, "\(file): \(diff / scale)")
        }
        let dinoStore = try ActivationStore(path: path("dino.h5"))
        #expect(dinoStore.attributes["head_file"]?.stringValue == "dino_linear_n1_avgpool.pth")
        #expect(dinoStore.attributes["head_n_last_blocks"]?.intValue == 1)
        #expect(dinoStore.layers.contains { $0.name == "norm:cls" }, "pooled features are stored beside the logits")

        let agreement = try cka([
            "agreement", path("dino.h5"), path("moco.h5"), "--top", "1,3", "--csv", path("agr.csv"),
        ])
        #expect(agreement.status == 0, "\(agreement.stderr)")
        #expect(agreement.stdout.contains("4 inputs, 10 classes"), "\(agreement.stdout)")
        let csv = try String(contentsOfFile: path("agr.csv"), encoding: .utf8)
        #expect(csv.hasPrefix("metric,subset,k,value\nkendall_tau_b,all,1,"))
    }

    @Test("No head, a head that does not fit, or --head without logits: one-line error, exit ≠ 0, no file")
    func badHeads() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        func expectFailure(
            _ r: RunResult, _ text: String, _ out: String, sourceLocation: SourceLocation = #_sourceLocation
        ) {
            #expect(r.status != 0, sourceLocation: sourceLocation)
            #expect(r.stderr.contains(text), "\(r.stderr)", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: path(out)), sourceLocation: sourceLocation)
        }
        let none = try extract("dino_backbone.pth", ["--store", "logits"], out: "a.h5")
        expectFailure(none, "has no classifier head", "a.h5")
        #expect(none.stderr.split(separator: "\n").count == 1 && none.stderr.contains("--head"), "\(none.stderr)")
        expectFailure(
            try extract(
                "dino_backbone.pth",
                [
                    "--store", "logits", "--head", headFixture("dino_linear_n4.pth"),
                    "--head-last-blocks", "2",
                ], out: "b.h5"),
            "'module.linear.weight' reads 128 features, expected 64", "b.h5")
        expectFailure(
            try extract(
                "dino_backbone.pth", ["--store", "logits", "--head", headFixture("mocov3_linear.pth.tar")], out: "c.h5"),
            "no tensor 'module.linear.weight'", "c.h5")
        expectFailure(
            try extract(
                "mocov3_linear.pth.tar", ["--store", "pooled", "--head", headFixture("dino_linear_n4.pth")], out: "d.h5"
            ),
            "--head is used by --store logits only", "d.h5")
        expectFailure(
            try extract("mocov3_linear.pth.tar", ["--store", "logits", "--head-avgpool", "true"], out: "e.h5"),
            "--head-last-blocks / --head-avgpool", "e.h5")
    }

    @Test(
        "An image folder: class labels and names are stored with the logits; a class-count mismatch is a warning",
        .enabled(if: sharedDirectory != nil, "needs ../shared/data/images"))
    func imageFolderLabels() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let cifar = sharedDirectory!.appendingPathComponent("data/images/cifar10-test-1000")
        let images = dir.appendingPathComponent("images")
        for cls in ["cat", "dog"] {
            let d = images.appendingPathComponent(cls)
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            for f in ["0000.jpg", "0001.jpg"] {
                try FileManager.default.copyItem(
                    at: cifar.appendingPathComponent("\(cls)/\(f)"), to: d.appendingPathComponent(f))
            }
        }
        let r = try cka([
            "extract", "--checkpoint", headFixture("mae_finetuned.pth"), "--heads", "4", "--images", images.path,
            "--out", path("folder.h5"), "--store", "logits", "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("warning: the inputs have 2 classes but the head has 10 outputs"), "\(r.stderr)")
        let store = try ActivationStore(path: path("folder.h5"))
        #expect(store.labels == [0, 0, 1, 1] && store.classes == ["cat", "dog"])
        #expect(try store.readFloatDataset("logits").shape == [4, 10])
    }

    @Test("extract --help documents --store logits and --head")
    func help() throws {
        let r = try cka(["extract", "--help"])
        #expect(r.status == 0)
        for text in [
            "logits", "--head <head>", "--head-last-blocks", "--head-avgpool", "dino_vitbase16_linearweights.pth",
        ] {
            #expect(r.stdout.contains(text), "\(text)")
        }
    }
}
