import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

/// max |ours − reference| / max |reference| over a tensor.
func relativeMaxError(_ ours: Tensor<Float>, _ ref: Tensor<Float>) -> Double {
    var maxDiff = 0.0, maxRef = 0.0
    ours.withUnsafeBufferPointer { o in
        ref.withUnsafeBufferPointer { r in
            for i in 0..<r.count {
                maxDiff = max(maxDiff, abs(Double(o[i]) - Double(r[i])))
                maxRef = max(maxRef, abs(Double(r[i])))
            }
        }
    }
    return maxDiff / max(maxRef, 1e-30)
}

@Suite("ViT forward pass against timm")
struct ReferenceForwardTests {
    @Test(
        "DINOv2 ViT-S/14 (real weights): every stored layer of timm's run within 1e-4 relative",
        .enabled(if: sharedDirectory != nil))
    func dinov2AgainstTimm() throws {
        let shared = sharedDirectory!
        let ckpt = try Checkpoint(
            contentsOf: shared.appendingPathComponent("data/models/vit-small-patch14-dinov2-imgfocus/model.safetensors")
        )
        let model = try VisionTransformer(checkpoint: ckpt)
        let ref = try ActivationStore(
            path: shared.appendingPathComponent("data/reference/dinov2-vits14-imgfocus-photos.h5").path)
        let pixels = try ref.readFloatDataset("inputs/pixels")
        #expect(pixels.shape == [2, 3, 224, 224])
        let wanted = Set(ref.layers.map(\.name))
        var seen: [String: Double] = [:]
        try model.forward(pixels, hooks: wanted) { name, value in
            let expected = try ref.read(name)
            #expect(value.shape == expected.shape, "\(name)")
            seen[name] = relativeMaxError(value, expected)
        }
        #expect(Set(seen.keys) == wanted, "every reference layer is a hook point")
        for (name, err) in seen.sorted(by: { $0.key < $1.key }) {
            #expect(err <= 1e-4, "\(name): relative max error \(err)")
        }
        let worst = seen.max { $0.value < $1.value }!
        print("DINOv2 forward vs timm: \(seen.count) layers, worst \(worst.key) at \(worst.value)")
    }
}
