import CKAImages
import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation

/// An extraction checked and resolved before anything is written: the hook points, the head and the
/// store's metadata. Built once; the forward passes (`BatchProducer`) and the writing (`StoreSink`) share it,
/// in one process or in several (the batches of an MPI job).
public struct ExtractionPlan: @unchecked Sendable {
    public let options: ExtractionOptions
    /// Token-level hooks and pooled hooks recorded, in network order.
    public let tokenHooks: [String]
    public let pooledHooks: [String]
    /// The head whose logits are stored, if `.logits` is selected.
    public let head: ClassifierHead?
    public let metadata: StoreMetadata
    /// Warnings found while planning (e.g. class counts that differ).
    public let warnings: [String]
    /// The checkpoint the model was built from. When the store is finished, its files are checked to be unmodified
    /// (`Checkpoint.checkUnchanged`) and its SHA-256 is recorded: read only then (`metadata` holds an empty
    /// `checkpointSHA256` until then), so the hashing, on its own thread since loading, overlaps the forward passes.
    let checkpoint: Checkpoint?

    public var storesTokens: Bool { options.store.contains(.activations) }
    public var storesGrams: Bool { options.store.contains(.grams) }

    /// Checks `options` against the model and the inputs and builds the store's metadata.
    public init(model: VisionTransformer, checkpoint: Checkpoint?, input: some InputSource, options: ExtractionOptions)
        throws
    {
        let a = model.architecture
        guard options.batchSize >= 1 else { throw ExtractionError.invalidOption("`batchSize` must be at least 1") }
        if options.store.contains(.grams) && options.gramBatchSize < 4 {
            throw ExtractionError.invalidOption("`gramBatchSize` must be at least 4 (HSIC₁ needs 4 examples)")
        }
        let (tokenHooks, pooledHooks) = try ActivationExtractor.selectedHooks(a, options: options)
        var warnings: [String] = []
        let head = options.store.contains(.logits) ? options.head : nil
        if options.store.contains(.logits) {
            guard let head else {
                throw ExtractionError.invalidOption(
                    "storing logits needs a classifier head (the checkpoint's head.*, or DINO's linear weights as `head`)"
                )
            }
            guard head.width == a.width, head.depth == a.depth else {
                throw ExtractionError.invalidOption(
                    "\(head.file): the head was built for width \(head.width), depth \(head.depth); the model has width \(a.width), depth \(a.depth)"
                )
            }
            if let classes = input.classes, classes.count != head.classCount {
                warnings.append(
                    "the inputs have \(classes.count) classes but the head has \(head.classCount) outputs: /inputs/labels index the input classes, so the both_correct/both_wrong subsets of 'cka agreement' are not meaningful"
                )
            }
        }
        var meta = StoreMetadata(
            model: options.modelName ?? checkpoint.map { ActivationExtractor.modelName(for: $0) } ?? "model")
        if let checkpoint {
            meta.checkpoint = URL(fileURLWithPath: checkpoint.file).lastPathComponent
            meta.extra["source"] = .string(checkpoint.source.rawValue)
        }
        meta.architecture = a.timmName
        if a.prefixTokens != 1 { meta.extra["prefix_tokens"] = .int(a.prefixTokens) }  // read by gap_nocls reductions
        if let family = a.family { meta.extra["family"] = .string(family) }
        meta.extra.merge(options.attributes) { $1 }
        if let head {
            meta.extra["head_kind"] = .string(head.readout.kind)
            meta.extra["head_readout"] = .string(head.readout.description)
            meta.extra["head_file"] = .string(URL(fileURLWithPath: head.file).lastPathComponent)
            meta.extra["head_classes"] = .int(head.classCount)
            if case let .dinoLinear(n, avg) = head.readout {
                meta.extra["head_n_last_blocks"] = .int(n)
                meta.extra["head_avgpool_patchtokens"] = .bool(avg)
            }
        }
        meta.preprocessing = input.preprocessing
        self.options = options
        self.tokenHooks = tokenHooks
        self.pooledHooks = pooledHooks
        self.head = head
        self.metadata = meta
        self.warnings = warnings
        self.checkpoint = checkpoint
    }

    /// Whether `name` is a pooled feature (`blocks.3:cls`, `fc_norm`) rather than a token layer.
    static func isPooled(_ name: String) -> Bool { LayerName(name).isPooled }
}

