import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

/// Fixtures written by `notebooks-export/reference/landscape/make_gradient_fixtures.py`: PyTorch float64 autograd on
/// the official `models_mae.py` (MAE, RC-MAE) and timm's `VisionTransformer` (cross-entropy of linear heads).
enum GradientFixture {
    static func open(_ name: String) throws -> HDF5File {
        try HDF5File(path: officialFixtures.appendingPathComponent(name).path)
    }

    /// Every dataset of `group` by name, in its stored (PyTorch) shape.
    static func tensors(_ f: HDF5File, _ group: String) throws -> [String: Tensor<Float>] {
        var out: [String: Tensor<Float>] = [:]
        for n in try f.children(of: group) { out[n] = try f.dataset("\(group)/\(n)").readFloat() }
        return out
    }

    /// ‖a − b‖ / ‖b‖ per tensor; the worst over `reference`'s names, and its name. Missing tensors count as 1.
    static func worst(
        _ ours: [String: Tensor<Float>], scale: Double, _ reference: [String: Tensor<Float>],
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> (error: Double, name: String) {
        var worst = (error: 0.0, name: "")
        for (name, ref) in reference {
            guard let g = ours[name] else {
                Issue.record("no gradient for \(name)", sourceLocation: sourceLocation); return (1, name)
            }
            #expect(g.shape == ref.shape, "\(name): shape \(g.shape) vs \(ref.shape)", sourceLocation: sourceLocation)
            var diff = 0.0, norm = 0.0
            let a = g.scalars, b = ref.scalars
            for i in 0..<min(a.count, b.count) {
                let e = Double(a[i]) * scale - Double(b[i])
                diff += e * e
                norm += Double(b[i]) * Double(b[i])
            }
            let err = norm > 0 ? (diff / norm).squareRoot() : diff.squareRoot()
            if err > worst.error { worst = (err, name) }
        }
        return worst
    }

    static let maeArchitecture = ViTArchitecture(
        width: 24, depth: 2, heads: 4, patchSize: 4, tokenCount: 17, gridSize: 4,
        imageSize: 16, mlpHiddenWidth: 96, mlpRatio: 4)

    static func mae(_ f: HDF5File, _ group: String) throws -> MaskedAutoencoder {
        let all = try tensors(f, group)
        let isDecoder = { (n: String) in n.hasPrefix("decoder_") || n == "mask_token" }
        return try MaskedAutoencoder(
            encoder: all.filter { !isDecoder($0.key) }, architecture: maeArchitecture,
            decoder: all.filter { isDecoder($0.key) }, decoderHeads: 4)
    }

    static func masks(_ f: HDF5File) throws -> [MAEMask] {
        let noise = try f.dataset("noise").readFloat()
        let ratio = try f.attribute("mask_ratio")?.doubleValue ?? .nan
        return try (0..<noise.shape[0]).map { i in
            try MAEMask(noise: (0..<noise.shape[1]).map { noise[i, $0] }, ratio: ratio)
        }
    }

    static func ceArchitecture(fcNorm: Bool) -> ViTArchitecture {
        ViTArchitecture(
            width: 24, depth: 3, heads: 4, patchSize: 4, tokenCount: 17, gridSize: 4, imageSize: 16,
            mlpHiddenWidth: 96, mlpRatio: 4, hasFinalNorm: !fcNorm, hasFCNorm: fcNorm, classCount: 5)
    }
}

@Suite("Reverse-mode gradients against PyTorch autograd on the official code")
struct GradientTests {
    static let tolerance = 1e-4

    @Test("MAE loss gradients (norm_pix off / on) match models_mae.py autograd for every parameter")
    func maeGradients() throws {
        let f = try GradientFixture.open("gradients_mae_small.h5")
        let model = try GradientFixture.mae(f, "student")
        let images = try f.dataset("images").readFloat()
        let masks = try GradientFixture.masks(f)
        for (group, norm) in [("grad_raw", false), ("grad_normpix", true)] {
            let (sums, grads) = try model.lossAndGradient(images, masks: masks, normPixLoss: norm)
            let expected = try f.attribute("loss", of: group)?.doubleValue ?? .nan
            #expect(relativeError(sums.loss, expected) < 1e-5, "\(group): loss \(sums.loss) vs \(expected)")
            let reference = try GradientFixture.tensors(f, group)
            #expect(Set(grads.keys) == Set(reference.keys))
            let worst = GradientFixture.worst(grads, scale: 1 / Double(sums.maskedPatches), reference)
            print(
                "gradient \(group): worst relative error \(worst.error) (\(worst.name)) over \(reference.count) tensors"
            )
            #expect(worst.error < Self.tolerance, "\(group): \(worst.name) off by \(worst.error)")
            // The forward-only loss agrees with the gradient pass's.
            let forward = try model.forward(images, masks: masks, normPixLoss: norm).sums
            #expect(
                relativeError(forward.squaredErrorSum, sums.squaredErrorSum) < 1e-6
                    && forward.maskedPatches == sums.maskedPatches)
        }
    }

