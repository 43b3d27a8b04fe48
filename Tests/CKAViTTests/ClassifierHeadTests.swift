import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

/// The fixtures of `notebooks-export/reference/heads/make_head_fixtures.py`: tiny official models (width 32,
/// 4 heads, patch 8, 16² input, 10 classes) saved in the release layouts, and their official logits.
let headFixtures = officialFixtures.appendingPathComponent("heads")

func headFixture(_ name: String) -> URL { headFixtures.appendingPathComponent(name) }

/// Loads a fixture checkpoint (width 32 has no default head count) and its model.
func headModel(_ file: String) throws -> (Checkpoint, VisionTransformer) {
    let ckpt = try Checkpoint(contentsOf: headFixture(file), options: Checkpoint.Options(heads: 4))
    return (ckpt, try VisionTransformer(checkpoint: ckpt))
}

@Suite("Released classifier heads against the official DINO, MoCo-v3 and MAE code")
struct ClassifierHeadTests {
    let store: ActivationStore
    let pixels: Tensor<Float>
    init() throws {
        store = try ActivationStore(path: headFixture("heads.h5").path)
        pixels = try store.readFloatDataset("inputs/pixels")
    }

    /// The head of each official case, built the way `cka extract` builds it.
    func head(_ name: String) throws -> (ClassifierHead, VisionTransformer) {
        switch name {
        case "dino_n1_avgpool", "dino_n4":
            let (_, model) = try headModel("dino_backbone.pth")
            let file = name == "dino_n4" ? "dino_linear_n4.pth" : "dino_linear_n1_avgpool.pth"
            return (try ClassifierHead(dinoLinearFile: headFixture(file), model: model), model)
        case "mocov3":
            let (ckpt, model) = try headModel("mocov3_linear.pth.tar")
            return (try ClassifierHead(checkpoint: ckpt), model)
        default:
            let (ckpt, model) = try headModel("mae_finetuned.pth")
            return (try ClassifierHead(checkpoint: ckpt), model)
        }
    }

    @Test(
        "Logits and head features within 1e-5 relative (max |diff| / max |ref|) of the official code",
        arguments: ["dino_n1_avgpool", "dino_n4", "mocov3", "mae"])
    func logitsMatchOfficial(name: String) throws {
        let (head, model) = try head(name)
        let official = try store.readFloatDataset("official/\(name)")
        let officialFeatures = try store.readFloatDataset("official/\(name)_features")
        #expect(official.shape == [4, 10] && head.classCount == 10)

        let logits = try head.logits(model: model, pixels: pixels)
        #expect(logits.shape == official.shape)
        let logitError = relativeMaxError(logits, official)

        // The same through the hook points of one forward pass (what the extractor does).
        var hooks: [String: Tensor<Float>] = [:]
        try model.forward(pixels, hooks: head.hookPoints) { hooks[$0] = $1 }
        #expect(Set(hooks.keys) == head.hookPoints)
        let features = try head.features(hooks: hooks)
        #expect(features.shape == officialFeatures.shape)
        let featureError = relativeMaxError(features, officialFeatures)
        #expect(try head.logits(hooks: hooks) == logits)

        print(
            "[heads] \(name) (\(head.readout.kind), \(head.readout)): logits rel. max error \(String(format: "%.2e", logitError)), features \(String(format: "%.2e", featureError))"
        )
        #expect(logitError <= 1e-5, "\(name): logits \(logitError)")
        #expect(featureError <= 1e-5, "\(name): features \(featureError)")
        // Same top-1 class as the official logits.
        for r in 0..<4 {
            let ours = (0..<10).max { logits[r, $0] < logits[r, $1] },
                ref = (0..<10).max { official[r, $0] < official[r, $1] }
            #expect(ours == ref)
        }
    }