/// What a forward pass hands to the store, in the order a single process produces it. `StoreSink` writes
/// these; `RecordingSink` keeps them to be sent to the writing process and replayed there.
public enum ExtractionEvent: @unchecked Sendable {
    /// `/inputs/pixels` rows of one batch.
    case pixels(Tensor<Float>)
    /// Rows of a token layer or pooled feature.
    case layer(String, Tensor<Float>)
    /// A layer's Grams start (declared with the layer's first rows, even if no Gram batch fills).
    case declareGrams(String)
    /// One centred Gram of a layer.
    case gram(String, Tensor<Double>)
    /// `/logits` rows of one batch.
    case logits(Tensor<Float>)
    /// The ids and labels of one batch (after its data).
    case examples(ids: [String], labels: [Int])
}

/// Receives the events of an extraction.
public protocol ExtractionSink: AnyObject {
    func consume(_ event: ExtractionEvent) throws
}

/// Keeps events in memory (one process's share of an MPI extraction, before it goes to the writer).
public final class RecordingSink: ExtractionSink {
    public private(set) var events: [ExtractionEvent] = []
    public init() {}
    public func consume(_ event: ExtractionEvent) throws { events.append(event) }
    /// Examples recorded so far.
    public var exampleCount: Int {
        events.reduce(0) { n, e in if case let .examples(ids, _) = e { return n + ids.count } else { return n } }
    }
}

/// Writes an extraction's events into an activation store (formats.md §1): datasets are declared when their
/// first rows arrive, rows are appended in arrival order, and the store appears under its name only at `finish`.
public final class StoreSink: ExtractionSink {
    let plan: ExtractionPlan
    let writer: ActivationStoreWriter
    private var declared = Set<String>()
    private var gramLayers = Set<String>()
    private var logitsDeclared = false
    private var pixelsDeclared = false
    private var ids: [String] = []
    private var labels: [Int] = []
    /// NaN/Inf values written, by dataset path (recorded as its `non_finite` attribute at `finish`).
    private var nonFinite: [String: Int] = [:]

    /// Counts the NaN and Inf values of `t` under `dataset`.
    private func tally<S: TensorScalar & BinaryFloatingPoint>(_ t: Tensor<S>, _ dataset: String) {
        guard !t.isFinite else { return }
        let n = t.withUnsafeBufferPointer { $0.reduce(0) { $0 + ($1.isFinite ? 0 : 1) } }
        nonFinite[dataset, default: 0] += n
    }

    /// Creates the temporary store next to `path`.
    public init(path: String, plan: ExtractionPlan) throws {
        self.plan = plan
        writer = try ActivationStoreWriter(path: path, metadata: plan.metadata)
    }

    /// Examples written so far.
    public var count: Int { ids.count }

    public func consume(_ event: ExtractionEvent) throws {
        switch event {
        case let .pixels(p):
            if !pixelsDeclared {
                try writer.addLayerDataset("inputs/pixels", featureShape: Array(p.shape.dropFirst()))
                pixelsDeclared = true
            }
            tally(p, "inputs/pixels")
            try writer.appendRows(p, to: "inputs/pixels")
        case let .layer(name, value):
            if !declared.contains(name) {
                let isPooled = ExtractionPlan.isPooled(name)
                try writer.addLayer(
                    name, kind: isPooled ? .pooled : LayerKind.infer(from: name),
                    block: LayerKind.blockIndex(of: name), featureShape: Array(value.shape.dropFirst()),
                    elementType: plan.options.elementType)
                declared.insert(name)
            }
            tally(value, "activations/\(name)")
            try writer.append(value, to: name)
        case let .declareGrams(name):
            if gramLayers.insert(name).inserted {
                try writer.addGrams(
                    name, batchSize: plan.options.gramBatchSize, tokens: plan.options.gramTokens, centered: true)
            }
        case let .gram(name, g):
            tally(g, "grams/\(name)")
            try writer.appendGram(g, to: name)
        case let .logits(l):
            guard let head = plan.head else { return }
            if !logitsDeclared {
                try writer.addLayerDataset("logits", featureShape: [head.classCount])
                try writer.setAttribute("kind", .string(head.readout.kind), of: "logits")
                try writer.setAttribute("readout", .string(head.readout.description), of: "logits")
                try writer.setAttribute(
                    "head_file", .string(URL(fileURLWithPath: head.file).lastPathComponent), of: "logits")
                logitsDeclared = true
            }
            tally(l, "logits")
            try writer.appendRows(l, to: "logits")
        case let .examples(batchIDs, batchLabels):
            ids += batchIDs
            labels += batchLabels
        }
    }

