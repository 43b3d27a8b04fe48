import CKACheckpoint
import CKATensor
import Foundation

/// Errors of loading or applying a released classifier head. Each names the file and the tensor concerned.
public enum ClassifierHeadError: Error, Equatable, CustomStringConvertible {
    /// The checkpoint has no classifier; `hint` says where the released one is.
    case noHead(file: String, source: String, hint: String)
    /// A tensor the head needs is absent from the file (`found`: the keys that are there).
    case missingTensor(file: String, name: String, found: [String])
    /// A tensor has the wrong shape or dtype.
    case tensorShape(file: String, name: String, expected: String, got: [Int])
    /// The head's input width does not fit the model's features.
    case featureWidth(file: String, name: String, width: Int, expected: String)
    /// The head cannot be applied to this model (e.g. a class-token head on a model without a final norm).
    case incompatible(file: String, reason: String)
    /// A hook value the head reads was not supplied, or has the wrong shape.
    case hook(name: String, expected: String, got: [Int]?)
    /// The file holds keys a strict load would refuse.
    case unexpectedKeys(file: String, keys: [String], expected: String)
    /// Class labels that do not fit the batch or the head (cross-entropy).
    case labels(String)

    public var description: String {
        switch self {
        case let .noHead(file, source, hint):
            return "\(file): this \(source) checkpoint has no classifier head (no head.weight / head.bias); \(hint)"
        case let .missingTensor(file, name, found):
            let keys = found.prefix(8).joined(separator: ", ") + (found.count > 8 ? ", …" : "")
            return "\(file): no tensor '\(name)' (found \(found.isEmpty ? "no tensors" : keys))"
        case let .tensorShape(file, name, expected, got):
            return "\(file): '\(name)' has shape \(describeShape(got)), expected \(expected)"
        case let .featureWidth(file, name, width, expected):
            return "\(file): '\(name)' reads \(width) features, expected \(expected)"
        case let .incompatible(file, reason):
            return "\(file): \(reason)"
        case let .hook(name, expected, got):
            return got.map { "hook '\(name)' has shape \(describeShape($0)), expected \(expected)" }
                ?? "hook '\(name)' is missing (the head needs it; run the model with `hookPoints`)"
        case let .unexpectedKeys(file, keys, expected):
            return
                "\(file): unexpected keys \(keys.prefix(8).joined(separator: ", "))\(keys.count > 8 ? ", …" : ""); expected \(expected)"
        case let .labels(s): return "labels: \(s)"
        }
    }
}

/// A released linear classifier on top of a Vision Transformer: logits `[B, C]` from the model's hook points.
///
/// The readouts of the reference models (reference-models.md §1–2):
/// - `classToken`: `head(norm(x)[:, 0])`, timm supervised `head.*` and MoCo-v3's `linear-vit-b-300ep.pth.tar`
///   (`module.head.*`);
/// - `globalPool`: `head(fc_norm(mean(x[:, 1:])))` over the un-normed last-block patch tokens, MAE finetuned;
/// - `dinoLinear`: DINO's `eval_linear.LinearClassifier` from the separate `*_linearweights.pth`, fed as
///   `eval_linear.py` feeds it: the class tokens of the last n blocks, each through the final `norm`
///   (`get_intermediate_layers`), concatenated; with `avgpool_patchtokens` (only with n = 1 in the official
///   code) interleaved with the mean of the normed patch tokens, feature 2i = CLS_i, 2i+1 = GAP_i.
///
/// The head reads pooled hooks only (`hookPoints`), so an extraction gets the logits from the forward pass it
/// already runs. Products go through BLAS (`gemm`).
public struct ClassifierHead: Sendable {
    /// How the features the linear layer reads are formed from the model's tokens.
    public enum Readout: Sendable, Equatable, CustomStringConvertible {
        /// `norm(x)[:, 0]` (timm `global_pool='token'`, MoCo-v3).
        case classToken
        /// `fc_norm(mean(x[:, 1:]))` of the un-normed last block (MAE `global_pool=True`, timm `avg` + `fc_norm`).
        case globalPool
        /// DINO `eval_linear.py`: normed class tokens of the last `lastBlocks` blocks, with `averagePatchTokens`
        /// interleaved with the mean of the normed patch tokens of the last block.
        case dinoLinear(lastBlocks: Int, averagePatchTokens: Bool)
        /// The model's own head, computed in its forward pass (the `head` hook): Hugging Face classifiers, DeiT's
        /// two heads averaged, MAP (`attn_pool`) classifiers.
        case modelHead

