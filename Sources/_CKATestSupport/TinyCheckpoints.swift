import CKACheckpoint
import CKATensor
import Foundation

/// Writes a small random ViT checkpoint in the official key layout as safetensors: encoder under timm names
/// (width 192 = 3 heads, `depth` blocks, patch 8, 32-pixel input = 16 patches), optionally the MAE decoder
/// (`decoder_*`, `mask_token`; width 64 = 2 heads, one block) and a classifier `head` of `classes` classes.
/// Every tensor is non-trivial (LayerNorm weights around 1, all biases non-zero).
public func writeTinyViTCheckpoint(
    to url: URL, seed: UInt64, depth: Int = 1, decoder: Bool = false, classes: Int? = nil
) throws {
    let d = 192, p = 8, t = 17, dd = 64
    var entries: [SafeTensorsWriter.Entry] = []
    var k: UInt64 = 0
    func add(_ name: String, _ shape: [Int], scale: Double = 0.05, offset: Double = 0) throws {
        k += 1
        entries.append(
            try SafeTensorsWriter.Entry(
                name: name, tensor: randomTensor(shape, seed: seed &* 1000 &+ k, scale: scale, offset: offset)))
    }
    func blocks(_ prefix: String, count: Int, width w: Int) throws {
        for i in 0..<count {
            let b = "\(prefix).\(i)."
            try add(b + "norm1.weight", [w], scale: 0.1, offset: 1); try add(b + "norm1.bias", [w], scale: 0.1)
            try add(b + "attn.qkv.weight", [3 * w, w]); try add(b + "attn.qkv.bias", [3 * w], scale: 0.02)
            try add(b + "attn.proj.weight", [w, w]); try add(b + "attn.proj.bias", [w], scale: 0.02)
            try add(b + "norm2.weight", [w], scale: 0.1, offset: 1); try add(b + "norm2.bias", [w], scale: 0.1)
            try add(b + "mlp.fc1.weight", [4 * w, w]); try add(b + "mlp.fc1.bias", [4 * w], scale: 0.02)
            try add(b + "mlp.fc2.weight", [w, 4 * w]); try add(b + "mlp.fc2.bias", [w], scale: 0.02)
        }
    }
    try add("cls_token", [1, 1, d], scale: 0.02); try add("pos_embed", [1, t, d], scale: 0.02)
    try add("patch_embed.proj.weight", [d, 3, p, p]); try add("patch_embed.proj.bias", [d], scale: 0.02)
    try blocks("blocks", count: depth, width: d)
    try add("norm.weight", [d], scale: 0.1, offset: 1); try add("norm.bias", [d], scale: 0.1)
    if decoder {
        try add("decoder_embed.weight", [dd, d]); try add("decoder_embed.bias", [dd], scale: 0.02)
        try add("mask_token", [1, 1, dd], scale: 0.02); try add("decoder_pos_embed", [1, t, dd], scale: 0.02)
        try blocks("decoder_blocks", count: 1, width: dd)
        try add("decoder_norm.weight", [dd], scale: 0.1, offset: 1); try add("decoder_norm.bias", [dd], scale: 0.1)
        try add("decoder_pred.weight", [p * p * 3, dd]); try add("decoder_pred.bias", [p * p * 3], scale: 0.02)
    }
    if let classes {
        try add("head.weight", [classes, d], scale: 0.2); try add("head.bias", [classes], scale: 0.1)
    }
    try SafeTensorsWriter.write(entries, to: url)
}

/// Normalised pixels `[n, 3, 32, 32]` (standard normal) for the tiny checkpoints.
public func tinyPixels(_ n: Int, seed: UInt64) -> Tensor<Float> { randomTensor([n, 3, 32, 32], seed: seed) }
