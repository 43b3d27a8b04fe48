import CKACheckpoint
import CKAExtraction
import CKAIO
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

/// A tiny random ViT: width 12, 2 blocks, 3 heads, patch 4, 16-pixel input (16 patches + CLS), LayerScale.
func tinyViT(layerScale: Bool = true, seed: UInt64 = 1) throws -> VisionTransformer {
    let d = 12, hid = 48, depth = 2
    var p: [String: Tensor<Float>] = [:]
    var s = seed
    func rnd(_ shape: [Int], _ scale: Double = 0.3) -> Tensor<Float> { s += 1; return randomTensor(shape, seed: s, scale: scale) }
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
func pixelStore(_ dir: URL, n: Int) throws -> String {
    let path = dir.appendingPathComponent("pixels.h5").path
    let w = try ActivationStoreWriter(path: path, ids: (0..<n).map { "img\($0).png" }, labels: (0..<n).map { $0 % 3 },
                                      classes: ["a", "b", "c"], metadata: StoreMetadata(model: "pixels"))
    try w.writeDataset("inputs/pixels", randomTensor([n, 3, 16, 16], seed: 99))
    try w.finish()
    return path
}

@Suite("Extraction into activation stores")
struct ExtractionTests {
    let dir: URL
    init() throws { dir = try makeTemporaryDirectory() }

    @Test("Grams written during extraction equal Grams computed afterwards from stored activations")
    func gramsMatchActivations() throws {
        let model = try tinyViT()
        var input = try PixelStoreInput(path: try pixelStore(dir, n: 22))
        var o = ExtractionOptions()
        o.store = [.activations, .pooled, .grams]
        o.batchSize = 5                 // forward batches straddle Gram batches
        o.gramBatchSize = 4
        let out = dir.appendingPathComponent("x.h5").path
        let summary = try ActivationExtractor.run(model: model, checkpoint: nil, input: &input, to: out, options: o)
        #expect(summary.examples == 22 && summary.warnings.count == 1)
        let s = try ActivationStore(path: out)
        #expect(s.count == 22 && s.labels == (0..<22).map { $0 % 3 } && s.classes == ["a", "b", "c"])
        #expect(s.layers.first?.name == "patch_embed" && s.layers.first?.shape == [22, 16, 12])
        #expect(try s.layer("blocks.1.mlp.fc1").shape == [22, 17, 48])
        #expect(try s.layer("blocks.0:gap_nocls").shape == [22, 12])
        #expect(try s.layer("norm:cls").shape == [22, 12])
        #expect(s.grams.count == HookPoint.tokenHooks(for: model.architecture).count)
        for name in ["blocks.0.attn.qkv", "blocks.1", "norm"] {
            #expect(s.grams[name]?.batchCount == 5)
            for k in 0..<5 {
                let stored = try s.gram(name, batch: k)
                let recomputed = try s.read(name, rows: k * 4..<(k + 1) * 4).gram(centered: true)
                expectClose(stored.scalars, recomputed.scalars, rtol: 1e-6, atol: 1e-6, "\(name) batch \(k)")
            }
        }
        // Pooled features are the pooling of the stored block output.
        let blk = try s.read("blocks.1"), cls = try s.read("blocks.1:cls"), gap = try s.read("blocks.1:gap")
        for i in [0, 21] {
            for j in 0..<12 {
                #expect(cls[i, j] == blk[i, 0, j])
                let mean = (0..<17).reduce(0.0) { $0 + Double(blk[i, $1, j]) } / 17
                #expect(abs(Double(gap[i, j]) - mean) < 1e-5)
            }
        }
    }

    @Test("Batch size does not change the activations (batched GEMMs are per-row exact to 1e-5)")
    func batchInvariance() throws {
        let model = try tinyViT()
        let pixels = try PixelStoreInput(path: try pixelStore(dir, n: 6))
        var results: [[Float]] = []
        for bs in [1, 6] {
            var input = pixels
            var o = ExtractionOptions()
            o.store = [.activations]
            o.layers = ["norm"]
            o.batchSize = bs
            let out = dir.appendingPathComponent("b\(bs).h5").path
            _ = try ActivationExtractor.run(model: model, checkpoint: nil, input: &input, to: out, options: o)
            results.append(try ActivationStore(path: out).read("norm").scalars)
        }
        expectClose(results[0].map(Double.init), results[1].map(Double.init), atol: 1e-5)
    }

    @Test("A glob matching no hook point is an error; layer selection by glob")
    func selection() throws {
        let model = try tinyViT()
        var o = ExtractionOptions()
        o.layers = ["blocks.*.mlp.fc3"]
        #expect(throws: ExtractionError.self) { try ActivationExtractor.selectedHooks(model.architecture, options: o) }
        o.layers = ["blocks.*.norm1", "blocks.*"]
        o.store = [.activations, .pooled]
        let (tokens, pooled) = try ActivationExtractor.selectedHooks(model.architecture, options: o)
        #expect(tokens == ["blocks.0.norm1", "blocks.0", "blocks.1.norm1", "blocks.1"])
        #expect(pooled == ["blocks.0:cls", "blocks.0:gap", "blocks.0:gap_nocls", "blocks.1:cls", "blocks.1:gap", "blocks.1:gap_nocls"])
    }

    @Test("Wrong input size is a typed error, not a crash")
    func wrongInput() throws {
        let model = try tinyViT()
        #expect(throws: ViTError.self) { try model.forward(Tensor<Float>(shape: [1, 3, 20, 20])) }
        #expect(throws: ViTError.self) { try model.forward(Tensor<Float>(shape: [1, 1, 16, 16])) }
    }
}

@Suite("Random initialisation")
struct RandomInitTests {
    @Test("timm's init: trunc-normal(0.02) linears, unit LayerNorm, seeded and repeatable")
    func statistics() throws {
        let a = ViTArchitecture.standard(width: 64, depth: 2, heads: 4, patchSize: 4, grid: 4)
        let m1 = try VisionTransformer.randomlyInitialized(a, seed: 7)
        let m2 = try VisionTransformer.randomlyInitialized(a, seed: 7)
        let m3 = try VisionTransformer.randomlyInitialized(a, seed: 8)
        let x = randomTensor([2, 3, 16, 16], seed: 1, as: Float.self)
        let y1 = try m1.forward(x), y2 = try m2.forward(x), y3 = try m3.forward(x)
        #expect(y1 == y2 && y1 != y3)
        var w: [Float] = []
        try m1.forward(x, hooks: []) { _, _ in }
        // Inspect the fc1 weights through a hook-free path: the parameters themselves.
        w = m1.parameter("blocks.0.mlp.fc1.weight")!.scalars
        let mean = w.reduce(0, +) / Float(w.count)
        let std = (w.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(w.count)).squareRoot()
        // A normal truncated at ±2σ has std 0.02·0.8796.
        #expect(abs(std - 0.02 * 0.8796) < 0.0008 && abs(mean) < 0.001)
        #expect(w.allSatisfy { abs($0) <= 0.04 })
        #expect(m1.parameter("blocks.1.norm2.weight")!.scalars.allSatisfy { $0 == 1 })
    }
}
