import CKACheckpoint
import CKATensor
import Foundation

/// Sums of the MAE reconstruction loss over one batch, for exact aggregation over many batches.
///
/// `loss = squaredErrorSum / maskedPatches`, where `squaredErrorSum` = Σ over masked patches of the per-patch
/// mean squared error (`models_mae.py forward_loss`). Add the sums of several batches, then take `loss`.
public struct MAELossSums: Sendable, Equatable {
    /// Σ over masked patches of mean over `p²·C` of (pred − target)².
    public var squaredErrorSum: Double
    /// Number of masked patches.
    public var maskedPatches: Int

    public init(squaredErrorSum: Double = 0, maskedPatches: Int = 0) {
        self.squaredErrorSum = squaredErrorSum
        self.maskedPatches = maskedPatches
    }

    /// The mean loss over masked patches (NaN when no patch is masked, as in the official code).
    public var loss: Double { squaredErrorSum / Double(maskedPatches) }

    public static func + (a: MAELossSums, b: MAELossSums) -> MAELossSums {
        MAELossSums(
            squaredErrorSum: a.squaredErrorSum + b.squaredErrorSum, maskedPatches: a.maskedPatches + b.maskedPatches)
    }
}

/// Sums of the RC-MAE loss over one batch: reconstruction (`MAELossSums`) and consistency with the teacher.
///
/// `loss(gamma:) = (reconstructionSum + γ·consistencySum) / maskedPatches` (RC-MAE `engine_pretrain.py`).
public struct RCMAELossSums: Sendable, Equatable {
    /// Σ over masked patches of the student's per-patch reconstruction MSE.
    public var reconstructionSum: Double
    /// Σ over masked patches of mean over `p²·C` of (student pred − teacher pred)², raw predictions.
    public var consistencySum: Double
    /// Number of masked patches.
    public var maskedPatches: Int

    public init(reconstructionSum: Double = 0, consistencySum: Double = 0, maskedPatches: Int = 0) {
        self.reconstructionSum = reconstructionSum
        self.consistencySum = consistencySum
        self.maskedPatches = maskedPatches
    }

    /// Mean reconstruction loss over masked patches.
    public var reconstruction: Double { reconstructionSum / Double(maskedPatches) }
    /// Mean consistency loss over masked patches.
    public var consistency: Double { consistencySum / Double(maskedPatches) }
    /// `reconstruction + γ·consistency` (γ = 1 is RC-MAE's default `--gamma`).
    public func loss(gamma: Double = 1) -> Double {
        (reconstructionSum + gamma * consistencySum) / Double(maskedPatches)
    }

    public static func + (a: RCMAELossSums, b: RCMAELossSums) -> RCMAELossSums {
        RCMAELossSums(
            reconstructionSum: a.reconstructionSum + b.reconstructionSum,
            consistencySum: a.consistencySum + b.consistencySum, maskedPatches: a.maskedPatches + b.maskedPatches)
    }
}

/// The MAE pre-training forward pass and loss (He et al. 2022, `facebookresearch/mae models_mae.py`), forward only.
///
/// Encoder (timm-named parameters, a `VisionTransformer`): patch embedding, `pos_embed[1:]` added, the visible
/// patches kept in `idsShuffle` order, `cls_token + pos_embed[0]` prepended, `blocks.*`, `norm`. Decoder (MAE names):
/// `decoder_embed`, `mask_token` appended for the masked patches, unshuffled with `idsRestore`, CLS prepended,
/// `decoder_pos_embed` added, `decoder_blocks.*`, `decoder_norm`, `decoder_pred`, CLS dropped → `[B, P, p²·C]`.
/// Loss: per-patch mean of (pred − target)² over the masked patches, target = `patchify(pixels)`, optionally
/// normalised per patch (`normPixLoss`: (t − mean)/√(unbiased var + 1e-6)). Sums are accumulated in Double.
///
/// Every matrix product goes through BLAS (the blocks are the same code as `VisionTransformer`'s); only visible
/// patches are embedded. Buffers are reused while the batch size and visible-patch count stay the same.
/// Not thread-safe: use one instance per thread.
///
/// ### References
/// - He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022. https://arxiv.org/abs/2111.06377
/// - Lee et al., Exploring the Role of Mean Teachers in Self-supervised Masked Auto-Encoders (RC-MAE), ICLR 2023.
///   https://arxiv.org/abs/2210.02077
public final class MaskedAutoencoder {
    /// The encoder (timm names, `blocks.*`, final `norm`).
    public let encoder: VisionTransformer
    /// Decoder width (`decoder_embed_dim`, 512 for the released models).
    public let decoderWidth: Int
    /// Decoder blocks (8 for the released models).
    public let decoderDepth: Int
    /// Decoder attention heads (16 for the released models).
    public let decoderHeads: Int
    /// Decoder MLP hidden width.
    public let decoderHiddenWidth: Int
    let decoder: TransformerBlocks
    /// The shapes the decoder parameters were given in (e.g. `mask_token` `[1, 1, dd]`), by name.
    let decoderShapes: [String: [Int]]
    var buffers: Buffers?

