import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation

/// A minibatch of the fixed examples a landscape loss averages over.
public struct LandscapeBatch: Sendable {
    /// Normalised network input `[B, 3, H, W]`.
    public var pixels: Tensor<Float>
    /// Class indices (cross-entropy), or empty.
    public var labels: [Int]
    /// One mask per image (MAE / RC-MAE), or empty.
    public var masks: [MAEMask]

    public init(pixels: Tensor<Float>, labels: [Int] = [], masks: [MAEMask] = []) {
        self.pixels = pixels
        self.labels = labels
        self.masks = masks
    }
}

/// Which parameters of a checkpoint are fixed sin-cos tables (stored, but `requires_grad=False` in the
/// official code): MAE's, RC-MAE's, MoCo-v3's and Hugging Face ViTMAE's (`family` `hf/vit_mae`) `pos_embed`, and
/// every `decoder_pos_embed`.
func fixedPositionTables(source: CheckpointSource, family: String?, names: [String]) -> [String: String] {
    var fixed: [String: String] = [:]
    if [CheckpointSource.mae, .rcmae, .mocoV3].contains(source), names.contains("pos_embed") {
        fixed["pos_embed"] = "fixed 2-D sin-cos table (requires_grad=False in the official \(source) code)"
    }
    if family == "hf/vit_mae", names.contains("pos_embed") {
        fixed["pos_embed"] = "fixed 2-D sin-cos table (requires_grad=False in transformers' ViTMAE)"
    }
    if names.contains("decoder_pos_embed") {
        fixed["decoder_pos_embed"] = "fixed 2-D sin-cos table (requires_grad=False in models_mae.py)"
    }
    return fixed
}

/// The MAE decoder's tensor names in a fixed order: embedding, mask token, position table, blocks, norm, prediction.
func orderedDecoderNames(_ names: some Sequence<String>) -> [String] {
    let head = ["decoder_embed.weight", "decoder_embed.bias", "mask_token", "decoder_pos_embed"]
    let tail = ["decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"]
    let all = Set(names)
    let middle = all.subtracting(head).subtracting(tail).sorted(by: naturalOrder)
    return head.filter(all.contains) + middle + tail.filter(all.contains)
}

/// MAE's pre-training loss (`models_mae.py` `forward_loss`) — or RC-MAE's reconstruction + γ·consistency with a
/// fixed EMA teacher — over fixed examples with one fixed mask per image, as a function of the student's encoder
/// and decoder parameters. The loss over all examples is Σ(per-patch loss · mask) / Σ mask, i.e. the official
/// batch loss with all examples in one batch (every image has the same number of masked patches, so it is also
/// the mean of equal-sized batch losses).
public struct MAELandscapeObjective: DifferentiableLandscapeObjective {
    public let name: String
    public let center: ParameterSet
    public let fixedParameters: [String: String]
    /// `encoder` (timm names) and `decoder` (MAE names).
    public let groups: [String: [String]]
    let architecture: ViTArchitecture
    let batches: [LandscapeBatch]
    let normPixLoss: Bool
    let teacher: MaskedAutoencoder?
    let gamma: Double
    let decoderHeads: Int?
    let file: String

    /// - Parameters:
    ///   - checkpoint: the student (an MAE / RC-MAE pre-training checkpoint with its decoder).
    ///   - teacher: RC-MAE's EMA teacher; nil for the plain MAE loss. The teacher stays at its weights.
    ///   - batches: the examples with their masks.
    /// - Throws: `MAEError.noDecoder` for a checkpoint without decoder, `LandscapeError` for batches without masks.
    public init(
        checkpoint: Checkpoint, teacher: Checkpoint? = nil, batches: [LandscapeBatch], normPixLoss: Bool = true,
        gamma: Double = 1, decoderHeads: Int? = nil
    ) throws {
        guard !checkpoint.decoder.isEmpty else { throw MAEError.noDecoder(file: checkpoint.file) }
        guard batches.allSatisfy({ $0.masks.count == $0.pixels.shape.first }) else {
            throw LandscapeError.invalidArgument("the MAE loss needs one mask per image")
        }
        var tensors = checkpoint.parameters
        for (name, t) in checkpoint.decoder { tensors[name] = try t.floatTensor() }
        let decoderNames = orderedDecoderNames(checkpoint.decoder.keys)
        center = try ParameterSet(
            names: checkpoint.parameterNames + decoderNames, tensors: tensors, file: checkpoint.file)
        groups = ["encoder": checkpoint.parameterNames, "decoder": decoderNames]
        fixedParameters = fixedPositionTables(
            source: checkpoint.source, family: checkpoint.architecture.family, names: center.names)
        architecture = checkpoint.architecture
        self.batches = batches
        self.normPixLoss = normPixLoss
        self.gamma = gamma
        self.decoderHeads = decoderHeads
        file = checkpoint.file
        self.teacher = try teacher.map { try MaskedAutoencoder(checkpoint: $0, decoderHeads: decoderHeads) }
        name = teacher == nil ? "mae" : "rcmae"
    }