    @Test("Readouts and hook points: inferred from the file and the model")
    func readouts() throws {
        #expect(try head("dino_n1_avgpool").0.readout == .dinoLinear(lastBlocks: 1, averagePatchTokens: true))
        #expect(try head("dino_n1_avgpool").0.hookPoints == ["norm:cls", "norm:gap_nocls"])
        #expect(try head("dino_n4").0.readout == .dinoLinear(lastBlocks: 4, averagePatchTokens: false))
        #expect(try head("dino_n4").0.hookPoints == ["norm:cls", "blocks.1:cls", "blocks.2:cls", "blocks.3:cls"])
        #expect(try head("mocov3").0.readout == .classToken)
        #expect(try head("mocov3").0.hookPoints == ["norm:cls"])
        #expect(try head("mae").0.readout == .globalPool)
        #expect(try head("mae").0.hookPoints == ["fc_norm"])
        // Width 2D is the ViT-B recipe (n = 1 + average pool); other multiples are n blocks (ViT-S: n = 4).
        #expect(
            try ClassifierHead.dinoReadout(featureWidth: 1536, modelWidth: 768)
                == .dinoLinear(lastBlocks: 1, averagePatchTokens: true))
        #expect(
            try ClassifierHead.dinoReadout(featureWidth: 1536, modelWidth: 384)
                == .dinoLinear(lastBlocks: 4, averagePatchTokens: false))
        #expect(
            try ClassifierHead.dinoReadout(featureWidth: 1536, modelWidth: 768, lastBlocks: 2)
                == .dinoLinear(lastBlocks: 2, averagePatchTokens: false))
        #expect(
            try ClassifierHead.dinoReadout(featureWidth: 1536, modelWidth: 768, averagePatchTokens: false)
                == .dinoLinear(lastBlocks: 2, averagePatchTokens: false))
        // An override that fits the width is honoured (here n = 2 without pooling on the ViT-B-shaped file).
        let (_, model) = try headModel("dino_backbone.pth")
        let h = try ClassifierHead(
            dinoLinearFile: headFixture("dino_linear_n1_avgpool.pth"), model: model, lastBlocks: 2)
        #expect(h.readout == .dinoLinear(lastBlocks: 2, averagePatchTokens: false))
        #expect(try h.logits(model: model, pixels: pixels).shape == [4, 10])
    }

    @Test("Bad inputs: typed errors naming the file, the tensor and the expected shape")
    func badInputs() throws {
        let (dinoCkpt, dinoModel) = try headModel("dino_backbone.pth")
        // A backbone-only release has no head.
        do {
            _ = try ClassifierHead(checkpoint: dinoCkpt)
            Issue.record("no error")
        } catch let e as ClassifierHeadError {
            guard case let .noHead(file, source, hint) = e else { Issue.record("\(e)"); return }
            // the library names the option; the CLI says --head
            #expect(file.hasSuffix("dino_backbone.pth") && source == "dino" && hint.contains("`head`"))
        }
        // Overrides that contradict the weight width.
        #expect {
            try ClassifierHead(dinoLinearFile: headFixture("dino_linear_n4.pth"), model: dinoModel, lastBlocks: 2)
        } throws: { e in
            guard case let .featureWidth(file, name, width, expected)? = e as? ClassifierHeadError else { return false }
            return file.hasSuffix("dino_linear_n4.pth") && name == "module.linear.weight" && width == 128
                && expected.hasPrefix("64")
        }
        #expect {  // average pooling with n > 1 cannot run in eval_linear.py
            try ClassifierHead(
                dinoLinearFile: headFixture("dino_linear_n4.pth"), model: dinoModel, averagePatchTokens: true)
        } throws: { e in
            guard case let .incompatible(_, reason)? = e as? ClassifierHeadError else { return false }
            return reason.contains("n_last_blocks = 1")
        }
        // A linear file for another model width.
        var wide = dinoModel.architecture
        wide.width = 48
        wide.mlpHiddenWidth = 96
        let wideModel = try VisionTransformer.randomlyInitialized(wide, seed: 1)
        #expect {
            try ClassifierHead(dinoLinearFile: headFixture("dino_linear_n1_avgpool.pth"), model: wideModel)
        } throws: { e in
            guard case let .featureWidth(_, _, width, expected)? = e as? ClassifierHeadError else { return false }
            return width == 64 && expected.contains("48")
        }
        // A file that is not a DINO linear-weights file: the missing key is named.
        #expect {
            try ClassifierHead(dinoLinearFile: headFixture("mocov3_linear.pth.tar"), model: dinoModel)
        } throws: { e in
            guard case let .missingTensor(file, name, found)? = e as? ClassifierHeadError else { return false }
            return file.hasSuffix("mocov3_linear.pth.tar") && name == "module.linear.weight"
                && found.contains("module.head.weight")
        }
        // Not a torch file at all: the safe reader's error.
        #expect(throws: CheckpointError.self) {
            try ClassifierHead(dinoLinearFile: headFixture("heads.h5"), model: dinoModel)
        }
        // Class count of the bias different from the weight's.
        let a = dinoModel.architecture
        #expect {
            try ClassifierHead(
                readout: .classToken, weight: Tensor(shape: [10, 32]), bias: Tensor(shape: [9]), architecture: a,
                file: "x.pth", weightName: "head.weight", biasName: "head.bias")
        } throws: { e in
            e as? ClassifierHeadError
                == .tensorShape(
                    file: "x.pth", name: "head.bias", expected: "[10] (one per row of head.weight)", got: [9])
        }
        // Width of a checkpoint head that does not fit the model.
        #expect {
            try ClassifierHead(
                readout: .classToken, weight: Tensor(shape: [10, 48]), bias: Tensor(shape: [10]), architecture: a,
                file: "x.pth")
        } throws: { e in
            e as? ClassifierHeadError
                == .featureWidth(file: "x.pth", name: "head.weight", width: 48, expected: "the model width 32")
        }
        // Readouts the model cannot feed.
        let (maeCkpt, _) = try headModel("mae_finetuned.pth")
        #expect(throws: ClassifierHeadError.self) {
            try ClassifierHead(
                readout: .classToken, weight: Tensor(shape: [10, 32]), bias: Tensor(shape: [10]),
                architecture: maeCkpt.architecture)
        }
        #expect(throws: ClassifierHeadError.self) {
            try ClassifierHead(
                readout: .globalPool, weight: Tensor(shape: [10, 32]), bias: Tensor(shape: [10]), architecture: a)
        }
        // Missing or malformed hook values.
        let head = try ClassifierHead(dinoLinearFile: headFixture("dino_linear_n1_avgpool.pth"), model: dinoModel)
        #expect(throws: ClassifierHeadError.hook(name: "norm:cls", expected: "[B, 32]", got: nil)) {
            try head.logits(hooks: [:])
        }
        #expect(throws: ClassifierHeadError.hook(name: "norm:gap_nocls", expected: "[2, 32]", got: [3, 32])) {
            try head.logits(hooks: ["norm:cls": Tensor(shape: [2, 32]), "norm:gap_nocls": Tensor(shape: [3, 32])])
        }
        // Applied to a model of another shape.
        #expect(throws: ClassifierHeadError.self) { try head.logits(model: wideModel, pixels: pixels) }
    }
}
