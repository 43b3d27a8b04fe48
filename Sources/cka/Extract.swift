import ArgumentParser
import CKAKit
import Foundation
import _CKASupport

extension CKACheckpoint.CheckpointSource: ExpressibleByArgument {}

/// Cleans up a partial output when the run is interrupted (Ctrl-C or `kill`): the handler only calls
/// the async-signal-safe `unlink` and `_exit`.
nonisolated(unsafe) private var partialOutputPath: UnsafeMutablePointer<CChar>?

func removePartialOutputOnInterrupt(_ finalPath: String) {
    partialOutputPath = strdup(AtomicOutput(path: finalPath).temporaryPath)
    let handler: @convention(c) (Int32) -> Void = { sig in
        if let p = partialOutputPath { unlink(p) }
        _exit(128 + sig)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
}

extension CKACommand {
    struct Extract: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a ViT checkpoint over images and store every layer's activations, pooled features or Grams.",
            discussion: """
            Loads an official checkpoint unchanged (DINO, MoCo-v3, MAE, RC-MAE, timm, DINOv2; .pth/.pth.tar or
            .safetensors; pickles are never executed), runs the model on CPU and writes an activation store.

            --store chooses what is written for the hook points selected by --layers:
              activations  /activations/<layer> [N, T, C] for token layers (large: ViT-B block output is 0.6 MB/image)
              pooled       /activations/blocks.{i}:cls|gap|gap_nocls [N, D] (and norm:…) — small, for k-NN and probes
              grams        /grams/<layer> [N/b, b, b]: per-minibatch Grams for 'cka compare' without the activations
              pixels       /inputs/pixels, the preprocessed network input
              logits       /logits [N, C] of the released classifier, for 'cka agreement' (class-folder labels too):
                           the checkpoint's head (timm, MoCo-v3 linear-eval, MAE finetuned) or, with --head,
                           DINO's linear weights file (last blocks and average pooling follow from its width;
                           override with --head-last-blocks, --head-avgpool). No head, or one that does not
                           fit the model: one-line error, nothing written.
            Hook points (timm names): patch_embed, blocks.{i}.norm1, .attn.qkv, .attn.proj, .ls1, .norm2, .mlp.fc1,
            .mlp.act, .mlp.fc2, .ls2, blocks.{i} (block output), norm. Example:
              cka extract --checkpoint dino_vitbase16_pretrain.pth --images val/ --out dino.h5 \\
                --layers 'blocks.*.norm1,blocks.*.attn.qkv,blocks.*.mlp.fc1,blocks.*' --store grams,pooled
              cka extract --checkpoint dino_vitbase16_pretrain.pth --head dino_vitbase16_linearweights.pth \\
                --images val/ --out dino-logits.h5 --store logits
              cka extract --checkpoint linear-vit-b-300ep.pth.tar --images val/ --out moco-logits.h5 --store logits
              cka agreement dino-logits.h5 moco-logits.h5
            """)

        @Option(help: "Checkpoint file (.pth, .pth.tar, .safetensors).")
        var checkpoint: String

        @Option(help: "Checkpoint layout (default: detected): \(CheckpointSource.allCases.map(\.rawValue).joined(separator: ", ")).")
        var source: CheckpointSource?

        @Option(name: .customLong("random-init"), help: "Use a randomly initialised model (timm's init, this seed) with the checkpoint's architecture: the untrained baseline.")
        var randomInit: UInt64?

        @Option(name: .customLong("random-layer-scale"), help: "LayerScale γ of a --random-init model (timm/DINOv2: 1e-5, which leaves every residual branch nearly off; 1 makes them count).")
        var randomLayerScale: Float = 1e-5

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

        @Option(help: "What to store: any of activations, pooled, grams, pixels, logits (comma-separated).")
        var store = "pooled,grams"

        @Option(help: "DINO's linear classifier weights (e.g. dino_vitbase16_linearweights.pth) for --store logits (default: the checkpoint's own head).")
        var head: String?

        @Option(name: .customLong("head-last-blocks"), help: "Blocks whose class tokens the --head classifier reads (eval_linear.py --n_last_blocks; default: from the weight width).")
        var headLastBlocks: Int?

        @Option(name: .customLong("head-avgpool"), help: "Whether the --head classifier also reads the mean patch token (eval_linear.py --avgpool_patchtokens: true/false; default: from the weight width).")
        var headAvgpool: Bool?

        @Option(name: .customLong("gram-batch-size"), help: "Examples per stored Gram (consecutive in output order).")
        var gramBatchSize = 32

        @Option(name: .customLong("gram-tokens"), help: "Token reduction before the Grams: flatten, cls, gap, gap_nocls.")
        var gramTokens: TokenReduction = .flatten

        @Option(help: "Examples per forward pass.")
        var batchSize = 32

        @Option(help: "Use at most this many inputs (in order).")
        var limit: Int?

        @Option(help: "Float type of stored activations: float32 or float16.")
        var dtype = "float32"

        @Option(help: "Model name recorded in the file (default: the checkpoint's file name).")
        var model: String?

        @Option(help: "Preprocessing preset (default: the checkpoint's method): dino, mocov3, mae, timm-augreg, dinov2.")
        var preprocessing: String?

        @Flag(help: "Fail on the first unreadable image instead of skipping it with a warning.")
        var strict = false

        @Flag(help: "No progress messages.")
        var quiet = false

        func validate() throws {
            if (images == nil) == (inputs == nil) { throw ValidationError("give exactly one of --images DIR or --inputs FILE.h5") }
            if dtype != "float32" && dtype != "float16" { throw ValidationError("--dtype must be float32 or float16") }
            if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
            let s = try selection()
            if head != nil && !s.contains(.logits) { throw ValidationError("--head is used by --store logits only") }
            if (headLastBlocks != nil || headAvgpool != nil) && head == nil {
                throw ValidationError("--head-last-blocks / --head-avgpool describe a DINO linear file given with --head")
            }
            if let n = headLastBlocks, n < 1 { throw ValidationError("--head-last-blocks must be at least 1") }
        }

        func selection() throws -> StoreSelection {
            var s: StoreSelection = []
            for part in store.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
                switch part {
                case "activations": s.insert(.activations)
                case "pooled": s.insert(.pooled)
                case "grams": s.insert(.grams)
                case "pixels": s.insert(.pixels)
                case "logits": s.insert(.logits)
                default: throw ValidationError("--store: unknown '\(part)' (use activations, pooled, grams, pixels, logits)")
                }
            }
            if s.isEmpty { throw ValidationError("--store is empty") }
            return s
        }

        func run() throws {
            try reportingErrors {
                var copts = Checkpoint.Options(source: source, heads: heads)
                copts.computeSHA256 = true
                let ckpt = try Checkpoint(contentsOf: URL(fileURLWithPath: checkpoint), options: copts)
                let model = try randomInit.map { try VisionTransformer.randomlyInitialized(ckpt.architecture, seed: $0, layerScaleInit: randomLayerScale) }
                    ?? VisionTransformer(checkpoint: ckpt)
                var options = ExtractionOptions()
                options.layers = globs(layers)
                options.store = try selection()
                if options.store.contains(.logits) {   // built before the output is created: a bad head writes nothing
                    options.head = try head.map {
                        try ClassifierHead(dinoLinearFile: URL(fileURLWithPath: $0), model: model, lastBlocks: headLastBlocks,
                                           averagePatchTokens: headAvgpool)
                    } ?? ClassifierHead(checkpoint: ckpt)
                }
                options.batchSize = batchSize
                options.gramBatchSize = gramBatchSize
                options.gramTokens = gramTokens
                options.elementType = dtype == "float16" ? .float16 : .float32
                options.modelName = model_ ?? randomInit.map { "\(ActivationExtractor.modelName(for: ckpt))-random-init-seed\($0)" }
                if let seed = randomInit {
                    options.attributes["random_init_seed"] = .int(Int(truncatingIfNeeded: seed))
                    if ckpt.architecture.layerScale { options.attributes["random_init_layer_scale"] = .double(Double(randomLayerScale)) }
                }
                removePartialOutputOnInterrupt(out)
                let line = ProgressLine("extract", quiet: quiet)
                let report: (CKAProgress) -> Void = { p in
                    line.update(p, detail: String(format: "%.1f img/s", p.perSecond ?? 0))
                }
                let summary: ExtractionSummary
                if let inputs {
                    var source = try PixelStoreInput(path: inputs, limit: limit)
                    summary = try ActivationExtractor.run(model: model, checkpoint: ckpt, input: &source, to: out,
                                                          options: options, progress: report)
                } else {
                    var source = try imageInput(for: ckpt, size: model.imageSize)
                    summary = try ActivationExtractor.run(model: model, checkpoint: ckpt, input: &source, to: out,
                                                          options: options, progress: report)
                }
                for w in summary.warnings { note("warning: \(w)") }
                if !summary.skipped.isEmpty {
                    note("warning: skipped \(summary.skipped.count) unreadable input(s):")
                    for s in summary.skipped.prefix(20) { note("  \(s)") }
                }
                print("\(out): \(summary.examples) inputs, \(summary.layers) layers stored, \(summary.gramLayers) with Grams"
                      + (summary.logitClassCount.map { ", /logits [\(summary.examples), \($0)] (\(options.head?.readout.kind ?? ""))" } ?? "") + " "
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
        try ImageFolderInput(root: images!, preprocessing: evalTransform(for: ckpt, size: size, preset: preprocessing),
                             batchSize: batchSize, limit: limit, strict: strict)
    }
}

/// The checkpoint method's evaluation transform at the model's input size, or the `--preprocessing` preset.
func evalTransform(for ckpt: Checkpoint, size: Int, preset: String?) throws -> Preprocessing {
    guard let name = preset else { return try ImageFolderInput.defaultPreprocessing(for: ckpt.source, imageSize: size) }
    guard let p = Preprocessing.preset(named: name) else {
        throw ValidationError("--preprocessing: unknown preset '\(name)' (\(Preprocessing.presets.map(\.name).joined(separator: ", ")))")
    }
    return p.crop == size ? p : try p.with(crop: size)
}
