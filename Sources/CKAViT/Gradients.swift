import CKATensor
import Foundation

// Reverse-mode gradients of the loss-landscape losses (issue 8: Hessian-vector products by finite differences of
// gradients). Each pass runs the forward pass once, keeping the activations of the batch (`TransformerBlocks.Tape`),
// then the backward pass; every product is a BLAS GEMM. Gradients are of the loss SUMS (`MAELossSums`,
// `RCMAELossSums`, `CrossEntropySums`), so batches add up exactly: ∇loss = Σ_batches ∇sum / Σ_batches count.
// They are returned under the parameter names and in the shapes the model was built from (checkpoint shapes).
// Precision: float32 activations and GEMMs (as PyTorch's float32 autograd), reductions of LayerNorm statistics and
// bias gradients in Double. GELU' is the derivative of exact-erf GELU, Φ(a) + a·φ(a), with Φ from the forward
// pass's erf approximation (|error| ≤ 1.5e-7).

/// Sums of the cross-entropy of a linear head over one batch, for exact aggregation over many batches.
public struct CrossEntropySums: Sendable, Equatable {
    /// Σ over examples of −log softmax(logits)[label] (computed in Double).
    public var lossSum: Double
    /// Examples whose top-1 logit (first maximum) is the label.
    public var correct: Int
    /// Number of examples.
    public var count: Int

    public init(lossSum: Double = 0, correct: Int = 0, count: Int = 0) {
        self.lossSum = lossSum
        self.correct = correct
        self.count = count
    }

    /// Mean loss (PyTorch `CrossEntropyLoss`).
    public var loss: Double { lossSum / Double(count) }
    /// Top-1 accuracy in percent.
    public var accuracy: Double { 100 * Double(correct) / Double(count) }

    public static func + (a: CrossEntropySums, b: CrossEntropySums) -> CrossEntropySums {
        CrossEntropySums(lossSum: a.lossSum + b.lossSum, correct: a.correct + b.correct, count: a.count + b.count)
    }
}

// MARK: - MAE / RC-MAE

extension MaskedAutoencoder {
    /// The MAE loss sums of a batch and the gradient of `squaredErrorSum` (Σ over masked patches of the per-patch
    /// MSE) with respect to every encoder and decoder parameter, under the names and shapes the model was built
    /// from (`patch_embed.proj.weight` `[D, C, p, p]`, `cls_token` `[1, 1, D]`, `pos_embed`, `blocks.i.*`, `norm.*`,
    /// `decoder_embed.*`, `mask_token`, `decoder_pos_embed`, `decoder_blocks.i.*`, `decoder_norm.*`,
    /// `decoder_pred.*`; the fixed sin-cos tables get their gradient too). The target is a constant (no gradient
    /// flows through the norm-pix statistics). ∇loss = gradient / `maskedPatches`.
    /// - Throws: the errors of `forward`.
    public func lossAndGradient(_ pixels: Tensor<Float>, masks: [MAEMask], normPixLoss: Bool) throws
        -> (sums: MAELossSums, gradients: [String: Tensor<Float>])
    {
        var g: [String: Tensor<Float>] = [:]
        let sums = try lossAndGradient(pixels, masks: masks, normPixLoss: normPixLoss, accumulatingInto: &g)
        return (sums, g)
    }

    /// As `lossAndGradient(_:masks:normPixLoss:)`, adding the gradient into `gradients` (missing names are inserted),
    /// so a list of batches is summed in place.
    /// - Throws: the errors of `forward`; `TensorError.shapeMismatch` if `gradients` holds a tensor of another shape.
    public func lossAndGradient(
        _ pixels: Tensor<Float>, masks: [MAEMask], normPixLoss: Bool,
        accumulatingInto gradients: inout [String: Tensor<Float>]
    ) throws -> MAELossSums {
        let s = try gradientPass(
            pixels, masks: masks, normPixLoss: normPixLoss, teacherPrediction: nil, gamma: 0,
            into: &gradients)
        return MAELossSums(squaredErrorSum: s.reconstructionSum, maskedPatches: s.maskedPatches)
    }

