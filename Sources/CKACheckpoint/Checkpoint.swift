import CKATensor
import Foundation
import Synchronization

/// The container format of a checkpoint file.
public enum CheckpointFormat: String, Sendable, Codable {
    case safetensors
    /// `torch.save` zip archive (torch ≥ 1.6).
    case torchZip = "torch-zip"

    /// Detects the format from the first bytes (the extension only breaks ties for error messages).
    /// - Throws: `legacyTorchFormat` for pre-1.6 files, `unrecognizedFormat` otherwise.
    package static func detect(_ file: MappedFile) throws -> CheckpointFormat {
        let name = file.name
        return try file.withUnsafeBytes { raw in
            let n = raw.count
            if n >= 4, raw[0] == 0x50, raw[1] == 0x4b, (raw[2] == 3 && raw[3] == 4) || (raw[2] == 5 && raw[3] == 6) {
                return .torchZip
            }
            if n >= 9, raw[8] == UInt8(ascii: "{") { return .safetensors }
            if n >= 2, raw[0] == 0x80, (1...5).contains(raw[1]) {
                throw CheckpointError.legacyTorchFormat(file: name, kind: "raw pickle")
            }
            if n >= 262, Array(raw[257..<262]) == Array("ustar".utf8) {
                throw CheckpointError.legacyTorchFormat(file: name, kind: "tar archive")
            }
            if name.hasSuffix(".safetensors") { return .safetensors }  // let the reader say what is wrong
            let head = raw.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw CheckpointError.unrecognizedFormat(
                file: name, found: n == 0 ? "an empty file" : "first bytes \(head)")
        }
    }
}

/// A Vision Transformer checkpoint mapped to timm's canonical parameter names.
///
/// ```swift
/// let ckpt = try Checkpoint(contentsOf: URL(fileURLWithPath: "dino_vitbase16_pretrain.pth"))
/// ckpt.source                      // .dino
/// ckpt.architecture.depth          // 12
/// let qkv = ckpt["blocks.0.attn.qkv.weight"]!   // Tensor<Float> [2304, 768]
/// ```
public struct Checkpoint: Sendable {
    /// Loading options.
    public struct Options: Sendable {
        /// Force a source instead of detecting it (`--source`).
        public var source: CheckpointSource?
        /// Force the head count instead of deriving it from the width (`--heads`).
        public var heads: Int?
        /// Force the MLP nonlinearity (`--activation`; e.g. QuickGELU for OpenAI CLIP weights in a bare state dict).
        public var activation: MLPActivation?
        /// Force the LayerNorm epsilon (default: the layout's, e.g. 1e-5 for CLIP).
        public var layerNormEpsilon: Double?
        /// Run the model at this input size: the position table is resampled as timm's `resample_abs_pos_embed`
        /// does (`--image-size`; nil = the size the table was made for).
        public var imageSize: Int?
        /// Which wrapper entry holds the weights (e.g. `student` instead of `teacher`); nil = the source's default.
        public var checkpointKey: String?
        /// Refuse checkpoints with unexpected keys (as `load_state_dict(strict=True)` would).
        public var strict = false
        /// Compute the SHA-256 of the file (one extra pass over its bytes).
        public var computeSHA256 = false
        /// PyTorch reader options (unpickler limits, CRC checks).
        public var torch = TorchArchive.Options()
        public init(source: CheckpointSource? = nil, heads: Int? = nil, checkpointKey: String? = nil) {
            self.source = source
            self.heads = heads
            self.checkpointKey = checkpointKey
        }
    }

    /// A key of the file that was not mapped to a backbone parameter, and why.
    public struct IgnoredKey: Sendable, Equatable {
        public var key: String
        public var reason: String
    }

