import CKAKit
import Foundation
import Testing
import _CKATestSupport

/// The model-family fixtures of the ViT tests (same package).
func familyFixture(_ name: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("CKAViTTests/FamilyFixtures/\(name)").path
}

/// max |ours − reference| / max |reference|.
private func relativeError(_ ours: Tensor<Float>, _ reference: Tensor<Float>) -> Double {
    let scale = reference.scalars.reduce(0) { max($0, abs(Double($1))) }
    let diff = zip(ours.scalars, reference.scalars).reduce(0) { max($0, abs(Double($1.0) - Double($1.1))) }
    return ours.shape == reference.shape ? diff / max(scale, 1e-30) : .infinity
}

@Suite("cka on every model family")
struct FamilyCommandTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

    @Test(
        "cka extract runs on each family's directory or file with its own preprocessing",
        arguments: [
            ("hf-vit", [String]()), ("hf-vit-sharded", []), ("hf-vit-bin", []), ("hf-vit-mae", []),
            ("hf-vit-mae-pretraining", []), ("hf-dinov2", []),
            ("hf-dinov2-reg", []), ("hf-deit", []), ("hf-clip", []), ("hf-siglip", []), ("open-clip", []),
            ("timm-reg/model.safetensors", ["--heads", "4"]), ("timm-map/model.safetensors", ["--heads", "4"]),
            ("timm-hub", []),
        ])
    func extract(family: String, extra: [String]) throws {
        let root = familyFixture(family.components(separatedBy: "/")[0])
        let out = dir.appendingPathComponent("\(family.replacingOccurrences(of: "/", with: "_")).h5").path
        let r = try cka(
            [
                "extract", "--checkpoint", familyFixture(family), "--images", root + "/images", "--out", out,
                "--store", "pooled,grams", "--gram-batch-size", "4", "--quiet",
            ] + extra)
        #expect(r.status == 0, "\(family): \(r.stderr)")
        let store = try ActivationStore(path: out)
        #expect(store.count == 3)
        #expect(store.layers.contains { $0.name == "blocks.1:gap_nocls" })
        let i = try cka(["inspect", out])
        #expect(i.status == 0)
    }

    @Test(
        "cka extract --image-size runs a timm dynamic_img_size checkpoint at 40 and 72 px as timm does",
        arguments: [40, 72])
    func dynamicImageSize(size: Int) throws {
        let out = dir.appendingPathComponent("dynamic-\(size).h5").path
        let r = try cka([
            "extract", "--checkpoint", familyFixture("timm-dynamic/model.safetensors"), "--heads", "4",
            "--image-size", "\(size)", "--images", familyFixture("timm-dynamic") + "/images", "--out", out,
            "--store", "pooled,pixels", "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let store = try ActivationStore(path: out)
        let reference = try ActivationStore(path: familyFixture("timm-dynamic") + "/reference-\(size).h5")
        // timm's eval transform (crop_pct 0.9, bicubic) at this size, then every pooled feature of timm's forward.
        #expect(
            relativeError(try store.readFloatDataset("inputs/pixels"), try reference.readFloatDataset("inputs/pixels"))
                <= 1e-5)
        var checked = 0
        for layer in store.layers where layer.name.contains(":") {
            #expect(relativeError(try store.read(layer.name), try reference.read(layer.name)) <= 1e-5, "\(layer.name)")
            checked += 1
        }
        #expect(checked == 9)  // blocks.0, blocks.1, norm × cls, gap, gap_nocls
    }

    @Test(
        "cka landscape --loss mae on a Hugging Face ViTMAEForPreTraining directory: the centre is HF's loss with that mask"
    )
    func hubMAELandscape() throws {
        let mae = familyFixture("hf-vit-mae-pretraining"), losses = mae + "/mae-loss.h5"
        let reference = try HDF5File(path: losses)
        // Its config.json says norm_pix_loss false (the default here), 2 decoder heads; --norm-pix-loss overrides.
        for (flag, key) in [(nil, "reference/loss"), ("--norm-pix-loss", "reference/loss_norm_pix")] {
            let out = dir.appendingPathComponent("mae-\(flag ?? "config").h5").path
            let r = try cka(
                [
                    "landscape", "--checkpoint", mae, "--loss", "mae", "--inputs", losses, "--masks", losses,
                    "--grid", "-1:1:3", "--dims", "1", "--hessian-iterations", "0", "--out", out, "--quiet",
                ] + (flag.map { [$0] } ?? []))
            #expect(r.status == 0, "\(r.stderr)")
            let surface = try LandscapeSurface(contentsOf: out)
            let centre = try #require(surface.attributes["stat_center_loss"]?.doubleValue)
            let expected = try reference.dataset(key).readDouble().scalars[0]
            #expect(abs(centre - expected) / expected <= 1e-5, "\(key): \(centre) vs \(expected)")
            #expect(surface.attributes["decoder_heads"]?.intValue == 2)
            // Both sin-cos tables are fixed in transformers' ViTMAE (requires_grad=False): not perturbed.
            #expect(surface.attributes["excluded"] == .strings(["decoder_pos_embed", "pos_embed"]))
        }
        // ViTMAEModel has no decoder: one line that names the directory and says what holds the decoder.
        let encoderOnly = try cka([
            "landscape", "--checkpoint", familyFixture("hf-vit-mae"), "--loss", "mae", "--inputs", losses,
            "--grid", "-1:1:3", "--dims", "1", "--out", dir.appendingPathComponent("enc.h5").path, "--quiet",
        ])
        #expect(encoderOnly.status == 1 && encoderOnly.stderr.contains("ViTMAEForPreTraining"))
        #expect(encoderOnly.stderr.contains("hf-vit-mae") && encoderOnly.stderr.split(separator: "\n").count == 1)
    }

    @Test("cka checkpoint --json prints the mapping from the file's names")
    func checkpointJSON() throws {
        let r = try cka(["checkpoint", familyFixture("hf-dinov2-reg"), "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains(#""original":"encoder.layer.0.norm1.weight""#))
        #expect(r.stdout.contains(#""register_tokens":2"#) && r.stdout.contains(#""source":"hf""#))
        let t = try cka(["checkpoint", familyFixture("hf-siglip")])
        #expect(t.status == 0 && t.stdout.contains("no class token") && t.stdout.contains("MAP head attn_pool"))
    }

    @Test("SigLIP's GELU: a Hugging Face directory reads hidden_act; a bare timm file says --activation is needed")
    func siglipActivation() throws {
        let hub = try cka(["checkpoint", familyFixture("hf-siglip")])
        #expect(hub.status == 0 && hub.stdout.contains("gelu_tanh") && !hub.stdout.contains("--activation"))
        // A timm MAP-head state dict records no nonlinearity: gelu (timm's SigLIP), and the command says so.
        let bare = try cka(["checkpoint", familyFixture("timm-map/model.safetensors"), "--heads", "4"])
        #expect(bare.status == 0 && bare.stdout.contains("need --activation gelu_tanh"), "\(bare.stdout)")
        let forced = try cka([
            "checkpoint", familyFixture("timm-map/model.safetensors"), "--heads", "4", "--activation", "gelu_tanh",
        ])
        #expect(forced.status == 0 && forced.stdout.contains("gelu_tanh, LayerNorm"))
        #expect(!forced.stdout.contains("need --activation"))
    }

    @Test("Refusals are one line: :cls without a class token, a TorchScript archive, a missing config.json")
    func refusals() throws {
        let out = dir.appendingPathComponent("s.h5").path
        let cls = try cka(
            [
                "extract", "--checkpoint", familyFixture("hf-siglip"), "--images",
                familyFixture("hf-siglip") + "/images",
                "--out", out, "--layers", "blocks.*:cls", "--quiet",
            ])
        #expect(cls.status == 1 && cls.stderr.contains("no class token"))
        #expect(cls.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: out))
        let ts = try cka(["checkpoint", familyFixture("openai-torchscript/ViT-tiny.pt")])
        #expect(ts.status == 1 && ts.stderr.contains("torch.jit.load") && ts.stderr.split(separator: "\n").count == 1)
        let bare = dir.appendingPathComponent("bare")
        try FileManager.default.createDirectory(at: bare, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: familyFixture("hf-vit") + "/model.safetensors",
            toPath: bare.appendingPathComponent("model.safetensors").path)
        let noConfig = try cka(["checkpoint", bare.path])
        #expect(noConfig.status == 1 && noConfig.stderr.contains("config.json"))
        #expect(noConfig.stderr.contains("missing") && noConfig.stderr.split(separator: "\n").count == 1)
        // An unknown model_type: what was found and what is supported, in one line.
        try Data(#"{"model_type": "beit", "architectures": ["BeitModel"]}"#.utf8).write(
            to: bare.appendingPathComponent("config.json"))
        let unknown = try cka(["extract", "--checkpoint", bare.path, "--images", "x", "--out", out])
        #expect(unknown.status == 1 && unknown.stderr.split(separator: "\n").count == 1, "\(unknown.stderr)")
        #expect(
            unknown.stderr.contains("model_type 'beit' (BeitModel)") && unknown.stderr.contains("dinov2_with_registers")
        )
    }
}
