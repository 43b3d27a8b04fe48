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
    public static func randomlyInitialized(_ a: ViTArchitecture, seed: UInt64, layerScaleInit: Float = 1e-5) throws -> VisionTransformer {
        var rng = SplitMix64(seed: seed)
        let d = a.width, hid = a.mlpHiddenWidth, fanIn = a.inputChannels * a.patchSize * a.patchSize
        var p: [String: Tensor<Float>] = [:]
        func truncNormal(_ shape: [Int], std: Double) -> Tensor<Float> {
            Tensor(shape: shape) { _ in
                var v: Double
                repeat { v = rng.gaussian() } while abs(v) > 2
                return Float(v * std)
            }
        }
        func uniform(_ shape: [Int], bound: Double) -> Tensor<Float> {
            Tensor(shape: shape) { _ in Float((rng.unit() * 2 - 1) * bound) }
        }
        let bound = 1 / Double(fanIn).squareRoot()
        p["patch_embed.proj.weight"] = uniform([d, a.inputChannels, a.patchSize, a.patchSize], bound: bound)
        p["patch_embed.proj.bias"] = uniform([d], bound: bound)
        p["cls_token"] = Tensor(shape: [1, 1, d]) { _ in Float(rng.gaussian() * 1e-6) }
        p["pos_embed"] = truncNormal([1, a.tokenCount, d], std: 0.02)
        for i in 0..<a.depth {
            let b = "blocks.\(i)."
            for n in ["norm1", "norm2"] {
                p[b + n + ".weight"] = Tensor(shape: [d], repeating: 1); p[b + n + ".bias"] = Tensor(shape: [d])
            }
            p[b + "attn.qkv.weight"] = truncNormal([3 * d, d], std: 0.02); p[b + "attn.qkv.bias"] = Tensor(shape: [3 * d])
            p[b + "attn.proj.weight"] = truncNormal([d, d], std: 0.02); p[b + "attn.proj.bias"] = Tensor(shape: [d])
            p[b + "mlp.fc1.weight"] = truncNormal([hid, d], std: 0.02); p[b + "mlp.fc1.bias"] = Tensor(shape: [hid])
            p[b + "mlp.fc2.weight"] = truncNormal([d, hid], std: 0.02); p[b + "mlp.fc2.bias"] = Tensor(shape: [d])
            if a.layerScale {
                p[b + "ls1.gamma"] = Tensor(shape: [d], repeating: layerScaleInit)
                p[b + "ls2.gamma"] = Tensor(shape: [d], repeating: layerScaleInit)
            }
        }
        if a.hasFinalNorm { p["norm.weight"] = Tensor(shape: [d], repeating: 1); p["norm.bias"] = Tensor(shape: [d]) }
        if a.hasFCNorm { p["fc_norm.weight"] = Tensor(shape: [d], repeating: 1); p["fc_norm.bias"] = Tensor(shape: [d]) }
        return try VisionTransformer(parameters: p, architecture: a, file: "random-init(seed \(seed))")
    }
}
