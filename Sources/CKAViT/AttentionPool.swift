import CKACheckpoint
import CKATensor
import Foundation

extension MLPActivation {
    /// Applies the nonlinearity in place to `count` floats, spread over up to `workers` threads (same bits).
    func apply(_ x: UnsafeMutablePointer<Float>, count: Int, workers: Int = 1) {
        switch self {
        case .gelu:
            NeuralKernels.gelu(x, count: count, workers: workers)
        case .geluTanh:
            // PyTorch GELU(approximate='tanh'): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
            let k: Float = 0.797_884_560_802_865_4
            NeuralKernels.forEachRange(count, workers: workers) { range in
                for i in range {
                    let v = x[i]
                    x[i] = 0.5 * v * (1 + Foundation.tanh(k * (v + 0.044_715 * v * v * v)))
                }
            }
        case .quickGELU:
            // OpenAI CLIP: x·σ(1.702·x).
            NeuralKernels.forEachRange(count, workers: workers) { range in
                for i in range {
                    let v = x[i]
                    x[i] = v / (1 + Foundation.exp(-1.702 * v))
                }
            }
        }
    }
}

/// timm's `AttentionPoolLatent` (SigLIP's `SiglipMultiheadAttentionPoolingHead`) in eval mode: one learned query
/// `latent` attends over the tokens with the model's heads, `y = proj(attn(q(latent), kv(x)))`, then
/// `y + mlp(norm(y))`; the output is the pooled vector `[B, D]` (the `attn_pool` hook).
struct AttentionPool {
    let width: Int
    let heads: Int
    let hiddenWidth: Int
    let activation: MLPActivation
    let epsilon: Float
    /// `attn_pool.*` tensors, reshaped.
    let p: [String: Tensor<Float>]

    init(
        parameters all: inout [String: Tensor<Float>], width d: Int, heads: Int, hiddenWidth hid: Int,
        activation: MLPActivation, epsilon: Float, file: String
    ) throws {
        func need(_ n: String, _ shape: [Int]) throws {
            try reshapeParameter(&all, "attn_pool." + n, shape, file: file)
        }
        try need("latent", [d])
        try need("q.weight", [d, d]); try need("q.bias", [d])
        try need("kv.weight", [2 * d, d]); try need("kv.bias", [2 * d])
        try need("proj.weight", [d, d]); try need("proj.bias", [d])
        try need("norm.weight", [d]); try need("norm.bias", [d])
        try need("mlp.fc1.weight", [hid, d]); try need("mlp.fc1.bias", [hid])
        try need("mlp.fc2.weight", [d, hid]); try need("mlp.fc2.bias", [d])
        var own: [String: Tensor<Float>] = [:]
        for (k, v) in all where k.hasPrefix("attn_pool.") { own[String(k.dropFirst("attn_pool.".count))] = v }
        p = own
        width = d; self.heads = heads; hiddenWidth = hid; self.activation = activation; self.epsilon = epsilon
    }

    func linear(_ x: UnsafePointer<Float>, rows: Int, _ name: String, into out: UnsafeMutablePointer<Float>) throws {
        try TransformerBlocks.linear(x, rows: rows, weight: p[name + ".weight"]!, bias: p[name + ".bias"]!, into: out)
    }

    /// The pooled vectors `[B, D]` of tokens `[B·T, D]` (the model's normed output).
    func forward(_ x: Tensor<Float>, images b: Int, tokens t: Int) throws -> Tensor<Float> {
        let d = width, dh = d / heads
        var q = Tensor<Float>(shape: [d]), kv = Tensor<Float>(shape: [b * t, 2 * d])
        try linear(p["latent"]!.pointer, rows: 1, "q", into: q.mutablePointer())
        try linear(x.pointer, rows: b * t, "kv", into: kv.mutablePointer())
        var attended = Tensor<Float>(shape: [b, d]), scores = Tensor<Float>(shape: [t])
        let scale = Float(1 / Double(dh).squareRoot())
        let qp = q.pointer, kvp = kv.pointer, s = scores.mutablePointer(), o = attended.mutablePointer()
        for i in 0..<b {
            for h in 0..<heads {
                let base = kvp + i * t * 2 * d + h * dh
                try gemm(
                    MatrixRef(qp + h * dh, rows: 1, cols: dh),
                    MatrixRef(base, rows: t, cols: dh, leadingDimension: 2 * d), transposeB: true,
                    alpha: scale, into: MutableMatrixRef(s, rows: 1, cols: t))
                NeuralKernels.softmaxRows(s, rows: 1, width: t)
                try gemm(
                    MatrixRef(UnsafePointer(s), rows: 1, cols: t),
                    MatrixRef(base + d, rows: t, cols: dh, leadingDimension: 2 * d),
                    into: MutableMatrixRef(o + i * d + h * dh, rows: 1, cols: dh))
            }
        }
        var y = Tensor<Float>(shape: [b, d]), h = Tensor<Float>(shape: [b, d])
        try linear(attended.pointer, rows: b, "proj", into: y.mutablePointer())
        NeuralKernels.layerNorm(
            y.pointer, h.mutablePointer(), rows: b, width: d, weight: p["norm.weight"]!.pointer,
            bias: p["norm.bias"]!.pointer, epsilon: epsilon)
        var hidden = Tensor<Float>(shape: [b, hiddenWidth]), out = Tensor<Float>(shape: [b, d])
        try linear(h.pointer, rows: b, "mlp.fc1", into: hidden.mutablePointer())
        activation.apply(hidden.mutablePointer(), count: hidden.count)
        try linear(hidden.pointer, rows: b, "mlp.fc2", into: out.mutablePointer())
        NeuralKernels.addScaled(y.pointer, into: out.mutablePointer(), rows: b, width: d, scale: nil)
        return out
    }
}
