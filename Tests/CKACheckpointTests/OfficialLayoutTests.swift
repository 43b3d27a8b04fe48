import CKACheckpoint
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// Every official layout, from real `torch.save` / `safetensors` files (see Fixtures/expected.json).
@Suite("Official checkpoint layouts")
struct OfficialLayoutTests {
    static let layouts = [
        "dino_backbone.pth", "dino_full.pth", "mocov3.pth.tar", "mae_pretrain_full.pth",
        "mae_finetuned_fp16.pth", "rcmae_pretrain.pth", "dinov2_p14_bf16.pth", "timm.safetensors",
    ]

    func load(_ name: String, _ options: Checkpoint.Options = .init(heads: Fixtures.heads)) throws -> Checkpoint {
        try Checkpoint(contentsOf: Fixtures.url(name), options: options)
    }

    @Test("expected.json is present and complete")
    func expectedJSON() {
        #expect(Fixtures.expected["sentinel"] is String)
        for n in OfficialLayoutTests.layouts + ["values.pth", "dtypes.safetensors"] {
            #expect(!Fixtures.fixture(n).isEmpty, "\(n)")
        }
    }

    @Test("detects the source, infers the architecture and maps every parameter", arguments: layouts)
    func layout(_ name: String) throws {
        let e = Fixtures.fixture(name)
        try #require(!e.isEmpty)
        let ckpt = try load(name)
        #expect(ckpt.source.rawValue == e["source"] as? String)
        #expect(ckpt.stateDictKey == e["key"] as? String)
        let a = try #require(e["arch"] as? [String: Any])
        let arch = ckpt.architecture
        #expect(arch.width == a["width"] as? Int)
        #expect(arch.depth == a["depth"] as? Int)
        #expect(arch.patchSize == a["patch"] as? Int)
        #expect(arch.tokenCount == a["tokens"] as? Int)
        #expect(arch.mlpHiddenWidth == a["mlp"] as? Int)
        #expect(arch.mlpRatio == 4)
        #expect(arch.heads == Fixtures.heads)
        #expect(arch.layerScale == (a["layer_scale"] as? Bool))
        #expect(arch.hasFCNorm == (a["fc_norm"] as? Bool))
        #expect(arch.hasFinalNorm == !(a["fc_norm"] as? Bool ?? false))
        #expect(arch.classCount == a["classes"] as? Int)
        #expect(arch.qkvBias)
        #expect(arch.prefixTokens == 1 && arch.positionIncludesPrefix && arch.gridSize == 2)
        #expect(arch.imageSize == 2 * arch.patchSize)
        let params = try #require(e["params"] as? [String: Any])
        #expect(Set(ckpt.parameterNames) == Set(params.keys), "mapped names")
        #expect(ckpt.parameterNames.count == ckpt.parameters.count)
        for (key, digest) in params { expectDigest(ckpt[key], digest, "\(name) \(key)") }
        #expect(ckpt.unexpectedKeys.isEmpty, "unexpected: \(ckpt.unexpectedKeys)")
        if let head = e["head"] as? [String: Any] {
            #expect(Set(ckpt.head.keys) == Set(head.keys))
            for (key, digest) in head { expectDigest(try ckpt.head[key]?.floatTensor(), digest, "\(name) \(key)") }
        } else {
            #expect(ckpt.head.isEmpty)
        }
        if let dec = e["decoder"] as? [String: Any] {
            #expect(Set(ckpt.decoder.keys) == Set(dec.keys))
            for (key, digest) in dec { expectDigest(try ckpt.decoder[key]?.floatTensor(), digest, "\(name) \(key)") }
        } else {
            #expect(ckpt.decoder.isEmpty)
        }
        // Forward order: embeddings, blocks in order, final norm.
        #expect(ckpt.parameterNames.first == "cls_token")
        #expect(ckpt.parameterNames.last == (arch.hasFCNorm ? "fc_norm.bias" : "norm.bias"))
        // The summary mentions the source and every mapped name; the JSON parses.
        let text = ckpt.summaryText()
        #expect(text.contains("source:       \(ckpt.source.rawValue)"))
        for n in ckpt.parameterNames { #expect(text.contains(n)) }
        let json = try JSONSerialization.jsonObject(with: Data(ckpt.summaryJSON().utf8)) as? [String: Any]
        #expect(json?["source"] as? String == ckpt.source.rawValue)
        #expect((json?["parameters"] as? [Any])?.count == ckpt.parameterNames.count)
        #expect(((json?["architecture"] as? [String: Any])?["depth"] as? Int) == arch.depth)
    }

    @Test("DINO full checkpoint: teacher by default, student on request, head and optimizer ignored, args opaque")
    func dinoFull() throws {
        let ckpt = try load("dino_full.pth")
        #expect(ckpt.originalNames["cls_token"] == "backbone.cls_token")
        #expect(ckpt.ignored.contains { $0.key == "head.last_layer.weight_v" && $0.reason.contains("DINO") })
        #expect(ckpt.ignored.contains { $0.key == "student" })
        #expect(ckpt.extras.map(\.key).sorted() == ["args", "epoch", "optimizer"])
        #expect(ckpt.ignored.contains { $0.key == "dino_loss" })  // {'center': tensor}: other weights
        let args = try #require(ckpt.extras.first { $0.key == "args" }?.value)
        guard case let .object(ns) = args else { Issue.record("args is \(args.typeName)"); return }
        #expect(ns.qualifiedName == "argparse.Namespace")
        #expect(ns.attributes.first { $0.key == "teacher_temp" }.map { "\($0.value)" } == "0.04")
        #expect(ckpt.extras.first { $0.key == "epoch" }?.value.intValue == 3)

        var options = Checkpoint.Options(heads: Fixtures.heads, checkpointKey: "student")
        let student = try Checkpoint(contentsOf: Fixtures.url("dino_full.pth"), options: options)
        #expect(student.originalNames["cls_token"] == "module.backbone.cls_token")
        expectDigest(student["cls_token"], Fixtures.fixture("dino_full.pth")["student_cls_token"], "student cls")
        #expect(student["cls_token"] != ckpt["cls_token"])
        // Shared storages: the student's other tensors are the teacher's.
        #expect(student["blocks.0.attn.qkv.weight"] == ckpt["blocks.0.attn.qkv.weight"])
        options.checkpointKey = "nonexistent"
        let err = expectCheckpointError { try Checkpoint(contentsOf: Fixtures.url("dino_full.pth"), options: options) }
        #expect(err?.description.contains("nonexistent") == true)
    }

    @Test("MoCo-v3: base encoder kept, projector/momentum encoder/predictor ignored, non-contiguous qkv gathered")
    func mocov3() throws {
        let ckpt = try load("mocov3.pth.tar")
        #expect(ckpt.originalNames["blocks.0.attn.qkv.weight"] == "module.base_encoder.blocks.0.attn.qkv.weight")
        let reasons = Set(ckpt.ignored.map(\.reason))
        #expect(reasons.isSuperset(of: ["MoCo-v3 projection head", "MoCo-v3 momentum encoder", "MoCo-v3 predictor"]))
        #expect(ckpt.ignored.contains { $0.key == "module.base_encoder.head.1.num_batches_tracked" })
        #expect(ckpt.head.isEmpty)
        #expect(ckpt.extras.contains { $0.key == "arch" && "\($0.value)" == "'vit_base'" })
        // The raw archive shows the transposed layout of the qkv weight.
        let archive = try TorchArchive(contentsOf: Fixtures.url("mocov3.pth.tar"))
        let qkv = try #require(archive.root["state_dict"]?["module.base_encoder.blocks.0.attn.qkv.weight"]?.tensor)
        #expect(qkv.shape == [24, 8] && qkv.strides == [1, 24] && !qkv.isContiguous)
        // Momentum encoder shares the base encoder's storage.
        let momentum = try #require(
            archive.root["state_dict"]?["module.momentum_encoder.blocks.0.attn.qkv.weight"]?.tensor)
        #expect(momentum.storageID == qkv.storageID)
    }

