import Foundation

extension JSONValue {
    subscript(key: String) -> JSONValue? {
        if case let .object(members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }
    var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
    var intValue: Int? {
        switch self {
        case let .int(i): return i
        case let .double(d) where d == d.rounded() && abs(d) < 1e15: return Int(d)
        default: return nil
        }
    }
    var doubleValue: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }
    var boolValue: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    var arrayValue: [JSONValue]? { if case let .array(a) = self { return a } else { return nil } }

    /// Parses a small JSON file (configs, shard indexes).
    static func read(_ url: URL) throws -> JSONValue {
        let path = url.path
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw CheckpointError.unreadable(file: path, reason: "cannot read (\(error.localizedDescription))")
        }
        guard data.count <= 64 << 20 else {
            throw CheckpointError.limitExceeded(file: path, offset: 0, what: "JSON bytes", limit: 64 << 20)
        }
        return try data.withUnsafeBytes { raw in
            var parser = JSONParser(bytes: raw) { offset, expected, found in
                CheckpointError.unrecognizedLayout(
                    file: path, expected: "JSON (\(expected) at byte \(offset))", found: found)
            }
            return try parser.parseDocument()
        }
    }
}

/// A model published in a hub layout: a Hugging Face model directory (`config.json` beside `model.safetensors`,
/// sharded safetensors with `model.safetensors.index.json`, or `pytorch_model.bin`) or an open_clip directory
/// (`open_clip_config.json` beside `open_clip_pytorch_model.bin` / `open_clip_model.safetensors`).
package struct HubModel: Sendable {
    /// The path as given (a directory or a weights file).
    package var name: String
    /// The weights files, in index order.
    package var weights: [URL]
    package var source: CheckpointSource
    /// `config.json` (Hugging Face) or `open_clip_config.json`.
    var config: JSONValue?
    package var configFile: String?
    /// The vision tower's settings (nil for open_clip).
    package var modelType: String?

    /// The `architectures` of config.json whose weights load (the backbone, and the heads the toolkit knows).
    static let supportedArchitectures = [
        "ViTModel", "ViTForImageClassification", "ViTMAEModel", "ViTMAEForPreTraining", "DeiTModel",
        "DeiTForImageClassification", "DeiTForImageClassificationWithTeacher", "Dinov2Model",
        "Dinov2WithRegistersModel",
        "CLIPModel", "CLIPVisionModel", "CLIPVisionModelWithProjection", "SiglipModel", "SiglipVisionModel",
    ]

    /// The model types whose vision towers load.
    static let supportedModelTypes = [
        "vit", "vit_mae", "deit", "dinov2", "dinov2_with_registers", "clip", "clip_vision_model", "siglip",
        "siglip_vision_model",
    ]

    /// The hub layout at `url`, or nil when `url` is a plain checkpoint file without a Hugging Face `config.json`.
    /// - Throws: `CheckpointError` naming the missing `config.json`, weights or shard, or an unsupported `model_type`.
    package static func locate(_ url: URL, forced: CheckpointSource?) throws -> HubModel? {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        let path = url.path
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }  // the reader says so
        let folder = isDirectory.boolValue ? url : url.deletingLastPathComponent()
        func file(_ n: String) -> URL? {
            let u = folder.appendingPathComponent(n)
            return fm.fileExists(atPath: u.path) ? u : nil
        }
        let config = file("config.json"), openCLIPConfig = file("open_clip_config.json")
        if isDirectory.boolValue {
            if config == nil, forced != .huggingFace,
                let w = file("open_clip_pytorch_model.bin") ?? file("open_clip_model.safetensors")
            {
                return HubModel(
                    name: path, weights: [w], source: .openCLIP, config: try openCLIPConfig.map(JSONValue.read),
                    configFile: openCLIPConfig?.path, modelType: nil)
            }
            guard let config else {
                throw CheckpointError.unreadable(
                    file: folder.appendingPathComponent("config.json").path,
                    reason:
                        "missing: a Hugging Face model directory holds config.json (which model the weights are) beside its weights"
                )
            }
            let json = try JSONValue.read(config)
            if let timm = try timmHub(name: path, config: config, json: json, weights: [], forced: forced) {
                guard let w = file("model.safetensors") ?? file("pytorch_model.bin") else {
                    throw CheckpointError.unreadable(
                        file: path,
                        reason: "no weights: a timm hub directory holds model.safetensors or pytorch_model.bin")
                }
                return HubModel(
                    name: timm.name, weights: [w], source: .timm, config: json, configFile: config.path, modelType: nil)
            }
            let weights: [URL]
            if let w = file("model.safetensors") {
                weights = [w]
            } else if let index = file("model.safetensors.index.json") ?? file("pytorch_model.bin.index.json") {
                weights = try shards(index)
            } else if let w = file("pytorch_model.bin") {
                weights = [w]
            } else {
                throw CheckpointError.unreadable(
                    file: path,
                    reason:
                        "no weights: expected model.safetensors, model.safetensors.index.json (shards) or pytorch_model.bin"
                )
            }
            return try huggingFace(name: path, weights: weights, config: config, json: json)
        }
        if path.hasSuffix(".index.json") {
            guard let config else {
                throw CheckpointError.unreadable(
                    file: folder.appendingPathComponent("config.json").path,
                    reason: "missing: the shards of \(url.lastPathComponent) need the model's config.json beside them")
            }
            return try huggingFace(name: path, weights: shards(url), config: config)
        }
        if let config, forced == nil || forced == .huggingFace || forced == .timm {
            let json = try JSONValue.read(config)
            if let timm = try timmHub(name: path, config: config, json: json, weights: [url], forced: forced) {
                return timm
            }
            if json["model_type"] != nil || forced == .huggingFace {
                return try huggingFace(name: path, weights: [url], config: config, json: json)
            }
        }
        if forced == .huggingFace {
            throw CheckpointError.unreadable(
                file: folder.appendingPathComponent("config.json").path,
                reason: "missing: a Hugging Face checkpoint needs its config.json beside the weights")
        }
        if let openCLIPConfig, forced == nil || forced == .openCLIP {
            return HubModel(
                name: path, weights: [url], source: .openCLIP, config: try JSONValue.read(openCLIPConfig),
                configFile: openCLIPConfig.path, modelType: nil)
        }
        return nil
    }

    /// A timm hub layout (`push_to_hf_hub` / `save_for_hf`: config.json with `architecture`, `model_args` and
    /// `pretrained_cfg`, no `model_type`), or nil.
    static func timmHub(name: String, config: URL, json: JSONValue, weights: [URL], forced: CheckpointSource?) throws
        -> HubModel?
    {
        guard json["model_type"] == nil, json["architecture"]?.stringValue != nil,
            forced == nil || forced == .timm
        else { return nil }
        return HubModel(
            name: name, weights: weights, source: .timm, config: json, configFile: config.path, modelType: nil)
    }

    /// timm's SigLIP 2 architectures, whose MLPs use the tanh GELU (`act_layer='gelu_tanh'` in the architecture's
    /// defaults, so absent from a saved `model_args`; timm 1.0.31 `vision_transformer.py`).
    static let timmGELUTanhArchitectures: Set<String> = [
        "vit_base_patch32_siglip_256", "vit_large_patch16_siglip_512", "vit_so400m_patch16_siglip_256",
        "vit_so400m_patch16_siglip_384", "vit_so400m_patch16_siglip_512", "vit_giantopt_patch16_siglip_256",
        "vit_giantopt_patch16_siglip_384", "vit_base_patch32_siglip_gap_256", "vit_large_patch16_siglip_gap_512",
        "vit_so400m_patch16_siglip_gap_256", "vit_so400m_patch16_siglip_gap_384", "vit_so400m_patch16_siglip_gap_512",
        "vit_giantopt_patch16_siglip_gap_256", "vit_giantopt_patch16_siglip_gap_384",
    ]

    static func huggingFace(name: String, weights: [URL], config: URL, json: JSONValue? = nil) throws -> HubModel {
        let c = try json ?? JSONValue.read(config)
        let type = c["model_type"]?.stringValue
        let architectures = c["architectures"]?.arrayValue?.compactMap(\.stringValue) ?? []
        guard let type, supportedModelTypes.contains(type) else {
            throw CheckpointError.unrecognizedLayout(
                file: config.path,
                expected: "a model_type among " + supportedModelTypes.joined(separator: ", "),
                found: (type.map { "model_type '\($0)'" } ?? "no model_type")
                    + (architectures.isEmpty ? "" : " (\(architectures.joined(separator: ", ")))"))
        }
        if !architectures.isEmpty, !architectures.contains(where: supportedArchitectures.contains) {
            throw CheckpointError.unrecognizedLayout(
                file: config.path, expected: "an architecture among " + supportedArchitectures.joined(separator: ", "),
                found: "architectures \(architectures.joined(separator: ", ")) (model_type '\(type)')")
        }
        return HubModel(
            name: name, weights: weights, source: .huggingFace, config: c, configFile: config.path, modelType: type)
    }

    /// The shard files an index names (`weight_map` values, in first-use order), each checked to exist.
    static func shards(_ index: URL) throws -> [URL] {
        let json = try JSONValue.read(index)
        guard case let .object(map)? = json["weight_map"] else {
            throw CheckpointError.unrecognizedLayout(
                file: index.path, expected: "a 'weight_map' object (a sharded checkpoint index)", found: "none")
        }
        var seen = Set<String>(), files: [URL] = []
        for (_, v) in map {
            guard let f = v.stringValue, !f.contains("/"), !f.hasPrefix(".") else {
                throw CheckpointError.unrecognizedLayout(
                    file: index.path, expected: "shard file names in the same folder", found: "\(v)")
            }
            if seen.insert(f).inserted {
                let u = index.deletingLastPathComponent().appendingPathComponent(f)
                guard FileManager.default.fileExists(atPath: u.path) else {
                    throw CheckpointError.unreadable(
                        file: u.path, reason: "missing: a shard named by \(index.lastPathComponent)")
                }
                files.append(u)
            }
        }
        guard !files.isEmpty else {
            throw CheckpointError.unrecognizedLayout(file: index.path, expected: "at least one shard", found: "none")
        }
        return files
    }

    /// The vision tower's part of the config (`vision_config` of CLIP / SigLIP, else the config itself).
    var visionConfig: JSONValue? {
        guard let c = config else { return nil }
        if ["clip", "siglip"].contains(modelType ?? ""), let v = c["vision_config"] { return v }
        return c
    }

    /// Heads, LayerNorm epsilon and MLP activation from the config (transformers' defaults when absent).
    func settings() throws -> KeyMapper.HubSettings {
        var s = KeyMapper.HubSettings()
        switch source {
        case .timm:
            // timm's LayerNorm eps (1e-6) stays; heads and act_layer from model_args, else the architecture's.
            let args = config?["model_args"]
            s.heads = args?["num_heads"]?.intValue
            let architecture = config?["architecture"]?.stringValue ?? ""
            switch args?["act_layer"]?.stringValue {
            case "gelu"?: s.activation = .gelu
            case "gelu_tanh"?: s.activation = .geluTanh
            case "quick_gelu"?: s.activation = .quickGELU
            case let other?:
                throw CheckpointError.unrecognizedLayout(
                    file: configFile ?? name, expected: "model_args.act_layer gelu, gelu_tanh or quick_gelu",
                    found: "act_layer '\(other)'")
            case nil: s.activation = Self.timmGELUTanhArchitectures.contains(architecture) ? .geluTanh : nil
            }
        case .openCLIP:
            // open_clip's LayerNorm is nn.LayerNorm (eps 1e-5); QuickGELU when the model config says so (OpenAI).
            s.epsilon = 1e-5
            let cfg = config?["model_cfg"] ?? config
            s.activation = cfg?["quick_gelu"]?.boolValue == true ? .quickGELU : .gelu
            if let w = cfg?["vision_cfg"]?["width"]?.intValue {
                let hw = cfg?["vision_cfg"]?["head_width"]?.intValue ?? 64
                if hw > 0, w % hw == 0 { s.heads = w / hw }
            }
        default:
            let v = visionConfig
            let type = modelType ?? ""
            s.heads =
                v?["num_attention_heads"]?.intValue
                ?? (["clip", "clip_vision_model"].contains(type) ? 12 : nil)
            let defaultEpsilon: Double =
                ["vit", "vit_mae", "deit"].contains(type)
                ? 1e-12 : ["clip", "clip_vision_model"].contains(type) ? 1e-5 : 1e-6
            s.epsilon = v?["layer_norm_eps"]?.doubleValue ?? defaultEpsilon
            let defaultAct =
                ["clip", "clip_vision_model"].contains(type)
                ? "quick_gelu" : ["siglip", "siglip_vision_model"].contains(type) ? "gelu_pytorch_tanh" : "gelu"
            let act = v?["hidden_act"]?.stringValue ?? defaultAct
            switch act {
            case "gelu": s.activation = .gelu
            case "quick_gelu": s.activation = .quickGELU
            case "gelu_pytorch_tanh", "gelu_new", "gelu_fast": s.activation = .geluTanh
            default:
                throw CheckpointError.unrecognizedLayout(
                    file: configFile ?? name, expected: "hidden_act gelu, gelu_pytorch_tanh or quick_gelu",
                    found: "hidden_act '\(act)'")
            }
            if v?["use_swiglu_ffn"]?.boolValue == true {
                throw CheckpointError.unrecognizedLayout(
                    file: configFile ?? name, expected: "an MLP with fc1/fc2", found: "use_swiglu_ffn = true")
            }
        }
        return s
    }

    /// `hf/<model_type>`, `open_clip` or `timm/<architecture>`.
    var family: String {
        switch source {
        case .openCLIP: "open_clip"
        case .timm: "timm/\(config?["architecture"]?.stringValue ?? "?")"
        default: "hf/\(modelType ?? "?")"
        }
    }
}