    @Test("RC-MAE gradient (reconstruction + γ·consistency, teacher constant) matches autograd")
    func rcmaeGradients() throws {
        let f = try GradientFixture.open("gradients_mae_small.h5")
        let student = try GradientFixture.mae(f, "student"), teacher = try GradientFixture.mae(f, "teacher")
        let images = try f.dataset("images").readFloat()
        let masks = try GradientFixture.masks(f)
        let gamma = try f.attribute("gamma")?.doubleValue ?? .nan
        let (sums, grads) = try MaskedAutoencoder.rcmaeLossAndGradient(
            student: student, teacher: teacher, pixels: images,
            masks: masks, normPixLoss: true, gamma: gamma)
        let expected = try f.attribute("loss", of: "grad_rcmae")?.doubleValue ?? .nan
        #expect(relativeError(sums.loss(gamma: gamma), expected) < 1e-5)
        #expect(relativeError(sums.consistency, try f.attribute("rcmae_consistency")?.doubleValue ?? .nan) < 1e-5)
        let reference = try GradientFixture.tensors(f, "grad_rcmae")
        let worst = GradientFixture.worst(grads, scale: 1 / Double(sums.maskedPatches), reference)
        print(
            "gradient grad_rcmae: worst relative error \(worst.error) (\(worst.name)) over \(reference.count) tensors")
        #expect(worst.error < Self.tolerance, "rcmae: \(worst.name) off by \(worst.error)")
    }

    @Test(
        "Cross-entropy gradients of class-token, global-pool and DINO heads match timm autograd",
        arguments: [("token", false), ("avg", true), ("dino_n1", false), ("dino_n2", false)])
    func crossEntropyGradients(name: String, fcNorm: Bool) throws {
        let f = try GradientFixture.open("gradients_ce_small.h5")
        let a = GradientFixture.ceArchitecture(fcNorm: fcNorm)
        let model = try VisionTransformer(
            parameters: GradientFixture.tensors(f, fcNorm ? "avg/weights" : "tok/weights"), architecture: a)
        let head = try GradientFixture.tensors(f, "\(name)/head")
        let readout: ClassifierHead.Readout =
            switch name {
            case "token": .classToken
            case "avg": .globalPool
            case "dino_n1": .dinoLinear(lastBlocks: 1, averagePatchTokens: true)
            default: .dinoLinear(lastBlocks: 2, averagePatchTokens: false)
            }
        let classifier = try ClassifierHead(
            readout: readout, weight: head["head.weight"]!, bias: head["head.bias"]!,
            architecture: a, finalNorm: model.parameter("norm.weight").map { ($0, model.parameter("norm.bias")!) })
        let images = try f.dataset("images").readFloat()
        let labels = try f.dataset("labels").readInt64().map(Int.init)
        let (sums, grads) = try classifier.lossAndGradient(model: model, pixels: images, labels: labels)
        let expected = try f.attribute("loss", of: name)?.doubleValue ?? .nan
        #expect(relativeError(sums.loss, expected) < 1e-5, "\(name): loss \(sums.loss) vs \(expected)")
        // The logits of the forward-only path give the same loss.
        let logits = try classifier.logits(model: model, pixels: images)
        let reference = try f.dataset("\(name)/logits").readFloat()
        #expect(zip(logits.scalars, reference.scalars).allSatisfy { abs($0 - $1) < 1e-4 })
        var ref = try GradientFixture.tensors(f, "\(name)/grad")
        // timm's own (unused) head is not a parameter here; DINO's readout does not read the model's head either.
        if name.hasPrefix("dino") { ref = ref.filter { grads[$0.key] != nil || !$0.key.hasPrefix("head.") } }
        #expect(Set(grads.keys) == Set(ref.keys))
        let worst = GradientFixture.worst(grads, scale: 1 / Double(sums.count), ref)
        print("gradient ce \(name): worst relative error \(worst.error) (\(worst.name)) over \(ref.count) tensors")
        #expect(worst.error < Self.tolerance, "\(name): \(worst.name) off by \(worst.error)")
    }