    @Test("MAE: decoder kept separately; finetuned fp16 file uses fc_norm and has a head")
    func mae() throws {
        let pre = try load("mae_pretrain_full.pth")
        #expect(pre.decoder["mask_token"]?.shape == [1, 1, 4])
        #expect(pre.decoder.keys.contains("decoder_blocks.0.attn.qkv.weight"))
        #expect(pre.decoder.values.allSatisfy { $0.dtype == .float32 })
        let ft = try load("mae_finetuned_fp16.pth")
        #expect(ft.missingKeys == ["norm.weight", "norm.bias"])
        #expect(ft["norm.weight"] == nil && ft["fc_norm.weight"] != nil)
        #expect(ft.head["head.weight"]?.dtype == .float16 && ft.head["head.weight"]?.shape == [10, 8])
        #expect(ft.summaryText().contains("fc_norm"))
    }

    @Test("RC-MAE: teacher by default (no prefix), student with module. stripped")
    func rcmae() throws {
        let ckpt = try load("rcmae_pretrain.pth")
        #expect(ckpt.originalNames["cls_token"] == "cls_token")
        #expect(Set(ckpt.ignored.map(\.key)).isSuperset(of: ["student", "student_without_ddp", "teacher_without_ddp"]))
        let student = try Checkpoint(
            contentsOf: Fixtures.url("rcmae_pretrain.pth"),
            options: .init(source: .rcmae, heads: 2, checkpointKey: "student"))
        #expect(student.originalNames["cls_token"] == "module.cls_token")
        expectDigest(student["cls_token"], Fixtures.fixture("rcmae_pretrain.pth")["student_cls_token"], "student cls")
        #expect(!student.decoder.isEmpty)
    }

