import CKATensor
import Foundation

extension StoredTensor {
    /// A float32 tensor held in memory (a tensor the mapping computes: q|k|v concatenated, a transposed projection,
    /// a folded class position).
    static func derived(_ name: String, shape: [Int], values: [Float]) throws -> StoredTensor {
        precondition(values.count == shape.reduce(1, *))
        var bytes = [UInt8](repeating: 0, count: values.count * 4)
        bytes.withUnsafeMutableBytes { b in
            values.withUnsafeBytes { v in b.copyMemory(from: v) }
        }
        let file = MappedFile(bytes: bytes, name: "<\(name)>")
        return try StoredTensor(
            name: name, dtype: .float32, shape: shape, file: file, storageByteOffset: 0,
            storageByteCount: bytes.count, storageID: "derived:\(name)")
    }

    /// The same elements with another shape (no copy when contiguous).
    func reshapedStored(_ newShape: [Int], name newName: String) throws -> StoredTensor {
        guard newShape.reduce(1, *) == elementCount else {
            throw CheckpointError.shapeMismatch(file: file.name, name: name, expected: newShape, found: shape)
        }
        if isContiguous {
            return try StoredTensor(
                name: newName, dtype: dtype, shape: newShape, storageOffset: storageOffset, file: file,
                storageByteOffset: storageByteOffset, storageByteCount: storageByteCount, storageID: storageID)
        }
        return try .derived(newName, shape: newShape, values: Array(floatTensor().scalars))
    }
}

// Key mapping of the Hugging Face and open_clip layouts onto timm's names.
extension KeyMapper {
    /// What the Hugging Face `config.json` says about the vision tower.
    struct HubSettings {
        var heads: Int?
        var epsilon: Double?
        var activation: MLPActivation?
    }

