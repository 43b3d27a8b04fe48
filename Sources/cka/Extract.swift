import ArgumentParser
import CKAKit
import Foundation
import _CKASupport

extension CKACheckpoint.CheckpointSource: ExpressibleByArgument {}
extension CKACheckpoint.MLPActivation: ExpressibleByArgument {}

/// Cleans up a partial output when the run is interrupted (Ctrl-C or `kill`), or when a memory-mapped input
/// (the checkpoint, whose float32 weights are read from the file during the run) is truncated under it (SIGBUS,
/// with one line saying so): the handlers only call the async-signal-safe `write`, `unlink` and `_exit`.
nonisolated(unsafe) private var partialOutputPath: UnsafeMutablePointer<CChar>?
nonisolated(unsafe) private var busErrorMessage: UnsafeMutablePointer<CChar>?

func removePartialOutputOnInterrupt(_ finalPath: String, checkpoint: String? = nil) {
    partialOutputPath = strdup(AtomicOutput(path: finalPath).temporaryPath)
    busErrorMessage = strdup(
        "error: \(checkpoint ?? "a checkpoint"): the file was truncated while in use (its weights are read from it "
            + "during the run); no output written\n")
    let handler: @convention(c) (Int32) -> Void = { sig in
        if let p = partialOutputPath { unlink(p) }
        _exit(128 + sig)
    }
    let busHandler: @convention(c) (Int32) -> Void = { sig in
        if let m = busErrorMessage { _ = write(2, m, strlen(m)) }
        if let p = partialOutputPath { unlink(p) }
        _exit(128 + sig)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
    signal(SIGBUS, busHandler)
}

extension CKACommand {
    struct Extract: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a ViT over images; store its layers' activations, pooled features or Grams.",
            discussion: """
                Loads an official checkpoint unchanged (DINO, MoCo-v3, MAE, RC-MAE, timm, \
                DINOv2; .pth, .pth.tar or .safetensors; pickles are never executed), or a \
                Hugging Face model directory (ViT, DeiT, DINOv2 with registers, CLIP, \
                SigLIP) or open_clip state dict, runs the model on the CPU and writes an \
                activation store (docs/formats.md §1).

                Hook points (timm module paths): patch_embed, norm_pre, blocks.{i}.norm1, \
                .attn.qkv, .attn.proj, .ls1, .norm2, .mlp.fc1, .mlp.act, .mlp.fc2, .ls2, \
                blocks.{i} (block output), norm, and per model fc_norm, attn_pool (MAP \
                head), head (the model's head: logits, CLIP's image projection). \
                --layers takes globs over them ('blocks.*').

                --store chooses what is written for the selected hook points:
                  activations  /activations/<layer> [N, T, C] of token layers
                               (large: a ViT-B block output is 0.6 MB per image)
                  pooled       /activations/blocks.{i}:cls|gap|gap_nocls [N, D], and
                               norm:… (small; for k-NN and probes)
                  grams        /grams/<layer> [N/b, b, b]: per-minibatch Grams, so
                               'cka compare' needs no activations
                  pixels       /inputs/pixels, the preprocessed network input
                  logits       /logits [N, C] of the released classifier, for
                               'cka agreement': the checkpoint's head (timm, MoCo-v3
                               linear-eval, MAE finetuned) or DINO's linear weights
                               given with --head (--head-last-blocks and
                               --head-avgpool override what its width implies)

                Examples:
                  cka extract --checkpoint dino_vitbase16_pretrain.pth \\
                    --images val/ --out dino.h5 --store grams,pooled \\
                    --layers 'blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*'
                  cka extract --checkpoint dino_vitbase16_pretrain.pth \\
                    --head dino_vitbase16_linearweights.pth \\
                    --images val/ --out dino-logits.h5 --store logits
                  cka extract --checkpoint linear-vit-b-300ep.pth.tar \\
                    --images val/ --out moco-logits.h5 --store logits
                  cka agreement dino-logits.h5 moco-logits.h5
                """)

        @Option(
            help:
                "Checkpoint file (.pth, .pth.tar, .safetensors, .bin) or a Hugging Face / open_clip model directory.")
        var checkpoint: String

        @Option(help: "Checkpoint layout (default: detected).")
        var source: CheckpointSource?

        @Option(
            name: .customLong("random-init"),
            help:
                "Use a randomly initialised model (timm's init, this seed) with the checkpoint's architecture: the untrained baseline."
        )
        var randomInit: UInt64?

        @Option(
            name: .customLong("random-layer-scale"),
            help:
                "LayerScale γ of a --random-init model (timm/DINOv2: 1e-5, which leaves every residual branch nearly off; 1 makes them count)."
        )
        var randomLayerScale: Float = 1e-5

        @Option(
            name: .customLong("image-size"),
            help:
                "Input size in pixels (default: the checkpoint's); the position table is resampled as timm's resample_abs_pos_embed does."
        )
        var imageSize: Int?

        @Option(
            help:
                "MLP nonlinearity: gelu, gelu_tanh, quick_gelu (OpenAI CLIP). Default: the layout's (HF config.json hidden_act; a timm hub config.json's act_layer or architecture; open_clip_config.json quick_gelu); a bare timm state dict does not record it: gelu, as timm runs its SigLIP models, but timm's SigLIP 2 models (act_layer gelu_tanh, e.g. vit_so400m_patch16_siglip_256) need --activation gelu_tanh."
        )
        var activation: MLPActivation?

        @Option(help: "Attention heads (default: from the width: 192→3, 384→6, 768→12, 1024→16).")
        var heads: Int?

        @Option(help: "A folder of images: class subfolders (ImageFolder, labels stored) or a flat folder.")
        var images: String?

        @Option(help: "An HDF5 file with preprocessed /inputs/pixels [N, 3, H, W] and /inputs/ids.")
        var inputs: String?

        @Option(help: "The activation store to write.")
        var out: String

        @Option(help: "Comma-separated globs over hook names (default: all).")
        var layers: String?

        @Option(help: "What to store (comma-separated).")
        var store = StoreList(argument: "pooled,grams")!

        @Option(
            help:
                "DINO's linear classifier weights (e.g. dino_vitbase16_linearweights.pth) for --store logits (default: the checkpoint's own head)."
        )
        var head: String?

        @Option(
            name: .customLong("head-last-blocks"),
            help:
                "Blocks whose class tokens the --head classifier reads (eval_linear.py --n_last_blocks; default: from the weight width)."
        )
        var headLastBlocks: Int?

        @Option(
            name: .customLong("head-avgpool"),
            help:
                "Whether the --head classifier also reads the mean patch token (eval_linear.py --avgpool_patchtokens: true/false; default: from the weight width)."
        )
        var headAvgpool: Bool?

        @Option(name: .customLong("gram-batch-size"), help: "Examples per stored Gram (consecutive in output order).")
        var gramBatchSize = 32

        @Option(
            name: .customLong("gram-tokens"), help: "Token reduction before the Grams: flatten, cls, gap, gap_nocls.")
        var gramTokens: TokenReduction = .flatten

        @Option(help: "Examples per forward pass.")
        var batchSize = 32

        @Option(help: "Use at most this many inputs (in order).")
        var limit: Int?

        @Option(help: "Float type of stored activations: float32 or float16.")
        var dtype = StoredDType.float32

        @Option(help: "Model name recorded in the file (default: the checkpoint's file name).")
        var model: String?

        @Option(
            help:
                "Preprocessing preset (default: the checkpoint's method, or a hub model's preprocessor_config.json): dino, mocov3, mae, timm-augreg, dinov2, clip, siglip, deit."
        )
        var preprocessing: PreprocessingPreset?

        @Flag(help: "Fail on the first unreadable image instead of skipping it with a warning.")
        var strict = false

        @Flag(help: "No progress messages.")
        var quiet = false

        @OptionGroup var parallel: ThreadOptions

        func validate() throws {
            if (images == nil) == (inputs == nil) {
                throw ValidationError("give exactly one of --images DIR or --inputs FILE.h5")
            }
            if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
            let s = try selection()
            if head != nil && !s.contains(.logits) { throw ValidationError("--head is used by --store logits only") }
            if (headLastBlocks != nil || headAvgpool != nil) && head == nil {
                throw ValidationError(
                    "--head-last-blocks / --head-avgpool describe a DINO linear file given with --head")
            }
            if let n = headLastBlocks, n < 1 { throw ValidationError("--head-last-blocks must be at least 1") }
        }

        func selection() throws -> StoreSelection { store.selection }

        func run() throws {
            try reportingErrors {
                parallel.apply()
                try OutputPlan.check(inputs: [checkpoint, head, inputs], outputs: [out])
                var copts = Checkpoint.Options(source: source, heads: heads)
                copts.activation = activation
                copts.imageSize = imageSize
                copts.computeSHA256 = world.isRoot  // recorded by rank 0, the writer
                let ckpt = try Checkpoint(contentsOf: URL(fileURLWithPath: checkpoint), options: copts)
                let model =
                    try randomInit.map {
                        try VisionTransformer.randomlyInitialized(
                            ckpt.architecture, seed: $0, layerScaleInit: randomLayerScale)
                    }
                    ?? VisionTransformer(checkpoint: ckpt)
                var options = ExtractionOptions()
                options.layers = globs(layers)
                options.store = try selection()
                if options.store.contains(.logits) {  // built before the output is created: a bad head writes nothing
                    options.head =
                        try head.map {
                            try ClassifierHead(
                                dinoLinearFile: URL(fileURLWithPath: $0), model: model, lastBlocks: headLastBlocks,
                                averagePatchTokens: headAvgpool)
                        } ?? ClassifierHead(checkpoint: ckpt)
                }
                options.batchSize = batchSize
                options.gramBatchSize = gramBatchSize
                options.gramTokens = gramTokens
                options.elementType = dtype.elementType
                options.modelName =
                    model_ ?? randomInit.map { "\(ActivationExtractor.modelName(for: ckpt))-random-init-seed\($0)" }
                if let seed = randomInit {
                    options.attributes["random_init_seed"] = .int(Int(truncatingIfNeeded: seed))
                    if ckpt.architecture.layerScale {
                        options.attributes["random_init_layer_scale"] = .double(Double(randomLayerScale))
                    }
                }
                if world.isRoot { removePartialOutputOnInterrupt(out, checkpoint: checkpoint) }
                let line = ProgressLine("extract", quiet: quiet || !world.isRoot)
                let report: (CKAProgress) -> Void = { p in
                    line.update(p, detail: String(format: "%.1f img/s", p.perSecond ?? 0))
                }
                // Under mpirun the inputs are split over the ranks and rank 0 writes the store (DistributedExtraction).
                func extract(_ source: inout some RangedInputSource) throws -> ExtractionSummary? {
                    guard world.isDistributed else {
                        return try ActivationExtractor.run(
                            model: model, checkpoint: ckpt, input: &source, to: out,
                            options: options, progress: report)
                    }
                    return try DistributedExtraction.run(
                        model: model, checkpoint: ckpt, input: source, to: out, options: options,
                        communicator: world, progress: report)
                }
                let result: ExtractionSummary?
                if let inputs {
                    var source = try PixelStoreInput(path: inputs, limit: limit)
                    result = try extract(&source)
                } else {
                    var source = try imageInput(for: ckpt, size: model.imageSize)
                    result = try extract(&source)
                }
                guard let summary = result else { return }
                for w in summary.warnings { note("warning: \(w)") }
                if !summary.skipped.isEmpty {
                    note("warning: skipped \(summary.skipped.count) unreadable input(s):")
                    for s in summary.skipped.prefix(20) { note("  \(s)") }
                }
                print(
                    "\(out): \(summary.examples) inputs, \(summary.layers) layers stored, \(summary.gramLayers) with Grams"
                        + (summary.logitClassCount.map {
                            ", /logits [\(summary.examples), \($0)] (\(options.head?.readout.kind ?? ""))"
                        } ?? "") + " "
                        + "(\(ckpt.source.rawValue) \(ckpt.architecture.timmName), \(String(format: "%.1f", summary.seconds)) s, "
                        + "\(String(format: "%.1f", Double(summary.examples) / max(summary.seconds, 1e-9))) img/s)")
            }
        }

        var model_: String? { model }
    }
}

extension CKACommand.Extract {
    /// The image source with the checkpoint's evaluation transform (or `--preprocessing`).
    func imageInput(for ckpt: Checkpoint, size: Int) throws -> ImageFolderInput {
        try ImageFolderInput(
            root: images!, preprocessing: evalTransform(for: ckpt, size: size, preset: preprocessing),
            batchSize: batchSize, limit: limit, strict: strict)
    }
}

/// The checkpoint method's evaluation transform at the model's input size, or the `--preprocessing` preset.
func evalTransform(for ckpt: Checkpoint, size: Int, preset: PreprocessingPreset?) throws -> Preprocessing {
    guard let p = preset?.preprocessing else {
        return try ImageFolderInput.defaultPreprocessing(for: ckpt, imageSize: size)
    }
    return p.crop == size ? p : try p.with(crop: size)
}
