import CKATensor
import Foundation

enum KeyMapper {
    struct Mapping {
        var canonical: [String: StoredTensor] = [:]
        var originalNames: [String: String] = [:]
        var head: [String: StoredTensor] = [:]
        var decoder: [String: StoredTensor] = [:]
        var ignored: [Checkpoint.IgnoredKey] = []
        var unexpected: [String] = []

        /// Records `tensor` under the timm name `c`, read from the file's key `original`; a second key for the
        /// same parameter is refused.
        mutating func put(_ c: String, _ tensor: StoredTensor, _ original: String, fileName: String) throws {
            guard canonical[c] == nil else {
                throw CheckpointError.unrecognizedLayout(
                    file: fileName, expected: "one tensor per parameter",
                    found: "two keys mapping to \(c) (\(originalNames[c] ?? "?"), \(original))")
            }
            canonical[c] = tensor.renamed(c)
            originalNames[c] = original
        }
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
        "norm.weight", "norm.bias", "fc_norm.weight", "fc_norm.bias", "dist_token", "norm_pre.weight",
        "norm_pre.bias",
    ]

    /// The canonical name of a normalised key, or nil.
    static func canonicalName(_ key: String) -> String? {
        if topParameters.contains(key) { return key }
        if key == "register_tokens" { return "reg_token" }
        if key.hasPrefix("attn_pool."), attentionPoolParameters.contains(String(key.dropFirst("attn_pool.".count))) {
            return key
        }
        if let (i, rest) = blockIndex(key) {
            var r = rest
            if r == "gamma_1" { r = "ls1.gamma" }
            if r == "gamma_2" { r = "ls2.gamma" }
            if blockParameters.contains(r) { return "blocks.\(i).\(r)" }
        }
        return nil
    }

    static func map(
        _ stateDict: [(key: String, value: PickleValue)], source: CheckpointSource,
        fileName: String
    ) throws -> Mapping {
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
                try m.put(c, tensor, original, fileName: fileName)
                continue
            }
            // Not a backbone parameter: classify.
            if k.hasPrefix("decoder_") || (k == "mask_token" && (source == .mae || source == .rcmae)) {
                m.decoder[k] = tensor.renamed(k)
            } else if k == "mask_token" {
                m.ignored.append(.init(key: original, reason: "masked-token embedding (training only)"))
            } else if ["head.weight", "head.bias", "head_dist.weight", "head_dist.bias"].contains(k)
                && (k.hasSuffix(".bias") ? tensor.shape.count == 1 : tensor.shape.count == 2)
            {
                m.head[k] = tensor.renamed(k)
            } else if k.hasPrefix("head.") || k.hasPrefix("head_drop.") {
                m.ignored.append(
                    .init(key: original, reason: source == .dinoFull ? "DINO projection head" : "projection head"))
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
}
