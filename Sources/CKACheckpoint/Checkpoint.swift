import CKATensor
import Foundation

/// The container format of a checkpoint file.
public enum CheckpointFormat: String, Sendable, Codable {
    case safetensors
    /// `torch.save` zip archive (torch ≥ 1.6).
    case torchZip = "torch-zip"

    /// Detects the format from the first bytes (the extension only breaks ties for error messages).
    /// - Throws: `legacyTorchFormat` for pre-1.6 files, `unrecognizedFormat` otherwise.
    package static func detect(_ file: MappedFile) throws -> CheckpointFormat {
        let name = file.name
        return try file.withUnsafeBytes { raw in
            let n = raw.count
            if n >= 4, raw[0] == 0x50, raw[1] == 0x4b, (raw[2] == 3 && raw[3] == 4) || (raw[2] == 5 && raw[3] == 6) {
                return .torchZip
            }
            if n >= 9, raw[8] == UInt8(ascii: "{") { return .safetensors }
            if n >= 2, raw[0] == 0x80, (1...5).contains(raw[1]) {
                throw CheckpointError.legacyTorchFormat(file: name, kind: "raw pickle")
            }
            if n >= 262, Array(raw[257..<262]) == Array("ustar".utf8) {
                throw CheckpointError.legacyTorchFormat(file: name, kind: "tar archive")
            }
            if name.hasSuffix(".safetensors") { return .safetensors }   // let the reader say what is wrong
            let head = raw.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw CheckpointError.unrecognizedFormat(file: name, found: n == 0 ? "an empty file" : "first bytes \(head)")
        }
    }
}

/// A Vision Transformer checkpoint mapped to timm's canonical parameter names.
///
/// ```swift
/// let ckpt = try Checkpoint(contentsOf: URL(fileURLWithPath: "dino_vitbase16_pretrain.pth"))
/// ckpt.source                      // .dino
/// ckpt.architecture.depth          // 12
/// let qkv = ckpt["blocks.0.attn.qkv.weight"]!   // Tensor<Float> [2304, 768]
/// ```
public struct Checkpoint: Sendable {
    /// Loading options.
    public struct Options: Sendable {
        /// Force a source instead of detecting it (`--source`).
        public var source: CheckpointSource?
        /// Force the head count instead of deriving it from the width (`--heads`).
        public var heads: Int?
        /// Which wrapper entry holds the weights (e.g. `student` instead of `teacher`); nil = the source's default.
        public var checkpointKey: String?
        /// Refuse checkpoints with unexpected keys (as `load_state_dict(strict=True)` would).
        public var strict = false
        /// Compute the SHA-256 of the file (one extra pass over its bytes).
        public var computeSHA256 = false
        /// PyTorch reader options (unpickler limits, CRC checks).
        public var torch = TorchArchive.Options()
        public init(source: CheckpointSource? = nil, heads: Int? = nil, checkpointKey: String? = nil) {
            self.source = source
            self.heads = heads
            self.checkpointKey = checkpointKey
        }
    }

    /// A key of the file that was not mapped to a backbone parameter, and why.
    public struct IgnoredKey: Sendable, Equatable {
        public var key: String
        public var reason: String
    }