    /// The encoder's architecture.
    public var architecture: ViTArchitecture { encoder.architecture }
    /// Patch side length p.
    public var patchSize: Int { encoder.architecture.patchSize }
    /// Input side length (`grid · p`).
    public var imageSize: Int { encoder.imageSize }
    /// Patches per image P = grid².
    public var patchCount: Int { (imageSize / patchSize) * (imageSize / patchSize) }
    /// Values per patch of the prediction and target, `p²·C` (768 for ViT-B/16).
    public var targetWidth: Int { patchSize * patchSize * encoder.architecture.inputChannels }

    /// Builds the model from encoder parameters under timm names and decoder parameters under MAE names
    /// (`decoder_embed.*`, `mask_token`, `decoder_pos_embed`, `decoder_blocks.i.*`, `decoder_norm.*`, `decoder_pred.*`).
    ///
    /// The decoder width, depth and MLP width are read from the tensors; `decoderHeads` defaults to width/32
    /// (16 for width 512, as in every released MAE/RC-MAE model).
    /// - Throws: `MAEError.noDecoder` if `decoder` is empty; `ViTError.missingParameter`/`.parameterShape` naming a
    ///   missing or misshaped tensor; `ViTError.unsupported` for an encoder without a final `norm` or a head count
    ///   that does not divide the width.
    public init(
        encoder encoderParameters: [String: Tensor<Float>], architecture a: ViTArchitecture,
        decoder decoderParameters: [String: Tensor<Float>], decoderHeads: Int? = nil, file: String = "checkpoint"
    ) throws {
        guard !decoderParameters.isEmpty else { throw MAEError.noDecoder(file: file) }
        guard a.hasFinalNorm, !a.hasFCNorm, a.prefixTokens == 1, a.positionIncludesPrefix, a.gridSize != nil else {
            throw ViTError.unsupported(
                "\(file): the MAE encoder needs a class token, a square position table with a CLS row "
                    + "and a final `norm` (a pre-training checkpoint, not a fine-tuned one)")
        }
        encoder = try VisionTransformer(parameters: encoderParameters, architecture: a, file: file)
        var p = decoderParameters
        decoderShapes = decoderParameters.mapValues(\.shape)
        guard let embed = p["decoder_embed.weight"] else {
            throw ViTError.missingParameter(name: "decoder_embed.weight", file: file)
        }
        guard embed.rank == 2, embed.shape[1] == a.width, embed.shape[0] > 0 else {
            throw ViTError.parameterShape(name: "decoder_embed.weight", expected: [-1, a.width], got: embed.shape)
        }
        let dd = embed.shape[0]
        let blockIndices = p.keys.compactMap { key -> Int? in
            guard key.hasPrefix("decoder_blocks.") else { return nil }
            return Int(key.dropFirst("decoder_blocks.".count).prefix { $0 != "." })
        }
        let depth = (blockIndices.max() ?? -1) + 1
        var hidden = 4 * dd
        if depth > 0 {
            guard let fc1 = p["decoder_blocks.0.mlp.fc1.weight"] else {
                throw ViTError.missingParameter(name: "decoder_blocks.0.mlp.fc1.weight", file: file)
            }
            guard fc1.count % dd == 0, fc1.count > 0 else {
                throw ViTError.parameterShape(
                    name: "decoder_blocks.0.mlp.fc1.weight", expected: [-1, dd], got: fc1.shape)
            }
            hidden = fc1.count / dd
        }
        let heads = decoderHeads ?? (dd % 32 == 0 ? dd / 32 : 0)
        guard heads > 0, dd % heads == 0 else {
            throw ViTError.unsupported(
                "\(file): decoder width \(dd) is not divisible by \(decoderHeads.map(String.init) ?? "32-wide") heads;"
                    + " pass decoderHeads")
        }
        let tokens = a.tokenCount, target = a.patchSize * a.patchSize * a.inputChannels
        func need(_ name: String, _ shape: [Int]) throws { try reshapeParameter(&p, name, shape, file: file) }
        try need("decoder_embed.weight", [dd, a.width]); try need("decoder_embed.bias", [dd])
        try need("mask_token", [dd])
        try need("decoder_pos_embed", [tokens, dd])
        try TransformerBlocks.validate(
            &p, prefix: "decoder_blocks", depth: depth, width: dd, hiddenWidth: hidden,
            layerScale: false, file: file)
        try need("decoder_norm.weight", [dd]); try need("decoder_norm.bias", [dd])
        try need("decoder_pred.weight", [target, dd]); try need("decoder_pred.bias", [target])
        decoderWidth = dd
        decoderDepth = depth
        self.decoderHeads = heads
        decoderHiddenWidth = hidden
        decoder = TransformerBlocks(
            prefix: "decoder_blocks", depth: depth, width: dd, heads: heads, hiddenWidth: hidden,
            layerScale: false, epsilon: Float(a.layerNormEpsilon), p: p)
    }

