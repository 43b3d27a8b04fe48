import Foundation

/// Layer×layer minibatch CKA in one call: between two Vision Transformers run over the same images, in
/// memory (forward → per-minibatch Grams → `MinibatchCKA`, no file written), or between two activation
/// stores (`CKAComparison`).
///
/// ```swift
/// let cka = LayerwiseCKA(layers: ["blocks.*"], batchSize: 32)
/// let result = try cka.compare(checkpoint: "dino.pth", with: "mae.pth", images: "val/")
/// print(result.matrix[11][11])          // last block of A vs last block of B
/// ```
///
/// The in-memory path computes exactly what `cka extract --store grams --gram-batch-size b` followed by
/// `cka compare --batch-size b` computes (the same centred Grams, summed in the same order): consecutive
/// minibatches of `batchSize` images in input order, a short last batch dropped with a warning.
public struct LayerwiseCKA: Sendable {
    /// Layer-name globs (`LayerGlob`): hook points of the models, or layers of the stores.
    public var layers: [String]
    /// Examples per minibatch (at least 4).
    public var batchSize: Int
    /// How `[N, T, D]` token layers become vectors.
    public var tokens: TokenReduction

    public init(layers: [String] = ["blocks.*"], batchSize: Int = 32, tokens: TokenReduction = .flatten) {
        self.layers = layers
        self.batchSize = batchSize
        self.tokens = tokens
    }

    /// Loads two checkpoints (safely: pickles are never executed), runs both over the image folder `images`
    /// with each checkpoint's evaluation transform, and compares the selected layers.
    /// - Parameter limit: use at most this many images (in folder order).
    public func compare(
        checkpoint a: String, with b: String, images: String, limit: Int? = nil,
        progress: ((CKAProgress) -> Void)? = nil
    ) throws -> CKAResult {
        let ca = try Checkpoint(contentsOf: URL(fileURLWithPath: a)),
            cb = try Checkpoint(contentsOf: URL(fileURLWithPath: b))
        let ma = try VisionTransformer(checkpoint: ca), mb = try VisionTransformer(checkpoint: cb)
        var ia = try ImageFolderInput(
            root: images, preprocessing: ImageFolderInput.defaultPreprocessing(for: ca, imageSize: ma.imageSize),
            batchSize: batchSize, limit: limit)
        var ib = try ImageFolderInput(
            root: images, preprocessing: ImageFolderInput.defaultPreprocessing(for: cb, imageSize: mb.imageSize),
            batchSize: batchSize, limit: limit)
        var result = try compare(ma, inputs: &ia, with: mb, inputs: &ib, progress: progress)
        result.modelA = ActivationExtractor.modelName(for: ca)
        result.modelB = ActivationExtractor.modelName(for: cb)
        result.fileA = a
        result.fileB = b
        return result
    }

    /// Runs `a` over `inputsA` and `b` over `inputsB` (the same examples in the same order, each preprocessed
    /// for its model) and compares the selected hook points batch by batch. Memory: one minibatch per model.
    public func compare(
        _ a: VisionTransformer, inputs inputsA: inout some InputSource,
        with b: VisionTransformer, inputs inputsB: inout some InputSource,
        progress: ((CKAProgress) -> Void)? = nil
    ) throws -> CKAResult {
        guard batchSize >= 4 else {
            throw CKAError.batchSize(requested: batchSize, examples: inputsA.expectedCount ?? 0)
        }
        let hooksA = try selectedHooks(a), hooksB = try selectedHooks(b)
        var acc = MinibatchCKA(layerCountA: hooksA.count, layerCountB: hooksB.count)
        var seen = 0, dropped = 0
        let start = Date()
        while let batchA = try inputsA.next(maxCount: batchSize) {
            guard let batchB = try inputsB.next(maxCount: batchSize), batchB.ids == batchA.ids else {
                throw CKAError.inputsDiffer(
                    fileA: "inputs of A", fileB: "inputs of B",
                    detail: "the two input sources gave different examples at example \(seen)")
            }
            seen += batchA.ids.count
            guard batchA.ids.count == batchSize else { dropped = batchA.ids.count; break }
            let ga = try grams(a, batchA.pixels, hooks: hooksA)
            let gb = try grams(b, batchB.pixels, hooks: hooksB)
            try acc.add(gramsA: ga, gramsB: gb)
            progress?(
                CKAProgress(
                    done: seen, total: inputsA.expectedCount, unit: "images", seconds: Date().timeIntervalSince(start)))
        }
        guard acc.batchCount > 0 else { throw CKAError.batchSize(requested: batchSize, examples: seen) }
        let warnings =
            dropped > 0
            ? ["the last \(dropped) of \(seen) examples do not fill a batch of \(batchSize) and were dropped"] : []
        return CKAResult(
            modelA: "A", modelB: "B", fileA: "", fileB: "", layersA: hooksA, layersB: hooksB,
            matrix: try acc.matrix(layerNamesA: hooksA, layerNamesB: hooksB), estimator: .minibatch,
            batchSize: batchSize, tokens: tokens, examplesUsed: acc.exampleCount, batches: acc.batchCount,
            passes: 1, usedStoredGrams: false, warnings: warnings)
    }

    /// Compares two activation stores (or `a` with itself when `b` is nil) with the minibatch estimator.
    public func compare(store a: String, with b: String? = nil) throws -> CKAResult {
        var o = CKAOptions()
        o.batchSize = batchSize
        o.tokens = tokens
        o.layersA = layers
        return try CKAComparison.run(ActivationStore(path: a), b.map { try ActivationStore(path: $0) }, options: o)
    }

    /// The token-level hooks of `model` that match `layers`, in network order.
    func selectedHooks(_ model: VisionTransformer) throws -> [String] {
        let all = HookPoint.tokenHooks(for: model.architecture)
        let picked = all.filter { LayerGlob.matches(any: layers, $0) }
        guard !picked.isEmpty else {
            throw CKAError.noLayersMatch(
                pattern: layers.joined(separator: ","), file: model.architecture.timmName, available: all)
        }
        return picked
    }

    /// One forward pass; the centred Gram of every hooked layer, in `hooks` order (the fused one-pass Gram that
    /// `cka extract` stores, read straight from the model's buffer).
    func grams(_ model: VisionTransformer, _ pixels: Tensor<Float>, hooks: [String]) throws -> [Tensor<Double>] {
        var out: [String: Tensor<Double>] = [:]
        try model.forward(pixels, hooks: Set(hooks)) { name, value in
            let rows = try
                (tokens == .flatten ? value : tokens.apply(value, prefixTokens: model.architecture.prefixTokens))
                .flattenedRows
            out[name] = try rows.centeredGramOfRows()
        }
        return hooks.map { out[$0]! }
    }
}