    /// The decoder's attention heads: `decoderHeads`, or the default from its width.
    public func decoderHeadCount() throws -> Int { try model(at: center).decoderHeads }

    func model(at p: ParameterSet) throws -> MaskedAutoencoder {
        var encoder: [String: Tensor<Float>] = [:], decoder: [String: Tensor<Float>] = [:]
        for n in groups["encoder"]! { encoder[n] = p[n] }
        for n in groups["decoder"]! { decoder[n] = p[n] }
        return try MaskedAutoencoder(
            encoder: encoder, architecture: architecture, decoder: decoder,
            decoderHeads: decoderHeads, file: file)
    }

    /// The loss and its gradient (backpropagation through the student; the teacher's prediction is a constant).
    public func valueAndGradient(at p: ParameterSet) throws -> (value: LandscapeValue, gradient: ParameterSet) {
        let model = try model(at: p)
        var g: [String: Tensor<Float>] = [:]
        if let teacher {
            var sums = RCMAELossSums()
            for b in batches {
                sums =
                    sums
                    + (try MaskedAutoencoder.rcmaeLossAndGradient(
                        student: model, teacher: teacher, pixels: b.pixels, masks: b.masks,
                        normPixLoss: normPixLoss, gamma: gamma, accumulatingInto: &g))
            }
            return (
                LandscapeValue(
                    loss: sums.loss(gamma: gamma),
                    parts: ["reconstruction": sums.reconstruction, "consistency": sums.consistency]),
                try gradientSet(g, center: center, scale: 1 / Double(sums.maskedPatches))
            )
        }
        var sums = MAELossSums()
        for b in batches {
            sums =
                sums
                + (try model.lossAndGradient(b.pixels, masks: b.masks, normPixLoss: normPixLoss, accumulatingInto: &g))
        }
        return (
            LandscapeValue(loss: sums.loss), try gradientSet(g, center: center, scale: 1 / Double(sums.maskedPatches))
        )
    }

    /// One chunk per batch, weighted by its masked patches.
    public var gradientChunkWeights: [Double] {
        batches.map { b in Double(b.masks.reduce(0) { $0 + $1.maskedCount }) }
    }

    /// Batch `chunk`'s gradient sum (of the masked patches' losses, or of RC-MAE's two terms).
    public func chunkGradient(at p: ParameterSet, chunk: Int) throws -> ParameterSet {
        let model = try model(at: p), b = batches[chunk]
        var g: [String: Tensor<Float>] = [:]
        if let teacher {
            _ = try MaskedAutoencoder.rcmaeLossAndGradient(
                student: model, teacher: teacher, pixels: b.pixels, masks: b.masks,
                normPixLoss: normPixLoss, gamma: gamma, accumulatingInto: &g)
        } else {
            _ = try model.lossAndGradient(b.pixels, masks: b.masks, normPixLoss: normPixLoss, accumulatingInto: &g)
        }
        return try gradientSet(g, center: center, scale: 1)
    }

    public func evaluate(at p: ParameterSet) throws -> LandscapeValue {
        let model = try model(at: p)
        if let teacher {
            var sums = RCMAELossSums()
            for b in batches {
                sums =
                    sums
                    + (try MaskedAutoencoder.rcmaeForward(
                        student: model, teacher: teacher, pixels: b.pixels, masks: b.masks,
                        normPixLoss: normPixLoss, gamma: gamma)).sums
            }
            return LandscapeValue(
                loss: sums.loss(gamma: gamma),
                parts: ["reconstruction": sums.reconstruction, "consistency": sums.consistency])
        }
        var sums = MAELossSums()
        for b in batches { sums = sums + (try model.forward(b.pixels, masks: b.masks, normPixLoss: normPixLoss)).sums }
        return LandscapeValue(loss: sums.loss)
    }
}

/// Cross-entropy (and top-1 accuracy) of a linear classifier on a ViT's features over fixed labelled examples,
/// as a function of the backbone and the head: timm's supervised head, MoCo-v3's and MAE's released heads,
/// DINO's linear weights (`ClassifierHead`). The head's tensors are named `head.weight` / `head.bias` here.
/// Loss = mean over examples of logsumexp(logits) − logit[label] (PyTorch's `CrossEntropyLoss`), in Double.
public struct CrossEntropyLandscapeObjective: DifferentiableLandscapeObjective {
    public let name = "ce"
    public let center: ParameterSet
    public let fixedParameters: [String: String]
    /// `encoder` (timm names, including `fc_norm` where the model has one) and `head`.
    public let groups: [String: [String]]
    let architecture: ViTArchitecture
    let head: ClassifierHead
    let batches: [LandscapeBatch]
    let file: String