    /// Builds the model of a loaded MAE or RC-MAE pre-training checkpoint (encoder and `Checkpoint.decoder`).
    /// - Throws: `MAEError.noDecoder` if the checkpoint has no decoder (e.g. `mae_pretrain_vit_base.pth`), and the
    ///   errors of `init(encoder:architecture:decoder:decoderHeads:file:)`.
    public convenience init(checkpoint: Checkpoint, decoderHeads: Int? = nil) throws {
        guard !checkpoint.decoder.isEmpty else { throw MAEError.noDecoder(file: checkpoint.file) }
        var decoder: [String: Tensor<Float>] = [:]
        for (name, tensor) in checkpoint.decoder { decoder[name] = try tensor.floatTensor() }
        try self.init(
            encoder: checkpoint.parameters, architecture: checkpoint.architecture, decoder: decoder,
            decoderHeads: decoderHeads, file: checkpoint.file)
    }

    /// A decoder parameter by its MAE name (reshaped to the form the model uses).
    public func decoderParameter(_ name: String) -> Tensor<Float>? { decoder.p[name] }

    // MARK: - Forward

    /// One forward pass: the prediction and the loss sums.
    public struct Output {
        /// Predicted patches `[B, P, p²·C]` (official `pred`). Valid after later calls too, but keeping it while
        /// calling again forces a copy of the buffer.
        public let prediction: Tensor<Float>
        /// The loss sums of the batch.
        public let sums: MAELossSums
        /// `sums.loss`.
        public var loss: Double { sums.loss }
    }

    /// The MAE forward pass and loss on a batch of normalised pixels `[B, C, H, W]` with one mask per image.
    ///
    /// - Parameters:
    ///   - masks: B masks of `patchCount` patches, all with the same `keepCount`.
    ///   - normPixLoss: normalise each target patch by its mean and unbiased variance (MAE's `--norm_pix_loss`,
    ///     used to pre-train the released models).
    /// - Throws: `MAEError.inputShape` / `.invalidArgument` naming the argument.
    public func forward(_ pixels: Tensor<Float>, masks: [MAEMask], normPixLoss: Bool) throws -> Output {
        let pred = try predict(pixels, masks: masks)
        let sums = reconstructionSums(pixels, prediction: pred, masks: masks, normPixLoss: normPixLoss)
        return Output(prediction: pred, sums: sums)
    }