        /// A stable name (`class_token`, `global_pool`, `dino_linear`), as stored in logits files.
        public var kind: String {
            switch self {
            case .classToken: return "class_token"
            case .globalPool: return "global_pool"
            case .dinoLinear: return "dino_linear"
            case .modelHead: return "model_head"
            }
        }

        public var description: String {
            switch self {
            case .classToken: return "head(norm(x)[:, 0])"
            case .globalPool: return "head(fc_norm(mean(x[:, 1:])))"
            case .modelHead: return "the model's head (hook 'head')"
            case let .dinoLinear(n, avg):
                let cls = n == 1 ? "norm(x_L)[:, 0]" : "cat(norm(x_i)[:, 0] for the last \(n) blocks)"
                return avg ? "linear(interleave(\(cls), mean(norm(x_L)[:, 1:])))" : "linear(\(cls))"
            }
        }
    }

    public let readout: Readout
    /// `[C, F]`, applied as `features·weightᵀ + bias`.
    public let weight: Tensor<Float>
    /// `[C]`.
    public let bias: Tensor<Float>
    /// The file the weights came from, and their keys in it.
    public let file: String
    public let weightName: String
    public let biasName: String
    /// Blocks and width of the model the head reads.
    public let depth: Int
    public let width: Int
    /// The final norm applied to earlier blocks' class tokens (DINO heads over more than one block only).
    let finalNorm: (weight: Tensor<Float>, bias: Tensor<Float>)?
    let epsilon: Float

    /// Classes C.
    public var classCount: Int { weight.shape[0] }
    /// Features F the linear layer reads.
    public var featureWidth: Int { weight.shape[1] }