    /// Maps a Hugging Face state dict (ViT, DeiT, DINOv2 with or without registers, CLIP, SigLIP; legacy hub names
    /// and transformers-5 names) onto timm's names: q, k, v projections are concatenated into `attn.qkv` (in that
    /// order), CLIP's `visual_projection` becomes `head`, SigLIP's MAP head `attn_pool`, DeiT's two classifiers
    /// `head` and `head_dist`; text towers, poolers and mask tokens are ignored.
    static func mapHuggingFace(_ stateDict: [(key: String, value: PickleValue)], fileName: String) throws -> Mapping {
        var m = Mapping()
        var qkv: [Int: [String: (StoredTensor, String)]] = [:]  // block → "q.weight" … "v.bias", with the file's name
        var inProj: [String: (StoredTensor, String)] = [:]
        var decoderQKV: [Int: [String: (StoredTensor, String)]] = [:]  // MAE decoder block → "q.weight" …
        func put(_ c: String, _ t: StoredTensor, _ original: String) throws {
            try m.put(c, t, original, fileName: fileName)
        }
        for (original, value) in stateDict {
            guard let tensor = value.tensor else {
                m.unexpected.append(original + " (not a tensor: \(value.typeName))")
                continue
            }
            var k = original
            if k.hasPrefix("text_model.") || k.hasPrefix("text_projection.") || k == "logit_scale" || k == "logit_bias"
            {
                m.ignored.append(.init(key: original, reason: "text tower (the vision tower is loaded)"))
                continue
            }
            for prefix in ["vit.", "deit.", "dinov2.", "vision_model.", "model."] where k.hasPrefix(prefix) {
                k.removeFirst(prefix.count)
                break
            }
            if k.hasPrefix("encoder.") { k.removeFirst("encoder.".count) }
            // Blocks: `layer.{i}.` (ViT, DeiT, DINOv2) or `layers.{i}.` (CLIP, SigLIP, transformers 5).
            if let (i, rest) = hubBlock(k) {
                let b = "blocks.\(i)."
                if let part = hubQKVPart(rest) {
                    qkv[i, default: [:]][part] = (tensor, original)
                    continue
                }
                if rest.hasPrefix("mlp.weights_in") || rest.hasPrefix("mlp.w12") {
                    throw CheckpointError.unrecognizedLayout(
                        file: fileName, expected: "an MLP with fc1/fc2 (use_swiglu_ffn = false)",
                        found: "a SwiGLU MLP (\(original)), which is not supported")
                }
                if let c = hubBlockParameter(rest) {
                    try put(b + c, tensor, original)
                } else {
                    m.unexpected.append(original)
                }
                continue
            }
            let top: [String: String] = [
                "embeddings.cls_token": "cls_token", "embeddings.distillation_token": "dist_token",
                "embeddings.register_tokens": "reg_token",
                "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
                "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
                "embeddings.patch_embedding.weight": "patch_embed.proj.weight",
                "embeddings.patch_embedding.bias": "patch_embed.proj.bias",
                "embeddings.position_embeddings": "pos_embed",
                "pre_layrnorm.weight": "norm_pre.weight", "pre_layrnorm.bias": "norm_pre.bias",
                "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
                "post_layernorm.weight": "norm.weight", "post_layernorm.bias": "norm.bias",
                "head.probe": "attn_pool.latent",
                "head.attention.out_proj.weight": "attn_pool.proj.weight",
                "head.attention.out_proj.bias": "attn_pool.proj.bias",
                "head.layernorm.weight": "attn_pool.norm.weight", "head.layernorm.bias": "attn_pool.norm.bias",
                "head.mlp.fc1.weight": "attn_pool.mlp.fc1.weight", "head.mlp.fc1.bias": "attn_pool.mlp.fc1.bias",
                "head.mlp.fc2.weight": "attn_pool.mlp.fc2.weight", "head.mlp.fc2.bias": "attn_pool.mlp.fc2.bias",
            ]
            let heads: [String: String] = [
                "classifier.weight": "head.weight", "classifier.bias": "head.bias",
                "cls_classifier.weight": "head.weight", "cls_classifier.bias": "head.bias",
                "distillation_classifier.weight": "head_dist.weight", "distillation_classifier.bias": "head_dist.bias",
                "visual_projection.weight": "head.weight",
            ]
            if let c = top[k] {
                try put(c, tensor, original)
            } else if k == "embeddings.class_embedding" {  // CLIP: [D]
                try put("cls_token", tensor.reshapedStored([1, 1, tensor.elementCount], name: "cls_token"), original)
            } else if k == "embeddings.position_embedding.weight" {  // CLIP, SigLIP: an nn.Embedding [T, D]
                let s = tensor.shape
                try put("pos_embed", tensor.reshapedStored([1] + s, name: "pos_embed"), original)
            } else if k == "head.attention.in_proj_weight" || k == "head.attention.in_proj_bias" {
                inProj[k] = (tensor, original)
            } else if let c = heads[k.replacingOccurrences(of: "original_module.", with: "")] {
                guard m.head[c] == nil else {
                    throw CheckpointError.unrecognizedLayout(
                        file: fileName, expected: "one tensor per parameter", found: "two keys mapping to \(c)")
                }
                m.head[c] = tensor.renamed(c)
                m.originalNames[c] = original
            } else if k == "embeddings.mask_token" {
                m.ignored.append(.init(key: original, reason: "masked-token embedding (training only)"))
            } else if k.hasPrefix("pooler.") {
                m.ignored.append(.init(key: original, reason: "ViTModel pooler (dense + tanh, not part of timm's ViT)"))
            } else if k == "embeddings.position_ids" || k.hasSuffix("num_batches_tracked") {
                m.ignored.append(.init(key: original, reason: "buffer"))
            } else if k.hasPrefix("decoder.") {
                // ViTMAEForPreTraining's decoder, under MAE's names (`decoder_blocks.{i}` with timm's block names).
                // Its blocks are `decoder_layers.{i}` (hub files, transformers 5 in memory) or
                // `decoder_encoder.layer.{i}` (as transformers 5 save_pretrained writes them).
                let d = String(k.dropFirst("decoder.".count))
                let blockKey =
                    d.hasPrefix("decoder_layers.")
                    ? String(d.dropFirst("decoder_".count))
                    : d.hasPrefix("decoder_encoder.layer.") ? String(d.dropFirst("decoder_encoder.".count)) : nil
                if let blockKey, let (i, rest) = hubBlock(blockKey) {
                    if let part = hubQKVPart(rest) {
                        decoderQKV[i, default: [:]][part] = (tensor, original)
                    } else if let c = hubBlockParameter(rest) {
                        m.decoder["decoder_blocks.\(i).\(c)"] = tensor.renamed("decoder_blocks.\(i).\(c)")
                        m.originalNames["decoder_blocks.\(i).\(c)"] = original
                    } else {
                        m.unexpected.append(original)
                    }
                } else if ["decoder_embed.", "decoder_norm.", "decoder_pred."].contains(where: d.hasPrefix)
                    || d == "mask_token" || d == "decoder_pos_embed"
                {
                    m.decoder[d] = tensor.renamed(d)
                    m.originalNames[d] = original
                } else {
                    m.unexpected.append(original)
                }
            } else {
                m.unexpected.append(original)
            }
        }
        /// q | k | v of one block → the fused `attn.qkv` weight and bias (rows in that order, as timm's fused layer),
        /// each with the names it came from ("q + k + v").
        func fused(_ parts: [String: (StoredTensor, String)], _ name: String, block: String) throws
            -> [(kind: String, tensor: StoredTensor, original: String)]
        {
            try ["weight", "bias"].compactMap { kind in
                let ts = ["q", "k", "v"].compactMap { parts["\($0).\(kind)"] }
                if ts.isEmpty { return nil }
                guard ts.count == 3 else {
                    throw CheckpointError.missingTensors(
                        file: fileName, source: "hf",
                        names: ["q", "k", "v"].filter { parts["\($0).\(kind)"] == nil }.map {
                            "\(block) \($0) projection \(kind)"
                        })
                }
                let tensor = try concatenateRows(ts.map(\.0), name: name + kind, fileName: fileName)
                return (kind, tensor, ts.map(\.1).joined(separator: " + "))
            }
        }
        for (i, parts) in qkv {
            let b = "blocks.\(i).attn.qkv."
            for f in try fused(parts, b, block: "block \(i)") {
                try put(b + f.kind, f.tensor, "")
                m.originalNames[b + f.kind] = f.original
            }
        }
        for (i, parts) in decoderQKV {
            let b = "decoder_blocks.\(i).attn.qkv."
            for f in try fused(parts, b, block: "decoder block \(i)") {
                m.decoder[b + f.kind] = f.tensor
                m.originalNames[b + f.kind] = f.original
            }
        }
        // SigLIP's nn.MultiheadAttention: in_proj rows [q; k; v] → attn_pool.q and attn_pool.kv.
        if let (w, wo) = inProj["head.attention.in_proj_weight"], let (bias, bo) = inProj["head.attention.in_proj_bias"]
        {
            let d = w.shape.count == 2 ? w.shape[1] : 0
            guard w.shape == [3 * d, d], bias.shape == [3 * d] else {
                throw CheckpointError.shapeMismatch(
                    file: fileName, name: wo, expected: [3 * d, d], found: w.shape)
            }
            let wf = Array(try w.floatTensor().scalars), bf = Array(try bias.floatTensor().scalars)
            try put(
                "attn_pool.q.weight", .derived("attn_pool.q.weight", shape: [d, d], values: Array(wf[0..<d * d])), wo)
            try put(
                "attn_pool.kv.weight",
                .derived("attn_pool.kv.weight", shape: [2 * d, d], values: Array(wf[(d * d)...])),
                wo)
            try put("attn_pool.q.bias", .derived("attn_pool.q.bias", shape: [d], values: Array(bf[0..<d])), bo)
            try put("attn_pool.kv.bias", .derived("attn_pool.kv.bias", shape: [2 * d], values: Array(bf[d...])), bo)
        } else if let (_, o) = inProj.values.first {
            m.unexpected.append(o)
        }
        return m
    }