    @Test("DINOv2-style: LayerScale, patch 14, bfloat16 storages, mask_token ignored")
    func dinov2() throws {
        let ckpt = try load("dinov2_p14_bf16.pth")
        #expect(ckpt.architecture.layerScale && ckpt.architecture.patchSize == 14)
        #expect(ckpt.architecture.timmName == "vit_w8d2_patch14_dinov2")
        #expect(ckpt.ignored.contains { $0.key == "mask_token" })
        #expect(ckpt.parameterNames.contains("blocks.1.ls2.gamma"))
        // bfloat16 → Float is exact: every value has at most 8 significant bits.
        let g = try #require(ckpt["blocks.0.ls1.gamma"])
        #expect(g.scalars.allSatisfy { $0.bitPattern & 0xffff == 0 })
    }

    @Test("overrides: --source and --heads")
    func overrides() throws {
        let forced = try Checkpoint(
            contentsOf: Fixtures.url("dino_backbone.pth"), options: .init(source: .timm, heads: 4))
        #expect(forced.source == .timm && forced.architecture.heads == 4)
        // A width with no conventional head count needs --heads.
        let err = expectCheckpointError { try Checkpoint(contentsOf: Fixtures.url("dino_backbone.pth")) }
        #expect(err?.description.contains("heads") == true)
        // Heads must divide the width.
        expectCheckpointError {
            try Checkpoint(contentsOf: Fixtures.url("dino_backbone.pth"), options: .init(heads: 3))
        }
        // Forcing a wrapper source on a file without its wrapper key fails clearly.
        let wrong = expectCheckpointError {
            try Checkpoint(contentsOf: Fixtures.url("mocov3.pth.tar"), options: .init(source: .mae, heads: 2))
        }
        #expect(wrong?.description.contains("'model'") == true)
    }