    /// Builds a head from its weights, checking them against the model's architecture.
    /// - Parameter finalNorm: the model's `norm.weight`/`norm.bias` `[D]`; needed by `dinoLinear` with
    ///   `lastBlocks > 1` (earlier blocks' class tokens are normed by the head).
    /// - Throws: `ClassifierHeadError` naming `file` and the tensor when a shape does not fit.
    public init(
        readout: Readout, weight: Tensor<Float>, bias: Tensor<Float>, architecture a: ViTArchitecture,
        finalNorm: (weight: Tensor<Float>, bias: Tensor<Float>)? = nil, file: String = "head",
        weightName: String = "head.weight", biasName: String = "head.bias"
    ) throws {
        let d = a.width
        guard weight.rank == 2, weight.shape[0] > 0, weight.shape[1] > 0 else {
            throw ClassifierHeadError.tensorShape(
                file: file, name: weightName, expected: "[C, F] with C, F ≥ 1", got: weight.shape)
        }
        let c = weight.shape[0], f = weight.shape[1]
        guard bias.shape == [c] else {
            throw ClassifierHeadError.tensorShape(
                file: file, name: biasName, expected: "[\(c)] (one per row of \(weightName))",
                got: bias.shape)
        }
        var norm: (weight: Tensor<Float>, bias: Tensor<Float>)?
        switch readout {
        case .modelHead:
            guard a.headFeatures == c, f == d else {
                throw ClassifierHeadError.incompatible(
                    file: file, reason: "the model's head hook has \(a.headFeatures ?? 0) outputs; the weight has \(c)")
            }
        case .classToken:
            guard a.hasFinalNorm else {
                throw ClassifierHeadError.incompatible(
                    file: file,
                    reason:
                        "a class-token head reads norm(x)[:, 0], but the model has no final norm (it has fc_norm: use the global-pool readout)"
                )
            }
            guard f == d else {
                throw ClassifierHeadError.featureWidth(
                    file: file, name: weightName, width: f, expected: "the model width \(d)")
            }
        case .globalPool:
            guard a.hasFCNorm else {
                throw ClassifierHeadError.incompatible(
                    file: file,
                    reason: "a global-pool head reads fc_norm(mean of patch tokens), but the model has no fc_norm")
            }
            guard f == d else {
                throw ClassifierHeadError.featureWidth(
                    file: file, name: weightName, width: f, expected: "the model width \(d)")
            }
        case let .dinoLinear(n, avg):
            guard a.hasFinalNorm else {
                throw ClassifierHeadError.incompatible(
                    file: file, reason: "DINO's linear head reads blocks through the final norm, but the model has none"
                )
            }
            guard n >= 1, n <= a.depth else {
                throw ClassifierHeadError.incompatible(
                    file: file, reason: "the head reads the last \(n) blocks; the model has \(a.depth)")
            }
            guard !(avg && n > 1) else {
                throw ClassifierHeadError.incompatible(
                    file: file,
                    reason:
                        "eval_linear.py average-pools patch tokens only with n_last_blocks = 1 (its torch.cat needs n·D = D); got n = \(n)"
                )
            }
            let expected = d * (n + (avg ? 1 : 0))
            guard f == expected else {
                throw ClassifierHeadError.featureWidth(
                    file: file, name: weightName, width: f,
                    expected: "\(expected) = \(d)·(\(n) block\(n == 1 ? "" : "s")\(avg ? " + average pool" : ""))")
            }
            if n > 1 {
                guard let fn = finalNorm else {
                    throw ClassifierHeadError.incompatible(
                        file: file, reason: "a head over \(n) blocks needs the model's final norm")
                }
                guard fn.weight.count == d, fn.bias.count == d else {
                    throw ClassifierHeadError.tensorShape(
                        file: file, name: "norm.weight", expected: "[\(d)]", got: fn.weight.shape)
                }
                norm = (try fn.weight.reshaped([d]), try fn.bias.reshaped([d]))
            }
        }
        self.readout = readout
        self.weight = weight
        self.bias = bias
        self.file = file
        self.weightName = weightName
        self.biasName = biasName
        self.depth = a.depth
        self.width = d
        self.finalNorm = norm
        self.epsilon = Float(a.layerNormEpsilon)
    }

    /// The head stored in a checkpoint (`head.weight` / `head.bias`): the global-pool readout for models with
    /// `fc_norm` (MAE finetuned), else the class token (timm, MoCo-v3 linear eval).
    /// - Throws: `ClassifierHeadError.noHead` (with where the released head is) if the file has none.
    public init(checkpoint c: Checkpoint) throws {
        guard let w = c.head["head.weight"] else {
            throw ClassifierHeadError.noHead(
                file: c.file, source: c.source.rawValue, hint: ClassifierHead.hint(for: c.source))
        }
        let readout: Readout =
            c.architecture.headFeatures != nil ? .modelHead : c.architecture.hasFCNorm ? .globalPool : .classToken
        try ClassifierHead.requireFloat(w, file: c.file)
        let bias: Tensor<Float>
        if let b = c.head["head.bias"] {
            try ClassifierHead.requireFloat(b, file: c.file)
            bias = try b.floatTensor()
        } else if readout == .modelHead, w.shape.count == 2 {
            bias = Tensor(shape: [w.shape[0]])  // CLIP's projection has no bias
        } else {
            throw ClassifierHeadError.missingTensor(file: c.file, name: "head.bias", found: c.head.keys.sorted())
        }
        try self.init(
            readout: readout, weight: w.floatTensor(), bias: bias, architecture: c.architecture, file: c.file)
    }