    /// The predicted patches `[B, P, p²·C]` (no loss), e.g. of an RC-MAE teacher.
    /// - Throws: `MAEError.inputShape` / `.invalidArgument` naming the argument.
    public func predict(_ pixels: Tensor<Float>, masks: [MAEMask]) throws -> Tensor<Float> {
        let keep = try check(pixels, masks: masks)
        var w = takeBuffers(batch: pixels.shape[0], keep: keep)
        defer { buffers = w }
        return try run(pixels, masks: masks, keep: keep, buffers: &w, record: false).prediction
    }

    /// The buffers for a batch of `b` images with `keep` visible patches, taken out of `self` so that each is
    /// uniquely referenced (no copy-on-write); put them back when done.
    func takeBuffers(batch b: Int, keep: Int) -> Buffers {
        let a = encoder.architecture
        if buffers?.batch != b || buffers?.keep != keep {
            buffers = Buffers(
                batch: b, keep: keep, patches: patchCount, inputWidth: a.inputChannels * a.patchSize * a.patchSize,
                width: a.width, decoderWidth: decoderWidth, targetWidth: targetWidth)
        }
        return buffers.take()!
    }

    /// The forward pass on validated inputs into `w` (encoder and decoder token buffers end in `w.encoder!.x`,
    /// `w.decoder!.x`); with `record`, the blocks' activations for `backward` are returned too.
    func run(_ pixels: Tensor<Float>, masks: [MAEMask], keep: Int, buffers w: inout Buffers, record: Bool) throws
        -> (prediction: Tensor<Float>, tapes: (encoder: TransformerBlocks.Tape, decoder: TransformerBlocks.Tape)?)
    {
        let a = encoder.architecture
        let b = pixels.shape[0], np = patchCount, d = a.width, dd = decoderWidth
        let te = keep + 1, td = np + 1, out = targetWidth
        var enc = encoder.blocks.workspace(w.encoder.take(), images: b, tokens: te)
        var dec = decoder.workspace(w.decoder.take(), images: b, tokens: td)
        defer { w.encoder = enc; w.decoder = dec }
        let eps = Float(a.layerNormEpsilon)
        let ep = encoder.p, dp = decoder.p

        // Encoder: embed only the visible patches (the embedding is per patch), in idsShuffle order.
        gatherPatches(pixels, masks: masks, keep: keep, into: w.cols.mutablePointer())
        try TransformerBlocks.linear(
            w.cols.pointer, rows: b * keep, weight: ep["patch_embed.proj.weight"]!,
            bias: ep["patch_embed.proj.bias"]!, into: w.patches.mutablePointer())
        let x = enc.x.mutablePointer(), pp = w.patches.pointer
        let cls = ep["cls_token"]!.pointer, pos = ep["pos_embed"]!.pointer
        for i in 0..<b {
            let row = x + i * te * d, ids = masks[i].idsShuffle
            for j in 0..<d { row[j] = cls[j] + pos[j] }
            for k in 0..<keep {
                let dst = row + (k + 1) * d, src = pp + (i * keep + k) * d, pk = pos + (ids[k] + 1) * d
                for j in 0..<d { dst[j] = src[j] + pk[j] }
            }
        }
        var encoderTape: TransformerBlocks.Tape?
        if record { encoderTape = try encoder.blocks.record(&enc) } else { try encoder.blocks.run(&enc) }
        NeuralKernels.layerNorm(
            enc.x.pointer, w.latent.mutablePointer(), rows: b * te, width: d,
            weight: ep["norm.weight"]!.pointer, bias: ep["norm.bias"]!.pointer, epsilon: eps)

        // Decoder: embed, mask tokens, unshuffle, position table.
        try decoder.linear(w.latent.pointer, rows: b * te, "decoder_embed", into: w.embedded.mutablePointer())
        let y = dec.x.mutablePointer(), e = w.embedded.pointer
        let maskToken = dp["mask_token"]!.pointer, dpos = dp["decoder_pos_embed"]!.pointer
        for i in 0..<b {
            let row = y + i * td * dd, src = e + i * te * dd, restore = masks[i].idsRestore
            for j in 0..<dd { row[j] = src[j] + dpos[j] }
            for k in 0..<np {
                let r = restore[k]
                let s = r < keep ? src + (r + 1) * dd : maskToken
                let dst = row + (k + 1) * dd, pk = dpos + (k + 1) * dd
                for j in 0..<dd { dst[j] = s[j] + pk[j] }
            }
        }
        var decoderTape: TransformerBlocks.Tape?
        if record { decoderTape = try decoder.record(&dec) } else { try decoder.run(&dec) }
        // decoder_norm and decoder_pred on the patch tokens only (CLS is dropped from the output).
        let normW = dp["decoder_norm.weight"]!.pointer, normB = dp["decoder_norm.bias"]!.pointer
        let normed = w.decoded.mutablePointer()
        for i in 0..<b {
            NeuralKernels.layerNorm(
                dec.x.pointer + (i * td + 1) * dd, normed + i * np * dd, rows: np, width: dd,
                weight: normW, bias: normB, epsilon: eps)
        }
        try decoder.linear(w.decoded.pointer, rows: b * np, "decoder_pred", into: w.prediction.mutablePointer())
        let tapes = encoderTape.flatMap { e in decoderTape.map { (encoder: e, decoder: $0) } }
        return (try w.prediction.reshaped([b, np, out]), tapes)
    }