    /// The file path as given.
    public let file: String
    public let format: CheckpointFormat
    public let source: CheckpointSource
    /// The wrapper entry the weights came from (`teacher`, `state_dict`, `model`, …), nil for a bare dict.
    public let stateDictKey: String?
    public let architecture: ViTArchitecture
    /// Backbone parameters under timm names, converted to float32.
    public let parameters: [String: Tensor<Float>]
    /// `parameters`' names in forward order (embeddings, blocks, final norm).
    public let parameterNames: [String]
    /// The file's key for each canonical name.
    public let originalNames: [String: String]
    /// Classifier head (`head.weight`, `head.bias`), if present.
    public let head: [String: StoredTensor]
    /// MAE / RC-MAE decoder tensors under their own names (`decoder_embed.weight`, `mask_token`, …).
    public let decoder: [String: StoredTensor]
    /// Keys deliberately left out (projection heads, momentum encoder, student, …).
    public let ignored: [IgnoredKey]
    /// Keys of the chosen state dict that match nothing known (as `load_state_dict` reports them).
    public let unexpectedKeys: [String]
    /// Standard timm keys that are absent but not needed (e.g. `norm.*` in MAE-finetuned files, which use `fc_norm`).
    public let missingKeys: [String]
    /// Non-weight entries of the file's top-level dict (`epoch`, `args`, `optimizer`, …), inert.
    public let extras: [(key: String, value: PickleValue)]
    /// safetensors `__metadata__`.
    public let metadata: [String: String]
    /// Every tensor in the file, and the bytes of their distinct storages.
    public let fileTensorCount: Int
    public let fileTensorBytes: Int
    /// SHA-256 of the file (lowercase hex) when `Options.computeSHA256` was set.
    public let sha256: String?

    /// A backbone parameter by timm name.
    public subscript(name: String) -> Tensor<Float>? { parameters[name] }

    /// Reads, maps and validates the checkpoint at `url`.
    public init(contentsOf url: URL, options: Options = Options()) throws {
        try self.init(file: MappedFile(url: url), options: options)
    }

    /// Reads, maps and validates a checkpoint from mapped (or in-memory) bytes.
    package init(file: MappedFile, options: Options = Options()) throws {
        let name = file.name
        let format = try CheckpointFormat.detect(file)
        var root: PickleValue
        var metadata: [String: String] = [:]
        var allTensors: [StoredTensor] = []
        switch format {
        case .safetensors:
            let st = try SafeTensorsFile(file: file)
            metadata = st.metadata
            allTensors = st.names.compactMap { st.tensors[$0] }
            root = .dict(st.names.compactMap { n in st.tensors[n].map { PickleDictEntry(key: .string(n), value: .tensor($0)) } })
        case .torchZip:
            let archive = try TorchArchive(file: file, options: options.torch)
            root = archive.root
            Checkpoint.collectTensors(root, into: &allTensors)
        }
        var bytesByStorage: [String: Int] = [:]
        for t in allTensors { bytesByStorage[t.storageID] = t.storageByteCount }

        let extraction = try Checkpoint.extract(root: root, format: format, options: options, fileName: name)
        var mapping = try KeyMapper.map(extraction.stateDict, source: extraction.source, fileName: name)
        if mapping.canonical.isEmpty {
            let keys = extraction.stateDict.prefix(8).map(\.key).joined(separator: ", ")
            throw CheckpointError.unrecognizedLayout(
                file: name, expected: "a Vision Transformer state dict (cls_token, pos_embed, patch_embed.proj.*, blocks.N.*)",
                found: extraction.stateDict.isEmpty ? "no tensors" : "keys \(keys)\(extraction.stateDict.count > 8 ? ", …" : "")")
        }
        mapping.ignored.insert(contentsOf: extraction.ignored, at: 0)
        if options.strict && !mapping.unexpected.isEmpty {
            throw CheckpointError.unrecognizedLayout(
                file: name, expected: "only known keys (strict)",
                found: "unexpected keys: " + mapping.unexpected.prefix(12).joined(separator: ", "))
        }
        let (arch, order, missing) = try KeyMapper.inferArchitecture(mapping.canonical, head: mapping.head,
                                                                     heads: options.heads, source: extraction.source,
                                                                     fileName: name)
        var parameters: [String: Tensor<Float>] = [:]
        parameters.reserveCapacity(order.count)
        for key in order {
            guard let t = mapping.canonical[key] else { continue }
            parameters[key] = try t.floatTensor()
            t.releaseMappedPages()
        }
        self.file = name
        self.format = format
        self.source = extraction.source
        self.stateDictKey = extraction.key
        self.architecture = arch
        self.parameters = parameters
        self.parameterNames = order
        self.originalNames = mapping.originalNames
        self.head = mapping.head
        self.decoder = mapping.decoder
        self.ignored = mapping.ignored
        self.unexpectedKeys = mapping.unexpected
        self.missingKeys = missing
        self.extras = extraction.extras
        self.metadata = metadata
        self.fileTensorCount = allTensors.count
        self.fileTensorBytes = bytesByStorage.values.reduce(0, +)
        self.sha256 = options.computeSHA256 ? file.withUnsafeBytes { SHA256.hex(SHA256.hash($0)) } : nil
    }

