import CKATensor
import Foundation

// Architecture inference from the canonical tensors.
extension KeyMapper {
    /// Infers the architecture from the canonical tensors and checks every shape; returns the architecture,
    /// the canonical names in forward order and the absent-but-optional standard keys.
    static func inferArchitecture(
        _ p: inout [String: StoredTensor], head: [String: StoredTensor], heads: Int?,
        source: CheckpointSource, fileName: String
    ) throws -> (ViTArchitecture, [String], [String]) {
        let sourceName = source.rawValue
        // The self-supervised releases all have a class token; other layouts may not (SigLIP, timm class_token=False).
        let classToken = p["cls_token"] != nil || [.dino, .dinoFull, .mocoV3, .mae, .rcmae].contains(source)
        guard let patch = p["patch_embed.proj.weight"] else {
            let required = ["patch_embed.proj.weight", "cls_token", "pos_embed"].filter {
                p[$0] == nil
            }
            throw CheckpointError.missingTensors(
                file: fileName, source: sourceName, names: required + (p.isEmpty ? ["blocks.*"] : []))
        }
        guard patch.shape.count == 4, patch.shape[2] == patch.shape[3], patch.shape[2] > 0, patch.shape[0] > 0 else {
            throw CheckpointError.invalidTensor(
                file: fileName, name: "patch_embed.proj.weight",
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
        var required = ["pos_embed"] + (classToken ? ["cls_token"] : [])
        // CLIP / open_clip patch embeddings have no bias (a zero bias is used).
        if ![.huggingFace, .openCLIP].contains(source) { required.append("patch_embed.proj.bias") }
        let perBlock = [
            "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
            "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
        ]
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
        let preNorm = p["norm_pre.weight"] != nil || p["norm_pre.bias"] != nil
        if preNorm { required += ["norm_pre.weight", "norm_pre.bias"] }
        let attentionPool = p.keys.contains { $0.hasPrefix("attn_pool.") }
        if attentionPool { required += attentionPoolParameters.map { "attn_pool." + $0 } }
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
        guard let pos = p["pos_embed"], pos.shape.count == 3, pos.shape[0] == 1, pos.shape[2] == width, pos.shape[1] > 0
        else {
            throw CheckpointError.shapeMismatch(
                file: fileName, name: "pos_embed", expected: [1, -1, width], found: p["pos_embed"]?.shape ?? [])
        }
        try check("cls_token", [1, 1, width])
        try check("dist_token", [1, 1, width])
        try check("patch_embed.proj.bias", [width])
        try check("norm_pre.weight", [width]); try check("norm_pre.bias", [width])
        var registers = 0
        if let r = p["reg_token"] {
            guard r.shape.count == 3, r.shape[0] == 1, r.shape[2] == width else {
                throw CheckpointError.shapeMismatch(
                    file: fileName, name: "reg_token", expected: [1, -1, width], found: r.shape)
            }
            registers = r.shape[1]
        }
        let distillation = p["dist_token"] != nil
        guard let fc1 = p["blocks.0.mlp.fc1.weight"], fc1.shape.count == 2, fc1.shape[0] > 0 else {
            throw CheckpointError.shapeMismatch(
                file: fileName, name: "blocks.0.mlp.fc1.weight", expected: [-1, width],
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
        if attentionPool { try checkAttentionPool(p, width: width, fileName: fileName) }

        let headCount: Int
        if let h = heads {
            headCount = h
        } else if let h = ViTArchitecture.defaultHeads(forWidth: width) {
            headCount = h
        } else if width % 64 == 0 {
            headCount = width / 64
        } else {
            throw CheckpointError.unrecognizedLayout(
                file: fileName,
                expected: "a width with a known head count (192, 384, 768, 1024, 1280, or a multiple of 64)",
                found: "width \(width); pass the number of heads explicitly")
        }
        guard headCount > 0, width % headCount == 0 else {
            throw CheckpointError.unrecognizedLayout(
                file: fileName, expected: "a head count dividing the width \(width)",
                found: "\(headCount) heads")
        }

        let prefix = (classToken ? 1 : 0) + (distillation ? 1 : 0) + registers
        var tokens = pos.shape[1]
        func squareRoot(_ n: Int) -> Int? {
            guard n > 0 else { return nil }
            let r = Int(Double(n).squareRoot().rounded())
            return r * r == n ? r : nil
        }
        var includesPrefix = true
        var grid = prefix > 0 ? squareRoot(tokens - prefix) : nil
        if grid == nil, classToken, registers > 0, tokens > 1, let g = squareRoot(tokens - 1) {
            // DINOv2 with registers (facebookresearch, HF): the table has rows for the class token and the patches
            // only. The class row is folded into the class token (cls + pos[0], the same float32 sum the original
            // computes) and the table keeps the patch rows, timm's `no_embed_class` layout.
            try foldClassPosition(&p, width: width, fileName: fileName)
            tokens -= 1
            grid = g; includesPrefix = false
        } else if grid == nil, let g = squareRoot(tokens) {
            grid = g; includesPrefix = prefix == 0
        }
        var classCount: Int?
        if let hw = head["head.weight"], hw.shape.count == 2, hw.shape[1] == width { classCount = hw.shape[0] }

        let arch = ViTArchitecture(
            width: width, depth: depth, heads: headCount, patchSize: patchSize, inputChannels: channels,
            tokenCount: tokens, prefixTokens: prefix, positionIncludesPrefix: includesPrefix, gridSize: grid,
            imageSize: grid.map { $0 * patchSize }, mlpHiddenWidth: hidden, mlpRatio: Double(hidden) / Double(width),
            qkvBias: qkvBias, layerScale: ls1, hasFinalNorm: hasNorm, hasFCNorm: hasFCNorm, classCount: classCount)
        var a = arch
        a.classToken = classToken
        a.distillationToken = distillation
        a.registerTokens = registers
        a.preNorm = preNorm
        a.attentionPool = attentionPool
        if attentionPool { a.attentionPoolHiddenWidth = p["attn_pool.mlp.fc1.weight"]?.shape.first }

        var order: [String] = []
        for n in [
            "cls_token", "dist_token", "reg_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
        ]
        where p[n] != nil { order.append(n) }
        if preNorm { order += ["norm_pre.weight", "norm_pre.bias"] }
        for i in 0..<depth {
            for n in [
                "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
                "mlp.fc2.bias", "ls2.gamma",
            ] where p["blocks.\(i).\(n)"] != nil {
                order.append("blocks.\(i).\(n)")
            }
        }
        for n in ["norm.weight", "norm.bias", "fc_norm.weight", "fc_norm.bias"] where p[n] != nil { order.append(n) }
        if attentionPool { order += attentionPoolParameters.map { "attn_pool." + $0 } }
        let optionalAbsent = hasNorm ? [] : ["norm.weight", "norm.bias"]
        return (a, order, optionalAbsent)
    }

    /// The tensors of a MAP head (timm `AttentionPoolLatent`) under `attn_pool.`.
    static let attentionPoolParameters = [
        "latent", "q.weight", "q.bias", "kv.weight", "kv.bias", "proj.weight", "proj.bias", "norm.weight", "norm.bias",
        "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
    ]

    static func checkAttentionPool(_ p: [String: StoredTensor], width d: Int, fileName: String) throws {
        func check(_ name: String, _ expected: [Int]) throws {
            let t = p["attn_pool." + name]!
            guard t.shape == expected else {
                throw CheckpointError.shapeMismatch(
                    file: fileName, name: "attn_pool." + name, expected: expected, found: t.shape)
            }
        }
        try check("latent", [1, 1, d])
        try check("q.weight", [d, d]); try check("q.bias", [d])
        try check("kv.weight", [2 * d, d]); try check("kv.bias", [2 * d])
        try check("proj.weight", [d, d]); try check("proj.bias", [d])
        try check("norm.weight", [d]); try check("norm.bias", [d])
        let hidden = p["attn_pool.mlp.fc1.weight"]!.shape.first ?? 0
        try check("mlp.fc1.weight", [hidden, d]); try check("mlp.fc1.bias", [hidden])
        try check("mlp.fc2.weight", [d, hidden]); try check("mlp.fc2.bias", [d])
    }

    /// `cls_token += pos_embed[:, 0]`, `pos_embed = pos_embed[:, 1:]` (float32, as the original adds them).
    static func foldClassPosition(_ p: inout [String: StoredTensor], width d: Int, fileName: String) throws {
        guard let cls = p["cls_token"], let pos = p["pos_embed"] else { return }
        let c = try cls.floatTensor(), table = try pos.floatTensor()
        let rows = table.count / d
        var folded = [Float](repeating: 0, count: d)
        var patches = [Float](repeating: 0, count: (rows - 1) * d)
        table.withUnsafeBufferPointer { t in
            c.withUnsafeBufferPointer { cp in
                for j in 0..<d { folded[j] = cp[j] + t[j] }
                for i in 0..<(rows - 1) * d { patches[i] = t[d + i] }
            }
        }
        p["cls_token"] = try StoredTensor.derived("cls_token", shape: [1, 1, d], values: folded)
        p["pos_embed"] = try StoredTensor.derived("pos_embed", shape: [1, rows - 1, d], values: patches)
    }
}
