import CKACheckpoint
import CKATensor
import Foundation

/// Errors of building or running a Vision Transformer.
public enum ViTError: Error, Equatable, CustomStringConvertible {
    case missingParameter(name: String, file: String)
    case parameterShape(name: String, expected: [Int], got: [Int])
    case inputShape(expected: String, got: [Int])
    case unsupported(String)

    public var description: String {
        switch self {
        case let .missingParameter(name, file): return "\(file): the checkpoint has no parameter '\(name)'"
        case let .parameterShape(name, expected, got):
            return "parameter '\(name)' has shape \(describeShape(got)), expected \(describeShape(expected))"
        case let .inputShape(expected, got): return "input has shape \(describeShape(got)), expected \(expected)"
        case let .unsupported(s): return s
        }
    }
}

/// A pre-norm Vision Transformer (ViT, DeiT, DINO, MoCo-v3, MAE, DINOv2) evaluated on the tensor core.
///
/// Semantics follow timm's `VisionTransformer` in eval mode: patch embedding (a convolution with
/// stride = kernel = patch, computed as one GEMM), class token, position table, blocks
/// `x = x + ls1(proj(attn(norm1(x))))`, `x = x + ls2(fc2(GELU(fc1(norm2(x)))))`, final `norm`.
/// LayerNorm eps comes from the architecture (1e-6 for every reference model), GELU is exact erf,
/// attention scale is `headDim^-0.5`, qkv channels are ordered `(q|k|v, head, dim)`.
///
/// Every matrix product goes through BLAS; buffers are allocated once per batch shape and reused.
public final class VisionTransformer {
    public let architecture: ViTArchitecture
    let p: [String: Tensor<Float>]
    /// The encoder blocks `blocks.*` (shared code with the MAE decoder).
    let blocks: TransformerBlocks
    /// The shapes the parameters were given in (checkpoint shapes, e.g. `cls_token` `[1, 1, D]`), by name.
    let parameterShapes: [String: [Int]]
    /// The MAP head `attn_pool` (SigLIP, timm `global_pool='map'`), if the model has one.
    let attentionPool: AttentionPool?
    private var workspace: Workspace?

    /// Builds the model from canonical (timm-named) parameters.
    /// - Throws: `ViTError` if a parameter is missing or has the wrong shape.
    public init(parameters: [String: Tensor<Float>], architecture a: ViTArchitecture, file: String = "checkpoint")
        throws
    {
        architecture = a
        let prefix = (a.classToken ? 1 : 0) + (a.distillationToken ? 1 : 0) + a.registerTokens
        guard a.prefixTokens == prefix else {
            throw ViTError.unsupported(
                "\(file): \(a.prefixTokens) prefix tokens, but class, distillation and register tokens make \(prefix)")
        }
        guard a.width % a.heads == 0 else {
            throw ViTError.unsupported("width \(a.width) is not divisible by \(a.heads) heads")
        }
        var p = parameters
        parameterShapes = parameters.mapValues(\.shape)
        let d = a.width
        func need(_ name: String, _ shape: [Int]) throws { try reshapeParameter(&p, name, shape, file: file) }
        try need("patch_embed.proj.weight", [d, a.inputChannels * a.patchSize * a.patchSize])
        if p["patch_embed.proj.bias"] == nil { p["patch_embed.proj.bias"] = Tensor(shape: [d]) }  // CLIP: no bias
        try need("patch_embed.proj.bias", [d])
        if a.classToken { try need("cls_token", [d]) }
        if a.distillationToken { try need("dist_token", [d]) }
        if a.registerTokens > 0 { try need("reg_token", [a.registerTokens, d]) }
        try need("pos_embed", [a.tokenCount, d])
        if a.preNorm { try need("norm_pre.weight", [d]); try need("norm_pre.bias", [d]) }
        try TransformerBlocks.validate(
            &p, prefix: "blocks", depth: a.depth, width: d, hiddenWidth: a.mlpHiddenWidth,
            layerScale: a.layerScale, file: file)
        if a.hasFinalNorm { try need("norm.weight", [d]); try need("norm.bias", [d]) }
        if a.hasFCNorm { try need("fc_norm.weight", [d]); try need("fc_norm.bias", [d]) }
        attentionPool =
            a.attentionPool
            ? try AttentionPool(
                parameters: &p, width: d, heads: a.heads, hiddenWidth: a.attentionPoolHiddenWidth ?? a.mlpHiddenWidth,
                activation: a.activation, epsilon: Float(a.layerNormEpsilon), file: file) : nil
        if let c = a.headFeatures {
            for h in ["head", "head_dist"] where h == "head" || a.distillationToken && p["head_dist.weight"] != nil {
                try need(h + ".weight", [c, d])
                if p[h + ".bias"] == nil { p[h + ".bias"] = Tensor(shape: [c]) }  // CLIP's projection has no bias
                try need(h + ".bias", [c])
            }
        }
        self.p = p
        blocks = TransformerBlocks(
            prefix: "blocks", depth: a.depth, width: d, heads: a.heads, hiddenWidth: a.mlpHiddenWidth,
            layerScale: a.layerScale, epsilon: Float(a.layerNormEpsilon), p: p, activation: a.activation)
    }

