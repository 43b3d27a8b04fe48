import CKACheckpoint
import CKAIO
import CKALandscape
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

@Suite("Landscape losses on real model code")
struct ObjectiveTests {
    let dir: URL
    init() throws { dir = try makeTemporaryDirectory() }

    func checkpoint(_ name: String, decoder: Bool = false, classes: Int? = nil, seed: UInt64) throws -> Checkpoint {
        let url = dir.appendingPathComponent(name)
        try writeTinyViTCheckpoint(to: url, seed: seed, depth: 2, decoder: decoder, classes: classes)
        return try Checkpoint(contentsOf: url)
    }

    @Test("MAE objective: at θ₀ the MAE loss of all examples; sin-cos tables of MAE files are reported fixed")
    func maeAtCentre() throws {
        let ckpt = try checkpoint("mae.safetensors", decoder: true, seed: 1)
        #expect(ckpt.source == .mae)
        let pixels = tinyPixels(6, seed: 2)
        let masks = try MAEMask.random(images: 6, patches: 16, ratio: 0.75, seed: 3)
        let batches = [LandscapeBatch(pixels: pixels.rows(0..<4), masks: Array(masks[0..<4])),
                       LandscapeBatch(pixels: pixels.rows(4..<6), masks: Array(masks[4..<6]))]
        let o = try MAELandscapeObjective(checkpoint: ckpt, batches: batches)
        #expect(o.name == "mae" && Set(o.fixedParameters.keys) == ["pos_embed", "decoder_pos_embed"])
        #expect(o.center.names.first == "cls_token" && o.center.names.contains("decoder_pred.bias") && o.groups["decoder"]!.first == "decoder_embed.weight")
        let v = try o.evaluate(at: o.center)
        let whole = try MaskedAutoencoder(checkpoint: ckpt).forward(pixels, masks: masks, normPixLoss: true)
        expectClose(v.loss, whole.loss, rtol: 1e-6)   // batches of 4 + 2 vs one of 6: float32 sums in another order
        #expect(whole.sums.maskedPatches == 6 * 12)
        // Moving only the decoder changes the loss; moving nothing does not.
        let dx = FilterNormalizedDirections.random(like: o.center.restricted(to: Set(o.groups["decoder"]!)), seed: 4)
        let moved = try o.evaluate(at: o.center.moved(along: [(0.5, dx)]))
        #expect(moved.loss != v.loss && moved.loss.isFinite)
        #expect(try o.evaluate(at: o.center.moved(along: [(0, dx)])) == v)
    }

    @Test("RC-MAE objective: reconstruction + γ·consistency with the teacher on the same masks")
    func rcmae() throws {
        let student = try checkpoint("s.safetensors", decoder: true, seed: 5), teacher = try checkpoint("t.safetensors", decoder: true, seed: 6)
        let pixels = tinyPixels(4, seed: 7)
        let masks = try MAEMask.random(images: 4, patches: 16, ratio: 0.75, seed: 8)
        let o = try MAELandscapeObjective(checkpoint: student, teacher: teacher, batches: [LandscapeBatch(pixels: pixels, masks: masks)], gamma: 0.5)
        let v = try o.evaluate(at: o.center)
        let ref = try MaskedAutoencoder.rcmaeForward(student: MaskedAutoencoder(checkpoint: student), teacher: MaskedAutoencoder(checkpoint: teacher),
                                                     pixels: pixels, masks: masks, normPixLoss: true, gamma: 0.5)
        #expect(o.name == "rcmae")
        expectClose(v.loss, ref.sums.reconstruction + 0.5 * ref.sums.consistency, rtol: 1e-12)
        expectClose(v.parts["consistency"]!, ref.sums.consistency, rtol: 1e-12)
        #expect(v.parts["consistency"]! > 0)
    }

    @Test("cross-entropy objective: −log softmax of the label, in float64 from the head's logits; accuracy in percent")
    func crossEntropy() throws {
        let ckpt = try checkpoint("sup.safetensors", classes: 5, seed: 9)
        let head = try ClassifierHead(checkpoint: ckpt)
        let pixels = tinyPixels(7, seed: 10)
        let labels = [0, 1, 2, 3, 4, 0, 1]
        let o = try CrossEntropyLandscapeObjective(checkpoint: ckpt, head: head, batches: [LandscapeBatch(pixels: pixels, labels: labels)])
        let v = try o.evaluate(at: o.center)
        let z = try head.logits(model: VisionTransformer(checkpoint: ckpt), pixels: pixels).scalars.map(Double.init)
        var ce = 0.0, correct = 0
        for i in 0..<7 {
            let row = Array(z[(i * 5)..<(i * 5 + 5)])
            ce += Foundation.log(row.map { Foundation.exp($0) }.reduce(0, +)) - row[labels[i]]
            if row.firstIndex(of: row.max()!) == labels[i] { correct += 1 }
        }
        expectClose(v.loss, ce / 7, rtol: 1e-9)
        #expect(v.accuracy == 100 * Double(correct) / 7)
        #expect(o.groups["head"]! == ["head.weight", "head.bias"] && o.fixedParameters.isEmpty)
        #expect(throws: LandscapeError.self) {
            try CrossEntropyLandscapeObjective(checkpoint: ckpt, head: head, batches: [LandscapeBatch(pixels: pixels, labels: [0, 1, 2, 3, 4, 5, 0])])
        }
    }

    @Test("a saved probe becomes a head on raw features: the same logits as the probe on standardised features")
    func probeHead() throws {
        let ckpt = try checkpoint("sup.safetensors", classes: 5, seed: 11)
        let path = dir.appendingPathComponent("probe.h5").path
        let w = randomTensor([4, 192], seed: 12, as: Float.self), b = randomTensor([4], seed: 13, as: Float.self)
        let mean = randomTensor([192], seed: 14, as: Float.self), scale = randomTensor([192], seed: 15, scale: 0.1, offset: 1, as: Float.self)
        let f = try HDF5File(path: path, mode: .create)
        for (name, t) in [("probe/weight", w), ("probe/bias", b), ("probe/mean", mean), ("probe/scale", scale)] {
            try f.createDataset(name, type: .float32, shape: t.shape).write(t)
        }
        try f.setAttribute("probe_layer", .string("norm:cls"))
        try f.flush()
        let head = try ProbeHead.load(path, architecture: ckpt.architecture)
        #expect(head.readout == .classToken && head.classCount == 4)
        let x = randomTensor([3, 192], seed: 16, as: Float.self)
        let got = try head.logits(features: x).scalars.map(Double.init)
        var ref: [Double] = []
        for r in 0..<3 { for c in 0..<4 {
            var z = Double(b.scalars[c])
            for j in 0..<192 { z += (Double(x.scalars[r * 192 + j]) - Double(mean.scalars[j])) / Double(scale.scalars[j]) * Double(w.scalars[c * 192 + j]) }
            ref.append(z)
        } }
        expectClose(got, ref, rtol: 1e-5, atol: 1e-5)
        try f.setAttribute("probe_layer", .string("blocks.3:gap"))
        try f.flush()
        #expect(throws: LandscapeError.self) { try ProbeHead.load(path, architecture: ckpt.architecture) }
    }
}
