import CKACheckpoint
import CKAExtraction
import CKAIO
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

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
