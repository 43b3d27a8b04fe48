import ArgumentParser
import CKAKit
import Foundation
import _CKASupport

/// The objective and its examples, shared by `cka landscape` and `cka hessian`: the loss, the checkpoint's
/// wrapper entries, the RC-MAE teacher, the CE head, the inputs and the MAE masks.
struct ObjectiveOptions: ParsableArguments {
    @Option(help: "The objective.")
    var loss: LandscapeLoss

    @Option(
        name: .customLong("checkpoint-key"),
        help: "Wrapper entry of the checkpoint holding the weights (e.g. student).")
    var checkpointKey: String?

    @Option(help: "RC-MAE: the EMA teacher checkpoint (may be the same file with --teacher-key teacher).")
    var teacher: String?

    @Option(name: .customLong("teacher-key"), help: "Wrapper entry of --teacher holding the weights.")
    var teacherKey: String?

    @Option(help: "Checkpoint layout (default: detected).")
    var source: CheckpointSource?

    @Option(
        help:
            "The linear head for --loss ce instead of the checkpoint's: DINO's dino_vitbase16_linearweights.pth, or a probe of norm:cls saved by 'cka probe --save' (.h5)."
    )
    var head: String?

    @Option(help: "A folder of images (class subfolders give labels).")
    var images: String?

    @Option(help: "An HDF5 file with preprocessed /inputs/pixels and /inputs/ids (and /inputs/labels).")
    var inputs: String?

    @Option(
        help: "Which examples: spread (N evenly spaced over the inputs, every class of a sorted folder) or first.")
    var pick = ExamplePick.spread

    @Option(name: .customLong("batch-size"), help: "Examples per forward pass.")
    var batchSize = 32

    @Option(name: .customLong("mask-ratio"), help: "MAE mask ratio.")
    var maskRatio = 0.75

    @Option(name: .customLong("mask-seed"), help: "Seed of the per-image masks (default: --seed).")
    var maskSeed: UInt64?

    @Option(help: "Masks to use: an HDF5 file with /masks [N, patches] uint8 (1 = masked), e.g. an earlier output.")
    var masks: String?

    @Flag(
        inversion: .prefixedNo,
        help:
            "Normalised target patches (default: on; a Hugging Face ViTMAE directory: its config.json norm_pix_loss); --no-norm-pix-loss: raw-pixel targets (mae_visualize_vit_base.pth was trained so)."
    )
    var normPixLoss: Bool?

    @Option(help: "RC-MAE weight γ of the consistency term.")
    var gamma = 1.0

    @Option(help: "Preprocessing preset (default: the checkpoint's method).")
    var preprocessing: PreprocessingPreset?

    @Option(
        help: "Model name recorded in the output and shown in plot titles (default: from the checkpoint's file name).")
    var model: String?

    @Option(
        help:
            "Encoder attention heads (default: the checkpoint's saved args, else from the width: 192→3, 384→6, 768→12, 1024→16)."
    )
    var heads: Int?

    @Option(
        name: .customLong("decoder-heads"),
        help: "MAE decoder attention heads (default: the checkpoint's saved args, else width/32).")
    var decoderHeads: Int?

    func validate() throws {
        if (images == nil) == (inputs == nil) {
            throw ValidationError("give exactly one of --images DIR or --inputs FILE.h5")
        }
        if loss == .rcmae && teacher == nil {
            throw ValidationError("--loss rcmae needs --teacher (the EMA teacher checkpoint)")
        }
        if loss != .ce && head != nil { throw ValidationError("--head is for --loss ce") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if !(0..<1).contains(maskRatio) { throw ValidationError("--mask-ratio must be in [0, 1)") }
    }

    /// The files these options read, for `OutputPlan.check`.
    var inputFiles: [String?] { [teacher, head, inputs, masks] }

    /// The objective settings for `checkpoint`; the masks are seeded by `--mask-seed`, else by `seed`.
    func objective(checkpoint: String, seed: UInt64) -> LandscapeObjectiveOptions {
        var o = LandscapeObjectiveOptions(loss: loss, checkpoint: checkpoint)
        o.checkpointKey = checkpointKey
        o.teacher = teacher
        o.teacherKey = teacherKey
        o.source = source
        o.heads = heads
        o.decoderHeads = decoderHeads
        o.head = head
        o.maskRatio = maskRatio
        o.maskSeed = maskSeed ?? seed
        o.masks = masks
        o.normPixLoss = normPixLoss
        o.gamma = gamma
        return o
    }

    /// The RC-MAE teacher, if any.
    func loadTeacher(_ objective: LandscapeObjectiveOptions) throws -> Checkpoint? {
        try teacher.map { try objective.load($0, key: teacherKey) }
    }

    /// `count` examples of `--images` or `--inputs` as batches of `--batch-size`, with their ids (and labels for
    /// ce): the first N, or N spread evenly over the inputs (index ⌊i·total/N⌋), which for a class-sorted image
    /// folder gives every class.
    func examples(_ count: Int, for ckpt: Checkpoint) throws -> LandscapeExamples {
        let imageSize = VisionTransformerSize(ckpt.architecture).imageSize
        var batches: [LandscapeBatch] = []
        var ids: [String] = []
        let loss = loss, pick = pick, batchSize = batchSize
        func collect(_ source: inout some InputSource) throws {
            let total = source.expectedCount ?? count
            let chosen =
                pick == .first || total <= count
                ? Set(0..<count)
                : Set((0..<count).map { $0 * total / count })
            var index = 0, rows: [(id: String, label: Int, pixels: Tensor<Float>)] = []
            func flush() throws {
                guard let first = rows.first else { return }
                var pixels = Tensor<Float>(shape: [rows.count] + Array(first.pixels.shape.dropFirst()))
                for (k, r) in rows.enumerated() { try pixels.setRows(k..<k + 1, from: r.pixels) }
                batches.append(LandscapeBatch(pixels: pixels, labels: loss == .ce ? rows.map(\.label) : []))
                rows = []
            }
            while ids.count < count, let b = try source.next(maxCount: batchSize) {
                for i in 0..<b.ids.count {
                    defer { index += 1 }
                    guard chosen.contains(index), ids.count < count else { continue }
                    ids.append(b.ids[i])
                    rows.append((b.ids[i], b.labels[i], b.pixels.rows(i..<i + 1)))
                    if rows.count == batchSize { try flush() }
                }
            }
            try flush()
            for s in source.skipped { note("warning: skipped \(s.id): \(s.reason)") }
        }
        if let inputs {
            var s = try PixelStoreInput(path: inputs, limit: pick == .first ? count : nil)
            try collect(&s)
        } else {
            var s = try ImageFolderInput(
                root: images!, preprocessing: evalTransform(for: ckpt, size: imageSize, preset: preprocessing),
                batchSize: batchSize, limit: pick == .first ? count : nil)
            try collect(&s)
        }
        guard !ids.isEmpty else {
            throw LandscapeError.invalidArgument("no usable examples in \(images ?? inputs ?? "")")
        }
        if loss == .ce, let bad = batches.flatMap(\.labels).firstIndex(where: { $0 < 0 }) {
            throw LandscapeError.invalidArgument(
                "\(images ?? inputs ?? ""): example \(ids[bad]) has no label; --loss ce needs class folders or /inputs/labels"
            )
        }
        return LandscapeExamples(batches: batches, ids: ids)
    }
}