    /// The file path as given.
    public let file: String
    public let format: CheckpointFormat
    public let source: CheckpointSource
    /// The wrapper entry the weights came from (`teacher`, `state_dict`, `model`, …), nil for a bare dict.
    public let stateDictKey: String?
    public let architecture: ViTArchitecture
    /// Backbone parameters under timm names as float32: read in place from the mapped file when stored as float32
    /// (`StoredTensor.floatTensor()`), converted otherwise.
    public let parameters: [String: Tensor<Float>]
    /// `parameters`' names in forward order (embeddings, blocks, final norm).
    public let parameterNames: [String]
    /// The file's key for each canonical name.
    public let originalNames: [String: String]
    /// Classifier head (`head.weight`, `head.bias`), if present.
    public let head: [String: StoredTensor]
    /// MAE / RC-MAE decoder tensors under their own names (`decoder_embed.weight`, `mask_token`, …).
    public let decoder: [String: StoredTensor]
    /// Keys deliberately left out (projection heads, momentum encoder, student, …).
    public let ignored: [IgnoredKey]
    /// Keys of the chosen state dict that match nothing known (as `load_state_dict` reports them).
    public let unexpectedKeys: [String]
    /// Standard timm keys that are absent but not needed (e.g. `norm.*` in MAE-finetuned files, which use `fc_norm`).
    public let missingKeys: [String]
    /// Non-weight entries of the file's top-level dict (`epoch`, `args`, `optimizer`, …), inert.
    package let extras: [(key: String, value: PickleValue)]
    /// The keys of `extras` (the values are parsed pickle data, read by the toolkit, not API).
    public var extraKeys: [String] { extras.map(\.key) }
    /// safetensors `__metadata__`.
    public let metadata: [String: String]
    /// Every tensor in the file, and the bytes of their distinct storages.
    public let fileTensorCount: Int
    public let fileTensorBytes: Int
    /// SHA-256 of the file (lowercase hex) when `Options.computeSHA256` was set. It is taken on a background
    /// thread from the start of loading; the first read waits for it (an extraction reads it when its store is
    /// complete, so the hashing overlaps the forward passes instead of delaying them).
    public var sha256: String? { digest?.hex() }
    private let digest: BackgroundDigest?
    /// The mapped files (float32 parameters are read from them while the model runs).
    private let files: [MappedFile]

    /// Throws `unreadable` if a file of the checkpoint was modified in place since it was loaded: float32
    /// parameters are read from the mapped file while the model runs, so its results could mix old and new
    /// weights (a file replaced by a rename is harmless: the mapped one stays intact).
    public func checkUnchanged() throws {
        for f in files where f.modifiedInPlace() {
            throw CheckpointError.unreadable(
                file: f.name,
                reason: "modified while in use (its weights are read from the file during the run, so the results "
                    + "could mix old and new values); run again once it is written")
        }
    }
    /// The hub layout the weights came from (Hugging Face / open_clip directory), nil for a plain file.
    package let hub: HubModel?

    /// A backbone parameter by timm name.
    public subscript(name: String) -> Tensor<Float>? { parameters[name] }

    /// Reads, maps and validates the checkpoint at `url`: a checkpoint file, or a Hugging Face / open_clip model
    /// directory (`config.json` beside `model.safetensors`, shards with their index, or `pytorch_model.bin`).
    public init(contentsOf url: URL, options: Options = Options()) throws {
        if let hub = try HubModel.locate(url, forced: options.source) {
            try self.init(
                files: hub.weights.map { try MappedFile(url: $0) }, name: hub.name, options: options, hub: hub)
        } else {
            try self.init(file: MappedFile(url: url), options: options)
        }
    }

    /// Reads, maps and validates a checkpoint from mapped (or in-memory) bytes.
    package init(file: MappedFile, options: Options = Options()) throws {
        try self.init(files: [file], name: file.name, options: options, hub: nil)
    }

