import CKACheckpoint
import CKATensor
import Foundation

extension VisionTransformer {
    /// A randomly initialised model of architecture `a`, the untrained baseline of CKA and k-NN figures.
    ///
    /// Follows timm's `init_weights_vit_timm`: every Linear weight ~ truncated normal (std 0.02, cut at
    /// ±2σ), biases 0, LayerNorm weight 1 and bias 0, `pos_embed` ~ truncated normal (0.02), `cls_token`
    /// ~ normal (1e-6); the patch-embedding convolution keeps PyTorch's default (uniform in ±1/√fan_in
    /// for weight and bias); LayerScale γ = `layerScaleInit` (1e-5, DINOv2's value). The generator is
    /// SplitMix64 with Box–Muller, so a seed gives the same model on every machine (not torch's RNG).
    public static func randomlyInitialized(_ a: ViTArchitecture, seed: UInt64, layerScaleInit: Float = 1e-5) throws
        -> VisionTransformer
    {
        var rng = SplitMix64(seed: seed)
        let d = a.width, hid = a.mlpHiddenWidth, fanIn = a.inputChannels * a.patchSize * a.patchSize
        var p: [String: Tensor<Float>] = [:]
        func truncNormal(_ shape: [Int], std: Double) -> Tensor<Float> { truncatedNormal(shape, std: std, rng: &rng) }
        func uniform(_ shape: [Int], bound: Double) -> Tensor<Float> {
            Tensor(shape: shape) { _ in Float((rng.unit() * 2 - 1) * bound) }
        }
        let bound = 1 / Double(fanIn).squareRoot()
        p["patch_embed.proj.weight"] = uniform([d, a.inputChannels, a.patchSize, a.patchSize], bound: bound)
        p["patch_embed.proj.bias"] = uniform([d], bound: bound)
        p["cls_token"] = Tensor(shape: [1, 1, d]) { _ in Float(rng.gaussian() * 1e-6) }
        p["pos_embed"] = truncNormal([1, a.tokenCount, d], std: 0.02)
        randomBlocks(
            into: &p, prefix: "blocks", depth: a.depth, width: d, hiddenWidth: hid, layerScale: a.layerScale,
            layerScaleInit: layerScaleInit, rng: &rng)
        if a.hasFinalNorm { p["norm.weight"] = Tensor(shape: [d], repeating: 1); p["norm.bias"] = Tensor(shape: [d]) }
        if a.hasFCNorm {
            p["fc_norm.weight"] = Tensor(shape: [d], repeating: 1); p["fc_norm.bias"] = Tensor(shape: [d])
        }
        // Parts of other families, drawn after the standard ones (a standard model keeps its values for a seed).
        if !a.classToken { p["cls_token"] = nil }
        if a.distillationToken { p["dist_token"] = truncNormal([1, 1, d], std: 0.02) }
        if a.registerTokens > 0 {
            p["reg_token"] = Tensor(shape: [1, a.registerTokens, d]) { _ in Float(rng.gaussian() * 1e-6) }
        }
        if a.preNorm {
            p["norm_pre.weight"] = Tensor(shape: [d], repeating: 1); p["norm_pre.bias"] = Tensor(shape: [d])
        }
        if a.attentionPool {
            let hidden = a.attentionPoolHiddenWidth ?? hid
            p["attn_pool.latent"] = truncNormal([1, 1, d], std: 1 / Double(d).squareRoot())
            for (n, rows, cols) in [
                ("q", d, d), ("kv", 2 * d, d), ("proj", d, d), ("mlp.fc1", hidden, d), ("mlp.fc2", d, hidden),
            ] {
                p["attn_pool.\(n).weight"] = truncNormal([rows, cols], std: 0.02)
                p["attn_pool.\(n).bias"] = Tensor(shape: [rows])
            }
            p["attn_pool.norm.weight"] = Tensor(shape: [d], repeating: 1); p["attn_pool.norm.bias"] = Tensor(shape: [d])
        }
        var plain = a
        plain.headFeatures = nil  // no trained head to draw
        return try VisionTransformer(parameters: p, architecture: plain, file: "random-init(seed \(seed))")
    }
}