    /// The RC-MAE loss sums of a batch and the gradient of `reconstructionSum + γ·consistencySum` with respect to the
    /// student's parameters (names and shapes as in `lossAndGradient`); the teacher's prediction is a constant.
    /// ∇loss = gradient / `maskedPatches`.
    /// - Throws: the errors of `rcmaeForward`.
    public static func rcmaeLossAndGradient(
        student: MaskedAutoencoder, teacher: MaskedAutoencoder, pixels: Tensor<Float>,
        masks: [MAEMask], normPixLoss: Bool, gamma: Double = 1
    ) throws
        -> (sums: RCMAELossSums, gradients: [String: Tensor<Float>])
    {
        var g: [String: Tensor<Float>] = [:]
        let sums = try rcmaeLossAndGradient(
            student: student, teacher: teacher, pixels: pixels, masks: masks,
            normPixLoss: normPixLoss, gamma: gamma, accumulatingInto: &g)
        return (sums, g)
    }

    /// As `rcmaeLossAndGradient(student:teacher:pixels:masks:normPixLoss:gamma:)`, adding into `gradients`.
    public static func rcmaeLossAndGradient(
        student: MaskedAutoencoder, teacher: MaskedAutoencoder, pixels: Tensor<Float>,
        masks: [MAEMask], normPixLoss: Bool, gamma: Double = 1,
        accumulatingInto gradients: inout [String: Tensor<Float>]
    ) throws -> RCMAELossSums {
        guard teacher.patchSize == student.patchSize, teacher.imageSize == student.imageSize,
            teacher.targetWidth == student.targetWidth
        else {
            throw MAEError.invalidArgument(
                parameter: "teacher",
                expected: "patch \(student.patchSize), image \(student.imageSize)px like the student",
                got: "patch \(teacher.patchSize), image \(teacher.imageSize)px")
        }
        guard gamma.isFinite else {
            throw MAEError.invalidArgument(parameter: "gamma", expected: "a finite number", got: "\(gamma)")
        }
        let t = try teacher.predict(pixels, masks: masks)
        return try student.gradientPass(
            pixels, masks: masks, normPixLoss: normPixLoss, teacherPrediction: t, gamma: gamma,
            into: &gradients)
    }

    /// Encoder and decoder parameter names the loss reads (model-internal shapes in `encoder.p` / `decoder.p`).
    private var gradientNames: (encoder: [String], decoder: [String]) {
        (
            ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed"]
                + encoder.blocks.parameterNames
                + ["norm.weight", "norm.bias"],
            ["decoder_embed.weight", "decoder_embed.bias", "mask_token", "decoder_pos_embed"] + decoder.parameterNames
                + ["decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"]
        )
    }