    /// Appends every tensor reachable from `v` (bounded: values were already bounded by the unpickler).
    static func collectTensors(_ v: PickleValue, into out: inout [StoredTensor]) {
        switch v {
        case let .tensor(t): out.append(t)
        case let .tuple(xs), let .list(xs), let .set(xs): for x in xs { collectTensors(x, into: &out) }
        case let .dict(es): for e in es { collectTensors(e.value, into: &out) }
        case let .object(o):
            for x in o.args { collectTensors(x, into: &out) }
            for e in o.kwargs { collectTensors(e.value, into: &out) }
            if let s = o.state { collectTensors(s, into: &out) }
            for x in o.listItems { collectTensors(x, into: &out) }
            for e in o.dictItems { collectTensors(e.value, into: &out) }
        default: break
        }
    }

    // MARK: - Source detection and state-dict extraction

    struct Extraction {
        var source: CheckpointSource
        var key: String?
        var stateDict: [(key: String, value: PickleValue)]
        var extras: [(key: String, value: PickleValue)]
        var ignored: [IgnoredKey]
    }

    /// True if most values are tensors (a state dict rather than a wrapper).
    static func isStateDict(_ entries: [(key: String, value: PickleValue)]) -> Bool {
        let tensors = entries.filter { $0.value.tensor != nil }.count
        return tensors > 0 && tensors * 2 >= entries.count
    }

    static func keys(of v: PickleValue?) -> [String] { v?.stringKeyedEntries?.map(\.key) ?? [] }

