import CKACheckpoint
import CKATensor
import Foundation
import _CKASupport

/// A stack of pre-norm transformer blocks (timm `Block`, eval mode) that share width, head count and MLP width:
/// the encoder `blocks.*` of a ViT or the decoder `decoder_blocks.*` of an MAE.
///
/// `x = x + ls1(proj(attn(norm1(x))))`, `x = x + ls2(fc2(GELU(fc1(norm2(x)))))` on `images` sequences of `tokens`
/// tokens each, stored as `[images·tokens, width]` rows; the token count is free (visible tokens of a masked
/// encoder, all tokens of a decoder). One implementation for every caller.
struct TransformerBlocks {
    /// The module path of the stack (`blocks`, `decoder_blocks`); block i's parameters are `prefix.i.*`.
    let prefix: String
    let depth: Int
    let width: Int
    let heads: Int
    let hiddenWidth: Int
    let layerScale: Bool
    let epsilon: Float
    /// Weights by name (`prefix.i.attn.qkv.weight`, …), validated and reshaped by `validate`.
    let p: [String: Tensor<Float>]
    /// The MLP nonlinearity (exact GELU for every timm-layout model).
    var activation = MLPActivation.gelu

    /// Checks that `parameters` holds every tensor of blocks `prefix.0 … prefix.(depth−1)` with the right element
    /// count and reshapes them to the form the blocks use (a missing qkv bias becomes zeros).
    /// - Throws: `ViTError.missingParameter` / `.parameterShape` naming the tensor.
    static func validate(
        _ p: inout [String: Tensor<Float>], prefix: String, depth: Int, width d: Int, hiddenWidth hid: Int,
        layerScale: Bool, file: String
    ) throws {
        for i in 0..<depth {
            let b = "\(prefix).\(i)."
            for n in ["norm1", "norm2"] {
                try reshapeParameter(&p, b + n + ".weight", [d], file: file)
                try reshapeParameter(&p, b + n + ".bias", [d], file: file)
            }
            try reshapeParameter(&p, b + "attn.qkv.weight", [3 * d, d], file: file)
            if p[b + "attn.qkv.bias"] == nil { p[b + "attn.qkv.bias"] = Tensor(shape: [3 * d]) }
            try reshapeParameter(&p, b + "attn.qkv.bias", [3 * d], file: file)
            try reshapeParameter(&p, b + "attn.proj.weight", [d, d], file: file)
            try reshapeParameter(&p, b + "attn.proj.bias", [d], file: file)
            try reshapeParameter(&p, b + "mlp.fc1.weight", [hid, d], file: file)
            try reshapeParameter(&p, b + "mlp.fc1.bias", [hid], file: file)
            try reshapeParameter(&p, b + "mlp.fc2.weight", [d, hid], file: file)
            try reshapeParameter(&p, b + "mlp.fc2.bias", [d], file: file)
            if layerScale {
                try reshapeParameter(&p, b + "ls1.gamma", [d], file: file)
                try reshapeParameter(&p, b + "ls2.gamma", [d], file: file)
            }
        }
    }

    /// Buffers of one run of the stack, reused while the row count stays the same.
    struct Workspace {
        let images: Int
        let tokens: Int
        var x, h, qkv, attn, proj, fc1, scores: Tensor<Float>
        init(images b: Int, tokens t: Int, width d: Int, hiddenWidth: Int) {
            images = b; tokens = t
            x = Tensor(shape: [b * t, d]); h = Tensor(shape: [b * t, d]); attn = Tensor(shape: [b * t, d])
            proj = Tensor(shape: [b * t, d]); qkv = Tensor(shape: [b * t, 3 * d])
            fc1 = Tensor(shape: [b * t, hiddenWidth]); scores = Tensor(shape: [t, t])
        }
    }

    /// A workspace for `images` sequences of `tokens` tokens (the given one if it already fits).
    func workspace(_ w: Workspace?, images b: Int, tokens t: Int) -> Workspace {
        if let w, w.images == b, w.tokens == t { return w }
        return Workspace(images: b, tokens: t, width: width, hiddenWidth: hiddenWidth)
    }