    /// DINO's released linear classifier (`dino_vitbase16_linearweights.pth`) for `model`'s features.
    ///
    /// The number of blocks n and `avgpool_patchtokens` follow from the weight width F and the model width D
    /// unless given: F = 2D means n = 1 with average pooling (the ViT-B recipe), otherwise n = F/D without
    /// (the ViT-S recipe, n = 4).
    /// - Throws: `CheckpointError` for an unreadable file, `ClassifierHeadError` for wrong keys or shapes.
    public init(
        dinoLinearFile url: URL, model: VisionTransformer, lastBlocks: Int? = nil,
        averagePatchTokens: Bool? = nil, options: TorchArchive.Options = TorchArchive.Options()
    ) throws {
        let file = url.path
        let (w, b) = try ClassifierHead.readDINOLinearWeights(contentsOf: url, options: options)
        let a = model.architecture, d = a.width, f = w.shape[1]
        let readout = try ClassifierHead.dinoReadout(
            featureWidth: f, modelWidth: d, lastBlocks: lastBlocks,
            averagePatchTokens: averagePatchTokens, file: file)
        let norm = model.parameter("norm.weight").flatMap { nw in model.parameter("norm.bias").map { (nw, $0) } }
        try self.init(
            readout: readout, weight: w, bias: b, architecture: a, finalNorm: norm, file: file,
            weightName: "module.linear.weight", biasName: "module.linear.bias")
    }

    /// The DINO readout for a linear layer of `featureWidth` inputs on a model of `modelWidth`.
    /// - Throws: `ClassifierHeadError.featureWidth` if no n (and pooling) gives that width.
    public static func dinoReadout(
        featureWidth f: Int, modelWidth d: Int, lastBlocks: Int? = nil,
        averagePatchTokens: Bool? = nil, file: String = "head"
    ) throws -> Readout {
        let name = "module.linear.weight"
        guard d > 0, f % d == 0, f / d >= 1 else {
            throw ClassifierHeadError.featureWidth(
                file: file, name: name, width: f, expected: "a multiple of the model width \(d)")
        }
        let m = f / d
        let avg = averagePatchTokens ?? (lastBlocks.map { $0 + 1 == m } ?? (m == 2))
        let n = lastBlocks ?? (avg ? m - 1 : m)
        guard n >= 1, n + (avg ? 1 : 0) == m else {
            throw ClassifierHeadError.featureWidth(
                file: file, name: name, width: f,
                expected:
                    "\(d * (max(n, 0) + (avg ? 1 : 0))) = \(d)·(\(n) blocks\(avg ? " + average pool" : "")) for the requested n_last_blocks/avgpool"
            )
        }
        return .dinoLinear(lastBlocks: n, averagePatchTokens: avg)
    }

    /// Reads `module.linear.weight` `[C, F]` and `module.linear.bias` `[C]` from a DINO linear-weights file
    /// (`{"state_dict": {...}}`, as `utils.load_pretrained_linear_weights` loads it; a bare dict and keys without
    /// `module.` are accepted too). The file is read by the safe torch reader: nothing in it is executed.
    /// - Throws: `CheckpointError` (unreadable, not a torch zip, …), `ClassifierHeadError` (keys, shapes, dtype).
    public static func readDINOLinearWeights(
        contentsOf url: URL, options: TorchArchive.Options = TorchArchive.Options()
    )
        throws -> (weight: Tensor<Float>, bias: Tensor<Float>)
    {
        let file = url.path
        let archive = try TorchArchive(contentsOf: url, options: options)
        guard let top = archive.root.stringKeyedEntries else {
            throw ClassifierHeadError.missingTensor(file: file, name: "state_dict", found: [])
        }
        let entries = archive.root["state_dict"]?.stringKeyedEntries ?? top
        var tensors: [String: StoredTensor] = [:]
        var other: [String] = []
        for (key, value) in entries {
            var k = key
            while k.hasPrefix("module.") { k.removeFirst("module.".count) }
            if let t = value.tensor, k == "linear.weight" || k == "linear.bias" {
                tensors[k] = t
            } else {
                other.append(key)
            }
        }
        let found = entries.map(\.key)
        guard let w = tensors["linear.weight"] else {
            throw ClassifierHeadError.missingTensor(file: file, name: "module.linear.weight", found: found)
        }
        guard let b = tensors["linear.bias"] else {
            throw ClassifierHeadError.missingTensor(file: file, name: "module.linear.bias", found: found)
        }
        guard other.isEmpty else {  // load_state_dict(strict=True) would refuse them too
            throw ClassifierHeadError.unexpectedKeys(
                file: file, keys: other,
                expected: "only module.linear.weight and module.linear.bias (a DINO *_linearweights.pth file)")
        }
        try requireFloat(w, file: file, name: "module.linear.weight")
        try requireFloat(b, file: file, name: "module.linear.bias")
        guard w.shape.count == 2, w.shape[0] > 0, w.shape[1] > 0 else {
            throw ClassifierHeadError.tensorShape(
                file: file, name: "module.linear.weight", expected: "[C, F]", got: w.shape)
        }
        guard b.shape == [w.shape[0]] else {
            throw ClassifierHeadError.tensorShape(
                file: file, name: "module.linear.bias", expected: "[\(w.shape[0])]", got: b.shape)
        }
        return (try w.floatTensor(), try b.floatTensor())
    }