    /// One forward + backward pass; the consistency term is included when `teacherPrediction` is given.
    private func gradientPass(
        _ pixels: Tensor<Float>, masks: [MAEMask], normPixLoss: Bool, teacherPrediction: Tensor<Float>?,
        gamma: Double, into gradients: inout [String: Tensor<Float>]
    ) throws -> RCMAELossSums {
        let keep = try check(pixels, masks: masks)
        let a = encoder.architecture
        let b = pixels.shape[0], np = patchCount, l = targetWidth, d = a.width, dd = decoderWidth
        let te = keep + 1, td = np + 1
        if let t = teacherPrediction, t.shape != [b, np, l] {
            throw MAEError.inputShape(parameter: "teacherPrediction", expected: "[\(b), \(np), \(l)]", got: t.shape)
        }
        var w = takeBuffers(batch: b, keep: keep)
        defer { buffers = w }
        let (prediction, recorded) = try run(pixels, masks: masks, keep: keep, buffers: &w, record: true)
        guard let tapes = recorded else {
            throw ViTError.unsupported("internal: the forward pass recorded no activations")
        }
        let eps = Float(a.layerNormEpsilon)
        let ep = encoder.p, dp = decoder.p
        let names = gradientNames
        let g = GradientBuffers(like: ep, names: names.encoder)
        g.add(like: dp, names: names.decoder)

        // Loss sums and ∂sum/∂pred (zero on visible patches), per masked patch in Double.
        var dpred = Tensor<Float>(shape: [b * np, l])
        var target = Tensor<Double>(shape: [l]), raw = Tensor<Float>(shape: [l])
        var rec = 0.0, cons = 0.0, count = 0
        let pp = prediction.pointer, dpp = dpred.mutablePointer(), tp = teacherPrediction?.pointer
        let t = target.mutablePointer(), rp = raw.mutablePointer()
        let invL = 1 / Double(l)
        for i in 0..<b {
            for k in 0..<np where masks[i].mask[k] == 1 {
                patch(pixels, image: i, patch: k, into: rp)
                Self.target(rp, count: l, normalize: normPixLoss, into: t)
                let row = (i * np + k) * l, pr = pp + row, dr = dpp + row
                var e2 = 0.0, c2 = 0.0
                for j in 0..<l {
                    let e = Double(pr[j]) - t[j]
                    e2 += e * e
                    dr[j] = Float(2 * e * invL)
                }
                if let tp {
                    let tr = tp + row
                    for j in 0..<l {
                        let c = Double(pr[j]) - Double(tr[j])
                        c2 += c * c
                        dr[j] += Float(2 * gamma * c * invL)
                    }
                }
                rec += e2 * invL
                cons += c2 * invL
                count += 1
            }
        }

        // decoder_pred and decoder_norm (patch tokens only; the CLS token gets no gradient from the output).
        try gemm(
            dpred.matrixRef, transposeA: true, w.decoded.matrixRef, beta: 1,
            into: MutableMatrixRef(g.pointer("decoder_pred.weight"), rows: l, cols: dd))
        NeuralKernels.addColumnSums(dpred.pointer, rows: b * np, width: l, into: g.pointer("decoder_pred.bias"))
        var ddecoded = Tensor<Float>(shape: [b * np, dd])
        try gemm(
            dpred.matrixRef, dp["decoder_pred.weight"]!.matrixRef,
            into: MutableMatrixRef(ddecoded.mutablePointer(), rows: b * np, cols: dd))
        var dy = Tensor<Float>(shape: [b * td, dd])
        let dyp = dy.mutablePointer(), decX = w.decoder!.x.pointer
        for i in 0..<b {
            NeuralKernels.layerNormBackward(
                input: decX + (i * td + 1) * dd, outputGradient: ddecoded.pointer + i * np * dd,
                rows: np, width: dd, weight: dp["decoder_norm.weight"]!.pointer, epsilon: eps,
                inputGradient: dyp + (i * td + 1) * dd, accumulate: false,
                weightGradient: g.pointer("decoder_norm.weight"), biasGradient: g.pointer("decoder_norm.bias"))
        }
        try decoder.backward(tapes.decoder, images: b, tokens: td, gradient: dyp, into: g)

        // Decoder input: position table, mask token scatter, unshuffle back to the encoder's token order.
        var demb = Tensor<Float>(shape: [b * te, dd])
        let dep = demb.mutablePointer(), dpos = g.pointer("decoder_pos_embed"), dmask = g.pointer("mask_token")
        for i in 0..<b {
            let row = dyp + i * td * dd, dst = dep + i * te * dd, restore = masks[i].idsRestore
            NeuralKernels.addScaled(row, into: dpos, rows: td, width: dd, scale: nil)
            dst.update(from: row, count: dd)
            for k in 0..<np {
                let r = restore[k], src = row + (k + 1) * dd
                if r < keep {
                    (dst + (r + 1) * dd).update(from: src, count: dd)
                } else {
                    NeuralKernels.addScaled(src, into: dmask, rows: 1, width: dd, scale: nil)
                }
            }
        }
        try gemm(
            demb.matrixRef, transposeA: true, w.latent.matrixRef, beta: 1,
            into: MutableMatrixRef(g.pointer("decoder_embed.weight"), rows: dd, cols: d))
        NeuralKernels.addColumnSums(dep, rows: b * te, width: dd, into: g.pointer("decoder_embed.bias"))
        var dlatent = Tensor<Float>(shape: [b * te, d])
        try gemm(
            demb.matrixRef, dp["decoder_embed.weight"]!.matrixRef,
            into: MutableMatrixRef(dlatent.mutablePointer(), rows: b * te, cols: d))

        // Encoder: final norm, blocks, CLS / position table / visible-patch embedding.
        var dx = Tensor<Float>(shape: [b * te, d])
        let dxp = dx.mutablePointer()
        NeuralKernels.layerNormBackward(
            input: w.encoder!.x.pointer, outputGradient: dlatent.pointer, rows: b * te, width: d,
            weight: ep["norm.weight"]!.pointer, epsilon: eps, inputGradient: dxp, accumulate: false,
            weightGradient: g.pointer("norm.weight"), biasGradient: g.pointer("norm.bias"))
        try encoder.blocks.backward(tapes.encoder, images: b, tokens: te, gradient: dxp, into: g)
        var dpatches = Tensor<Float>(shape: [b * keep, d])
        let dpp2 = dpatches.mutablePointer(), dcls = g.pointer("cls_token"), dposE = g.pointer("pos_embed")
        for i in 0..<b {
            let row = dxp + i * te * d, ids = masks[i].idsShuffle
            NeuralKernels.addScaled(row, into: dcls, rows: 1, width: d, scale: nil)
            NeuralKernels.addScaled(row, into: dposE, rows: 1, width: d, scale: nil)
            for k in 0..<keep {
                let src = row + (k + 1) * d
                NeuralKernels.addScaled(src, into: dposE + (ids[k] + 1) * d, rows: 1, width: d, scale: nil)
                (dpp2 + (i * keep + k) * d).update(from: src, count: d)
            }
        }
        try gemm(
            dpatches.matrixRef, transposeA: true, w.cols.matrixRef, beta: 1,
            into: MutableMatrixRef(g.pointer("patch_embed.proj.weight"), rows: d, cols: w.cols.shape[1]))
        NeuralKernels.addColumnSums(dpp2, rows: b * keep, width: d, into: g.pointer("patch_embed.proj.bias"))

        var shapes = encoder.parameterShapes
        for (k, v) in decoderShapes { shapes[k] = v }
        try g.add(into: &gradients, shapes: shapes)
        return RCMAELossSums(reconstructionSum: rec, consistencySum: cons, maskedPatches: count)
    }

