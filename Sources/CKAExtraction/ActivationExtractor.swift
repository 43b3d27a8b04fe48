import CKAImages
import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation
import _CKASupport

/// What an extraction writes for the selected hook points.
public struct StoreSelection: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// Token-level activations `/activations/<layer>` `[N, T, C]`.
    public static let activations = StoreSelection(rawValue: 1)
    /// Pooled features `/activations/<layer>:{cls,gap,gap_nocls}` `[N, D]` of block outputs and `norm`.
    public static let pooled = StoreSelection(rawValue: 2)
    /// Per-minibatch Grams `/grams/<layer>` `[k, b, b]` of the token-level layers.
    public static let grams = StoreSelection(rawValue: 4)
    /// The network input `/inputs/pixels`.
    public static let pixels = StoreSelection(rawValue: 8)
    /// Logits `/logits` `[N, C]` of a classifier head (`ExtractionOptions.head`), read by `cka agreement`.
    public static let logits = StoreSelection(rawValue: 16)
}

/// Settings of an extraction.
public struct ExtractionOptions: Sendable {
    /// Globs over hook names (`blocks.*.norm1`, `blocks.*`, …); nil = every hook point.
    public var layers: [String]?
    public var store: StoreSelection = [.pooled, .grams]
    /// Examples per forward pass.
    public var batchSize = 32
    /// Examples per stored Gram (consecutive runs in output order).
    public var gramBatchSize = 32
    /// Token reduction before the Grams.
    public var gramTokens: TokenReduction = .flatten
    /// Float type of stored activations.
    public var elementType: HDF5ElementType = .float32
    /// Model name recorded in the file.
    public var modelName: String?
    /// Further file attributes (e.g. `random_init_seed`).
    public var attributes: [String: HDF5AttributeValue] = [:]
    /// The classifier head whose logits `.logits` stores (computed from the same forward pass).
    public var head: ClassifierHead?

    public init() {}
}

/// Summary of a finished extraction.
public struct ExtractionSummary: Sendable {
    public let examples: Int
    public let layers: Int
    public let gramLayers: Int
    public let skipped: [String]
    public let seconds: Double
    public let warnings: [String]
    /// Classes C of the stored `/logits`, nil when none were stored.
    public var logitClassCount: Int?
}

/// Runs a Vision Transformer over inputs and streams the selected hook points into an activation store
/// (formats.md §1): token activations, pooled features and/or per-minibatch Grams. Memory is bounded by
/// one batch (plus one Gram batch per layer); the store appears under its name only when complete.
public enum ActivationExtractor {
    /// The hook names an extraction with `options` will record for `architecture`, in network order.
    public static func selectedHooks(_ a: ViTArchitecture, options: ExtractionOptions) throws -> (
        tokens: [String], pooled: [String]
    ) {
        func match(_ names: [String]) -> [String] {
            guard let globs = options.layers else { return names }
            return names.filter { LayerGlob.matches(any: globs, $0) }
        }
        if !a.classToken {  // SigLIP-style models: one line instead of an empty match
            let what = a.family ?? a.timmName
            if let g = options.layers?.first(where: { $0.hasSuffix(":cls") }) {
                throw ExtractionError.invalidOption(
                    "'\(g)': \(what) has no class token; use :gap, :gap_nocls or its MAP head attn_pool")
            }
            if options.gramTokens == .cls && options.store.contains(.grams) {
                throw ExtractionError.invalidOption(
                    "gram tokens 'cls': \(what) has no class token; use gap, gap_nocls or flatten")
            }
        }
        var tokens =
            options.store.contains(.activations) || options.store.contains(.grams)
            ? match(HookPoint.tokenHooks(for: a)) : []
        var pooled: [String] = []
        if options.store.contains(.pooled) {
            let all = HookPoint.pooledHooks(for: a)
            // Pooled features follow their block: a glob that selects `blocks.3` selects `blocks.3:cls` too.
            pooled = all.filter { name in
                let base = String(name.split(separator: ":").first ?? "")
                return options.layers == nil || match([name]).count == 1 || match([base]).count == 1
            }
        }
        if options.layers != nil && tokens.isEmpty && pooled.isEmpty && !options.store.subtracting(.logits).isEmpty {
            throw ExtractionError.noHooksMatch(
                pattern: options.layers!.joined(separator: ","),
                available: HookPoint.allHooks(for: a))
        }
        if !options.store.contains(.activations) && !options.store.contains(.grams) { tokens = [] }
        return (tokens, pooled)
    }