    /// `out = input·Wᵀ + b` for `rows` rows, W `[out, in]` named `name.weight`, through BLAS GEMM.
    func linear(_ input: UnsafePointer<Float>, rows: Int, _ name: String, into out: UnsafeMutablePointer<Float>) throws
    {
        try TransformerBlocks.linear(
            input, rows: rows, weight: p[name + ".weight"]!, bias: p[name + ".bias"]!, into: out)
    }

    /// `out = input·Wᵀ + bias` for `rows` rows with W `[out, in]`, through BLAS GEMM (beta = 1 on the broadcast bias).
    static func linear(
        _ input: UnsafePointer<Float>, rows: Int, weight wt: Tensor<Float>, bias: Tensor<Float>,
        into o: UnsafeMutablePointer<Float>
    ) throws {
        let outW = wt.shape[0], inW = wt.shape[1]
        NeuralKernels.broadcastRows(bias.pointer, into: o, rows: rows, width: outW, workers: blasThreadCount)
        try gemm(
            MatrixRef(input, rows: rows, cols: inW), wt.matrixRef, transposeB: true, beta: 1,
            into: MutableMatrixRef(o, rows: rows, cols: outW))
    }

    /// Multi-head attention of `images` sequences from fused qkv rows `[images·tokens, 3·width]` into
    /// `[images·tokens, width]`, one (image, head) at a time: S = softmax(scale·Q·Kᵀ), O = S·V (`scores`: t×t).
    func attention(
        _ q: UnsafePointer<Float>, into o: UnsafeMutablePointer<Float>, images b: Int, tokens t: Int,
        scores s: UnsafeMutablePointer<Float>
    ) throws {
        let d = width, dh = d / heads
        let scale = Float(1 / Double(dh).squareRoot())
        try forEachHead(images: b, scratchCount: t * t, scratch: s) { i, hd, s in
            let base = q + i * t * 3 * d + hd * dh
            try gemm(
                MatrixRef(base, rows: t, cols: dh, leadingDimension: 3 * d),
                MatrixRef(base + d, rows: t, cols: dh, leadingDimension: 3 * d), transposeB: true,
                alpha: scale, into: MutableMatrixRef(s, rows: t, cols: t))
            NeuralKernels.softmaxRows(s, rows: t, width: t)
            try gemm(
                MatrixRef(UnsafePointer(s), rows: t, cols: t),
                MatrixRef(base + 2 * d, rows: t, cols: dh, leadingDimension: 3 * d),
                into: MutableMatrixRef(o + i * t * d + hd * dh, rows: t, cols: dh, leadingDimension: d))
        }
    }

    /// Calls `body(image, head, scratch)` for every (image, head) pair. With several BLAS threads the pairs are
    /// spread over them, each pair's products then single-threaded with a `scratchCount`-float buffer of its
    /// worker: per-head products (tokens × head width) are too small for OpenBLAS to split well, and its
    /// threads would spin between them. With one thread, `scratch` is used. Pairs write disjoint outputs.
    func forEachHead(
        images b: Int, scratchCount: Int, scratch: UnsafeMutablePointer<Float>,
        _ body: (Int, Int, UnsafeMutablePointer<Float>) throws -> Void
    ) throws {
        let pairs = b * heads, threads = blasThreadCount, workers = Swift.min(threads, pairs)
        if workers <= 1 {
            for pair in 0..<pairs { try body(pair / heads, pair % heads, scratch) }
            return
        }
        var buffers = [Float](repeating: 0, count: workers * scratchCount)
        try withBLASThreads(1) {
            try buffers.withUnsafeMutableBufferPointer { bp in
                let base = bp.baseAddress!, heads = self.heads
                try parallelFor(workers) { w in
                    let s = base + w * scratchCount
                    for pair in stride(from: w, to: pairs, by: workers) { try body(pair / heads, pair % heads, s) }
                }
            }
        }
    }