    @Test("refusals: a DINO linear head alone, strict mode, missing tensors, wrong shapes")
    func refusals() throws {
        let linear = expectCheckpointError { try Checkpoint(contentsOf: Fixtures.url("dino_linear.pth")) }
        #expect(linear?.description.contains("linear") == true)

        // Rewrite timm.safetensors without blocks.1.mlp.fc2.weight / with a wrong shape / with an extra key.
        let st = try SafeTensorsFile(contentsOf: Fixtures.url("timm.safetensors"))
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ name: String, _ edit: (inout [SafeTensorsWriter.Entry]) throws -> Void) throws -> URL {
            var entries = st.names.map { SafeTensorsWriter.Entry(name: $0, stored: st[$0]!) }
            try edit(&entries)
            let url = dir.appendingPathComponent(name)
            try SafeTensorsWriter.write(entries, to: url)
            return url
        }
        let missing = try write("missing.safetensors") { $0.removeAll { $0.name == "blocks.1.mlp.fc2.weight" } }
        let m = expectCheckpointError { try Checkpoint(contentsOf: missing, options: .init(heads: 2)) }
        #expect(m == .missingTensors(file: missing.path, source: "timm", names: ["blocks.1.mlp.fc2.weight"]))

        let shape = try write("shape.safetensors") { entries in
            entries.removeAll { $0.name == "blocks.0.norm2.bias" }
            entries.append(try .init(name: "blocks.0.norm2.bias", tensor: Tensor<Float>(shape: [9])))
        }
        let s = expectCheckpointError { try Checkpoint(contentsOf: shape, options: .init(heads: 2)) }
        #expect(s == .shapeMismatch(file: shape.path, name: "blocks.0.norm2.bias", expected: [8], found: [9]))