    /// `layer.{i}.rest` / `layers.{i}.rest` → (i, rest).
    static func hubBlock(_ key: String) -> (Int, String)? {
        for p in ["layer.", "layers."] where key.hasPrefix(p) {
            let parts = key.dropFirst(p.count).split(separator: ".", maxSplits: 1)
            guard parts.count == 2, let i = Int(parts[0]), i >= 0, i < 100_000 else { return nil }
            return (i, String(parts[1]))
        }
        return nil
    }

    /// `q.weight` … `v.bias` for a query/key/value projection inside a block, nil otherwise.
    static func hubQKVPart(_ rest: String) -> String? {
        let names: [(String, String)] = [
            ("attention.attention.query.", "q"), ("attention.attention.key.", "k"), ("attention.attention.value.", "v"),
            ("attention.q_proj.", "q"), ("attention.k_proj.", "k"), ("attention.v_proj.", "v"),
            ("self_attn.q_proj.", "q"), ("self_attn.k_proj.", "k"), ("self_attn.v_proj.", "v"),
        ]
        for (p, tag) in names where rest.hasPrefix(p) {
            let kind = rest.dropFirst(p.count)
            if kind == "weight" || kind == "bias" { return "\(tag).\(kind)" }
        }
        return nil
    }

    /// The timm name inside a block of a Hugging Face block parameter, nil if unknown.
    static func hubBlockParameter(_ rest: String) -> String? {
        let table: [(String, String)] = [
            ("layernorm_before.", "norm1."), ("norm1.", "norm1."), ("layer_norm1.", "norm1."),
            ("attention.output.dense.", "attn.proj."), ("attention.o_proj.", "attn.proj."),
            ("self_attn.out_proj.", "attn.proj."),
            ("layernorm_after.", "norm2."), ("norm2.", "norm2."), ("layer_norm2.", "norm2."),
            ("intermediate.dense.", "mlp.fc1."), ("output.dense.", "mlp.fc2."),
            ("mlp.fc1.", "mlp.fc1."), ("mlp.fc2.", "mlp.fc2."),
        ]
        if rest == "layer_scale1.lambda1" { return "ls1.gamma" }
        if rest == "layer_scale2.lambda1" { return "ls2.gamma" }
        for (p, c) in table where rest.hasPrefix(p) {
            let kind = rest.dropFirst(p.count)
            if kind == "weight" || kind == "bias" { return c + kind }
        }
        return nil
    }

