import CKACheckpoint
import CKAExtraction
import CKAIO
import CKAImages
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

/// The fixtures written by `notebooks-export/reference/families/make_family_fixtures.py` (beside this file): one
/// directory per family, holding the weights in the library's own layout and `reference.h5` (pixels and every hook
/// point of the official forward pass, under timm's names).
let familyFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
    "FamilyFixtures")

/// Every family, how it is loaded (the directory, or the weights file for bare timm state dicts) and the options
/// a user would give.
enum Family: String, CaseIterable, CustomTestStringConvertible {
    case hfViT = "hf-vit", hfViTSharded = "hf-vit-sharded", hfViTBin = "hf-vit-bin", hfViTMAE = "hf-vit-mae"
    case hfViTMAEPretraining = "hf-vit-mae-pretraining"
    case hfDINOv2 = "hf-dinov2"
    case hfDINOv2Registers = "hf-dinov2-reg", hfDeiT = "hf-deit", hfCLIP = "hf-clip", hfSigLIP = "hf-siglip"
    case openCLIP = "open-clip", timmRegisters = "timm-reg", timmMAP = "timm-map", timmHub = "timm-hub"

    var testDescription: String { rawValue }
    var directory: URL { familyFixtures.appendingPathComponent(rawValue) }
    /// A bare timm state dict (no config beside it).
    var isBareTimm: Bool { self == .timmRegisters || self == .timmMAP }
    /// What `cka extract --checkpoint` is given.
    var checkpointURL: URL { isBareTimm ? directory.appendingPathComponent("model.safetensors") : directory }
    var options: Checkpoint.Options {
        // timm state dicts carry no head count; a width of 32 has no conventional one.
        Checkpoint.Options(heads: isBareTimm ? 4 : nil)
    }
    var source: CheckpointSource {
        switch self {
        case .openCLIP: .openCLIP
        case .timmRegisters, .timmMAP, .timmHub: .timm
        default: .huggingFace
        }
    }
    /// Prefix tokens (class, distillation, registers) of the fixture's model.
    var prefixTokens: Int {
        switch self {
        case .hfDINOv2Registers, .timmRegisters: 3
        case .hfDeiT: 2
        case .hfSigLIP, .timmMAP, .timmHub: 0
        default: 1
        }
    }
    func load() throws -> Checkpoint { try Checkpoint(contentsOf: checkpointURL, options: options) }
}

@Suite("Model families against their official libraries (transformers, open_clip, timm)")
struct FamilyFixtureTests {
    /// max|ours − official| / max|official| per hook point; what remains is float32 summation order.
    static let tolerance = 1e-5

    @Test("Every hook point of the official forward pass within 1e-5 relative", arguments: Family.allCases)
    func forward(family: Family) throws {
        let ckpt = try family.load()
        #expect(ckpt.source == family.source)
        #expect(ckpt.architecture.prefixTokens == family.prefixTokens)
        let model = try VisionTransformer(checkpoint: ckpt)
        let store = try ActivationStore(path: family.directory.appendingPathComponent("reference.h5").path)
        let pixels = try store.readFloatDataset("inputs/pixels")
        let stored = Set(store.layers.map(\.name))
        let offered = Set(HookPoint.allHooks(for: model.architecture))
        // Every hook point the model offers is checked against the official value.
        #expect(offered.subtracting(stored).isEmpty, "\(family.rawValue): unchecked \(offered.subtracting(stored))")
        let wanted = stored.intersection(offered)
        var errors: [String: Double] = [:]
        try model.forward(pixels, hooks: wanted) { name, value in
            let expected = try store.read(name)
            #expect(value.shape == expected.shape, "\(family.rawValue) \(name)")
            if value.shape == expected.shape { errors[name] = relativeMaxError(value, expected) }
        }
        if stored.contains("head") && !offered.contains("head") {
            // A plain timm classifier: its logits through the released-head path.
            let head = try ClassifierHead(checkpoint: ckpt)
            let logits = try head.logits(model: model, pixels: pixels)
            errors["head"] = relativeMaxError(logits, try store.read("head"))
        }
        #expect(Set(errors.keys) == stored, "every reference layer is checked")
        for (name, err) in errors.sorted(by: { $0.key < $1.key }) {
            #expect(err <= Self.tolerance, "\(family.rawValue) \(name): relative max error \(err)")
        }
        if let worst = errors.max(by: { $0.value < $1.value }) {
            print("\(family.rawValue): \(errors.count) hook points, worst \(worst.key) at \(worst.value)")
        }
    }

