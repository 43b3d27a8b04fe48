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
    private var workspace: Workspace?

    /// Builds the model from canonical (timm-named) parameters.
    /// - Throws: `ViTError` if a parameter is missing or has the wrong shape.
    public init(parameters: [String: Tensor<Float>], architecture a: ViTArchitecture, file: String = "checkpoint")
        throws
    {
        architecture = a
        guard a.prefixTokens == 1 else {
            throw ViTError.unsupported(
                "\(file): \(a.prefixTokens) prefix tokens (register tokens) are not supported yet")
        }
        guard a.width % a.heads == 0 else {
            throw ViTError.unsupported("width \(a.width) is not divisible by \(a.heads) heads")
        }
        var p = parameters
        parameterShapes = parameters.mapValues(\.shape)
        let d = a.width
        func need(_ name: String, _ shape: [Int]) throws { try reshapeParameter(&p, name, shape, file: file) }
        try need("patch_embed.proj.weight", [d, a.inputChannels * a.patchSize * a.patchSize])
        try need("patch_embed.proj.bias", [d])
        try need("cls_token", [d])
        try need("pos_embed", [a.tokenCount, d])
        try TransformerBlocks.validate(
            &p, prefix: "blocks", depth: a.depth, width: d, hiddenWidth: a.mlpHiddenWidth,
            layerScale: a.layerScale, file: file)
        if a.hasFinalNorm { try need("norm.weight", [d]); try need("norm.bias", [d]) }
        if a.hasFCNorm { try need("fc_norm.weight", [d]); try need("fc_norm.bias", [d]) }
        self.p = p
        blocks = TransformerBlocks(
            prefix: "blocks", depth: a.depth, width: d, heads: a.heads, hiddenWidth: a.mlpHiddenWidth,
            layerScale: a.layerScale, epsilon: Float(a.layerNormEpsilon), p: p)
    }

    /// Builds the model of a loaded checkpoint.
    public convenience init(checkpoint: Checkpoint) throws {
        try self.init(parameters: checkpoint.parameters, architecture: checkpoint.architecture, file: checkpoint.file)
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
                images: b, tokens: np + 1, width: a.width, hiddenWidth: a.mlpHiddenWidth)
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
        let b = pixels.shape[0], ps = a.patchSize, g = size / ps, np = g * g, t = np + 1, d = a.width
        guard t == a.tokenCount || !a.positionIncludesPrefix && np == a.tokenCount else {
            throw ViTError.unsupported("input \(size)px gives \(t) tokens; the position table has \(a.tokenCount)")
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
                weight: p[name + ".weight"]!.pointer, bias: p[name + ".bias"]!.pointer, epsilon: eps)
        }
        func pooled(_ prefix: String, _ x: Tensor<Float>) throws {
            for kind in Pooling.suffixes where hooks.contains("\(prefix):\(kind.rawValue)") {
                try sink("\(prefix):\(kind.rawValue)", pool(x, batch: b, tokens: t, width: d, kind: kind))
            }
        }

        // Patch embedding as im2col + GEMM: column order (channel, row, col) matches the conv weight.
        im2col(pixels, into: &w.cols, patch: ps, grid: g)
        try blocks.linear(w.cols.pointer, rows: b * np, "patch_embed.proj", into: w.patches.mutablePointer())
        try emit("patch_embed", w.patches, [b, np, d])

        // Tokens: [CLS, patches] + position table.
        assembleTokens(w.patches.pointer, into: w.blocks.x.mutablePointer(), images: b, patches: np)

        try blocks.run(&w.blocks, emit: emit, afterBlock: pooled)
        if a.hasFCNorm, hooks.contains("fc_norm") {
            var g = pool(w.blocks.x, batch: b, tokens: t, width: d, kind: .gapNoCLS)
            NeuralKernels.layerNorm(
                g.pointer, g.mutablePointer(), rows: b, width: d, weight: p["fc_norm.weight"]!.pointer,
                bias: p["fc_norm.bias"]!.pointer, epsilon: eps)
            try sink("fc_norm", g)
        }
        guard a.hasFinalNorm else { return try w.blocks.x.reshaped([b, t, d]) }
        var out = Tensor<Float>(shape: [b * t, d])
        layerNorm(w.blocks.x, "norm", into: &out)
        let normed = try out.reshaped([b, t, d])
        try emit("norm", out, [b, t, d])
        for kind in Pooling.suffixes where hooks.contains("norm:\(kind.rawValue)") {
            try sink("norm:\(kind.rawValue)", pool(out, batch: b, tokens: t, width: d, kind: kind))
        }
        return normed
    }

    /// Token rows `[B·(1+P), D]` = [CLS, patches] + the position table, from patch embeddings `[B·P, D]`.
    func assembleTokens(
        _ patches: UnsafePointer<Float>, into x: UnsafeMutablePointer<Float>, images b: Int, patches np: Int
    ) {
        let d = architecture.width, t = np + 1
        let cls = p["cls_token"]!.pointer, pos = p["pos_embed"]!.pointer
        for i in 0..<b {
            let row = x + i * t * d
            for j in 0..<d { row[j] = cls[j] + pos[j] }
            for k in 0..<np {
                let dst = row + (k + 1) * d, src = patches + (i * np + k) * d, pk = pos + (k + 1) * d
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
        kind.pool(x.pointer, images: b, tokens: t, width: d, into: out.mutablePointer())
        return out
    }
}

extension Tensor where Scalar == Float {
    /// A read-only matrix view `[rows, cols]` of a 2-D tensor.
    var matrixRef: MatrixRef<Float> { MatrixRef(pointer, rows: shape[0], cols: shape[1]) }
}