    /// Picks the source (detected or forced) and the state dict inside the file's top-level object.
    static func extract(root: PickleValue, format: CheckpointFormat, options: Options, fileName: String) throws -> Extraction {
        guard let top = root.stringKeyedEntries else {
            throw CheckpointError.unrecognizedLayout(file: fileName, expected: "a dict at the top of the checkpoint",
                                                     found: root.typeName)
        }
        let topKeys = Set(top.map(\.key))
        let bare = isStateDict(top)
        func has(_ k: String) -> Bool { topKeys.contains(k) && root[k]?.stringKeyedEntries != nil }
        func hasLayerScale(_ entries: [(key: String, value: PickleValue)]) -> Bool {
            entries.contains { $0.key.hasSuffix(".ls1.gamma") || $0.key.hasSuffix(".gamma_1") }
        }

        // 1. The source.
        let source: CheckpointSource
        if let forced = options.source {
            source = forced
        } else if bare {
            if hasLayerScale(top) { source = .dinov2 }
            else if topKeys.contains(where: { $0.hasPrefix("decoder_") }) { source = .mae }   // an MAE model with its decoder
            else if format == .safetensors || topKeys.contains("head.weight") || topKeys.contains("module.head.weight") { source = .timm }
            else { source = .dino }
        } else if has("teacher") {
            let t = keys(of: root["teacher"])
            source = t.contains(where: { $0.hasPrefix("backbone.") || $0.hasPrefix("module.backbone.") }) ? .dinoFull : .rcmae
        } else if has("state_dict") {
            let sd = keys(of: root["state_dict"])
            if sd.contains(where: { $0.hasPrefix("module.base_encoder.") }) || sd.contains(where: { $0.hasPrefix("module.") }) {
                if !sd.isEmpty && sd.allSatisfy({ $0.hasPrefix("module.linear.") }) {
                    throw CheckpointError.unrecognizedLayout(
                        file: fileName, expected: "a ViT backbone",
                        found: "only a linear classifier (module.linear.*, DINO's *_linearweights.pth); load it with its backbone")
                }
                source = .mocoV3
            } else {
                source = hasLayerScale(root["state_dict"]?.stringKeyedEntries ?? []) ? .dinov2 : .timm
            }
        } else if has("model") {
            source = hasLayerScale(root["model"]?.stringKeyedEntries ?? []) ? .dinov2 : .mae
        } else if has("student") {
            source = .rcmae
        } else {
            throw CheckpointError.unrecognizedLayout(
                file: fileName,
                expected: "a state dict or a wrapper with 'teacher', 'state_dict', 'model' or 'student'",
                found: "top-level keys " + top.prefix(10).map(\.key).joined(separator: ", "))
        }

        // 2. The wrapper key.
        let candidates: [String]
        switch source {
        case .dino, .timm, .dinov2: candidates = bare ? [] : ["state_dict", "model", "teacher", "module"]
        case .dinoFull: candidates = ["teacher", "student"]
        case .mocoV3: candidates = ["state_dict", "model"]
        case .mae: candidates = ["model"]
        case .rcmae: candidates = ["teacher", "model", "student"]
        }
        var key: String?
        if let k = options.checkpointKey {
            guard has(k) else {
                throw CheckpointError.unrecognizedLayout(file: fileName, expected: "a dict under key '\(k)'",
                                                         found: "top-level keys " + top.prefix(10).map(\.key).joined(separator: ", "))
            }
            key = k
        } else if !(bare && [.dino, .timm, .dinov2, .mae].contains(source)) {
            key = candidates.first(where: has)
            if key == nil && !bare {
                throw CheckpointError.unrecognizedLayout(
                    file: fileName, expected: "a \(source) checkpoint with one of \(candidates.map { "'\($0)'" }.joined(separator: ", "))",
                    found: "top-level keys " + top.prefix(10).map(\.key).joined(separator: ", "))
            }
        }
        let stateDict = key.flatMap { root[$0]?.stringKeyedEntries } ?? top
        var extras: [(key: String, value: PickleValue)] = []
        var ignored: [IgnoredKey] = []
        if key != nil {
            for e in top where e.key != key {
                if e.value.stringKeyedEntries.map(isStateDict) == true {
                    ignored.append(IgnoredKey(key: e.key, reason: "other weights in the file (choose with checkpointKey)"))
                } else {
                    extras.append(e)
                }
            }
        }
        return Extraction(source: source, key: key, stateDict: stateDict, extras: extras, ignored: ignored)
    }
}

// MARK: - Key mapping

enum KeyMapper {
    struct Mapping {
        var canonical: [String: StoredTensor] = [:]
        var originalNames: [String: String] = [:]
        var head: [String: StoredTensor] = [:]
        var decoder: [String: StoredTensor] = [:]
        var ignored: [Checkpoint.IgnoredKey] = []
        var unexpected: [String] = []
    }

    static func strip(_ s: inout String, _ prefix: String) -> Bool {
        guard s.hasPrefix(prefix) else { return false }
        s.removeFirst(prefix.count)
        return true
    }

    /// `blocks.<i>.<rest>` → (i, rest); also DINOv2's chunked `blocks.<chunk>.<i>.<rest>`.
    static func blockIndex(_ key: String) -> (Int, String)? {
        guard key.hasPrefix("blocks.") else { return nil }
        let parts = key.dropFirst("blocks.".count).split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, let i = Int(parts[0]), i >= 0, i < 100_000 else { return nil }
        if parts.count == 3, let j = Int(parts[1]), j >= 0, j < 100_000 { return (j, String(parts[2])) }
        return (i, parts.dropFirst().joined(separator: "."))
    }

