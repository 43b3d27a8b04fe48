import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation

// The fixtures shared by the test bundles: tiny models and inputs built in code (seeded, no file needed).

/// A tiny random ViT: width 12, 2 blocks, 3 heads, patch 4, 16-pixel input (16 patches + CLS), LayerScale.
public func tinyViT(layerScale: Bool = true, seed: UInt64 = 1) throws -> VisionTransformer {
    let d = 12, hid = 48, depth = 2
    var p: [String: Tensor<Float>] = [:]
    var s = seed
    func rnd(_ shape: [Int], _ scale: Double = 0.3) -> Tensor<Float> {
        s += 1; return randomTensor(shape, seed: s, scale: scale)
    }
    p["patch_embed.proj.weight"] = rnd([d, 3, 4, 4]); p["patch_embed.proj.bias"] = rnd([d])
    p["cls_token"] = rnd([1, 1, d]); p["pos_embed"] = rnd([1, 17, d])
    for i in 0..<depth {
        let b = "blocks.\(i)."
        for n in ["norm1", "norm2"] { p[b + n + ".weight"] = rnd([d], 1); p[b + n + ".bias"] = rnd([d]) }
        p[b + "attn.qkv.weight"] = rnd([3 * d, d]); p[b + "attn.qkv.bias"] = rnd([3 * d])
        p[b + "attn.proj.weight"] = rnd([d, d]); p[b + "attn.proj.bias"] = rnd([d])
        p[b + "mlp.fc1.weight"] = rnd([hid, d]); p[b + "mlp.fc1.bias"] = rnd([hid])
        p[b + "mlp.fc2.weight"] = rnd([d, hid]); p[b + "mlp.fc2.bias"] = rnd([d])
        if layerScale { p[b + "ls1.gamma"] = rnd([d]); p[b + "ls2.gamma"] = rnd([d]) }
    }
    p["norm.weight"] = rnd([d], 1); p["norm.bias"] = rnd([d])
    let a = ViTArchitecture.standard(width: d, depth: depth, heads: 3, patchSize: 4, grid: 4, layerScale: layerScale)
    return try VisionTransformer(parameters: p, architecture: a)
}

/// A pixel store with `n` random 16×16 images.
public func pixelStore(_ dir: URL, n: Int) throws -> String {
    let path = dir.appendingPathComponent("pixels.h5").path
    let w = try ActivationStoreWriter(
        path: path, ids: (0..<n).map { "img\($0).png" }, labels: (0..<n).map { $0 % 3 },
        classes: ["a", "b", "c"], metadata: StoreMetadata(model: "pixels"))
    try w.writeDataset("inputs/pixels", randomTensor([n, 3, 16, 16], seed: 99))
    try w.finish()
    return path
}