    @Test(
        "The three Hugging Face weight layouts (safetensors, shards + index, pytorch_model.bin) load the same tensors")
    func layoutsAgree() throws {
        let one = try Family.hfViT.load(), sharded = try Family.hfViTSharded.load(), bin = try Family.hfViTBin.load()
        #expect(one.parameterNames == sharded.parameterNames && one.parameterNames == bin.parameterNames)
        for n in one.parameterNames {
            #expect(one[n]?.scalars == sharded[n]?.scalars, "\(n)")
            #expect(one[n]?.scalars == bin[n]?.scalars, "\(n)")
        }
        #expect(one.originalNames["blocks.0.attn.qkv.weight"]?.contains("attention.attention.query.weight") == true)
        #expect(one.originalNames["head.weight"] == "classifier.weight")
        #expect(bin.format == .torchZip && one.format == .safetensors)
    }

    @Test("The mapping is reported: cka checkpoint --json names the file's key of every parameter")
    func mappingJSON() throws {
        let clip = try Family.hfCLIP.load()
        let json = clip.summaryJSON()
        #expect(json.contains("vision_model.pre_layrnorm.weight"))
        #expect(clip.originalNames["norm_pre.weight"] == "vision_model.pre_layrnorm.weight")
        #expect(clip.originalNames["head.weight"] == "visual_projection.weight")
        #expect(clip.ignored.contains { $0.key.hasPrefix("text_model.") })
        #expect(clip.architecture.activation == .quickGELU && clip.architecture.preNorm)
        #expect(clip.architecture.layerNormEpsilon == 1e-5)
        // A timm hub directory: heads from model_args, gelu_tanh from the SigLIP 2 architecture's name.
        let timmHub = try Family.timmHub.load()
        #expect(timmHub.architecture.heads == 4 && timmHub.architecture.activation == .geluTanh)
        #expect(timmHub.architecture.family == "timm/vit_base_patch32_siglip_256")
        #expect(ViTArchitecture.defaultHeads(forWidth: 1152) == 16)  // SigLIP so400m without --heads
        let siglip = try Family.hfSigLIP.load()
        #expect(!siglip.architecture.classToken && siglip.architecture.attentionPool)
        #expect(siglip.architecture.activation == .geluTanh)
        let deit = try Family.hfDeiT.load()
        #expect(deit.architecture.distillationToken && deit.architecture.layerNormEpsilon == 1e-12)
        let oc = try Family.openCLIP.load()
        #expect(oc.architecture.activation == .quickGELU && oc.architecture.heads == 4)
        #expect(oc.originalNames["head.weight"] == "visual.proj (transposed)")
    }

    @Test(
        "Bad hub input: a missing config.json, an unknown model_type or architecture and a missing shard are one line each"
    )
    func badInput() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cka-families-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let weights = Family.hfViT.directory.appendingPathComponent("model.safetensors")
        try FileManager.default.copyItem(at: weights, to: dir.appendingPathComponent("model.safetensors"))
        // No config.json: a directory, or the bare weights file.
        for url in [dir, dir.appendingPathComponent("model.safetensors")] {
            #expect {
                try Checkpoint(contentsOf: url)
            } throws: { "\($0)".contains("config.json") && "\($0)".contains("missing") && !"\($0)".contains("\n") }
        }
        // An unknown model_type.
        try Data(#"{"model_type": "vit_hybrid", "architectures": ["ViTHybridModel"]}"#.utf8).write(
            to: dir.appendingPathComponent("config.json"))
        #expect {
            try Checkpoint(contentsOf: dir)
        } throws: { e in
            let s = "\(e)"
            return s.contains("vit_hybrid") && s.contains("ViTHybridModel") && s.contains("dinov2_with_registers")
        }
        // A known model_type with an architecture whose weights are not a ViT backbone plus known heads.
        try Data(#"{"model_type": "vit", "architectures": ["ViTForMaskedImageModeling"]}"#.utf8).write(
            to: dir.appendingPathComponent("config.json"))
        #expect {
            try Checkpoint(contentsOf: dir)
        } throws: { e in
            let s = "\(e)"
            return s.contains("ViTForMaskedImageModeling") && s.contains("ViTMAEForPreTraining")
                && s.contains("config.json") && !s.contains("\n")
        }
        // A missing shard.
        let sharded = dir.appendingPathComponent("sharded")
        try FileManager.default.copyItem(at: Family.hfViTSharded.directory, to: sharded)
        try FileManager.default.removeItem(at: sharded.appendingPathComponent("model-00002-of-00003.safetensors"))
        #expect {
            try Checkpoint(contentsOf: sharded)
        } throws: { "\($0)".contains("model-00002-of-00003.safetensors") }
    }
}