/// The image preprocessing a hub model publishes: Hugging Face `preprocessor_config.json` (the image processor's
/// `size`, `crop_size`, `resample`, `image_mean`, `image_std`) or open_clip's `preprocess_cfg`.
public struct HubPreprocessing: Sendable, Equatable {
    /// Resize the shorter side to this length, keeping the aspect ratio (`size.shortest_edge`).
    public var shortestEdge: Int?
    /// Resize to this square, ignoring the aspect ratio (`size = {height, width}`).
    public var square: Int?
    /// PIL filter code (`resample`): 0 nearest, 2 bilinear, 3 bicubic.
    public var resample: Int
    /// Centre crop side (`crop_size` with `do_center_crop`), nil for none.
    public var crop: Int?
    public var mean: [Double]
    public var std: [Double]
    /// The file it was read from.
    public var file: String
}

extension HubModel {
    /// The published preprocessing, if the directory has one.
    /// - Throws: `CheckpointError` for an unreadable file or a non-square `size` / `crop_size`.
    func preprocessing() throws -> HubPreprocessing? {
        let folder =
            weights.first.map { $0.deletingLastPathComponent() } ?? URL(fileURLWithPath: name)
        if source == .openCLIP {
            guard let cfg = config?["preprocess_cfg"] else { return nil }
            let mean = cfg["mean"]?.arrayValue?.compactMap(\.doubleValue) ?? [0.48145466, 0.4578275, 0.40821073]
            let std = cfg["std"]?.arrayValue?.compactMap(\.doubleValue) ?? [0.26862954, 0.26130258, 0.27577711]
            let size = config?["model_cfg"]?["vision_cfg"]?["image_size"]?.intValue ?? 224
            let squash = cfg["resize_mode"]?.stringValue == "squash"
            return HubPreprocessing(
                shortestEdge: squash ? nil : size, square: squash ? size : nil,
                resample: cfg["interpolation"]?.stringValue == "bilinear" ? 2 : 3, crop: size, mean: mean, std: std,
                file: configFile ?? name)
        }
        if source == .timm { return try timmPreprocessing() }
        let url = folder.appendingPathComponent("preprocessor_config.json")
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let c = try JSONValue.read(url)
        func bad(_ what: String) -> CheckpointError {
            .unrecognizedLayout(
                file: url.path, expected: "a square \(what) (the toolkit crops squares)", found: "\(c[what] ?? .null)")
        }
        var p = HubPreprocessing(
            shortestEdge: nil, square: nil, resample: c["resample"]?.intValue ?? 2, crop: nil,
            mean: c["image_mean"]?.arrayValue?.compactMap(\.doubleValue) ?? [0.5, 0.5, 0.5],
            std: c["image_std"]?.arrayValue?.compactMap(\.doubleValue) ?? [0.5, 0.5, 0.5], file: url.path)
        if c["do_resize"]?.boolValue != false, let size = c["size"] {
            if let s = size["shortest_edge"]?.intValue {
                p.shortestEdge = s
            } else if let h = size["height"]?.intValue, let w = size["width"]?.intValue {
                guard h == w else { throw bad("size") }
                p.square = h
            } else if let s = size.intValue {
                p.square = s
            }
        }
        if c["do_center_crop"]?.boolValue == true, let crop = c["crop_size"] {
            if let h = crop["height"]?.intValue, let w = crop["width"]?.intValue {
                guard h == w else { throw bad("crop_size") }
                p.crop = h
            } else if let s = crop.intValue {
                p.crop = s
            }
        }
        if c["do_normalize"]?.boolValue == false { p.mean = [0, 0, 0]; p.std = [1, 1, 1] }
        return p
    }
}