    /// Reads the weights of one checkpoint from one file or from the shards of a hub model (merged in order).
    init(files: [MappedFile], name: String, options: Options, hub: HubModel?) throws {
        // The digest is taken on a second thread while the files are parsed (it reads the pages the model will read).
        let digest = options.computeSHA256 ? BackgroundDigest(files) : nil
        var format = CheckpointFormat.safetensors
        var root: PickleValue = .dict([])
        var metadata: [String: String] = [:]
        var allTensors: [StoredTensor] = []
        var merged: [PickleDictEntry] = []
        for file in files {
            format = try CheckpointFormat.detect(file)
            switch format {
            case .safetensors:
                let st = try SafeTensorsFile(file: file)
                metadata.merge(st.metadata) { a, _ in a }
                allTensors += st.names.compactMap { st.tensors[$0] }
                root = .dict(
                    st.names.compactMap { n in
                        st.tensors[n].map { PickleDictEntry(key: .string(n), value: .tensor($0)) }
                    })
            case .torchZip:
                let archive = try TorchArchive(file: file, options: options.torch)
                root = archive.root
                Checkpoint.collectTensors(root, into: &allTensors)
            }
            if files.count > 1 {
                guard case let .dict(entries) = root else {
                    throw CheckpointError.unrecognizedLayout(
                        file: file.name, expected: "a state dict in every shard", found: root.typeName)
                }
                merged += entries
            }
        }
        if files.count > 1 { root = .dict(merged) }
        var bytesByStorage: [String: Int] = [:]
        for t in allTensors { bytesByStorage[t.storageID] = t.storageByteCount }

        var extraction = try Checkpoint.extract(root: root, format: format, options: options, fileName: name)
        if let hub { extraction.source = hub.source }
        // open_clip's LayerNorm is nn.LayerNorm (eps 1e-5) also without its config file.
        let settings =
            try hub?.settings() ?? (extraction.source == .openCLIP ? KeyMapper.HubSettings(epsilon: 1e-5) : nil)
        var mapping: KeyMapper.Mapping
        switch extraction.source {
        case .huggingFace:
            guard hub != nil else {
                throw CheckpointError.unreadable(
                    file: URL(fileURLWithPath: name).deletingLastPathComponent().appendingPathComponent("config.json")
                        .path,
                    reason: "missing: a Hugging Face checkpoint needs its config.json beside the weights")
            }
            mapping = try KeyMapper.mapHuggingFace(extraction.stateDict, fileName: name)
        case .openCLIP: mapping = try KeyMapper.mapOpenCLIP(extraction.stateDict, fileName: name)
        default: mapping = try KeyMapper.map(extraction.stateDict, source: extraction.source, fileName: name)
        }
        if mapping.canonical.isEmpty {
            let keys = extraction.stateDict.prefix(8).map(\.key).joined(separator: ", ")
            throw CheckpointError.unrecognizedLayout(
                file: name,
                expected: "a Vision Transformer state dict (cls_token, pos_embed, patch_embed.proj.*, blocks.N.*)",
                found: extraction.stateDict.isEmpty
                    ? "no tensors" : "keys \(keys)\(extraction.stateDict.count > 8 ? ", …" : "")")
        }
        mapping.ignored.insert(contentsOf: extraction.ignored, at: 0)
        if options.strict && !mapping.unexpected.isEmpty {
            throw CheckpointError.unrecognizedLayout(
                file: name, expected: "only known keys (strict)",
                found: "unexpected keys: " + mapping.unexpected.prefix(12).joined(separator: ", "))
        }
        var (arch, order, missing) = try KeyMapper.inferArchitecture(
            &mapping.canonical, head: mapping.head,
            heads: options.heads ?? settings?.heads, source: extraction.source,
            fileName: name)
        if let settings {
            arch.layerNormEpsilon = settings.epsilon ?? arch.layerNormEpsilon
            arch.activation = settings.activation ?? arch.activation
        }
        if let hub { arch.family = hub.family } else if extraction.source == .openCLIP { arch.family = "open_clip" }
        if extraction.source == .openCLIP, hub == nil || hub?.config == nil,
            Set(["input_resolution", "context_length", "vocab_size"]).isSubset(of: extraction.stateDict.map(\.key))
        {
            // OpenAI's own CLIP weights (`torch.jit.load(…).state_dict()` keeps these three entries): QuickGELU.
            arch.activation = .quickGELU
            arch.family = "open_clip/openai"
        }
        if let a = options.activation { arch.activation = a }
        // The `head` hook: the model's own head on its pooled features, for the layouts whose head is part of the
        // model's output (hub models, open_clip, distilled, class-token-free and MAP models).
        if let w = mapping.head["head.weight"], w.shape.count == 2, w.shape[1] == arch.width,
            (hub != nil && hub?.source != .timm) || extraction.source == .openCLIP || arch.attentionPool
                || arch.distillationToken
                || !arch.classToken
        {
            arch.headFeatures = w.shape[0]
        }
        if let e = options.layerNormEpsilon { arch.layerNormEpsilon = e }
        var parameters: [String: Tensor<Float>] = [:]
        parameters.reserveCapacity(order.count)
        for key in order {
            guard let t = mapping.canonical[key] else { continue }
            parameters[key] = try t.floatTensor()
            t.releaseMappedPages()
        }
        // Hugging Face DINOv2 always interpolates its position table to the input (bicubic, antialiased, as timm's
        // resample_abs_pos_embed): run it at the crop its preprocessor publishes (the hub's 518 px table at 224).
        var targetSize = options.imageSize
        if targetSize == nil, let hub, ["dinov2", "dinov2_with_registers"].contains(hub.modelType ?? "") {
            targetSize = try hub.preprocessing()?.crop
        }
        if let size = targetSize, size != arch.imageSize {
            // transformers' Dinov2Model interpolates without antialiasing (its registers variant and timm with).
            let kernel: PositionTable.Kernel = hub?.modelType == "dinov2" ? .plain : .antialiased
            try PositionTable.resample(
                &parameters, architecture: &arch, imageSize: size, kernel: kernel, fileName: name)
        }
        self.file = name
        self.format = format
        self.source = extraction.source
        self.stateDictKey = extraction.key
        self.architecture = arch
        self.parameters = parameters
        self.parameterNames = order
        self.originalNames = mapping.originalNames
        self.head = mapping.head
        self.decoder = mapping.decoder
        self.ignored = mapping.ignored
        self.unexpectedKeys = mapping.unexpected
        self.missingKeys = missing
        self.extras = extraction.extras
        self.metadata = metadata
        self.fileTensorCount = allTensors.count
        self.fileTensorBytes = bytesByStorage.values.reduce(0, +)
        self.digest = digest
        self.files = files
        self.hub = hub
    }