@Suite("Position tables at another image size (timm's resample_abs_pos_embed)")
struct PositionResamplingTests {
    @Test(
        "28 px weights run at 42 px equal timm's model built for 42 px: the table and every block",
        arguments: [Family.timmRegisters, .timmMAP])
    func resampled(family: Family) throws {
        var options = family.options
        options.imageSize = 42
        let ckpt = try Checkpoint(contentsOf: family.checkpointURL, options: options)
        #expect(ckpt.architecture.imageSize == 42 && ckpt.architecture.gridSize == 6)
        let reference = try ActivationStore(path: family.directory.appendingPathComponent("reference-42.h5").path)
        let table = try #require(ckpt["pos_embed"])
        let expected = try reference.readFloatDataset("reference/pos_embed")
        #expect(table.shape == expected.shape)
        let tableError = relativeMaxError(table, expected)
        #expect(tableError <= 1e-6, "pos_embed \(tableError)")
        let model = try VisionTransformer(checkpoint: ckpt)
        #expect(model.imageSize == 42)
        let worst = try worstBlockError(model, reference)
        #expect(worst <= 1e-5)
        print("\(family.rawValue) at 42 px: pos_embed \(tableError), blocks \(worst)")
    }

    @Test(
        "Hugging Face DINOv2 at another input size equals its own interpolate_pos_encoding",
        arguments: [Family.hfDINOv2, .hfDINOv2Registers])
    func dinov2(family: Family) throws {
        var options = family.options
        options.imageSize = 42
        let model = try VisionTransformer(
            checkpoint: try Checkpoint(contentsOf: family.checkpointURL, options: options))
        let reference = try ActivationStore(path: family.directory.appendingPathComponent("reference-42.h5").path)
        let worst = try worstBlockError(model, reference)
        #expect(worst <= 1e-5)
        print("\(family.rawValue) at 42 px: blocks \(worst)")
    }

    @Test(
        "A timm dynamic_img_size model fed 40 or 72 px (trained at 56) equals timm's forward: table, blocks, pooled, logits",
        arguments: [40, 72])
    func dynamicImageSize(size: Int) throws {
        // timm resamples pos_embed inside every forward of a dynamic_img_size model; its state dict is the plain
        // one, so the same weights run at `--image-size` give the same activations.
        var options = Checkpoint.Options(heads: 4)
        options.imageSize = size
        let ckpt = try Checkpoint(
            contentsOf: familyFixtures.appendingPathComponent("timm-dynamic/model.safetensors"), options: options)
        let a = ckpt.architecture
        #expect(ckpt.source == .timm && a.imageSize == size && a.gridSize == size / 4)
        #expect(a.prefixTokens == 2 && a.registerTokens == 1 && a.positionIncludesPrefix)
        let reference = try ActivationStore(
            path: familyFixtures.appendingPathComponent("timm-dynamic/reference-\(size).h5").path)
        let tableError = relativeMaxError(
            try #require(ckpt["pos_embed"]), try reference.readFloatDataset("reference/pos_embed"))
        // Ours is summed in Double, PyTorch's interpolate in float32 (≈1e-6 relative for 18×18 antialiased taps).
        #expect(tableError <= 1e-5, "pos_embed \(tableError)")
        let model = try VisionTransformer(checkpoint: ckpt)
        let pixels = try reference.readFloatDataset("inputs/pixels")
        let stored = Set(reference.layers.map(\.name)).subtracting(["head"])
        var errors: [String: Double] = [:]
        try model.forward(pixels, hooks: stored) { name, value in
            errors[name] = relativeMaxError(value, try reference.read(name))
        }
        errors["head"] = relativeMaxError(
            try ClassifierHead(checkpoint: ckpt).logits(model: model, pixels: pixels), try reference.read("head"))
        #expect(Set(errors.keys) == stored.union(["head"]), "every reference layer is checked")
        let worst = try #require(errors.max { $0.value < $1.value })
        #expect(worst.value <= 1e-5, "\(worst.key): \(worst.value)")
        print(
            "timm-dynamic at \(size) px: pos_embed \(tableError), \(errors.count) layers, worst \(worst.key) at \(worst.value)"
        )
    }

    @Test("An image size that is not a multiple of the patch is refused in one line")
    func badSize() throws {
        var options = Family.timmRegisters.options
        options.imageSize = 40
        #expect {
            try Checkpoint(contentsOf: Family.timmRegisters.checkpointURL, options: options)
        } throws: { "\($0)".contains("multiple of the patch size 7") }
    }
}