    static let blockParameters: Set<String> = [
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
        "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
        "ls1.gamma", "ls2.gamma",
    ]
    static let topParameters: Set<String> = [
        "cls_token", "pos_embed", "reg_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
        "norm.weight", "norm.bias", "fc_norm.weight", "fc_norm.bias",
    ]

    /// The canonical name of a normalised key, or nil.
    static func canonicalName(_ key: String) -> String? {
        if topParameters.contains(key) { return key }
        if key == "register_tokens" { return "reg_token" }
        if let (i, rest) = blockIndex(key) {
            var r = rest
            if r == "gamma_1" { r = "ls1.gamma" }
            if r == "gamma_2" { r = "ls2.gamma" }
            if blockParameters.contains(r) { return "blocks.\(i).\(r)" }
        }
        return nil
    }

    static func map(_ stateDict: [(key: String, value: PickleValue)], source: CheckpointSource,
                    fileName: String) throws -> Mapping {
        var m = Mapping()
        let keys = stateDict.map(\.key)
        let hasBaseEncoder = keys.contains { $0.hasPrefix("module.base_encoder.") }
        for (original, value) in stateDict {
            guard let tensor = value.tensor else {
                m.unexpected.append(original + " (not a tensor: \(value.typeName))")
                continue
            }
            var k = original
            switch source {
            case .mocoV3 where hasBaseEncoder:
                if k.hasPrefix("module.base_encoder.head") || k.hasPrefix("base_encoder.head") {
                    m.ignored.append(.init(key: original, reason: "MoCo-v3 projection head")); continue
                }
                if k.hasPrefix("module.momentum_encoder.") || k.hasPrefix("momentum_encoder.") {
                    m.ignored.append(.init(key: original, reason: "MoCo-v3 momentum encoder")); continue
                }
                if k.hasPrefix("module.predictor.") || k.hasPrefix("predictor.") {
                    m.ignored.append(.init(key: original, reason: "MoCo-v3 predictor")); continue
                }
                guard strip(&k, "module.base_encoder.") || strip(&k, "base_encoder.") else {
                    m.unexpected.append(original); continue
                }
            default:
                while strip(&k, "module.") {}
                if source == .dino || source == .dinoFull || source == .dinov2 { _ = strip(&k, "backbone.") }
            }
            if let c = canonicalName(k) {
                guard m.canonical[c] == nil else {
                    throw CheckpointError.unrecognizedLayout(file: fileName, expected: "one tensor per parameter",
                                                             found: "two keys mapping to \(c) (\(m.originalNames[c] ?? "?"), \(original))")
                }
                m.canonical[c] = tensor.renamed(c)
                m.originalNames[c] = original
                continue
            }
            // Not a backbone parameter: classify.
            if k.hasPrefix("decoder_") || (k == "mask_token" && (source == .mae || source == .rcmae)) {
                m.decoder[k] = tensor.renamed(k)
            } else if k == "mask_token" {
                m.ignored.append(.init(key: original, reason: "masked-token embedding (training only)"))
            } else if (k == "head.weight" || k == "head.bias") && (k == "head.bias" ? tensor.shape.count == 1 : tensor.shape.count == 2) {
                m.head[k] = tensor.renamed(k)
            } else if k.hasPrefix("head.") || k.hasPrefix("head_drop.") {
                m.ignored.append(.init(key: original, reason: source == .dinoFull ? "DINO projection head" : "projection head"))
            } else if k.hasPrefix("pre_logits.") {
                m.ignored.append(.init(key: original, reason: "pre-logits layer (classifier only)"))
            } else if k.hasSuffix("num_batches_tracked") {
                m.ignored.append(.init(key: original, reason: "BatchNorm counter"))
            } else {
                m.unexpected.append(original)
            }
        }
        return m
    }