    /// Builds the model of a loaded checkpoint (with its head when the architecture offers the `head` hook).
    public convenience init(checkpoint: Checkpoint) throws {
        var parameters = checkpoint.parameters
        if checkpoint.architecture.headFeatures != nil {
            for (name, t) in checkpoint.head { parameters[name] = try t.floatTensor() }
        }
        try self.init(parameters: parameters, architecture: checkpoint.architecture, file: checkpoint.file)
    }

    /// A parameter by its timm name (reshaped to the form the model uses).
    public func parameter(_ name: String) -> Tensor<Float>? { p[name] }

    /// The input side length the position table fits (`gridSize · patchSize`).
    public var imageSize: Int { architecture.imageSize ?? (architecture.gridSize ?? 14) * architecture.patchSize }

    /// Buffers of one forward pass, reused while the batch size stays the same.
    struct Workspace {
        let batch: Int
        var cols, patches: Tensor<Float>
        var blocks: TransformerBlocks.Workspace
        init(batch b: Int, a: ViTArchitecture, patchesPerImage np: Int) {
            batch = b
            cols = Tensor(shape: [b * np, a.inputChannels * a.patchSize * a.patchSize])
            patches = Tensor(shape: [b * np, a.width])
            blocks = TransformerBlocks.Workspace(
                images: b, tokens: np + a.prefixTokens, width: a.width, hiddenWidth: a.mlpHiddenWidth)
        }
    }