    /// - Throws: `LandscapeError` if a label is outside the head's classes.
    public init(checkpoint: Checkpoint, head: ClassifierHead, batches: [LandscapeBatch]) throws {
        for b in batches {
            guard b.labels.count == b.pixels.shape.first else {
                throw LandscapeError.invalidArgument(
                    "the cross-entropy loss needs a label for every example (/inputs/labels or class folders)")
            }
            if let bad = b.labels.first(where: { !(0..<head.classCount).contains($0) }) {
                throw LandscapeError.invalidArgument(
                    "label \(bad) is outside the head's \(head.classCount) classes (\(head.file))")
            }
        }
        var tensors = checkpoint.parameters
        tensors["head.weight"] = head.weight
        tensors["head.bias"] = head.bias
        center = try ParameterSet(
            names: checkpoint.parameterNames + ["head.weight", "head.bias"], tensors: tensors, file: checkpoint.file)
        groups = ["encoder": checkpoint.parameterNames, "head": ["head.weight", "head.bias"]]
        fixedParameters = fixedPositionTables(
            source: checkpoint.source, family: checkpoint.architecture.family, names: center.names)
        architecture = checkpoint.architecture
        self.head = head
        self.batches = batches
        file = checkpoint.file
    }

    func model(at p: ParameterSet) throws -> (VisionTransformer, ClassifierHead) {
        var encoder: [String: Tensor<Float>] = [:]
        for n in groups["encoder"]! { encoder[n] = p[n] }
        return (
            try VisionTransformer(parameters: encoder, architecture: architecture, file: file),
            try ClassifierHead(
                readout: head.readout, weight: p["head.weight"]!, bias: p["head.bias"]!,
                architecture: architecture, file: head.file)
        )
    }

    /// The loss and its gradient by backpropagation through the head and the backbone.
    public func valueAndGradient(at p: ParameterSet) throws -> (value: LandscapeValue, gradient: ParameterSet) {
        let (model, moved) = try model(at: p)
        var g: [String: Tensor<Float>] = [:]
        var sums = CrossEntropySums()
        for b in batches {
            sums =
                sums
                + (try moved.lossAndGradient(model: model, pixels: b.pixels, labels: b.labels, accumulatingInto: &g))
        }
        return (
            LandscapeValue(loss: sums.loss, accuracy: sums.accuracy),
            try gradientSet(g, center: center, scale: 1 / Double(sums.count))
        )
    }

    /// One chunk per batch, weighted by its examples.
    public var gradientChunkWeights: [Double] { batches.map { Double($0.labels.count) } }

    /// Batch `chunk`'s gradient sum over its examples.
    public func chunkGradient(at p: ParameterSet, chunk: Int) throws -> ParameterSet {
        let (model, moved) = try model(at: p), b = batches[chunk]
        var g: [String: Tensor<Float>] = [:]
        _ = try moved.lossAndGradient(model: model, pixels: b.pixels, labels: b.labels, accumulatingInto: &g)
        return try gradientSet(g, center: center, scale: 1)
    }

    public func evaluate(at p: ParameterSet) throws -> LandscapeValue {
        let (model, moved) = try model(at: p)
        var loss = 0.0, correct = 0, count = 0
        for b in batches {
            let logits = try moved.logits(model: model, pixels: b.pixels)
            let c = logits.shape[1], z = logits.pointer
            for (i, label) in b.labels.enumerated() {
                let row = z + i * c
                var best = 0, top = -Double.infinity
                for j in 0..<c where Double(row[j]) > top { top = Double(row[j]); best = j }
                var s = 0.0
                for j in 0..<c { s += Foundation.exp(Double(row[j]) - top) }
                loss += top + Foundation.log(s) - Double(row[label])
                if best == label { correct += 1 }
                count += 1
            }
        }
        return LandscapeValue(loss: loss / Double(count), accuracy: 100 * Double(correct) / Double(count))
    }
}

/// Gradient sums by name → the gradient of the mean as a `ParameterSet` over `center` (zero where a tensor
/// got no gradient), reshaped to the centre's shapes.
func gradientSet(_ sums: [String: Tensor<Float>], center: ParameterSet, scale: Double) throws -> ParameterSet {
    var out = ParameterSet()
    let f = Float(scale)
    for name in center.names {
        let shape = center[name]!.shape
        guard var t = sums[name] else { out.set(name, Tensor<Float>(shape: shape)); continue }
        guard t.count == center[name]!.count else {
            throw LandscapeError.mismatch(
                file: "gradient", what: name, expected: describe(shape), got: describe(t.shape))
        }
        t = try t.reshaped(shape)
        let p = t.mutablePointer()
        for i in 0..<t.count { p[i] *= f }
        out.set(name, t)
    }
    return out
}