@Suite("Hugging Face ViTMAEForPreTraining: the MAE loss of cka landscape --loss mae")
struct HubMAELossTests {
    @Test("Its decoder maps onto MAE's names; prediction and loss with HF's mask equal ViTMAEForPreTraining's")
    func loss() throws {
        let ckpt = try Family.hfViTMAEPretraining.load()
        #expect(ckpt.hubDecoderHeads == 2 && ckpt.hubNormPixLoss == false)
        #expect(
            ckpt.originalNames["decoder_blocks.1.attn.qkv.weight"]
                == "decoder.decoder_encoder.layer.1.attention.attention.query.weight"
                + " + decoder.decoder_encoder.layer.1.attention.attention.key.weight"
                + " + decoder.decoder_encoder.layer.1.attention.attention.value.weight")
        #expect(ckpt.unexpectedKeys.isEmpty, "\(ckpt.unexpectedKeys)")
        let mae = try MaskedAutoencoder(checkpoint: ckpt, decoderHeads: ckpt.hubDecoderHeads)
        #expect(mae.decoderDepth == 2 && mae.decoderWidth == 16 && mae.decoderHeads == 2)
        let path = Family.hfViTMAEPretraining.directory.appendingPathComponent("mae-loss.h5").path
        let reference = try ActivationStore(path: path), file = try HDF5File(path: path)
        let pixels = try reference.readFloatDataset("inputs/pixels")
        // HF's own order: ids_shuffle = argsort(noise), the first 4 of 16 patches visible.
        let order = try file.dataset("reference/ids_shuffle").readInt64().map(Int.init)
        let masks = try (0..<3).map { i in
            try MAEMask(idsShuffle: Array(order[(i * 16)..<((i + 1) * 16)]), keepCount: 4)
        }
        let rows = try file.dataset("masks").readUInt8()
        #expect(masks.flatMap(\.mask) == rows, "the masks HF reports")
        let raw = try mae.forward(pixels, masks: masks, normPixLoss: false)
        let predictionError = relativeMaxError(raw.prediction, try reference.readFloatDataset("reference/logits"))
        #expect(predictionError <= 1e-5, "logits \(predictionError)")
        let expected = try file.dataset("reference/loss").readDouble().scalars[0]
        let normExpected = try file.dataset("reference/loss_norm_pix").readDouble().scalars[0]
        let normPix = try mae.forward(pixels, masks: masks, normPixLoss: true).loss
        let lossError = abs(raw.loss - expected) / expected, normError = abs(normPix - normExpected) / normExpected
        #expect(
            lossError <= 1e-5 && normError <= 1e-5,
            "loss \(raw.loss) vs \(expected), norm-pix \(normPix) vs \(normExpected)")
        print("hf-vit-mae-pretraining MAE: logits \(predictionError), loss \(lossError), norm-pix loss \(normError)")
    }

    @Test("ViTMAEModel (no decoder) asked for the MAE loss: one line naming the file and what is missing")
    func noDecoder() throws {
        let ckpt = try Family.hfViTMAE.load()
        #expect(ckpt.decoder.isEmpty)
        #expect {
            try MaskedAutoencoder(checkpoint: ckpt)
        } throws: { e in
            let s = "\(e)"
            return s.contains("hf-vit-mae") && s.contains("ViTMAEForPreTraining") && !s.contains("\n")
        }
    }
}