    @Test("LayerScale (timm init_values): the γ gradients and everything else match timm autograd")
    func layerScaleGradients() throws {
        let f = try GradientFixture.open("gradients_ls_small.h5")
        let a = ViTArchitecture(
            width: 24, depth: 2, heads: 4, patchSize: 4, tokenCount: 17, gridSize: 4, imageSize: 16,
            mlpHiddenWidth: 96, mlpRatio: 4, layerScale: true, classCount: 5)
        let weights = try GradientFixture.tensors(f, "ls/weights")
        let model = try VisionTransformer(parameters: weights.filter { !$0.key.hasPrefix("head.") }, architecture: a)
        let head = try ClassifierHead(
            readout: .classToken, weight: weights["head.weight"]!, bias: weights["head.bias"]!, architecture: a)
        let images = try f.dataset("images").readFloat()
        let labels = try f.dataset("labels").readInt64().map(Int.init)
        let (sums, grads) = try head.lossAndGradient(model: model, pixels: images, labels: labels)
        #expect(relativeError(sums.loss, try f.attribute("loss", of: "ls")?.doubleValue ?? .nan) < 1e-5)
        let ref = try GradientFixture.tensors(f, "ls/grad")
        #expect(Set(grads.keys) == Set(ref.keys) && ref.keys.contains("blocks.1.ls2.gamma"))
        let worst = GradientFixture.worst(grads, scale: 1 / Double(sums.count), ref)
        print("gradient ce layer-scale: worst relative error \(worst.error) (\(worst.name)) over \(ref.count) tensors")
        #expect(worst.error < Self.tolerance, "\(worst.name) off by \(worst.error)")
    }

    @Test("Batches accumulate: the gradient of a split batch equals the whole batch's")
    func accumulation() throws {
        let f = try GradientFixture.open("gradients_mae_small.h5")
        let model = try GradientFixture.mae(f, "student")
        let images = try f.dataset("images").readFloat()
        let masks = try GradientFixture.masks(f)
        let whole = try model.lossAndGradient(images, masks: masks, normPixLoss: true)
        var total: [String: Tensor<Float>] = [:]
        var sums = MAELossSums()
        sums =
            sums
            + (try model.lossAndGradient(
                images.rows(0..<1), masks: Array(masks[0..<1]), normPixLoss: true, accumulatingInto: &total))
        sums =
            sums
            + (try model.lossAndGradient(
                images.rows(1..<3), masks: Array(masks[1..<3]), normPixLoss: true, accumulatingInto: &total))
        #expect(sums.maskedPatches == whole.sums.maskedPatches)
        #expect(relativeError(sums.squaredErrorSum, whole.sums.squaredErrorSum) < 1e-6)
        let worst = GradientFixture.worst(total, scale: 1, whole.gradients)
        #expect(worst.error < 1e-5, "\(worst.name) off by \(worst.error)")
    }