    /// The loss target of one patch in Double: the patch, or (t − mean)/√(unbiased var + 1e-6) (norm-pix).
    static func target(_ t: UnsafePointer<Float>, count l: Int, normalize: Bool, into out: UnsafeMutablePointer<Double>)
    {
        var mean = 0.0, inv = 1.0
        if normalize {
            var s = 0.0
            for j in 0..<l { s += Double(t[j]) }
            mean = s / Double(l)
            var sq = 0.0
            for j in 0..<l { let c = Double(t[j]) - mean; sq += c * c }
            inv = 1 / (sq / Double(l - 1) + 1e-6).squareRoot()
        }
        for j in 0..<l { out[j] = (Double(t[j]) - mean) * inv }
    }
}

// MARK: - Cross-entropy of a linear head

extension ClassifierHead {
    /// The cross-entropy sums of a batch (mean over examples of −log softmax(logits)[label] = `lossSum / count`) and
    /// the gradient of `lossSum` with respect to the backbone (timm names and the shapes `model` was built from,
    /// e.g. `cls_token` `[1, 1, D]`, `patch_embed.proj.weight` `[D, C, p, p]`, `norm.*` or `fc_norm.*`) and the
    /// head, named `head.weight` / `head.bias` (shapes of `weight` / `bias`) whatever the head's file calls them.
    /// The readout reads the model's own final norm (as `logits(model:pixels:)`). ∇loss = gradient / `count`.
    /// - Throws: `ClassifierHeadError.incompatible` (model width/depth), `.labels` (one label per image, each
    ///   in 0..<classCount), the model's errors.
    public func lossAndGradient(model: VisionTransformer, pixels: Tensor<Float>, labels: [Int]) throws
        -> (sums: CrossEntropySums, gradients: [String: Tensor<Float>])
    {
        var g: [String: Tensor<Float>] = [:]
        let sums = try lossAndGradient(model: model, pixels: pixels, labels: labels, accumulatingInto: &g)
        return (sums, g)
    }

