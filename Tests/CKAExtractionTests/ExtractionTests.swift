import CKACheckpoint
import CKAExtraction
import CKAIO
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

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
        o.batchSize = 5  // forward batches straddle Gram batches
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
        #expect(
            pooled == [
                "blocks.0:cls", "blocks.0:gap", "blocks.0:gap_nocls", "blocks.1:cls", "blocks.1:gap",
                "blocks.1:gap_nocls",
            ])
    }

    @Test("Wrong input size is a typed error, not a crash")
    func wrongInput() throws {
        let model = try tinyViT()
        #expect(throws: ViTError.self) { try model.forward(Tensor<Float>(shape: [1, 3, 20, 20])) }
        #expect(throws: ViTError.self) { try model.forward(Tensor<Float>(shape: [1, 1, 16, 16])) }
    }
}