    /// Central difference of the loss along a random direction d against ⟨∇L, d⟩.
    static func directionalCheck(
        parameters: [String: Tensor<Float>], gradient: [String: Tensor<Float>], seed: UInt64,
        loss: ([String: Tensor<Float>]) throws -> Double
    ) throws -> (fd: Double, analytic: Double) {
        var direction: [String: Tensor<Float>] = [:]
        var analytic = 0.0
        for (i, name) in parameters.keys.sorted().enumerated() {
            let p = parameters[name]!
            // Per tensor: N(0,1) scaled to 1% of the tensor's RMS (or 0.01), so every tensor moves a little.
            let rms = (p.scalars.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(max(p.count, 1))).squareRoot()
            let d = randomTensor(p.shape, seed: seed &+ UInt64(i), scale: 0.01 * max(rms, 0.1), as: Float.self)
            direction[name] = d
            if let g = gradient[name] {
                analytic += zip(g.scalars, d.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            }
        }
        func moved(_ s: Float) throws -> [String: Tensor<Float>] {
            var out = parameters
            for (name, d) in direction {
                let p = parameters[name]!
                out[name] = try Tensor(shape: p.shape, scalars: zip(p.scalars, d.scalars).map { $0 + s * $1 })
            }
            return out
        }
        let h: Float = 0.5
        let fd = (try loss(moved(h)) - loss(moved(-h))) / Double(2 * h)
        return (fd, analytic)
    }

    @Test("Finite differences: directional derivative of the MAE and CE losses ≈ ⟨∇L, d⟩")
    func finiteDifferences() throws {
        let f = try GradientFixture.open("gradients_mae_small.h5")
        let images = try f.dataset("images").readFloat()
        let masks = try GradientFixture.masks(f)
        let all = try GradientFixture.tensors(f, "student")
        let isDecoder = { (n: String) in n.hasPrefix("decoder_") || n == "mask_token" }
        func maeLoss(_ p: [String: Tensor<Float>]) throws -> Double {
            let m = try MaskedAutoencoder(
                encoder: p.filter { !isDecoder($0.key) }, architecture: GradientFixture.maeArchitecture,
                decoder: p.filter { isDecoder($0.key) }, decoderHeads: 4)
            return try m.forward(images, masks: masks, normPixLoss: true).sums.squaredErrorSum
        }
        let model = try GradientFixture.mae(f, "student")
        let g = try model.lossAndGradient(images, masks: masks, normPixLoss: true).gradients
        let mae = try Self.directionalCheck(parameters: all, gradient: g, seed: 5, loss: maeLoss)
        print("finite differences MAE: fd \(mae.fd), ⟨∇L, d⟩ \(mae.analytic)")
        #expect(relativeError(mae.fd, mae.analytic) < 2e-3)

        let cf = try GradientFixture.open("gradients_ce_small.h5")
        let a = GradientFixture.ceArchitecture(fcNorm: false)
        var params = try GradientFixture.tensors(cf, "tok/weights")
        let head = try GradientFixture.tensors(cf, "token/head")
        params["head.weight"] = head["head.weight"]; params["head.bias"] = head["head.bias"]
        let pixels = try cf.dataset("images").readFloat()
        let labels = try cf.dataset("labels").readInt64().map(Int.init)
        func split(_ p: [String: Tensor<Float>]) throws -> (VisionTransformer, ClassifierHead) {
            let m = try VisionTransformer(parameters: p.filter { !$0.key.hasPrefix("head.") }, architecture: a)
            return (
                m,
                try ClassifierHead(
                    readout: .classToken, weight: p["head.weight"]!, bias: p["head.bias"]!, architecture: a)
            )
        }
        func ceLoss(_ p: [String: Tensor<Float>]) throws -> Double {
            let (m, h) = try split(p)
            return try h.lossAndGradient(model: m, pixels: pixels, labels: labels).sums.lossSum
        }
        let (m0, h0) = try split(params)
        let gce = try h0.lossAndGradient(model: m0, pixels: pixels, labels: labels).gradients
        let ce = try Self.directionalCheck(parameters: params, gradient: gce, seed: 9, loss: ceLoss)
        print("finite differences CE: fd \(ce.fd), ⟨∇L, d⟩ \(ce.analytic)")
        #expect(relativeError(ce.fd, ce.analytic) < 2e-3)
    }

    @Test("Bad labels and mismatched gradient shapes are reported, not trapped")
    func errors() throws {
        let cf = try GradientFixture.open("gradients_ce_small.h5")
        let a = GradientFixture.ceArchitecture(fcNorm: false)
        let model = try VisionTransformer(parameters: GradientFixture.tensors(cf, "tok/weights"), architecture: a)
        let head = try GradientFixture.tensors(cf, "token/head")
        let h = try ClassifierHead(
            readout: .classToken, weight: head["head.weight"]!, bias: head["head.bias"]!, architecture: a)
        let pixels = try cf.dataset("images").readFloat()
        #expect(throws: ClassifierHeadError.self) {
            try h.lossAndGradient(model: model, pixels: pixels, labels: [0, 1])
        }
        #expect(throws: ClassifierHeadError.self) {
            try h.lossAndGradient(model: model, pixels: pixels, labels: [0, 1, 2, 5])
        }
        var wrong: [String: Tensor<Float>] = ["cls_token": Tensor(shape: [24])]
        #expect(throws: TensorError.self) {
            try h.lossAndGradient(model: model, pixels: pixels, labels: [0, 1, 2, 3], accumulatingInto: &wrong)
        }
    }
}