    /// Appends every tensor reachable from `v` (bounded: values were already bounded by the unpickler).
    static func collectTensors(_ v: PickleValue, into out: inout [StoredTensor]) {
        switch v {
        case let .tensor(t): out.append(t)
        case let .tuple(xs), let .list(xs), let .set(xs): for x in xs { collectTensors(x, into: &out) }
        case let .dict(es): for e in es { collectTensors(e.value, into: &out) }
        case let .object(o):
            for x in o.args { collectTensors(x, into: &out) }
            for e in o.kwargs { collectTensors(e.value, into: &out) }
            if let s = o.state { collectTensors(s, into: &out) }
            for x in o.listItems { collectTensors(x, into: &out) }
            for e in o.dictItems { collectTensors(e.value, into: &out) }
        default: break
        }
    }
}

/// SHA-256 of mapped files, taken from creation on a background thread of the lowest priority (nice 19), so it
/// uses the time the cores would idle rather than taking it from the forward passes' threads. `hex()` takes over
/// whatever is left on the calling thread, at that thread's priority: a busy machine cannot starve a caller that
/// waits for it (it waits at most for the background thread to finish one piece of `chunk` bytes).
final class BackgroundDigest: @unchecked Sendable {
    private let files: [MappedFile]
    private let chunk: Int
    private let lock = NSLock()
    private let hasher = StreamingSHA256()
    /// Next bytes to hash: `files[file]` from `offset` (guarded by `lock`).
    private var file = 0, offset = 0
    private var digest: [UInt8]?
    /// Set by `hex()`: the background thread stops at its next piece.
    private let wanted = Atomic<Bool>(false)

    /// One file: its SHA-256. Shards: the SHA-256 of their bytes one after the other, in index order.
    /// - Parameter background: start the background thread (tests drive `step()` by hand instead).
    init(_ files: [MappedFile], chunk: Int = 1 << 18, background: Bool = true) {
        self.files = files
        self.chunk = max(chunk, 1)
        guard background else { return }
        let thread = Thread { [self] in
            #if os(Linux)
                // This thread only: Linux nice values are per thread.
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            #endif
            while !wanted.load(ordering: .relaxed) {
                lock.lock()
                let more = step()
                lock.unlock()
                if !more { break }
            }
        }
        thread.start()
    }

    /// Hashes the next piece; false once the digest is complete. Call with `lock` held.
    func step() -> Bool {
        guard digest == nil else { return false }
        guard file < files.count else {
            digest = hasher.finalize()
            return false
        }
        let f = files[file], n = min(chunk, f.count - offset)
        f.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[offset..<offset + n])) }
        offset += n
        if offset == f.count { file += 1; offset = 0 }
        return true
    }

    /// The lowercase hex digest (finishing it on this thread if the background thread has not).
    func hex() -> String {
        wanted.store(true, ordering: .relaxed)
        lock.lock()
        defer { lock.unlock() }
        while step() {}
        return SHA256.hex(digest!)
    }
}