@Suite("OpenAI CLIP files")
struct OpenAICLIPTests {
    @Test("A TorchScript archive (OpenAI's ViT-B-16.pt format) is refused in one line that says how to convert it")
    func torchScript() throws {
        let url = familyFixtures.appendingPathComponent("openai-torchscript/ViT-tiny.pt")
        #expect {
            try Checkpoint(contentsOf: url)
        } throws: { e in
            let s = "\(e)"
            return s.contains("TorchScript") && s.contains("torch.jit.load('ViT-tiny.pt'")
                && s.contains("ViT-tiny.state_dict.pt") && !s.contains("\n")
        }
    }

    @Test("OpenAI's weights re-saved as a state dict (with input_resolution, context_length, vocab_size) get QuickGELU")
    func openAIStateDict() throws {
        let archive = try TorchArchive(
            contentsOf: Family.openCLIP.directory.appendingPathComponent("open_clip_pytorch_model.bin"))
        var entries = try #require(archive.root.stringKeyedEntries).compactMap { e in
            e.value.tensor.map { SafeTensorsWriter.Entry(name: e.key, stored: $0) }
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cka-openai-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = dir.appendingPathComponent("open_clip.safetensors")
        try SafeTensorsWriter.write(entries, to: plain)
        var options = Checkpoint.Options(heads: 4)
        let gelu = try Checkpoint(contentsOf: plain, options: options)
        #expect(gelu.source == .openCLIP && gelu.architecture.activation == .gelu)
        #expect(gelu.architecture.layerNormEpsilon == 1e-5)
        for k in ["input_resolution", "context_length", "vocab_size"] {
            entries.append(try .init(name: k, dtype: .int64, shape: [], bytes: [UInt8](repeating: 0, count: 8)))
        }
        let openAI = dir.appendingPathComponent("ViT-tiny.state_dict.safetensors")
        try SafeTensorsWriter.write(entries, to: openAI)
        let quick = try Checkpoint(contentsOf: openAI, options: options)
        #expect(quick.architecture.activation == .quickGELU && quick.architecture.family == "open_clip/openai")
        // Its forward pass is the fixture's (QuickGELU, as the config beside the fixture says).
        let reference = try ActivationStore(
            path: Family.openCLIP.directory.appendingPathComponent("reference.h5").path)
        var err = 0.0
        try VisionTransformer(checkpoint: quick).forward(
            try reference.readFloatDataset("inputs/pixels"), hooks: ["head"]
        ) { _, v in err = relativeMaxError(v, try reference.read("head")) }
        #expect(err <= 1e-5)
        options.activation = .gelu  // --activation overrides
        #expect(try Checkpoint(contentsOf: openAI, options: options).architecture.activation == .gelu)
    }
}