    /// Extracts into `path`. `progress` is called after every batch.
    public static func run(
        model: VisionTransformer, checkpoint: Checkpoint?, input: inout some InputSource, to path: String,
        options: ExtractionOptions, progress: ((CKAProgress) -> Void)? = nil
    ) throws -> ExtractionSummary {
        let plan = try ExtractionPlan(model: model, checkpoint: checkpoint, input: input, options: options)
        let sink = try StoreSink(path: path, plan: plan)
        var producer = BatchProducer(model: model, plan: plan)
        let start = Date()
        // Batch i+1 is decoded (or read) on a second thread while batch i runs through the model.
        let prefetching = PrefetchingInput(input)
        defer { input = prefetching.finish() }
        while let batch = try prefetching.next(maxCount: options.batchSize) {
            // Sources return full batches until the inputs run out, so a short batch is the last one.
            try producer.process(batch, isLast: batch.ids.count < options.batchSize, into: sink)
            progress?(
                CKAProgress(
                    done: sink.count, total: prefetching.expectedCount, unit: "images",
                    seconds: Date().timeIntervalSince(start)))
        }
        return try sink.finish(
            classes: prefetching.classes, skipped: prefetching.skipped.map { "\($0.id): \($0.reason)" },
            seconds: Date().timeIntervalSince(start))
    }

    /// A model name from the checkpoint's file name (`dino_vitbase16_pretrain.pth` → `dino_vitbase16_pretrain`).
    /// A generic file name (`model.safetensors`, as model hubs name them) gives its folder's name instead.
    public static func modelName(for c: Checkpoint) -> String {
        let url = URL(fileURLWithPath: c.file)
        var name = url.lastPathComponent
        for ext in [".pth.tar", ".pth", ".pt", ".safetensors", ".bin"] where name.hasSuffix(ext) {
            name.removeLast(ext.count); break
        }
        if ["model", "pytorch_model", "checkpoint"].contains(name) {
            let folder = url.deletingLastPathComponent().lastPathComponent
            if !folder.isEmpty && folder != "." && folder != "/" { return folder }
        }
        return name
    }
}

/// Errors of an extraction.
public enum ExtractionError: Error, Equatable, CustomStringConvertible {
    case noHooksMatch(pattern: String, available: [String])
    case noInputs(skipped: [String])
    case invalidOption(String)

    public var description: String {
        switch self {
        case let .noHooksMatch(pattern, available):
            return "no hook point matches '\(pattern)' (e.g. \(available.prefix(12).joined(separator: ", ")), …)"
        case let .noInputs(skipped):
            return "no usable input"
                + (skipped.isEmpty ? "" : " (\(skipped.count) skipped: \(skipped.prefix(3).joined(separator: ", ")))")
        case let .invalidOption(s): return s
        }
    }
}

/// Collects rows of one layer until a Gram batch is full, then emits its centred Gram.
///
/// Every Gram is `Tensor.centeredGram(rows:width:)` of its rows: the Gram kernel reads a hooked tensor from
/// memory once (shifted by its first row in cache, centred exactly afterwards) and never copies or modifies it. Whole
/// Gram batches are taken straight from the hooked tensor (the forward pass's own buffer); only rows that
/// straddle forward batches are copied into a per-layer buffer. Both ways run the same arithmetic on the same
/// row values, so a Gram's bits do not depend on the forward batch size, the process split or the thread count.
struct GramBatcher {
    let batchSize: Int
    let tokens: TokenReduction
    var buffer: Tensor<Float>?
    var filled = 0

    /// Leading tokens `gap_nocls` leaves out (class, distillation, registers).
    var prefixTokens = 1

    init(batchSize: Int, tokens: TokenReduction, prefixTokens: Int = 1) {
        self.batchSize = batchSize; self.tokens = tokens; self.prefixTokens = prefixTokens
    }

    /// - Parameter isLast: no rows follow; rows that cannot complete a Gram batch are dropped instead of
    ///   buffered (a per-layer buffer for every hooked layer would cost far more than the batch itself).
    mutating func add(_ value: Tensor<Float>, isLast: Bool = false, emit: (Tensor<Double>) throws -> Void) throws {
        let rows = try (tokens == .flatten ? value.flattenedRows : tokens.apply(value, prefixTokens: prefixTokens))
            .flattenedRows
        if isLast && (filled + rows.rowCount) % batchSize != 0 && filled + rows.rowCount < batchSize {
            buffer = nil
            filled = 0
            return
        }
        let n = rows.rowCount, d = rows.rowSize, batchSize = batchSize
        var start = 0
        while start < n {
            if filled == 0 && n - start >= batchSize {
                // A whole Gram batch in the hooked tensor: read it in place.
                let first = start
                try emit(
                    try rows.withUnsafeBufferPointer { p in
                        try Tensor.centeredGram(
                            rows: (first..<first + batchSize).map { p.baseAddress! + $0 * d }, width: d)
                    })
                start += batchSize
                continue
            }
            if buffer == nil { buffer = Tensor(shape: [batchSize, d]) }
            let take = min(batchSize - filled, n - start)
            try buffer!.setRows(filled..<filled + take, from: rows.rows(start..<start + take))
            filled += take
            start += take
            if filled == batchSize {
                try emit(
                    try buffer!.withUnsafeBufferPointer { p in
                        try Tensor.centeredGram(rows: (0..<batchSize).map { p.baseAddress! + $0 * d }, width: d)
                    })
                filled = 0
            }
        }
    }
}