    /// Runs the model on `pixels` `[B, C, H, W]` (normalised network input, H = W = `imageSize`).
    ///
    /// - Parameters:
    ///   - hooks: names of the hook points to report (see `HookPoint`); others cost nothing.
    ///   - sink: called with each selected hook's value as soon as it is computed, in network order.
    ///     The tensor is valid after the call too (copy-on-write), but keeping it forces a copy.
    /// - Returns: the final normed tokens `[B, T, D]` (or, without a final norm, the last block output).
    @discardableResult
    public func forward(
        _ pixels: Tensor<Float>, hooks: Set<String> = [],
        sink: (String, Tensor<Float>) throws -> Void = { _, _ in }
    ) throws -> Tensor<Float> {
        let a = architecture
        let size = imageSize
        guard pixels.rank == 4, pixels.shape[1] == a.inputChannels, pixels.shape[2] == size, pixels.shape[3] == size
        else {
            throw ViTError.inputShape(expected: "[B, \(a.inputChannels), \(size), \(size)]", got: pixels.shape)
        }
        let b = pixels.shape[0], ps = a.patchSize, g = size / ps, np = g * g, t = np + a.prefixTokens, d = a.width
        guard a.positionIncludesPrefix ? t == a.tokenCount : np == a.tokenCount else {
            throw ViTError.unsupported(
                "input \(size)px gives \(np) patches; the position table has \(a.tokenCount) rows"
                    + (a.positionIncludesPrefix ? " including \(a.prefixTokens) prefix tokens" : ""))
        }
        if workspace?.batch != b { workspace = Workspace(batch: b, a: a, patchesPerImage: np) }
        var w = workspace.take()!  // uniquely referenced while in use: no copy-on-write of the buffers
        defer { workspace = w }
        let eps = Float(a.layerNormEpsilon)

        func emit(_ name: String, _ tensor: Tensor<Float>, _ shape: [Int]) throws {
            if hooks.contains(name) { try sink(name, try tensor.reshaped(shape)) }
        }
        func layerNorm(_ input: Tensor<Float>, _ name: String, into out: inout Tensor<Float>) {
            NeuralKernels.layerNorm(
                input.pointer, out.mutablePointer(), rows: b * t, width: d,
                weight: p[name + ".weight"]!.pointer, bias: p[name + ".bias"]!.pointer, epsilon: eps,
                workers: blasThreadCount)
        }
        func pooled(_ prefix: String, _ x: Tensor<Float>) throws {
            for kind in HookPoint.poolingKinds(for: a) where hooks.contains("\(prefix):\(kind.rawValue)") {
                try sink("\(prefix):\(kind.rawValue)", pool(x, batch: b, tokens: t, width: d, kind: kind))
            }
        }

        // Patch embedding as im2col + GEMM: column order (channel, row, col) matches the conv weight.
        im2col(pixels, into: &w.cols, patch: ps, grid: g)
        try blocks.linear(w.cols.pointer, rows: b * np, "patch_embed.proj", into: w.patches.mutablePointer())
        try emit("patch_embed", w.patches, [b, np, d])

        // Tokens: [CLS, DIST, registers, patches] + the position table.
        assembleTokens(w.patches.pointer, into: w.blocks.x.mutablePointer(), images: b, patches: np)
        if a.preNorm {
            NeuralKernels.layerNorm(
                w.blocks.x.pointer, w.blocks.x.mutablePointer(), rows: b * t, width: d,
                weight: p["norm_pre.weight"]!.pointer, bias: p["norm_pre.bias"]!.pointer, epsilon: eps,
                workers: blasThreadCount)
            try emit("norm_pre", w.blocks.x, [b, t, d])
        }

        try blocks.run(&w.blocks, emit: emit, afterBlock: pooled)
        var features: Tensor<Float>?  // what the head reads
        if a.hasFCNorm, hooks.contains("fc_norm") || hooks.contains("head") {
            var g = pool(w.blocks.x, batch: b, tokens: t, width: d, kind: .gapNoCLS)
            NeuralKernels.layerNorm(
                g.pointer, g.mutablePointer(), rows: b, width: d, weight: p["fc_norm.weight"]!.pointer,
                bias: p["fc_norm.bias"]!.pointer, epsilon: eps)
            if hooks.contains("fc_norm") { try sink("fc_norm", g) }
            features = g
        }
        var out = w.blocks.x
        if a.hasFinalNorm {
            out = Tensor<Float>(shape: [b * t, d])
            layerNorm(w.blocks.x, "norm", into: &out)
            try emit("norm", out, [b, t, d])
            for kind in HookPoint.poolingKinds(for: a) where hooks.contains("norm:\(kind.rawValue)") {
                try sink("norm:\(kind.rawValue)", pool(out, batch: b, tokens: t, width: d, kind: kind))
            }
        }
        if let pool = attentionPool, hooks.contains("attn_pool") || hooks.contains("head") {
            let pooled = try pool.forward(out, images: b, tokens: t)
            if hooks.contains("attn_pool") { try sink("attn_pool", pooled) }
            features = pooled
        }
        if a.headFeatures != nil, hooks.contains("head") {
            try sink("head", try head(tokens: out, pooled: features, images: b, tokens: t))
        }
        return try out.reshaped([b, t, d])
    }