    /// Tensors `[r_i, …]` stacked along the first dimension, as float32.
    static func concatenateRows(_ ts: [StoredTensor], name: String, fileName: String) throws -> StoredTensor {
        let tail = Array(ts[0].shape.dropFirst())
        for t in ts where Array(t.shape.dropFirst()) != tail {
            throw CheckpointError.shapeMismatch(file: fileName, name: t.name, expected: [-1] + tail, found: t.shape)
        }
        var values: [Float] = []
        values.reserveCapacity(ts.reduce(0) { $0 + $1.elementCount })
        for t in ts { values += try t.floatTensor().scalars }
        return try .derived(name, shape: [ts.reduce(0) { $0 + $1.shape[0] }] + tail, values: values)
    }

    /// Maps an open_clip state dict (`visual.*`; OpenAI's weights re-saved as a state dict have the same keys)
    /// onto timm's names: `ln_pre` → `norm_pre`, `resblocks.{i}` → `blocks.{i}` (`in_proj` is already q|k|v),
    /// `ln_post` → `norm`, `proj` `[D, E]` → `head.weight` `[E, D]`. The text tower is ignored.
    static func mapOpenCLIP(_ stateDict: [(key: String, value: PickleValue)], fileName: String) throws -> Mapping {
        var m = Mapping()
        func put(_ c: String, _ t: StoredTensor, _ original: String) throws {
            try m.put(c, t, original, fileName: fileName)
        }
        let block: [(String, String)] = [
            ("ln_1.", "norm1."), ("attn.in_proj_weight", "attn.qkv.weight"), ("attn.in_proj_bias", "attn.qkv.bias"),
            ("attn.out_proj.", "attn.proj."), ("ln_2.", "norm2."), ("mlp.c_fc.", "mlp.fc1."),
            ("mlp.c_proj.", "mlp.fc2."), ("ls_1.gamma", "ls1.gamma"), ("ls_2.gamma", "ls2.gamma"),
        ]
        for (original, value) in stateDict {
            guard let tensor = value.tensor else {
                m.unexpected.append(original + " (not a tensor: \(value.typeName))")
                continue
            }
            var k = original
            while k.hasPrefix("module.") { k.removeFirst("module.".count) }
            guard k.hasPrefix("visual.") else {
                let openAI = ["input_resolution", "context_length", "vocab_size"].contains(k)
                m.ignored.append(
                    .init(
                        key: original,
                        reason: openAI ? "OpenAI CLIP model attributes" : "text tower (the vision tower is loaded)"))
                continue
            }
            k.removeFirst("visual.".count)
            if k.hasPrefix("transformer.resblocks.") {
                let rest = k.dropFirst("transformer.resblocks.".count).split(separator: ".", maxSplits: 1)
                if rest.count == 2, let i = Int(rest[0]), i >= 0, i < 100_000,
                    let (p, c) = block.first(where: { rest[1].hasPrefix($0.0) })
                {
                    try put("blocks.\(i)." + c + rest[1].dropFirst(p.count), tensor, original)
                } else {
                    m.unexpected.append(original)
                }
                continue
            }
            switch k {
            case "class_embedding":
                try put("cls_token", tensor.reshapedStored([1, 1, tensor.elementCount], name: "cls_token"), original)
            case "positional_embedding":
                try put("pos_embed", tensor.reshapedStored([1] + tensor.shape, name: "pos_embed"), original)
            case "conv1.weight": try put("patch_embed.proj.weight", tensor, original)
            case "ln_pre.weight", "ln_pre.bias": try put("norm_pre." + k.dropFirst("ln_pre.".count), tensor, original)
            case "ln_post.weight", "ln_post.bias": try put("norm." + k.dropFirst("ln_post.".count), tensor, original)
            case "proj":
                guard tensor.shape.count == 2 else {
                    throw CheckpointError.invalidTensor(
                        file: fileName, name: original, expected: "a projection [D, E]", found: "\(tensor.shape)")
                }
                let (d, e) = (tensor.shape[0], tensor.shape[1])
                let x = Array(try tensor.floatTensor().scalars)
                var t = [Float](repeating: 0, count: d * e)
                for i in 0..<d { for j in 0..<e { t[j * d + i] = x[i * e + j] } }
                m.head["head.weight"] = try .derived("head.weight", shape: [e, d], values: t)
                m.originalNames["head.weight"] = original + " (transposed)"
            default:
                if k.hasPrefix("attn_pool.") || k.hasPrefix("ln_post_attn") {
                    throw CheckpointError.unrecognizedLayout(
                        file: fileName, expected: "an open_clip ViT with class-token pooling",
                        found: "an attentional pooler (\(original), CoCa), which is not supported")
                }
                m.unexpected.append(original)
            }
        }
        return m
    }
}