/// A tensor of truncated normal samples (std `std`, cut at ±2σ by rejection), timm's `trunc_normal_`.
func truncatedNormal(_ shape: [Int], std: Double, rng: inout SplitMix64) -> Tensor<Float> {
    Tensor(shape: shape) { _ in
        var v: Double
        repeat { v = rng.gaussian() } while abs(v) > 2
        return Float(v * std)
    }
}

/// timm-style random parameters of blocks `prefix.0 … prefix.(depth−1)`: Linear weights ~ truncated normal (0.02),
/// biases 0, LayerNorm 1/0, LayerScale `layerScaleInit`.
func randomBlocks(
    into p: inout [String: Tensor<Float>], prefix: String, depth: Int, width d: Int, hiddenWidth hid: Int,
    layerScale: Bool, layerScaleInit: Float, rng: inout SplitMix64
) {
    for i in 0..<depth {
        let b = "\(prefix).\(i)."
        for n in ["norm1", "norm2"] {
            p[b + n + ".weight"] = Tensor(shape: [d], repeating: 1); p[b + n + ".bias"] = Tensor(shape: [d])
        }
        p[b + "attn.qkv.weight"] = truncatedNormal([3 * d, d], std: 0.02, rng: &rng);
        p[b + "attn.qkv.bias"] = Tensor(shape: [3 * d])
        p[b + "attn.proj.weight"] = truncatedNormal([d, d], std: 0.02, rng: &rng);
        p[b + "attn.proj.bias"] = Tensor(shape: [d])
        p[b + "mlp.fc1.weight"] = truncatedNormal([hid, d], std: 0.02, rng: &rng);
        p[b + "mlp.fc1.bias"] = Tensor(shape: [hid])
        p[b + "mlp.fc2.weight"] = truncatedNormal([d, hid], std: 0.02, rng: &rng);
        p[b + "mlp.fc2.bias"] = Tensor(shape: [d])
        if layerScale {
            p[b + "ls1.gamma"] = Tensor(shape: [d], repeating: layerScaleInit)
            p[b + "ls2.gamma"] = Tensor(shape: [d], repeating: layerScaleInit)
        }
    }
}

extension MaskedAutoencoder {
    /// A randomly initialised MAE (e.g. for benchmarks): the encoder of
    /// `VisionTransformer.randomlyInitialized(encoder, seed:)` and a decoder of `decoderDepth` blocks of width
    /// `decoderWidth` (MLP 4×) with timm-style init from `SplitMix64(seed: seed &+ 1)`: Linear weights ~ truncated
    /// normal (0.02), biases 0, LayerNorm 1/0, `mask_token` and `decoder_pos_embed` ~ truncated normal (0.02)
    /// (the official code uses a fixed sin-cos table and xavier weights; the cost is the same).
    /// - Throws: the errors of `init(encoder:architecture:decoder:decoderHeads:file:)`.
    public static func randomlyInitialized(
        encoder a: ViTArchitecture, decoderWidth dd: Int = 512, decoderDepth: Int = 8,
        decoderHeads: Int = 16, seed: UInt64
    ) throws -> MaskedAutoencoder {
        let vit = try VisionTransformer.randomlyInitialized(a, seed: seed)
        var rng = SplitMix64(seed: seed &+ 1)
        let target = a.patchSize * a.patchSize * a.inputChannels
        var p: [String: Tensor<Float>] = [:]
        p["decoder_embed.weight"] = truncatedNormal([dd, a.width], std: 0.02, rng: &rng)
        p["decoder_embed.bias"] = Tensor(shape: [dd])
        p["mask_token"] = truncatedNormal([1, 1, dd], std: 0.02, rng: &rng)
        p["decoder_pos_embed"] = truncatedNormal([1, a.tokenCount, dd], std: 0.02, rng: &rng)
        randomBlocks(
            into: &p, prefix: "decoder_blocks", depth: decoderDepth, width: dd, hiddenWidth: 4 * dd,
            layerScale: false, layerScaleInit: 0, rng: &rng)
        p["decoder_norm.weight"] = Tensor(shape: [dd], repeating: 1); p["decoder_norm.bias"] = Tensor(shape: [dd])
        p["decoder_pred.weight"] = truncatedNormal([target, dd], std: 0.02, rng: &rng)
        p["decoder_pred.bias"] = Tensor(shape: [target])
        return try MaskedAutoencoder(
            encoder: vit.p, architecture: a, decoder: p, decoderHeads: decoderHeads,
            file: "random-init(seed \(seed))")
    }
}