        let extra = try write("extra.safetensors") {
            $0.append(try .init(name: "extra_token", tensor: Tensor<Float>(shape: [1, 1, 8])))
        }
        let lenient = try Checkpoint(contentsOf: extra, options: .init(heads: 2))
        #expect(lenient.unexpectedKeys == ["extra_token"])  // dist_token is DeiT's, a known key
        var strict = Checkpoint.Options(heads: 2)
        strict.strict = true
        expectCheckpointError { try Checkpoint(contentsOf: extra, options: strict) }
    }

    @Test("values.pth: every storage dtype, views, shared storages and inert objects")
    func values() throws {
        let archive = try TorchArchive(contentsOf: Fixtures.url("values.pth"))
        let expected = Fixtures.fixture("values.pth")
        let root = archive.root
        for (key, digest) in expected {
            let t = try #require(root[key]?.tensor, "\(key)")
            expectDigest(try t.floatTensor(), digest, key)
        }
        #expect(root["f64"]?.tensor?.dtype == .float64 && root["bf16"]?.tensor?.dtype == .bfloat16)
        #expect(root["f64_t"]?.tensor?.storageID == root["f64"]?.tensor?.storageID)
        #expect(root["shared_a"]?.tensor?.storageOffset == 2)
        #expect(root["shared_b"]?.tensor?.storageID == root["shared_a"]?.tensor?.storageID)
        #expect(root["expanded"]?.tensor?.strides == [0, 1])
        #expect(root["scalar"]?.tensor?.shape == [] && root["empty"]?.tensor?.shape == [0, 3])
        #expect(try root["i64"]?.tensor?.int64Values() == [1, -2, 1 << 40])
        #expect(try root["i16"]?.tensor?.int64Values() == [300, -300])
        #expect(try root["u8"]?.tensor?.int64Values() == [0, 255])
        #expect(try root["bool"]?.tensor?.int64Values() == [1, 0, 1])
        #expect(try root["param"]?.tensor?.floatTensor().scalars == [1.5, -2.25])
        expectCheckpointError { try root["f64"]?.tensor?.int64Values() }
        // Inert objects.
        if case let .object(o)? = root["args"] {
            #expect(o.qualifiedName == "argparse.Namespace" && o.kind == .newObject)
        } else {
            Issue.record("args: \(String(describing: root["args"]))")
        }
        if case let .object(o)? = root["np_scalar"] {
            #expect(o.name == "scalar" && o.module.hasPrefix("numpy"))
            // Its payload bytes (_codecs.encode(…, 'latin1')) decode to the float64 0.125.
            if case let .bytes(b)? = o.args.last {
                #expect(b == [0, 0, 0, 0, 0, 0, 0xc0, 0x3f])
            } else {
                Issue.record("np_scalar payload: \(o.args)")
            }
        } else {
            Issue.record("np_scalar: \(String(describing: root["np_scalar"]))")
        }
        if case let .object(o)? = root["device"] {
            #expect(o.qualifiedName == "torch.device")
        } else {
            Issue.record("device")
        }
        if case let .bigInt(b)? = root["big"] { #expect(b.count == 13 && b.first == 7) } else { Issue.record("big") }
        if case let .bigInt(b)? = root["neg"] { #expect(b.last == 0xc0) } else { Issue.record("neg") }
        let nested = try #require(root["nested"])
        #expect(nested["a"]?.description == "[1, 2.5, None, True, 'x']")
        if case let .tuple(t)? = nested["b"], case let .bytes(b) = t[0], case let .set(s) = t[1] {
            #expect(b == [0, 1] && s.count == 2)
        } else {
            Issue.record("nested b: \(String(describing: nested["b"]))")
        }
        // Expanded tensor gathers repeated values.
        #expect(try root["expanded"]?.tensor?.floatTensor().scalars == [3, 4, 3, 4, 3, 4])
        // Raw bytes of a non-contiguous view come out row-major.
        let ft = try #require(root["f64_t"]?.tensor)
        let raw = ft.contiguousBytes()
        let doubles = stride(from: 0, to: raw.count, by: 8).map { i in
            Double(bitPattern: (0..<8).reduce(UInt64(0)) { $0 | UInt64(raw[i + $1]) << (8 * UInt64($1)) })
        }
        #expect(doubles == [-0.5, 0, 0.5, -0.375, 0.125, 0.625, -0.25, 0.25, 0.75, -0.125, 0.375, 0.875])
    }

    @Test("dtypes.safetensors: F16, BF16, F64, I64, U8, BOOL, 0-d and empty tensors")
    func safetensorDtypes() throws {
        let st = try SafeTensorsFile(contentsOf: Fixtures.url("dtypes.safetensors"))
        for (key, digest) in Fixtures.fixture("dtypes.safetensors") {
            expectDigest(try st[key]?.floatTensor(), digest, key)
        }
        #expect(try st["f16"]?.floatTensor().scalars.prefix(3) == [0.5, -1, 65504])
        #expect(try st["i64"]?.int64Values() == [1, -2, 1 << 40])
        #expect(try st["f64"]?.floatTensor().scalars == [0.1, -1e30])
        #expect(st["scalar"]?.shape == [] && st["empty"]?.elementCount == 0)
    }

    @Test("legacy (pre-1.6) files get a re-save explanation")
    func legacy() throws {
        let err = expectCheckpointError { try Checkpoint(contentsOf: Fixtures.url("legacy.pth")) }
        #expect(err == .legacyTorchFormat(file: Fixtures.url("legacy.pth").path, kind: "raw pickle"))
        #expect(err?.description.contains("torch.save(torch.load(f), g)") == true)
        // A tar header.
        var tar = [UInt8](repeating: 0, count: 1024)
        tar.replaceSubrange(257..<262, with: Array("ustar".utf8))
        let tarErr = expectCheckpointError { try Checkpoint(file: MappedFile(bytes: tar, name: "old.tar")) }
        #expect(tarErr == .legacyTorchFormat(file: "old.tar", kind: "tar archive"))
    }

    @Test("SHA-256 of the file when asked")
    func sha() throws {
        var options = Checkpoint.Options(heads: 2)
        options.computeSHA256 = true
        let ckpt = try Checkpoint(contentsOf: Fixtures.url("timm.safetensors"), options: options)
        let sums = Fixtures.expected["sha256"] as? [String: String]
        #expect(ckpt.sha256 == sums?["timm.safetensors"])
        #expect(try SHA256.hexDigest(ofFile: Fixtures.url("mocov3.pth.tar")) == sums?["mocov3.pth.tar"])
    }
}