    /// Infers the architecture from the canonical tensors and checks every shape; returns the architecture,
    /// the canonical names in forward order and the absent-but-optional standard keys.
    static func inferArchitecture(_ p: [String: StoredTensor], head: [String: StoredTensor], heads: Int?,
                                  source: CheckpointSource, fileName: String) throws -> (ViTArchitecture, [String], [String]) {
        let sourceName = source.rawValue
        guard let patch = p["patch_embed.proj.weight"] else {
            let required = ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed"].filter { p[$0] == nil }
            throw CheckpointError.missingTensors(file: fileName, source: sourceName, names: required + (p.isEmpty ? ["blocks.*"] : []))
        }
        guard patch.shape.count == 4, patch.shape[2] == patch.shape[3], patch.shape[2] > 0, patch.shape[0] > 0 else {
            throw CheckpointError.invalidTensor(file: fileName, name: "patch_embed.proj.weight",
                                                expected: "a square convolution kernel [D, C, p, p]", found: "\(patch.shape)")
        }
        let width = patch.shape[0], channels = patch.shape[1], patchSize = patch.shape[2]
        // Blocks 0..<depth, all present.
        var indices = Set<Int>()
        for k in p.keys { if let (i, _) = blockIndex(k) { indices.insert(i) } }
        let depth = (indices.max() ?? -1) + 1
        guard depth > 0 else {
            throw CheckpointError.missingTensors(file: fileName, source: sourceName, names: ["blocks.0.*"])
        }
        var missing: [String] = []
        var required = ["cls_token", "pos_embed", "patch_embed.proj.bias"]
        let perBlock = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
                        "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
        for i in 0..<depth { for n in perBlock { required.append("blocks.\(i).\(n)") } }
        // All-or-none groups.
        func group(_ suffix: String) -> Bool {
            let present = (0..<depth).filter { p["blocks.\($0).\(suffix)"] != nil }.count
            if present > 0 && present < depth {
                missing.append(contentsOf: (0..<depth).map { "blocks.\($0).\(suffix)" }.filter { p[$0] == nil })
            }
            return present > 0
        }
        let qkvBias = group("attn.qkv.bias")
        let ls1 = group("ls1.gamma"), ls2 = group("ls2.gamma")
        if ls1 != ls2 {
            missing.append(contentsOf: (0..<depth).map { "blocks.\($0).\(ls1 ? "ls2" : "ls1").gamma" })
        }
        let hasNorm = p["norm.weight"] != nil || p["norm.bias"] != nil
        let hasFCNorm = p["fc_norm.weight"] != nil || p["fc_norm.bias"] != nil
        if hasNorm || !hasFCNorm { required += ["norm.weight", "norm.bias"] }
        if hasFCNorm { required += ["fc_norm.weight", "fc_norm.bias"] }
        missing.append(contentsOf: required.filter { p[$0] == nil })
        guard missing.isEmpty else {
            throw CheckpointError.missingTensors(file: fileName, source: sourceName, names: missing)
        }

        // Shapes.
        func check(_ name: String, _ expected: [Int]) throws {
            guard let t = p[name] else { return }
            guard t.shape == expected else {
                throw CheckpointError.shapeMismatch(file: fileName, name: name, expected: expected, found: t.shape)
            }
        }
        guard let pos = p["pos_embed"], pos.shape.count == 3, pos.shape[0] == 1, pos.shape[2] == width, pos.shape[1] > 0 else {
            throw CheckpointError.shapeMismatch(file: fileName, name: "pos_embed", expected: [1, -1, width], found: p["pos_embed"]?.shape ?? [])
        }
        try check("cls_token", [1, 1, width])
        try check("patch_embed.proj.bias", [width])
        var registers = 0
        if let r = p["reg_token"] {
            guard r.shape.count == 3, r.shape[0] == 1, r.shape[2] == width else {
                throw CheckpointError.shapeMismatch(file: fileName, name: "reg_token", expected: [1, -1, width], found: r.shape)
            }
            registers = r.shape[1]
        }
        guard let fc1 = p["blocks.0.mlp.fc1.weight"], fc1.shape.count == 2, fc1.shape[0] > 0 else {
            throw CheckpointError.shapeMismatch(file: fileName, name: "blocks.0.mlp.fc1.weight", expected: [-1, width],
                                                found: p["blocks.0.mlp.fc1.weight"]?.shape ?? [])
        }
        let hidden = fc1.shape[0]
        for i in 0..<depth {
            let b = "blocks.\(i)."
            try check(b + "norm1.weight", [width]); try check(b + "norm1.bias", [width])
            try check(b + "attn.qkv.weight", [3 * width, width]); try check(b + "attn.qkv.bias", [3 * width])
            try check(b + "attn.proj.weight", [width, width]); try check(b + "attn.proj.bias", [width])
            try check(b + "norm2.weight", [width]); try check(b + "norm2.bias", [width])
            try check(b + "mlp.fc1.weight", [hidden, width]); try check(b + "mlp.fc1.bias", [hidden])
            try check(b + "mlp.fc2.weight", [width, hidden]); try check(b + "mlp.fc2.bias", [width])
            try check(b + "ls1.gamma", [width]); try check(b + "ls2.gamma", [width])
        }
        for n in ["norm.weight", "norm.bias", "fc_norm.weight", "fc_norm.bias"] { try check(n, [width]) }

        let headCount: Int
        if let h = heads {
            headCount = h
        } else if let h = ViTArchitecture.defaultHeads(forWidth: width) {
            headCount = h
        } else if width % 64 == 0 {
            headCount = width / 64
        } else {
            throw CheckpointError.unrecognizedLayout(
                file: fileName, expected: "a width with a known head count (192, 384, 768, 1024, 1280, or a multiple of 64)",
                found: "width \(width); pass the number of heads explicitly")
        }
        guard headCount > 0, width % headCount == 0 else {
            throw CheckpointError.unrecognizedLayout(file: fileName, expected: "a head count dividing the width \(width)",
                                                     found: "\(headCount) heads")
        }

        let prefix = 1 + registers
        let tokens = pos.shape[1]
        func squareRoot(_ n: Int) -> Int? {
            guard n > 0 else { return nil }
            let r = Int(Double(n).squareRoot().rounded())
            return r * r == n ? r : nil
        }
        var includesPrefix = true
        var grid = squareRoot(tokens - prefix)
        if grid == nil, tokens > 1, let g = squareRoot(tokens - 1) { grid = g }          // cls row only
        else if grid == nil, let g = squareRoot(tokens) { grid = g; includesPrefix = false }
        var classCount: Int?
        if let hw = head["head.weight"], hw.shape.count == 2, hw.shape[1] == width { classCount = hw.shape[0] }

        let arch = ViTArchitecture(
            width: width, depth: depth, heads: headCount, patchSize: patchSize, inputChannels: channels,
            tokenCount: tokens, prefixTokens: prefix, positionIncludesPrefix: includesPrefix, gridSize: grid,
            imageSize: grid.map { $0 * patchSize }, mlpHiddenWidth: hidden, mlpRatio: Double(hidden) / Double(width),
            qkvBias: qkvBias, layerScale: ls1, hasFinalNorm: hasNorm, hasFCNorm: hasFCNorm, classCount: classCount)

        var order = ["cls_token"]
        if registers > 0 { order.append("reg_token") }
        order += ["pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
        for i in 0..<depth {
            for n in ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                      "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
                      "mlp.fc2.bias", "ls2.gamma"] where p["blocks.\(i).\(n)"] != nil {
                order.append("blocks.\(i).\(n)")
            }
        }
        for n in ["norm.weight", "norm.bias", "fc_norm.weight", "fc_norm.bias"] where p[n] != nil { order.append(n) }
        let optionalAbsent = hasNorm ? [] : ["norm.weight", "norm.bias"]
        return (arch, order, optionalAbsent)
    }
}