extension Checkpoint {
    /// The preprocessing published beside a hub model (`preprocessor_config.json`, open_clip's `preprocess_cfg`).
    public func hubPreprocessing() throws -> HubPreprocessing? { try hub?.preprocessing() }

    /// The Hugging Face `model_type` of a hub model (`vit`, `clip`, `siglip_vision_model`, …).
    public var modelType: String? { hub?.modelType }
}

extension Checkpoint {
    /// The MAE decoder's attention heads a Hugging Face ViTMAE `config.json` states (`decoder_num_attention_heads`,
    /// transformers' default 16); nil for other layouts.
    public var hubDecoderHeads: Int? {
        guard let hub, hub.modelType == "vit_mae" else { return nil }
        return hub.config?["decoder_num_attention_heads"]?.intValue ?? 16
    }

    /// Whether a Hugging Face ViTMAE `config.json` normalises each target patch in its loss (`norm_pix_loss`,
    /// transformers' default false); nil for other layouts.
    public var hubNormPixLoss: Bool? {
        guard let hub, hub.modelType == "vit_mae" else { return nil }
        return hub.config?["norm_pix_loss"]?.boolValue ?? false
    }
}

extension HubModel {
    /// timm's eval transform from a timm hub config's `pretrained_cfg` (`input_size`, `crop_pct`, `crop_mode`,
    /// `interpolation`, `mean`, `std`): resize to ⌊size / crop_pct⌋ (the shorter side, or both sides for `squash`),
    /// then the centre crop.
    func timmPreprocessing() throws -> HubPreprocessing? {
        guard let cfg = config?["pretrained_cfg"], let input = cfg["input_size"]?.arrayValue?.compactMap(\.intValue),
            input.count == 3
        else { return nil }
        let file = configFile ?? name
        guard input[1] == input[2] else {
            throw CheckpointError.unrecognizedLayout(
                file: file, expected: "a square pretrained_cfg.input_size (the toolkit crops squares)",
                found: "\(input)")
        }
        let mode = cfg["crop_mode"]?.stringValue ?? "center"
        guard mode == "center" || mode == "squash" else {
            throw CheckpointError.unrecognizedLayout(
                file: file, expected: "pretrained_cfg.crop_mode center or squash", found: "crop_mode '\(mode)'")
        }
        let filters = ["nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1, "box": 4, "hamming": 5]
        let interpolation = cfg["interpolation"]?.stringValue ?? "bilinear"
        guard let resample = filters[interpolation] else {
            throw CheckpointError.unrecognizedLayout(
                file: file, expected: "pretrained_cfg.interpolation bilinear or bicubic",
                found: "interpolation '\(interpolation)'")
        }
        let size = input[1], cropPct = cfg["crop_pct"]?.doubleValue ?? 0.875  // timm's DEFAULT_CROP_PCT
        let scale = Int((Double(size) / cropPct).rounded(.down))
        return HubPreprocessing(
            shortestEdge: mode == "center" ? scale : nil, square: mode == "squash" ? scale : nil, resample: resample,
            crop: size, mean: cfg["mean"]?.arrayValue?.compactMap(\.doubleValue) ?? [0.485, 0.456, 0.406],
            std: cfg["std"]?.arrayValue?.compactMap(\.doubleValue) ?? [0.229, 0.224, 0.225], file: file)
    }
}