    /// The reconstruction-loss sums of `prediction` `[B, P, p²·C]` against `patchify(pixels)` on the masked patches.
    func reconstructionSums(_ pixels: Tensor<Float>, prediction: Tensor<Float>, masks: [MAEMask], normPixLoss: Bool)
        -> MAELossSums
    {
        let b = pixels.shape[0], np = patchCount, l = targetWidth
        var target = [Float](repeating: 0, count: l)
        var sum = 0.0, count = 0
        let pred = prediction.pointer
        target.withUnsafeMutableBufferPointer { tb in
            let t = tb.baseAddress!
            for i in 0..<b {
                let mask = masks[i].mask
                for k in 0..<np where mask[k] == 1 {
                    patch(pixels, image: i, patch: k, into: t)
                    sum += Self.patchLoss(pred + (i * np + k) * l, t, count: l, normalize: normPixLoss)
                    count += 1
                }
            }
        }
        return MAELossSums(squaredErrorSum: sum, maskedPatches: count)
    }

    /// mean over `count` of (p − t')², t' = t or (t − mean)/√(unbiased var + 1e-6), in Double.
    static func patchLoss(_ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, count l: Int, normalize: Bool) -> Double
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
        var acc = 0.0
        for j in 0..<l { let e = Double(p[j]) - (Double(t[j]) - mean) * inv; acc += e * e }
        return acc / Double(l)
    }

    /// Copies patch `k` of image `i` in the official `patchify` order, index (row·p + col)·C + channel.
    func patch(_ pixels: Tensor<Float>, image i: Int, patch k: Int, into t: UnsafeMutablePointer<Float>) {
        let c = pixels.shape[1], hw = pixels.shape[2], ps = patchSize, g = hw / ps
        let gy = k / g, gx = k % g, src = pixels.pointer + i * c * hw * hw
        for ch in 0..<c {
            let plane = src + ch * hw * hw + gy * ps * hw + gx * ps
            for r in 0..<ps {
                let line = plane + r * hw, o = t + r * ps * c + ch
                for col in 0..<ps { o[col * c] = line[col] }
            }
        }
    }

    /// MAE's `patchify`: `[B, C, H, W]` → `[B, P, p²·C]`, element (row·p + col)·C + channel of patch gy·grid + gx.
    /// - Throws: `MAEError.inputShape` unless the input is `[B, C, imageSize, imageSize]`.
    public func patchify(_ pixels: Tensor<Float>) throws -> Tensor<Float> {
        try checkPixels(pixels)
        let b = pixels.shape[0], np = patchCount, l = targetWidth
        var out = Tensor<Float>(shape: [b, np, l])
        let o = out.mutablePointer()
        for i in 0..<b { for k in 0..<np { patch(pixels, image: i, patch: k, into: o + (i * np + k) * l) } }
        return out
    }

    // MARK: - RC-MAE

    /// One RC-MAE forward pass: student and teacher predictions and the loss sums.
    public struct RCMAEOutput {
        /// The student's predicted patches `[B, P, p²·C]`.
        public let studentPrediction: Tensor<Float>
        /// The teacher's predicted patches `[B, P, p²·C]` on the same images and masks.
        public let teacherPrediction: Tensor<Float>
        /// Reconstruction and consistency sums.
        public let sums: RCMAELossSums
        /// The γ of `loss`.
        public let gamma: Double
        /// `reconstruction + γ·consistency`.
        public var loss: Double { sums.loss(gamma: gamma) }
    }

    /// The RC-MAE loss (`youngwanLEE/rc-mae engine_pretrain.py`): the student's reconstruction loss plus γ times the
    /// consistency with the teacher, which runs on the same images with the same masks; consistency is the
    /// per-patch mean of (student pred − teacher pred)² on raw predictions, over the masked patches.
    /// - Parameters:
    ///   - teacher: the EMA teacher, same patch size, image size and prediction width as the student.
    ///   - gamma: weight of the consistency term (RC-MAE's `--gamma`, default 1).
    /// - Throws: `MAEError` naming the argument.
    public static func rcmaeForward(
        student: MaskedAutoencoder, teacher: MaskedAutoencoder, pixels: Tensor<Float>,
        masks: [MAEMask], normPixLoss: Bool, gamma: Double = 1
    ) throws -> RCMAEOutput {
        guard teacher.patchSize == student.patchSize, teacher.imageSize == student.imageSize,
            teacher.targetWidth == student.targetWidth
        else {
            throw MAEError.invalidArgument(
                parameter: "teacher",
                expected: "patch \(student.patchSize), image \(student.imageSize)px like the student",
                got: "patch \(teacher.patchSize), image \(teacher.imageSize)px")
        }
        let s = try student.forward(pixels, masks: masks, normPixLoss: normPixLoss)
        let t = try teacher.predict(pixels, masks: masks)
        let np = student.patchCount, l = student.targetWidth
        var consistency = 0.0
        let sp = s.prediction.pointer, tp = t.pointer
        for i in 0..<masks.count {
            let mask = masks[i].mask
            for k in 0..<np where mask[k] == 1 {
                let a = sp + (i * np + k) * l, c = tp + (i * np + k) * l
                var acc = 0.0
                for j in 0..<l { let e = Double(a[j]) - Double(c[j]); acc += e * e }
                consistency += acc / Double(l)
            }
        }
        let sums = RCMAELossSums(
            reconstructionSum: s.sums.squaredErrorSum, consistencySum: consistency,
            maskedPatches: s.sums.maskedPatches)
        return RCMAEOutput(studentPrediction: s.prediction, teacherPrediction: t, sums: sums, gamma: gamma)
    }

    // MARK: - Cost

    /// Floating-point operations of the GEMMs of one `predict` on `images` images with `keepCount` visible patches
    /// (2·m·n·k each): visible-patch embedding, encoder blocks (qkv, Q·Kᵀ, S·V, proj, fc1, fc2), decoder_embed,
    /// decoder blocks, decoder_pred on the P patch tokens. Bias adds, norms, softmax and GELU are not counted.
    public func gemmFLOPs(images b: Int, keepCount keep: Int) -> Double {
        let a = encoder.architecture
        let bd = Double(b), d = Double(a.width), dd = Double(decoderWidth), np = Double(patchCount)
        let patchEmbed = 2 * bd * Double(keep) * Double(a.inputChannels * a.patchSize * a.patchSize) * d
        let enc = TransformerBlocks.flops(
            images: b, tokens: keep + 1, width: a.width, hiddenWidth: a.mlpHiddenWidth,
            depth: a.depth)
        let embed = 2 * bd * Double(keep + 1) * d * dd
        let dec = TransformerBlocks.flops(
            images: b, tokens: patchCount + 1, width: decoderWidth,
            hiddenWidth: decoderHiddenWidth, depth: decoderDepth)
        let pred = 2 * bd * np * dd * Double(targetWidth)
        return patchEmbed + enc + embed + dec + pred
    }

    // MARK: - Internals

    /// Buffers of one forward pass, reused while the batch size and visible-patch count stay the same.
    struct Buffers {
        let batch: Int
        let keep: Int
        var cols, patches, latent, embedded, decoded, prediction: Tensor<Float>
        var encoder: TransformerBlocks.Workspace?
        var decoder: TransformerBlocks.Workspace?
        init(
            batch b: Int, keep: Int, patches np: Int, inputWidth: Int, width d: Int, decoderWidth dd: Int,
            targetWidth: Int
        ) {
            batch = b
            self.keep = keep
            cols = Tensor(shape: [b * keep, inputWidth])
            patches = Tensor(shape: [b * keep, d])
            latent = Tensor(shape: [b * (keep + 1), d])
            embedded = Tensor(shape: [b * (keep + 1), dd])
            decoded = Tensor(shape: [b * np, dd])
            prediction = Tensor(shape: [b * np, targetWidth])
        }
    }

    func checkPixels(_ pixels: Tensor<Float>) throws {
        let a = encoder.architecture, size = imageSize
        guard pixels.rank == 4, pixels.shape[1] == a.inputChannels, pixels.shape[2] == size, pixels.shape[3] == size,
            pixels.shape[0] > 0
        else {
            throw MAEError.inputShape(
                parameter: "pixels", expected: "[B ≥ 1, \(a.inputChannels), \(size), \(size)]",
                got: pixels.shape)
        }
    }

    /// Validates pixels and masks; returns the common visible-patch count.
    func check(_ pixels: Tensor<Float>, masks: [MAEMask]) throws -> Int {
        try checkPixels(pixels)
        let b = pixels.shape[0], np = patchCount
        guard masks.count == b else {
            throw MAEError.invalidArgument(
                parameter: "masks", expected: "one mask per image (\(b))", got: "\(masks.count) masks")
        }
        let keep = masks[0].keepCount
        for (i, m) in masks.enumerated() {
            guard m.patchCount == np else {
                throw MAEError.invalidArgument(
                    parameter: "masks[\(i)]", expected: "\(np) patches", got: "\(m.patchCount)")
            }
            guard m.keepCount == keep else {
                throw MAEError.invalidArgument(
                    parameter: "masks[\(i)]", expected: "\(keep) visible patches, as masks[0]",
                    got: "\(m.keepCount)")
            }
        }
        return keep
    }

    /// Rows `[B·keep, C·p²]` of the visible patches in `idsShuffle` order, columns (channel, row, col) as the
    /// patch-embedding convolution's weight.
    func gatherPatches(_ pixels: Tensor<Float>, masks: [MAEMask], keep: Int, into dst: UnsafeMutablePointer<Float>) {
        let c = pixels.shape[1], hw = pixels.shape[2], ps = patchSize, g = hw / ps, rowLen = c * ps * ps
        let src = pixels.pointer
        for i in 0..<masks.count {
            let ids = masks[i].idsShuffle
            for j in 0..<keep {
                let gy = ids[j] / g, gx = ids[j] % g
                var o = dst + (i * keep + j) * rowLen
                for ch in 0..<c {
                    for ky in 0..<ps {
                        o.update(from: src + ((i * c + ch) * hw + gy * ps + ky) * hw + gx * ps, count: ps)
                        o += ps
                    }
                }
            }
        }
    }
}