    /// The hook points whose values `logits(hooks:)` reads (all pooled, `[B, D]`).
    public var hookPoints: Set<String> {
        switch readout {
        case .modelHead: return ["head"]
        case .classToken: return ["norm:cls"]
        case .globalPool: return ["fc_norm"]
        case let .dinoLinear(n, avg):
            var s: Set<String> = ["norm:cls"]
            for i in depth - n..<depth - 1 { s.insert("blocks.\(i):cls") }
            if avg { s.insert("norm:gap_nocls") }
            return s
        }
    }

    /// The features `[B, F]` the linear layer reads, assembled from hook values (`hookPoints`).
    /// - Throws: `ClassifierHeadError.hook` if one is missing or not `[B, D]` with the same B.
    public func features(hooks: [String: Tensor<Float>]) throws -> Tensor<Float> {
        try features(hooks: hooks, norm: finalNorm)
    }

    func features(hooks: [String: Tensor<Float>], norm: (weight: Tensor<Float>, bias: Tensor<Float>)?) throws -> Tensor<
        Float
    > {
        func get(_ name: String, batch: Int?) throws -> Tensor<Float> {
            guard let t = hooks[name] else {
                throw ClassifierHeadError.hook(name: name, expected: "[B, \(width)]", got: nil)
            }
            guard t.rank == 2, t.shape[1] == width, batch == nil || t.shape[0] == batch else {
                throw ClassifierHeadError.hook(
                    name: name, expected: "[\(batch.map(String.init) ?? "B"), \(width)]", got: t.shape)
            }
            return t
        }
        switch readout {
        case .modelHead:
            guard let t = hooks["head"], t.rank == 2, t.shape[1] == classCount else {
                throw ClassifierHeadError.hook(name: "head", expected: "[B, \(classCount)]", got: hooks["head"]?.shape)
            }
            return t
        case .classToken: return try get("norm:cls", batch: nil)
        case .globalPool: return try get("fc_norm", batch: nil)
        case let .dinoLinear(n, avg):
            let last = try get("norm:cls", batch: nil)
            let b = last.shape[0], d = width
            var out = Tensor<Float>(shape: [b, featureWidth])
            let o = out.mutablePointer()
            if avg {
                let gap = try get("norm:gap_nocls", batch: b)
                let c = last.pointer, g = gap.pointer
                for r in 0..<b {
                    for j in 0..<d { o[r * 2 * d + 2 * j] = c[r * d + j]; o[r * 2 * d + 2 * j + 1] = g[r * d + j] }
                }
                return out
            }
            var normed = Tensor<Float>(shape: [b, d])
            for (k, blk) in (depth - n..<depth).enumerated() {
                var src = last.pointer
                if blk != depth - 1 {
                    // get_intermediate_layers applies the final norm to every returned block.
                    guard let norm else {
                        throw ClassifierHeadError.incompatible(
                            file: file, reason: "a head over \(n) blocks needs the model's final norm")
                    }
                    let cls = try get("blocks.\(blk):cls", batch: b)
                    NeuralKernels.layerNorm(
                        cls.pointer, normed.mutablePointer(), rows: b, width: d,
                        weight: norm.weight.pointer, bias: norm.bias.pointer, epsilon: epsilon)
                    src = normed.pointer
                }
                for r in 0..<b { (o + r * n * d + k * d).update(from: src + r * d, count: d) }
            }
            return out
        }
    }