    /// Runs every block on the tokens in `w.x` (`[images·tokens, width]`), in place.
    ///
    /// - Parameters:
    ///   - emit: called with each intermediate (`prefix.i.norm1`, `.attn.qkv`, …, `prefix.i`), its rows and the
    ///     `[images, tokens, channels]` shape; callers filter by name.
    ///   - afterBlock: called with `prefix.i` after block i, when `w.x` holds its output.
    func run(
        _ w: inout Workspace, emit: (String, Tensor<Float>, [Int]) throws -> Void = { _, _, _ in },
        afterBlock: (String, Tensor<Float>) throws -> Void = { _, _ in }
    ) throws {
        let b = w.images, t = w.tokens, d = width, rows = b * t
        // The element-wise kernels run on the BLAS threads' cores between the GEMMs (bits do not depend on it).
        let workers = blasThreadCount
        func layerNorm(_ name: String) {
            NeuralKernels.layerNorm(
                w.x.pointer, w.h.mutablePointer(), rows: rows, width: d,
                weight: p[name + ".weight"]!.pointer, bias: p[name + ".bias"]!.pointer, epsilon: epsilon,
                workers: workers)
        }
        for blk in 0..<depth {
            // Hook names are timm module paths (`LayerName`); parameters are `<hook>.weight`, `<hook>.bias`, ….
            let n = LayerName(block: blk, prefix: prefix).description
            func hook(_ k: LayerKind) -> String { LayerName(block: blk, kind: k, prefix: prefix).description }
            layerNorm(hook(.norm1))
            try emit(hook(.norm1), w.h, [b, t, d])
            try linear(w.h.pointer, rows: rows, hook(.qkv), into: w.qkv.mutablePointer())
            try emit(hook(.qkv), w.qkv, [b, t, 3 * d])
            try attention(
                w.qkv.pointer, into: w.attn.mutablePointer(), images: b, tokens: t, scores: w.scores.mutablePointer())
            try linear(w.attn.pointer, rows: rows, hook(.attnProj), into: w.proj.mutablePointer())
            try emit(hook(.attnProj), w.proj, [b, t, d])
            if layerScale {
                NeuralKernels.scaleColumns(
                    w.proj.mutablePointer(), rows: rows, width: d, scale: p[n + ".ls1.gamma"]!.pointer,
                    workers: workers)
                try emit(hook(.ls1), w.proj, [b, t, d])
            }
            NeuralKernels.addScaled(
                w.proj.pointer, into: w.x.mutablePointer(), rows: rows, width: d, scale: nil, workers: workers)

            layerNorm(hook(.norm2))
            try emit(hook(.norm2), w.h, [b, t, d])
            try linear(w.h.pointer, rows: rows, hook(.fc1), into: w.fc1.mutablePointer())
            try emit(hook(.fc1), w.fc1, [b, t, hiddenWidth])
            activation.apply(w.fc1.mutablePointer(), count: w.fc1.count, workers: workers)
            try emit(hook(.act), w.fc1, [b, t, hiddenWidth])
            try linear(w.fc1.pointer, rows: rows, hook(.fc2), into: w.proj.mutablePointer())
            try emit(hook(.fc2), w.proj, [b, t, d])
            if layerScale {
                NeuralKernels.scaleColumns(
                    w.proj.mutablePointer(), rows: rows, width: d, scale: p[n + ".ls2.gamma"]!.pointer,
                    workers: workers)
                try emit(hook(.ls2), w.proj, [b, t, d])
            }
            NeuralKernels.addScaled(
                w.proj.pointer, into: w.x.mutablePointer(), rows: rows, width: d, scale: nil, workers: workers)
            try emit(n, w.x, [b, t, d])
            try afterBlock(n, w.x)
        }
    }

    /// GEMM floating-point operations (2·m·n·k per product, attention included) of one run on
    /// `images` sequences of `tokens` tokens.
    static func flops(images b: Int, tokens t: Int, width d: Int, hiddenWidth hid: Int, depth: Int) -> Double {
        let rows = Double(b * t), dd = Double(d), hh = Double(hid)
        let linear = 2 * rows * dd * (3 * dd + dd + 2 * hh)  // qkv, proj, fc1, fc2
        let attention = 2 * 2 * Double(b) * Double(t) * Double(t) * dd  // Q·Kᵀ and S·V over all heads
        return Double(depth) * (linear + attention)
    }
}

/// Checks that `p[name]` exists with `shape.product` elements and reshapes it to `shape`.
/// - Throws: `ViTError.missingParameter` / `.parameterShape`.
func reshapeParameter(_ p: inout [String: Tensor<Float>], _ name: String, _ shape: [Int], file: String) throws {
    guard let t = p[name] else { throw ViTError.missingParameter(name: name, file: file) }
    guard t.count == shape.reduce(1, *) else {
        throw ViTError.parameterShape(name: name, expected: shape, got: t.shape)
    }
    p[name] = try t.reshaped(shape)
}
