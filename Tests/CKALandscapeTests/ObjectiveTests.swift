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
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

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
        let batches = [
            LandscapeBatch(pixels: pixels.rows(0..<4), masks: Array(masks[0..<4])),
            LandscapeBatch(pixels: pixels.rows(4..<6), masks: Array(masks[4..<6])),
        ]
        let o = try MAELandscapeObjective(checkpoint: ckpt, batches: batches)
        #expect(o.name == "mae" && Set(o.fixedParameters.keys) == ["pos_embed", "decoder_pos_embed"])
        #expect(
            o.center.names.first == "cls_token" && o.center.names.contains("decoder_pred.bias")
                && o.groups["decoder"]!.first == "decoder_embed.weight")
        let v = try o.evaluate(at: o.center)
        let whole = try MaskedAutoencoder(checkpoint: ckpt).forward(pixels, masks: masks, normPixLoss: true)
        expectClose(v.loss, whole.loss, rtol: 1e-6)  // batches of 4 + 2 vs one of 6: float32 sums in another order
        #expect(whole.sums.maskedPatches == 6 * 12)
        // Moving only the decoder changes the loss; moving nothing does not.
        let dx = FilterNormalizedDirections.random(like: o.center.restricted(to: Set(o.groups["decoder"]!)), seed: 4)
        let moved = try o.evaluate(at: o.center.moved(along: [(0.5, dx)]))
        #expect(moved.loss != v.loss && moved.loss.isFinite)
        // (Float32 GEMMs can round differently when parallel tests change the BLAS thread count meanwhile.)
        expectClose(try o.evaluate(at: o.center.moved(along: [(0, dx)])).loss, v.loss, rtol: 1e-6)
    }

    @Test("RC-MAE objective: reconstruction + γ·consistency with the teacher on the same masks")
    func rcmae() throws {
        let student = try checkpoint("s.safetensors", decoder: true, seed: 5),
            teacher = try checkpoint("t.safetensors", decoder: true, seed: 6)
        let pixels = tinyPixels(4, seed: 7)
        let masks = try MAEMask.random(images: 4, patches: 16, ratio: 0.75, seed: 8)
        let o = try MAELandscapeObjective(
            checkpoint: student, teacher: teacher, batches: [LandscapeBatch(pixels: pixels, masks: masks)], gamma: 0.5)
        let v = try o.evaluate(at: o.center)
        let ref = try MaskedAutoencoder.rcmaeForward(
            student: MaskedAutoencoder(checkpoint: student), teacher: MaskedAutoencoder(checkpoint: teacher),
            pixels: pixels, masks: masks, normPixLoss: true, gamma: 0.5)
        #expect(o.name == "rcmae")
        expectClose(v.loss, ref.sums.reconstruction + 0.5 * ref.sums.consistency, rtol: 1e-6)
        expectClose(v.parts["consistency"]!, ref.sums.consistency, rtol: 1e-6)
        #expect(v.parts["consistency"]! > 0)
    }

    @Test("cross-entropy objective: −log softmax of the label, in float64 from the head's logits; accuracy in percent")
    func crossEntropy() throws {
        let ckpt = try checkpoint("sup.safetensors", classes: 5, seed: 9)
        let head = try ClassifierHead(checkpoint: ckpt)
        let pixels = tinyPixels(7, seed: 10)
        let labels = [0, 1, 2, 3, 4, 0, 1]
        let o = try CrossEntropyLandscapeObjective(
            checkpoint: ckpt, head: head, batches: [LandscapeBatch(pixels: pixels, labels: labels)])
        let v = try o.evaluate(at: o.center)
        let z = try head.logits(model: VisionTransformer(checkpoint: ckpt), pixels: pixels).scalars.map(Double.init)
        var ce = 0.0, correct = 0
        for i in 0..<7 {
            let row = Array(z[(i * 5)..<(i * 5 + 5)])
            ce += Foundation.log(row.map { Foundation.exp($0) }.reduce(0, +)) - row[labels[i]]
            if row.firstIndex(of: row.max()!) == labels[i] { correct += 1 }
        }
        expectClose(v.loss, ce / 7, rtol: 1e-6)
        #expect(v.accuracy == 100 * Double(correct) / 7)
        #expect(o.groups["head"]! == ["head.weight", "head.bias"] && o.fixedParameters.isEmpty)
        #expect(throws: LandscapeError.self) {
            try CrossEntropyLandscapeObjective(
                checkpoint: ckpt, head: head, batches: [LandscapeBatch(pixels: pixels, labels: [0, 1, 2, 3, 4, 5, 0])])
        }
    }

    @Test("a saved probe becomes a head on raw features: the same logits as the probe on standardised features")
    func probeHead() throws {
        let ckpt = try checkpoint("sup.safetensors", classes: 5, seed: 11)
        let path = dir.appendingPathComponent("probe.h5").path
        let w = randomTensor([4, 192], seed: 12, as: Float.self), b = randomTensor([4], seed: 13, as: Float.self)
        let mean = randomTensor([192], seed: 14, as: Float.self),
            scale = randomTensor([192], seed: 15, scale: 0.1, offset: 1, as: Float.self)
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
        for r in 0..<3 {
            for c in 0..<4 {
                var z = Double(b.scalars[c])
                for j in 0..<192 {
                    z +=
                        (Double(x.scalars[r * 192 + j]) - Double(mean.scalars[j])) / Double(scale.scalars[j])
                        * Double(w.scalars[c * 192 + j])
                }
                ref.append(z)
            }
        }
        expectClose(got, ref, rtol: 1e-5, atol: 1e-5)
        try f.setAttribute("probe_layer", .string("blocks.3:gap"))
        try f.flush()
        #expect(throws: LandscapeError.self) { try ProbeHead.load(path, architecture: ckpt.architecture) }
    }

    @Test("MAE and cross-entropy gradients: directional derivatives equal central differences of the loss")
    func gradients() throws {
        let mae = try checkpoint("g.safetensors", decoder: true, seed: 21),
            sup = try checkpoint("h.safetensors", classes: 4, seed: 22)
        let pixels = tinyPixels(4, seed: 23)
        let masks = try MAEMask.random(images: 4, patches: 16, ratio: 0.75, seed: 24)
        let objectives: [any DifferentiableLandscapeObjective] = [
            try MAELandscapeObjective(
                checkpoint: mae,
                batches: [
                    LandscapeBatch(pixels: pixels.rows(0..<3), masks: Array(masks[0..<3])),
                    LandscapeBatch(pixels: pixels.rows(3..<4), masks: [masks[3]]),
                ]),
            try MAELandscapeObjective(
                checkpoint: mae, teacher: try checkpoint("t2.safetensors", decoder: true, seed: 25),
                batches: [LandscapeBatch(pixels: pixels, masks: masks)]),
            try CrossEntropyLandscapeObjective(
                checkpoint: sup, head: ClassifierHead(checkpoint: sup),
                batches: [LandscapeBatch(pixels: pixels, labels: [0, 1, 2, 3])]),
        ]
        for o in objectives {
            let (v, g) = try o.valueAndGradient(at: o.center)
            let plain = try o.evaluate(at: o.center)
            expectClose(v.loss, plain.loss, rtol: 1e-6, "\(o.name)")
            #expect(g.names == o.center.names)
            let d = FilterNormalizedDirections.random(like: o.center, seed: 26, ignoreBiasAndNorm: false)
            let h = 1e-3
            let plus = try o.evaluate(at: o.center.moved(along: [(h, d)])).loss,
                minus = try o.evaluate(at: o.center.moved(along: [(-h, d)])).loss
            var directional = 0.0
            for name in d.names {
                directional += zip(g[name]!.scalars, d[name]!.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            }
            expectClose((plus - minus) / (2 * h), directional, rtol: 2e-3, "\(o.name)")
        }
    }

    @Test("Hessian power iteration on the MAE loss: λ equals the second difference of the loss along its eigenvector")
    func hessianOfMAE() throws {
        let mae = try checkpoint("m.safetensors", decoder: true, seed: 31)
        let o = try MAELandscapeObjective(
            checkpoint: mae,
            batches: [
                LandscapeBatch(
                    pixels: tinyPixels(4, seed: 32),
                    masks: try MAEMask.random(images: 4, patches: 16, ratio: 0.75, seed: 33))
            ])
        let names = Set(o.groups["decoder"]!)
        let h = try HessianEigenvalue(objective: o, parameters: names, maxIterations: 30, tolerance: 1e-4, seed: 2)
        #expect(h.eigenvalue > 0 && h.stepError < 1e-2 * abs(h.eigenvalue))
        // Independent check with the loss only: vᵀHv ≈ (L(θ + t·v) − 2L(θ) + L(θ − t·v)) / t².
        let t = 5 * h.step  // small: the curvature along v falls by 20 % at t ≈ 100 steps (a sharp, narrow direction)
        let l0 = try o.evaluate(at: o.center).loss
        let lp = try o.evaluate(at: o.center.moved(along: [(t, h.eigenvector)])).loss
        let lm = try o.evaluate(at: o.center.moved(along: [(-t, h.eigenvector)])).loss
        expectClose((lp - 2 * l0 + lm) / (t * t), h.eigenvalue, rtol: 1e-2)
        // No other direction is sharper: random unit directions have smaller curvature.
        for seed in UInt64(40)..<43 {
            let r = FilterNormalizedDirections.random(
                like: o.center.restricted(to: names), seed: seed, normalization: .none, ignoreBiasAndNorm: false)
            var n2 = 0.0
            for name in r.names { n2 += r[name]!.scalars.reduce(0.0) { $0 + Double($1) * Double($1) } }
            let s = 1 / n2.squareRoot()
            let up = try o.evaluate(at: o.center.moved(along: [(t * s, r)])).loss,
                down = try o.evaluate(at: o.center.moved(along: [(-t * s, r)])).loss
            #expect((up - 2 * l0 + down) / (t * t) <= h.eigenvalue * 1.02)
        }
    }
}