    /// As `lossAndGradient(model:pixels:labels:)`, adding the gradient into `gradients` (missing names inserted).
    public func lossAndGradient(
        model: VisionTransformer, pixels: Tensor<Float>, labels: [Int],
        accumulatingInto gradients: inout [String: Tensor<Float>]
    ) throws -> CrossEntropySums {
        let a = model.architecture
        guard a.width == width, a.depth == depth else {
            throw ClassifierHeadError.incompatible(
                file: file,
                reason:
                    "the head was built for width \(width), depth \(depth); the model has width \(a.width), depth \(a.depth)"
            )
        }
        let size = model.imageSize
        guard pixels.rank == 4, pixels.shape[1] == a.inputChannels, pixels.shape[2] == size, pixels.shape[3] == size,
            pixels.shape[0] > 0
        else {
            throw ViTError.inputShape(expected: "[B ≥ 1, \(a.inputChannels), \(size), \(size)]", got: pixels.shape)
        }
        let b = pixels.shape[0], ps = a.patchSize, grid = size / ps, np = grid * grid, t = np + 1, d = a.width
        guard t == a.tokenCount, a.positionIncludesPrefix, a.prefixTokens == 1, a.classToken, !a.preNorm else {
            throw ViTError.unsupported(
                "gradients need a position table of \(t) rows including the class token; it has \(a.tokenCount)")
        }
        guard labels.count == b else {
            throw ClassifierHeadError.labels("one label per image (\(b)), got \(labels.count)")
        }
        if let bad = labels.first(where: { !(0..<classCount).contains($0) }) {
            throw ClassifierHeadError.labels("label \(bad) is outside the head's \(classCount) classes (\(file))")
        }
        let p = model.p, eps = Float(a.layerNormEpsilon), f = featureWidth, c = classCount
        let blocks = model.blocks
        var normNames: [String] = []
        switch readout {
        case .classToken, .dinoLinear: normNames = ["norm.weight", "norm.bias"]
        case .globalPool: normNames = ["fc_norm.weight", "fc_norm.bias"]
        case .modelHead:
            throw ViTError.unsupported(
                "\(file): gradients through the model's own head (hook 'head') are not implemented; use a probe head")
        }
        for n in normNames where p[n] == nil {
            throw ClassifierHeadError.incompatible(file: file, reason: "the readout needs the model's \(n)")
        }
        let g = GradientBuffers(
            like: p,
            names: ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed"]
                + blocks.parameterNames + normNames)
        g.add(like: ["head.weight": weight, "head.bias": bias], names: ["head.weight", "head.bias"])

        // Forward, recorded: patch embedding (im2col + GEMM), tokens, blocks.
        var cols = Tensor<Float>(shape: [b * np, a.inputChannels * ps * ps])
        model.im2col(pixels, into: &cols, patch: ps, grid: grid)
        var ws = TransformerBlocks.Workspace(images: b, tokens: t, width: d, hiddenWidth: a.mlpHiddenWidth)
        var patches = Tensor<Float>(shape: [b * np, d])
        try blocks.linear(cols.pointer, rows: b * np, "patch_embed.proj", into: patches.mutablePointer())
        model.assembleTokens(patches.pointer, into: ws.x.mutablePointer(), images: b, patches: np)
        let tape = try blocks.record(&ws)
        let x = ws.x.pointer, rows = b * t

        // Features [B, F] of the readout.
        var features = Tensor<Float>(shape: [b, f])
        let fp = features.mutablePointer()
        var normed = Tensor<Float>(shape: [rows, d])
        var pooled = Tensor<Float>(shape: [b, d])
        let nw = p[normNames[0]]!.pointer, nb = p[normNames[1]]!.pointer
        switch readout {
        case .classToken:
            NeuralKernels.layerNorm(
                x, normed.mutablePointer(), rows: rows, width: d, weight: nw, bias: nb, epsilon: eps)
            for i in 0..<b { (fp + i * f).update(from: normed.pointer + i * t * d, count: d) }
        case .modelHead: break  // refused above
        case .globalPool:
            meanPatchTokens(x, images: b, tokens: t, width: d, into: pooled.mutablePointer())
            NeuralKernels.layerNorm(pooled.pointer, fp, rows: b, width: d, weight: nw, bias: nb, epsilon: eps)
        case let .dinoLinear(n, avg):
            NeuralKernels.layerNorm(
                x, normed.mutablePointer(), rows: rows, width: d, weight: nw, bias: nb, epsilon: eps)
            if avg {
                meanPatchTokens(normed.pointer, images: b, tokens: t, width: d, into: pooled.mutablePointer())
                let np0 = normed.pointer, gp = pooled.pointer
                for i in 0..<b {
                    for j in 0..<d { fp[i * f + 2 * j] = np0[i * t * d + j]; fp[i * f + 2 * j + 1] = gp[i * d + j] }
                }
            } else {
                for (k, blk) in (depth - n..<depth).enumerated() {
                    for i in 0..<b {
                        let dst = fp + i * f + k * d
                        if blk == depth - 1 {
                            dst.update(from: normed.pointer + i * t * d, count: d)
                        } else {  // output of block blk = input of block blk + 1, CLS row, through the final norm
                            NeuralKernels.layerNorm(
                                tape.input[blk + 1].pointer + i * t * d, dst, rows: 1, width: d,
                                weight: nw, bias: nb, epsilon: eps)
                        }
                    }
                }
            }
        }

        // Logits, loss sums, ∂sum/∂logits = softmax − one-hot.
        var logits = Tensor<Float>(shape: [b, c])
        NeuralKernels.broadcastRows(bias.pointer, into: logits.mutablePointer(), rows: b, width: c)
        try gemm(
            features.matrixRef, weight.matrixRef, transposeB: true, beta: 1,
            into: MutableMatrixRef(logits.mutablePointer(), rows: b, cols: c))
        var dz = Tensor<Float>(shape: [b, c])
        let zp = logits.pointer, dzp = dz.mutablePointer()
        var sums = CrossEntropySums()
        for (i, label) in labels.enumerated() {
            let z = zp + i * c
            var best = 0, top = -Double.infinity
            for j in 0..<c where Double(z[j]) > top { top = Double(z[j]); best = j }
            var s = 0.0
            for j in 0..<c { s += Foundation.exp(Double(z[j]) - top) }
            let lse = top + Foundation.log(s)
            sums.lossSum += lse - Double(z[label])
            if best == label { sums.correct += 1 }
            sums.count += 1
            for j in 0..<c { dzp[i * c + j] = Float(Foundation.exp(Double(z[j]) - lse) - (j == label ? 1 : 0)) }
        }
        try gemm(
            dz.matrixRef, transposeA: true, features.matrixRef, beta: 1,
            into: MutableMatrixRef(g.pointer("head.weight"), rows: c, cols: f))
        NeuralKernels.addColumnSums(dzp, rows: b, width: c, into: g.pointer("head.bias"))
        var df = Tensor<Float>(shape: [b, f])
        try gemm(dz.matrixRef, weight.matrixRef, into: MutableMatrixRef(df.mutablePointer(), rows: b, cols: f))

        // Back through the readout to ∂/∂(last block output) (and intermediate blocks for DINO n > 1).
        var dx = Tensor<Float>(shape: [rows, d])
        let dxp = dx.mutablePointer(), dfp = df.pointer, dnw = g.pointer(normNames[0]), dnb = g.pointer(normNames[1])
        var extra: [Int: Tensor<Float>] = [:]
        switch readout {
        case .modelHead: break  // refused above
        case .classToken:
            for i in 0..<b {
                NeuralKernels.layerNormBackward(
                    input: x + i * t * d, outputGradient: dfp + i * f, rows: 1, width: d, weight: nw,
                    epsilon: eps, inputGradient: dxp + i * t * d, accumulate: false,
                    weightGradient: dnw, biasGradient: dnb)
            }
        case .globalPool:
            var dpooled = Tensor<Float>(shape: [b, d])
            NeuralKernels.layerNormBackward(
                input: pooled.pointer, outputGradient: dfp, rows: b, width: d, weight: nw, epsilon: eps,
                inputGradient: dpooled.mutablePointer(), accumulate: false,
                weightGradient: dnw, biasGradient: dnb)
            spreadMean(dpooled.pointer, images: b, tokens: t, width: d, into: dxp)
        case let .dinoLinear(n, avg):
            var dnormed = Tensor<Float>(shape: [rows, d])
            let dn = dnormed.mutablePointer()
            if avg {
                var dgap = Tensor<Float>(shape: [b, d])
                let dg = dgap.mutablePointer()
                for i in 0..<b {
                    for j in 0..<d { dn[i * t * d + j] = dfp[i * f + 2 * j]; dg[i * d + j] = dfp[i * f + 2 * j + 1] }
                }
                spreadMean(dgap.pointer, images: b, tokens: t, width: d, into: dn)
            } else {
                for (k, blk) in (depth - n..<depth).enumerated() {
                    if blk == depth - 1 {
                        for i in 0..<b { (dn + i * t * d).update(from: dfp + i * f + k * d, count: d) }
                    } else {
                        var e = Tensor<Float>(shape: [rows, d])
                        let ep = e.mutablePointer(), input = tape.input[blk + 1].pointer
                        for i in 0..<b {
                            NeuralKernels.layerNormBackward(
                                input: input + i * t * d, outputGradient: dfp + i * f + k * d, rows: 1,
                                width: d, weight: nw, epsilon: eps, inputGradient: ep + i * t * d,
                                accumulate: false, weightGradient: dnw, biasGradient: dnb)
                        }
                        extra[blk] = e
                    }
                }
            }
            NeuralKernels.layerNormBackward(
                input: x, outputGradient: dnormed.pointer, rows: rows, width: d, weight: nw, epsilon: eps,
                inputGradient: dxp, accumulate: false, weightGradient: dnw, biasGradient: dnb)
        }
        try blocks.backward(tape, images: b, tokens: t, gradient: dxp, outputGradients: extra, into: g)

        // Tokens: CLS, position table, patch embedding.
        var dpatches = Tensor<Float>(shape: [b * np, d])
        let dpp = dpatches.mutablePointer(), dcls = g.pointer("cls_token"), dpos = g.pointer("pos_embed")
        for i in 0..<b {
            let row = dxp + i * t * d
            NeuralKernels.addScaled(row, into: dcls, rows: 1, width: d, scale: nil)
            NeuralKernels.addScaled(row, into: dpos, rows: t, width: d, scale: nil)
            (dpp + i * np * d).update(from: row + d, count: np * d)
        }
        try gemm(
            dpatches.matrixRef, transposeA: true, cols.matrixRef, beta: 1,
            into: MutableMatrixRef(g.pointer("patch_embed.proj.weight"), rows: d, cols: cols.shape[1]))
        NeuralKernels.addColumnSums(dpp, rows: b * np, width: d, into: g.pointer("patch_embed.proj.bias"))

        var shapes = model.parameterShapes
        shapes["head.weight"] = weight.shape
        shapes["head.bias"] = bias.shape
        try g.add(into: &gradients, shapes: shapes)
        return sums
    }
}

/// Mean over tokens 1..<t of each image's rows `[images·t, width]` into `[images, width]`, accumulated in Double.
private func meanPatchTokens(
    _ x: UnsafePointer<Float>, images b: Int, tokens t: Int, width d: Int, into out: UnsafeMutablePointer<Float>
) {
    let acc = UnsafeMutablePointer<Double>.allocate(capacity: d)
    defer { acc.deallocate() }
    let inv = 1 / Double(t - 1)
    for i in 0..<b {
        acc.initialize(repeating: 0, count: d)
        for k in 1..<t { let r = x + (i * t + k) * d; for j in 0..<d { acc[j] += Double(r[j]) } }
        for j in 0..<d { out[i * d + j] = Float(acc[j] * inv) }
    }
}

/// Backward of `meanPatchTokens`: adds g[i]/(t − 1) to rows 1..<t of image i.
private func spreadMean(
    _ g: UnsafePointer<Float>, images b: Int, tokens t: Int, width d: Int, into dx: UnsafeMutablePointer<Float>
) {
    let inv = 1 / Float(t - 1)
    for i in 0..<b {
        let src = g + i * d
        for k in 1..<t { let r = dx + (i * t + k) * d; for j in 0..<d { r[j] += src[j] * inv } }
    }
}