    /// Adds an attribute to the store's root (e.g. the number of processes that computed it).
    public func setAttribute(_ name: String, _ value: HDF5AttributeValue) throws {
        try writer.setAttribute(name, value)
    }

    /// Writes the ids/labels/classes and renames the store into place.
    /// - Parameter skipped: inputs that could not be used (`id: reason`).
    public func finish(classes: [String]?, skipped: [String], seconds: Double) throws -> ExtractionSummary {
        guard !ids.isEmpty else {
            throw ExtractionError.noInputs(skipped: skipped.map { String($0.split(separator: ":").first ?? "") })
        }
        var warnings = plan.warnings
        if plan.storesGrams && ids.count % plan.options.gramBatchSize != 0 {
            warnings.append(
                "the last \(ids.count % plan.options.gramBatchSize) of \(ids.count) examples do not fill a Gram batch of \(plan.options.gramBatchSize) and have no Gram"
            )
        }
        if !nonFinite.isEmpty {
            // Loud and on record: the datasets holding NaN or Inf (NaN/huge weights, NaN pixels, a NaN LayerScale).
            let names = nonFinite.keys.sorted(by: naturalOrder)
            for name in names { try writer.setAttribute("non_finite", .int(nonFinite[name]!), of: name) }
            try writer.setAttribute("non_finite_datasets", .strings(names))
            let total = nonFinite.values.reduce(0, +)
            warnings.append(
                "\(total) NaN or Inf values in \(names.count) dataset(s) (first: /\(names[0])): the checkpoint or the "
                    + "inputs are broken; recorded in the store as attribute non_finite_datasets, and cka compare will refuse them"
            )
        }
        try writer.setInputs(ids: ids, labels: labels.contains { $0 >= 0 } ? labels : nil, classes: classes)
        if let checkpoint = plan.checkpoint {
            try checkpoint.checkUnchanged()
            try writer.setAttribute("checkpoint_sha256", .string(checkpoint.sha256 ?? ""))
        }
        try writer.finish()
        return ExtractionSummary(
            examples: ids.count, layers: declared.count, gramLayers: gramLayers.count, skipped: skipped,
            seconds: seconds, warnings: warnings, logitClassCount: plan.head?.classCount)
    }
}

/// Runs the forward passes of an extraction and turns each batch into events: the selected hook values,
/// their Grams (rows collected into Gram batches across forward batches), the head's logits.
public struct BatchProducer {
    let model: VisionTransformer
    let plan: ExtractionPlan
    let selected: Set<String>
    let headHooks: Set<String>
    let hooks: Set<String>
    private var pending: [String: GramBatcher] = [:]

    public init(model: VisionTransformer, plan: ExtractionPlan) {
        self.model = model
        self.plan = plan
        selected = Set(plan.tokenHooks + plan.pooledHooks)
        headHooks = Set(plan.head?.hookPoints ?? [])
        hooks = selected.union(headHooks)
    }

    /// Runs `batch` and sends its events to `sink`. `isLast`: no batch follows (rows that cannot fill a Gram
    /// batch are dropped).
    public mutating func process(_ batch: InputBatch, isLast: Bool, into sink: some ExtractionSink) throws {
        let options = plan.options
        if options.store.contains(.pixels) { try sink.consume(.pixels(batch.pixels)) }
        var headValues: [String: Tensor<Float>] = [:]
        let storeTokens = plan.storesTokens, storeGrams = plan.storesGrams
        let selected = selected, headHooks = headHooks
        var pending = self.pending
        self.pending = [:]  // one owner: the Gram buffers are filled in place, not copied on write
        defer { self.pending = pending }
        try model.forward(batch.pixels, hooks: hooks) { name, value in
            if headHooks.contains(name) { headValues[name] = value }
            guard selected.contains(name) else { return }
            let isPooled = ExtractionPlan.isPooled(name)
            if isPooled || storeTokens { try sink.consume(.layer(name, value)) }
            if storeGrams && !isPooled {
                if pending[name] == nil {
                    try sink.consume(.declareGrams(name))
                    pending[name] = GramBatcher(
                        batchSize: options.gramBatchSize, tokens: options.gramTokens,
                        prefixTokens: model.architecture.prefixTokens)
                }
                try pending[name]!.add(value, isLast: isLast) { gram in
                    try sink.consume(.gram(name, gram))
                }
            }
        }
        if let head = plan.head { try sink.consume(.logits(try head.logits(hooks: headValues))) }
        try sink.consume(.examples(ids: batch.ids, labels: batch.labels))
    }
}