@Suite("cka extract on every model family (the library path of the command)")
struct FamilyExtractionTests {
    @Test(
        "Extract from the fixture's images with the family's own preprocessing: pixels and pooled features",
        arguments: Family.allCases)
    func extract(family: Family) throws {
        let ckpt = try family.load()
        let model = try VisionTransformer(checkpoint: ckpt)
        let preprocessing = try ImageFolderInput.defaultPreprocessing(for: ckpt, imageSize: model.imageSize)
        var input = try ImageFolderInput(
            root: family.directory.appendingPathComponent("images").path, preprocessing: preprocessing, batchSize: 2)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cka-family-\(family.rawValue)-\(getpid()).h5")
        defer { try? FileManager.default.removeItem(at: out) }
        var options = ExtractionOptions()
        options.store = [.pooled, .grams, .pixels]
        options.gramBatchSize = 4
        options.layers = ["blocks.*", "norm", "attn_pool", "head"]
        let classifier = ckpt.head["head.bias"] != nil  // not CLIP's projection
        if classifier {
            options.store.insert(.logits)
            options.head = try ClassifierHead(checkpoint: ckpt)
        }
        let summary = try ActivationExtractor.run(
            model: model, checkpoint: ckpt, input: &input, to: out.path, options: options)
        #expect(summary.examples == 3)
        let store = try ActivationStore(path: out.path)
        let reference = try ActivationStore(path: family.directory.appendingPathComponent("reference.h5").path)
        #expect(store.ids == reference.ids)
        // Our decoding and resizing against the official processor's pixels (PIL resampling, float32 scaling).
        let pixelError = relativeMaxError(
            try store.readFloatDataset("inputs/pixels"), try reference.readFloatDataset("inputs/pixels"))
        #expect(pixelError <= 1e-5, "\(family.rawValue): pixels \(pixelError) (\(preprocessing))")
        // Every pooled layer of the store equals the official forward pass on the official pixels.
        var worst = 0.0
        for layer in store.layers where LayerName(layer.name).isPooled {
            guard reference.layers.contains(where: { $0.name == layer.name }) else { continue }
            worst = max(worst, relativeMaxError(try store.read(layer.name), try reference.read(layer.name)))
        }
        #expect(worst <= 1e-5, "\(family.rawValue): pooled features \(worst)")
        if classifier {  // --store logits: HF's logits (DeiT: both heads averaged), timm's
            let logits = try store.readFloatDataset("logits")
            #expect(relativeMaxError(logits, try reference.read("head")) <= 1e-5, "\(family.rawValue) logits")
        }
        let names = Set(store.layers.map(\.name))
        #expect(names.contains("blocks.1:gap_nocls"))
        #expect(names.contains("blocks.1:cls") == ckpt.architecture.classToken)
        #expect(names.contains("attn_pool") == ckpt.architecture.attentionPool)
        print("\(family.rawValue): extract \(preprocessing): pixels \(pixelError), pooled \(worst)")
    }

    @Test(
        "gap_nocls of stored tokens leaves out every prefix token (the store records prefix_tokens)",
        arguments: [Family.hfDINOv2Registers, .hfDeiT, .hfSigLIP, .hfViT])
    func storedPrefix(family: Family) throws {
        let ckpt = try family.load()
        let model = try VisionTransformer(checkpoint: ckpt)
        var input = try ImageFolderInput(
            root: family.directory.appendingPathComponent("images").path,
            preprocessing: try ImageFolderInput.defaultPreprocessing(for: ckpt, imageSize: model.imageSize),
            batchSize: 3)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cka-family-prefix-\(family.rawValue)-\(getpid()).h5")
        defer { try? FileManager.default.removeItem(at: out) }
        var options = ExtractionOptions()
        options.store = [.activations, .pooled]
        options.layers = ["blocks.1"]
        _ = try ActivationExtractor.run(model: model, checkpoint: ckpt, input: &input, to: out.path, options: options)
        let store = try ActivationStore(path: out.path)
        #expect(store.prefixTokens == family.prefixTokens)
        let reduced = try TokenReduction.gapNoCLS.apply(try store.read("blocks.1"), prefixTokens: store.prefixTokens)
        #expect(reduced.scalars == (try store.read("blocks.1:gap_nocls")).scalars)
    }

    @Test("A model without a class token refuses :cls in one line")
    func noClassToken() throws {
        let ckpt = try Family.hfSigLIP.load()
        var options = ExtractionOptions()
        options.layers = ["blocks.*:cls"]
        #expect {
            try ActivationExtractor.selectedHooks(ckpt.architecture, options: options)
        } throws: { e in
            let s = "\(e)"
            return s.contains("no class token") && s.contains("blocks.*:cls") && !s.contains("\n")
        }
    }
}

/// The largest relative error of `blocks.0`, `blocks.1` and `norm` against a reference store's layers of the same
/// names, on its stored input pixels.
private func worstBlockError(_ model: VisionTransformer, _ reference: ActivationStore) throws -> Double {
    var worst = 0.0
    try model.forward(
        try reference.readFloatDataset("inputs/pixels"), hooks: ["blocks.0", "blocks.1", "norm"]
    ) { name, value in worst = max(worst, relativeMaxError(value, try reference.read(name))) }
    return worst
}