    /// The model's own head (`head` hook): `head(features)` on the MAP output, `fc_norm` features, or the class
    /// token of the final tokens; with a distillation head, `(head(x[:, 0]) + head_dist(x[:, 1])) / 2` as DeiT does.
    func head(tokens x: Tensor<Float>, pooled: Tensor<Float>?, images b: Int, tokens t: Int) throws -> Tensor<Float> {
        let a = architecture, d = a.width, c = a.headFeatures!
        func apply(_ name: String, token: Int, input given: Tensor<Float>? = nil) throws -> Tensor<Float> {
            var input: Tensor<Float>
            if let given {
                input = given
            } else if let pooled, token == 0 {
                input = pooled
            } else {
                input = Tensor<Float>(shape: [b, d])
                let src = x.pointer, dst = input.mutablePointer()
                for i in 0..<b { (dst + i * d).update(from: src + (i * t + token) * d, count: d) }
            }
            var out = Tensor<Float>(shape: [b, c])
            try TransformerBlocks.linear(
                input.pointer, rows: b, weight: p[name + ".weight"]!, bias: p[name + ".bias"]!,
                into: out.mutablePointer())
            return out
        }
        if pooled == nil && !a.classToken {
            // timm global_pool='avg' without fc_norm: the mean of the (normed) patch tokens.
            return try apply("head", token: 0, input: pool(x, batch: b, tokens: t, width: d, kind: .gapNoCLS))
        }
        var logits = try apply("head", token: 0)
        if a.distillationToken, p["head_dist.weight"] != nil {
            let dist = try apply("head_dist", token: 1)
            let o = logits.mutablePointer(), q = dist.pointer
            for i in 0..<b * c { o[i] = (o[i] + q[i]) / 2 }
        }
        return logits
    }

    /// Token rows `[B·T, D]` = [CLS, DIST, registers, patches] (those the model has) + the position table, from
    /// patch embeddings `[B·P, D]`. The table covers every token, or (`no_embed_class`) the patches only.
    func assembleTokens(
        _ patches: UnsafePointer<Float>, into x: UnsafeMutablePointer<Float>, images b: Int, patches np: Int
    ) {
        let a = architecture, d = a.width, prefix = a.prefixTokens, t = np + prefix
        let pos = p["pos_embed"]!.pointer
        var prefixRows: [UnsafePointer<Float>] = []
        if a.classToken { prefixRows.append(p["cls_token"]!.pointer) }
        if a.distillationToken { prefixRows.append(p["dist_token"]!.pointer) }
        if a.registerTokens > 0 {
            let r = p["reg_token"]!.pointer
            for k in 0..<a.registerTokens { prefixRows.append(r + k * d) }
        }
        let patchPos = a.positionIncludesPrefix ? pos + prefix * d : pos
        for i in 0..<b {
            let row = x + i * t * d
            for (k, src) in prefixRows.enumerated() {
                let dst = row + k * d
                if a.positionIncludesPrefix {
                    let pk = pos + k * d
                    for j in 0..<d { dst[j] = src[j] + pk[j] }
                } else {
                    dst.update(from: src, count: d)
                }
            }
            for k in 0..<np {
                let dst = row + (k + prefix) * d, src = patches + (i * np + k) * d, pk = patchPos + k * d
                for j in 0..<d { dst[j] = src[j] + pk[j] }
            }
        }
    }

    /// Rearranges `[B, C, H, W]` pixels into patch rows `[B·g², C·p·p]` in (channel, row, col) order.
    func im2col(_ x: Tensor<Float>, into cols: inout Tensor<Float>, patch p: Int, grid g: Int) {
        let b = x.shape[0], c = x.shape[1], hw = x.shape[2]
        let src = x.pointer, dst = cols.mutablePointer()
        let rowLen = c * p * p
        for i in 0..<b {
            for gy in 0..<g {
                for gx in 0..<g {
                    var o = dst + ((i * g + gy) * g + gx) * rowLen
                    for ch in 0..<c {
                        for ky in 0..<p {
                            let s = src + ((i * c + ch) * hw + gy * p + ky) * hw + gx * p
                            o.update(from: s, count: p)
                            o += p
                        }
                    }
                }
            }
        }
    }

    /// Pooled features `[B, D]` of tokens `[B·T, D]` (`Pooling.pool`).
    func pool(_ x: Tensor<Float>, batch b: Int, tokens t: Int, width d: Int, kind: Pooling) -> Tensor<Float> {
        var out = Tensor<Float>(shape: [b, d])
        kind.pool(
            x.pointer, images: b, tokens: t, width: d, prefixTokens: architecture.prefixTokens,
            into: out.mutablePointer())
        return out
    }
}

extension Tensor where Scalar == Float {
    /// A read-only matrix view `[rows, cols]` of a 2-D tensor.
    var matrixRef: MatrixRef<Float> { MatrixRef(pointer, rows: shape[0], cols: shape[1]) }
}