    /// Logits `[B, C]` = `features·weightᵀ + bias` of features `[B, F]`.
    public func logits(features x: Tensor<Float>) throws -> Tensor<Float> {
        if readout == .modelHead { return x }  // the model applied its head
        guard x.rank == 2, x.shape[1] == featureWidth else {
            throw ClassifierHeadError.hook(name: "features", expected: "[B, \(featureWidth)]", got: x.shape)
        }
        let b = x.shape[0], c = classCount
        var out = Tensor<Float>(shape: [b, c])
        let o = out.mutablePointer()
        NeuralKernels.broadcastRows(bias.pointer, into: o, rows: b, width: c)
        try gemm(
            MatrixRef(x.pointer, rows: b, cols: featureWidth), weight.matrixRef, transposeB: true, beta: 1,
            into: MutableMatrixRef(o, rows: b, cols: c))
        return out
    }

    /// Logits `[B, C]` from the hook values of one forward pass (`hookPoints`, each `[B, D]`).
    public func logits(hooks: [String: Tensor<Float>]) throws -> Tensor<Float> {
        try logits(features: features(hooks: hooks))
    }

    /// Runs `model` on `pixels` `[B, 3, H, W]` and returns the logits `[B, C]`.
    /// - Throws: `ClassifierHeadError.incompatible` if the model is not the width and depth the head was built for,
    ///   or the model's errors.
    public func logits(model: VisionTransformer, pixels: Tensor<Float>) throws -> Tensor<Float> {
        let a = model.architecture
        guard a.width == width, a.depth == depth else {
            throw ClassifierHeadError.incompatible(
                file: file,
                reason:
                    "the head was built for width \(width), depth \(depth); the model has width \(a.width), depth \(a.depth)"
            )
        }
        var values: [String: Tensor<Float>] = [:]
        try model.forward(pixels, hooks: hookPoints) { name, value in values[name] = value }
        // The model's current final norm (its weights may have moved since the head was built).
        let norm = model.parameter("norm.weight").flatMap { w in model.parameter("norm.bias").map { (w, $0) } }
        return try logits(features: features(hooks: values, norm: norm ?? finalNorm))
    }

    static func requireFloat(_ t: StoredTensor, file: String, name: String? = nil) throws {
        guard t.dtype.isFloatingPoint else {
            throw ClassifierHeadError.tensorShape(
                file: file, name: name ?? t.name, expected: "a floating-point tensor (found \(t.dtype.rawValue))",
                got: t.shape)
        }
    }

    static func hint(for source: CheckpointSource) -> String {
        switch source {
        case .dino, .dinoFull:
            return "DINO's classifier is a separate file (e.g. dino_vitbase16_linearweights.pth): pass it as `head`"
        case .mocoV3:
            return
                "the pretraining file holds only the projection head; the classifier is in linear-vit-b-300ep.pth.tar"
        case .mae, .rcmae:
            return "only the finetuned file (mae_finetuned_vit_base.pth) has a classifier"
        case .timm, .dinov2, .huggingFace, .openCLIP:
            return
                "use a checkpoint with a classifier (e.g. timm vit_base_patch16_224.augreg_in21k_ft_in1k), or a DINO linear file as `head`"
        }
    }
}
