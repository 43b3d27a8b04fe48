import CKATensor
import Foundation

// Which official layout a file is, and where its state dict sits.
extension Checkpoint {
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

    /// A key of a Hugging Face transformers vision model (`encoder.layer.0.…`, `embeddings.patch_embeddings.…`).
    static func isHuggingFaceKey(_ k: String) -> Bool {
        k.hasPrefix("encoder.layer.") || k.contains(".encoder.layer.") || k.hasPrefix("encoder.layers.")
            || k.contains(".encoder.layers.") || k.contains("embeddings.patch_embedding")
    }

    /// Picks the source (detected or forced) and the state dict inside the file's top-level object.
    static func extract(root: PickleValue, format: CheckpointFormat, options: Options, fileName: String) throws
        -> Extraction
    {
        guard let top = root.stringKeyedEntries else {
            throw CheckpointError.unrecognizedLayout(
                file: fileName, expected: "a dict at the top of the checkpoint",
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
            if topKeys.contains(where: {
                $0.hasPrefix("visual.transformer.resblocks.") || $0 == "visual.class_embedding"
            }) {
                source = .openCLIP
            } else if topKeys.contains(where: isHuggingFaceKey) {
                source = .huggingFace  // refused without its config.json, which the load names
            } else if hasLayerScale(top) {
                source = .dinov2
            } else if topKeys.contains(where: { $0.hasPrefix("decoder_") }) {
                source = .mae
            }  // an MAE model with its decoder
            else if format == .safetensors || topKeys.contains("head.weight") || topKeys.contains("module.head.weight")
            {
                source = .timm
            } else {
                source = .dino
            }
        } else if has("teacher") {
            let t = keys(of: root["teacher"])
            source =
                t.contains(where: { $0.hasPrefix("backbone.") || $0.hasPrefix("module.backbone.") })
                ? .dinoFull : .rcmae
        } else if has("state_dict") {
            let sd = keys(of: root["state_dict"])
            if sd.contains(where: { $0.hasPrefix("module.base_encoder.") })
                || sd.contains(where: { $0.hasPrefix("module.") })
            {
                if !sd.isEmpty && sd.allSatisfy({ $0.hasPrefix("module.linear.") }) {
                    throw CheckpointError.unrecognizedLayout(
                        file: fileName, expected: "a ViT backbone",
                        found:
                            "only a linear classifier (module.linear.*, DINO's *_linearweights.pth); load it with its backbone"
                    )
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
        case .huggingFace, .openCLIP: candidates = bare ? [] : ["state_dict", "model"]
        }
        var key: String?
        if let k = options.checkpointKey {
            guard has(k) else {
                throw CheckpointError.unrecognizedLayout(
                    file: fileName, expected: "a dict under key '\(k)'",
                    found: "top-level keys " + top.prefix(10).map(\.key).joined(separator: ", "))
            }
            key = k
        } else if !(bare && [.dino, .timm, .dinov2, .mae, .huggingFace, .openCLIP].contains(source)) {
            key = candidates.first(where: has)
            if key == nil && !bare {
                throw CheckpointError.unrecognizedLayout(
                    file: fileName,
                    expected:
                        "a \(source) checkpoint with one of \(candidates.map { "'\($0)'" }.joined(separator: ", "))",
                    found: "top-level keys " + top.prefix(10).map(\.key).joined(separator: ", "))
            }
        }
        let stateDict = key.flatMap { root[$0]?.stringKeyedEntries } ?? top
        var extras: [(key: String, value: PickleValue)] = []
        var ignored: [IgnoredKey] = []
        if key != nil {
            for e in top where e.key != key {
                if e.value.stringKeyedEntries.map(isStateDict) == true {
                    ignored.append(
                        IgnoredKey(key: e.key, reason: "other weights in the file (choose with checkpointKey)"))
                } else {
                    extras.append(e)
                }
            }
        }
        return Extraction(source: source, key: key, stateDict: stateDict, extras: extras, ignored: ignored)
    }
}
