import ArgumentParser
import CKAKit
import Foundation
import _CKASupport

extension CKACommand {
    struct Landscape: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Loss landscape around a checkpoint: MAE / RC-MAE pre-training loss or cross-entropy on a 1-D or 2-D grid.",
            discussion: """
                Evaluates L(θ₀ + α·dx + β·dy) over a grid (Li et al. 2018): dx, dy are seeded N(0,1) directions,
                filter-normalised (every output row/filter rescaled to the norm of the weights' filter), with biases,
                LayerNorm and LayerScale zeroed ('biasbn'). Fixed sin-cos position tables (MAE, RC-MAE, MoCo-v3
                pos_embed; decoder_pos_embed) are not perturbed unless --include-fixed; the command says which.
                Losses (forward only, as the official code computes them):
                  mae     MAE reconstruction loss on masked patches (norm-pix targets unless --no-norm-pix-loss);
                          needs a checkpoint with the decoder (mae_pretrain_vit_base_full.pth, mae_visualize_vit_base.pth)
                  rcmae   RC-MAE: reconstruction + γ·consistency to the EMA teacher (--teacher; same masks), the
                          teacher held at its weights, the student moved
                  ce      cross-entropy and top-1 accuracy of the checkpoint's linear head (timm, MoCo-v3 linear,
                          MAE finetuned), DINO's linear weights or one of our probes (--head); labels from class folders
                          or /inputs/labels
                Each image has one mask for the whole grid: seeded (--mask-seed, default --seed) or --masks F.h5
                (/masks [N, patches] uint8, 1 = masked, e.g. another surface). Images get the method's eval transform.
                The store (formats.md §3) is rewritten atomically after every grid point; rerunning the same command
                resumes where it stopped. Directions are saved to --directions (default OUT.directions.h5) and reused
                when that file exists. When the grid is complete, the store gets curvature and convex-area statistics
                (see 'cka landscape-stats'), the largest Hessian eigenvalue over the perturbed parameters (power
                iteration with finite-difference Hessian-vector products of backpropagated gradients), and with
                --flatness-radius the average flatness.
                  cka landscape --checkpoint mae_pretrain_vit_base_full.pth --loss mae --images val/ \\
                    --examples 64 --grid -1:1:21 --out mae-surface.h5
                  cka landscape-plot mae-surface.h5
                """)

        @Option(help: "Checkpoint whose loss landscape is drawn (the RC-MAE student).")
        var checkpoint: String

        @Option(
            name: .customLong("checkpoint-key"),
            help: "Wrapper entry of --checkpoint holding the weights (e.g. student).")
        var checkpointKey: String?

        @Option(help: "RC-MAE: the EMA teacher checkpoint (may be the same file with --teacher-key teacher).")
        var teacher: String?

        @Option(name: .customLong("teacher-key"), help: "Wrapper entry of --teacher holding the weights.")
        var teacherKey: String?

        @Option(help: "Checkpoint layout (default: detected).")
        var source: CheckpointSource?

        @Option(help: "The objective.")
        var loss: LandscapeLoss

        @Option(
            help:
                "The linear head for --loss ce instead of the checkpoint's: DINO's dino_vitbase16_linearweights.pth, or a probe of norm:cls saved by 'cka probe --save' (.h5)."
        )
        var head: String?

        @Option(help: "A folder of images (class subfolders give labels).")
        var images: String?

        @Option(help: "An HDF5 file with preprocessed /inputs/pixels and /inputs/ids (and /inputs/labels).")
        var inputs: String?

        @Option(help: "Number of examples the loss averages over (see --pick).")
        var examples = 64

        @Option(
            help: "Which examples: spread (N evenly spaced over the inputs, every class of a sorted folder) or first.")
        var pick = ExamplePick.spread

        @Option(name: .customLong("batch-size"), help: "Examples per forward pass.")
        var batchSize = 32

        @Option(parsing: .unconditional, help: "Grid of α (and of β unless --y-grid): MIN:MAX:NUM, e.g. -1:1:51.")
        var grid = "-1:1:51"

        @Option(name: .customLong("y-grid"), parsing: .unconditional, help: "Grid of β (default: as --grid).")
        var yGrid: String?

        @Option(help: "1 for a line, 2 for a plane.")
        var dims = 2

        @Option(help: "Seed of the directions (dx: SEED, dy: SEED+1).")
        var seed: UInt64 = 0

        @Option(help: "Direction normalisation: filter, layer or none.")
        var normalization: DirectionNormalization = .filter

        @Option(help: "1-D tensors (biases, norms, LayerScale): biasbn = zero in the directions, none = move them too.")
        var ignore = IgnoredParameters.biasbn

        @Option(
            help: "Parameter groups to perturb, comma-separated: encoder, decoder (mae/rcmae), head (ce). Default: all."
        )
        var perturb: String?

        @Flag(name: .customLong("include-fixed"), help: "Also perturb fixed sin-cos position tables.")
        var includeFixed = false

        @Option(help: "Direction file: read if it exists, else written (default: OUT without .h5 + .directions.h5).")
        var directions: String?

        @Option(name: .customLong("mask-ratio"), help: "MAE mask ratio.")
        var maskRatio = 0.75

        @Option(name: .customLong("mask-seed"), help: "Seed of the per-image masks (default: --seed).")
        var maskSeed: UInt64?

        @Option(help: "Masks to use: an HDF5 file with /masks [N, patches] uint8 (1 = masked).")
        var masks: String?

        @Flag(
            name: .customLong("no-norm-pix-loss"),
            help: "Raw-pixel targets (mae_visualize_vit_base.pth was trained so).")
        var noNormPixLoss = false

        @Option(help: "RC-MAE weight γ of the consistency term.")
        var gamma = 1.0

        @Option(
            name: .customLong("flatness-radius"),
            help: "Comma-separated radii of the average-flatness estimate (e.g. 0.05,0.1).")
        var flatnessRadius: String?

        @Option(name: .customLong("flatness-samples"), help: "Random perturbations per flatness radius.")
        var flatnessSamples = 8

        @Option(
            name: .customLong("hessian-iterations"),
            help:
                "Power iterations for the largest Hessian eigenvalue (two gradients each, a gradient costing a few forward passes; 0 = skip)."
        )
        var hessianIterations = 10

        @Option(
            name: .customLong("hessian-step"),
            help: "Finite-difference step of the Hessian-vector products, relative to ‖θ‖.")
        var hessianStep = 1e-5

        @Option(name: .customLong("max-points"), help: "Stop after this many new grid points (resume later).")
        var maxPoints: Int?

        @Option(help: "Preprocessing preset (default: the checkpoint's method).")
        var preprocessing: PreprocessingPreset?

        @Option(
            help:
                "Model name recorded in the store and shown in plot titles (default: from the checkpoint's file name).")
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

        @Option(help: "The landscape store to write (resumed if it exists with the same settings).")
        var out: String

        @Flag(help: "No progress messages.")
        var quiet = false

        @OptionGroup var parallel: ThreadOptions

        func validate() throws {
            if (images == nil) == (inputs == nil) {
                throw ValidationError("give exactly one of --images DIR or --inputs FILE.h5")
            }
            if loss == .rcmae && teacher == nil {
                throw ValidationError("--loss rcmae needs --teacher (the EMA teacher checkpoint)")
            }
            if loss != .ce && head != nil { throw ValidationError("--head is for --loss ce") }
            if dims != 1 && dims != 2 { throw ValidationError("--dims must be 1 or 2") }
            if examples < 1 || batchSize < 1 { throw ValidationError("--examples and --batch-size must be at least 1") }
            if !(0..<1).contains(maskRatio) { throw ValidationError("--mask-ratio must be in [0, 1)") }
            if let maxPoints, maxPoints < 1 { throw ValidationError("--max-points must be at least 1") }
            if flatnessSamples < 1 { throw ValidationError("--flatness-samples must be at least 1") }
            if hessianIterations < 0 || !(hessianStep > 0) {
                throw ValidationError("--hessian-iterations must be ≥ 0 and --hessian-step positive")
            }
            _ = try radii()
            do { _ = try GridAxis(parsing: grid); _ = try yGrid.map { try GridAxis(parsing: $0) } } catch {
                throw ValidationError("\(error)")
            }
        }

        func radii() throws -> [Double] {
            guard let flatnessRadius else { return [] }
            let r = flatnessRadius.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !r.isEmpty, r.allSatisfy({ $0 != nil && $0! > 0 }) else {
                throw ValidationError("--flatness-radius takes comma-separated positive numbers, e.g. 0.05,0.1")
            }
            return r.map { $0! }
        }

        func run() throws {
            try reportingErrors {
                parallel.apply()
                // Under mpirun every rank sets up the same objective and directions; rank 0 hands out the grid
                // points and alone writes files and speaks.
                let quiet = self.quiet || !world.isRoot
                try OutputPlan.check(inputs: [checkpoint, teacher, head, inputs, masks], outputs: [out])
                if world.isRoot { removePartialOutputOnInterrupt(out) }
                func load(_ path: String, key: String?) throws -> Checkpoint {
                    var o = Checkpoint.Options(source: source, heads: heads, checkpointKey: key)
                    o.computeSHA256 = false
                    let c = try Checkpoint(contentsOf: URL(fileURLWithPath: path), options: o)
                    // Head counts the checkpoint's saved args state win over the guess from the width.
                    guard heads == nil, let saved = savedHeadCounts(c).encoder, saved != c.architecture.heads else {
                        return c
                    }
                    o.heads = saved
                    return try Checkpoint(contentsOf: URL(fileURLWithPath: path), options: o)
                }
                let directionGuard = DirectionFileGuard(surfacePath: out)
                let ckpt = try load(checkpoint, key: checkpointKey)
                let teacherCkpt = try teacher.map { try load($0, key: teacherKey) }
                let size = VisionTransformerSize(ckpt.architecture)

                // The fixed examples.
                let (batches, ids) = try readExamples(ckpt, imageSize: size.imageSize)
                var attributes: [String: HDF5AttributeValue] = [
                    "loss": .string(loss.rawValue),
                    "checkpoint": .string(URL(fileURLWithPath: checkpoint).lastPathComponent),
                    "normalization": .string(normalization.rawValue), "ignore": .string(ignore.rawValue),
                    "seed": .int(Int(truncatingIfNeeded: seed)), "n_examples": .int(ids.count),
                    "pick": .string(pick.rawValue),
                    "directions_seeds": .ints(
                        [Int(truncatingIfNeeded: seed), Int(truncatingIfNeeded: seed &+ 1)].prefix(dims).map { $0 }),
                    "source": .string(ckpt.source.rawValue), "architecture": .string(ckpt.architecture.timmName),
                    "heads": .int(ckpt.architecture.heads),
                    "model": .string(model ?? ActivationExtractor.modelName(for: ckpt)),
                    "created_by": .string("cka \(toolkitVersion)"),
                ]
                if let teacher { attributes["teacher"] = .string(URL(fileURLWithPath: teacher).lastPathComponent) }

                // The loss.
                let objective: any LandscapeObjective
                let groups: [String: [String]]
                var maskRows: [UInt8] = []
                if loss == .ce {
                    let h =
                        try head.map { path in
                            path.hasSuffix(".h5")
                                ? try ProbeHead.load(path, architecture: ckpt.architecture)
                                : try ClassifierHead(
                                    dinoLinearFile: URL(fileURLWithPath: path),
                                    model: VisionTransformer(checkpoint: ckpt))
                        } ?? ClassifierHead(checkpoint: ckpt)
                    let o = try CrossEntropyLandscapeObjective(checkpoint: ckpt, head: h, batches: batches)
                    attributes["head"] = .string(
                        "\(h.readout.kind) (\(URL(fileURLWithPath: h.file).lastPathComponent))")
                    objective = o
                    groups = o.groups
                } else {
                    let patches = size.patchCount
                    let maskList: [MAEMask]
                    if let masks {
                        maskList = try readMasks(masks, ids: ids, patches: patches)
                        attributes["masks_from"] = .string(URL(fileURLWithPath: masks).lastPathComponent)
                    } else {
                        maskList = try MAEMask.random(
                            images: ids.count, patches: patches, ratio: maskRatio, seed: maskSeed ?? seed)
                        attributes["mask_seed"] = .int(Int(truncatingIfNeeded: maskSeed ?? seed))
                    }
                    attributes["mask_ratio"] = .double(Double(maskList.first?.maskedCount ?? 0) / Double(patches))
                    attributes["norm_pix_loss"] = .bool(!noNormPixLoss)
                    if loss == .rcmae { attributes["gamma"] = .double(gamma) }
                    var withMasks: [LandscapeBatch] = []
                    var start = 0
                    for var b in batches {
                        let n = b.pixels.shape[0]
                        b.masks = Array(maskList[start..<start + n])
                        start += n
                        withMasks.append(b)
                    }
                    maskRows = maskList.flatMap(\.mask)
                    let dh = decoderHeads ?? savedHeadCounts(ckpt).decoder
                    let o = try MAELandscapeObjective(
                        checkpoint: ckpt, teacher: teacherCkpt, batches: withMasks,
                        normPixLoss: !noNormPixLoss, gamma: gamma, decoderHeads: dh)
                    attributes["decoder_heads"] = .int(try o.decoderHeadCount())
                    objective = o
                    groups = o.groups
                }

                // What moves.
                let chosen =
                    try perturb.map { list in
                        try list.split(separator: ",").map { g -> String in
                            let name = g.trimmingCharacters(in: .whitespaces)
                            guard groups[name] != nil else {
                                throw ValidationError(
                                    "--perturb: '\(name)' is not a part of the \(loss.rawValue) loss (\(groups.keys.sorted().joined(separator: ", ")))"
                                )
                            }
                            return name
                        }
                    } ?? groups.keys.sorted()
                var perturbed = Set(chosen.flatMap { groups[$0]! })
                let excluded = includeFixed ? [] : objective.fixedParameters.keys.filter(perturbed.contains).sorted()
                perturbed.subtract(excluded)
                attributes["perturbed"] = .strings(chosen)
                attributes["excluded"] = .strings(excluded.isEmpty ? ["none"] : excluded)
                let weights = objective.center.restricted(to: perturbed)
                if !quiet {
                    note(
                        "landscape: \(loss.rawValue) loss over \(ids.count) examples; perturbing \(chosen.joined(separator: "+")): "
                            + "\(weights.names.count) tensors, \(weights.scalarCount) parameters")
                    for name in excluded { note("  not perturbed: \(name) — \(objective.fixedParameters[name]!)") }
                }

                // Directions: reuse the saved ones, or draw and save them.
                let directionPath =
                    directions ?? ((out.hasSuffix(".h5") ? String(out.dropLast(3)) : out) + ".directions.h5")
                var dirs: [ParameterSet]
                if !world.isRoot { world.barrier() }  // rank 0 writes the directions first; the others read them
                let recipe: [String: HDF5AttributeValue] = [
                    "seed": .int(Int(truncatingIfNeeded: seed)), "normalization": .string(normalization.rawValue),
                    "ignore": .string(ignore.rawValue), "checkpoint": attributes["checkpoint"]!,
                ]
                if FileManager.default.fileExists(atPath: directionPath) {
                    let (read, attrs) = try DirectionFile.read(directionPath, like: objective.center)
                    for (k, v) in recipe where attrs[k]?.normalized != v.normalized {
                        throw LandscapeError.mismatch(
                            file: directionPath, what: "'\(k)'", expected: "\(v) (this run)",
                            got: attrs[k].map { "\($0)" } ?? "missing")
                    }
                    guard read.count >= dims, Set(read[0].names) == perturbed else {
                        throw LandscapeError.mismatch(
                            file: directionPath, what: "the directions",
                            expected: "\(dims) over the \(weights.names.count) perturbed tensors",
                            got: "\(read.count) over \(read.first?.names.count ?? 0) tensors")
                    }
                    dirs = Array(read.prefix(dims))
                    if !quiet { note("landscape: directions from \(directionPath)") }
                } else {
                    dirs = (0..<dims).map { k in
                        FilterNormalizedDirections.random(
                            like: weights, seed: seed &+ UInt64(k), normalization: normalization,
                            ignoreBiasAndNorm: ignore == .biasbn)
                    }
                    try DirectionFile.write(dirs, attributes: recipe, to: directionPath)
                    directionGuard.written = directionPath
                    if !quiet { note("landscape: directions saved to \(directionPath)") }
                }
                if world.isRoot { world.barrier() }
                attributes["directions"] = .string(URL(fileURLWithPath: directionPath).lastPathComponent)

                // The surface, resumed if it exists.
                let xAxis = try GridAxis(parsing: grid), yAxis = try GridAxis(parsing: yGrid ?? grid)
                var surface = LandscapeSurface(
                    x: xAxis.coordinates, y: dims == 2 ? yAxis.coordinates : nil, ids: ids, attributes: attributes)
                if !maskRows.isEmpty { surface.masks = maskRows; surface.patchCount = size.patchCount }
                if FileManager.default.fileExists(atPath: out) {
                    let stored = try LandscapeSurface(contentsOf: out)
                    if let conflict = surface.resumeConflict(with: stored) {
                        throw LandscapeError.invalidArgument(
                            "\(out) exists with other settings (\(conflict)); remove it or choose another --out")
                    }
                    surface.adoptPoints(of: stored)
                    if !quiet {
                        note("landscape: resuming \(out): \(stored.completedCount) of \(stored.done.count) points done")
                    }
                }
                let run = SurfaceEvaluation(objective: objective, directions: dirs)
                let line = ProgressLine("landscape", quiet: quiet)
                var estimated = false
                let report: SurfaceEvaluation.Progress = { done, total, v, seconds in
                    if !estimated && !quiet {
                        // Cost, measured on the first point: the points left × its time, and at the job's rank count.
                        estimated = true
                        let left = Double(total - done + 1), r = Double(world.size)
                        note(
                            String(
                                format:
                                    "landscape: cost estimate: %.0f points × %.2f s = %.0f s on one process; %.0f s on %d ranks (at most; --threads per rank: %d)",
                                left, seconds, left * seconds, left * seconds / r, world.size, blasThreadCount))
                    }
                    line.update(
                        CKAProgress(
                            done: done, total: total,
                            unit: String(format: "points, last %.4g in %.1f s", v.loss, seconds)))
                }
                if world.isDistributed {
                    // The flatness samples and the Hessian run on rank 0 after the grid; the other ranks stop here.
                    guard
                        let s = try DistributedLandscape.evaluate(
                            run, surface: surface, savingTo: out, maxPoints: maxPoints,
                            communicator: world, progress: report)
                    else {
                        // Rank 1 computes half of each Hessian-vector product; the other ranks are done.
                        guard DistributedHessian.shareDecision(false, communicator: world), world.rank == 1,
                            let differentiable = objective as? any DifferentiableLandscapeObjective
                        else { return }
                        _ = try HessianEigenvalue(
                            objective: differentiable, parameters: perturbed, maxIterations: hessianIterations,
                            relativeStep: hessianStep, seed: seed &+ 2000,
                            gradientPair: DistributedHessian.gradientPair(
                                differentiable, parameters: perturbed,
                                communicator: world))
                        return
                    }
                    surface = s
                } else {
                    surface = try run.evaluate(surface, savingTo: out, maxPoints: maxPoints, progress: report)
                }
                guard surface.completedCount == surface.done.count else {
                    _ = DistributedHessian.shareDecision(false, communicator: world)
                    print(
                        "\(out): \(surface.completedCount) of \(surface.done.count) points (stopped by --max-points; rerun to resume)"
                    )
                    return
                }

                // Numbers of the complete surface.
                let r = try radii()
                if !r.isEmpty
                    && surface.attributes["flatness_radius"]?.normalized != HDF5AttributeValue.doubles(r).normalized
                {
                    var means: [Double] = [], errors: [Double] = []
                    for radius in r {
                        let f = try AverageFlatness(
                            objective: objective, perturbed: perturbed, radius: radius, samples: flatnessSamples,
                            seed: seed &+ 1000, normalization: normalization, ignoreBiasAndNorm: ignore == .biasbn)
                        means.append(f.meanIncrease)
                        errors.append(f.standardError)
                        if !quiet {
                            note(
                                String(
                                    format: "landscape: average flatness at radius %g: +%.6g ± %.2g", radius,
                                    f.meanIncrease, f.standardError))
                        }
                    }
                    surface.attributes["flatness_radius"] = .doubles(r)
                    surface.attributes["flatness_mean_increase"] = .doubles(means)
                    surface.attributes["flatness_standard_error"] = .doubles(errors)
                    surface.attributes["flatness_samples"] = .int(flatnessSamples)
                    surface.attributes["flatness_seed"] = .int(Int(truncatingIfNeeded: seed &+ 1000))
                }
                let runHessian =
                    hessianIterations > 0 && objective is any DifferentiableLandscapeObjective
                    && (surface.attributes["hessian_max_eigenvalue"] == nil
                        || surface.attributes["hessian_step_relative"]?.normalized != .double(hessianStep))
                if DistributedHessian.shareDecision(runHessian, communicator: world),
                    let differentiable = objective as? any DifferentiableLandscapeObjective
                {
                    let h = try HessianEigenvalue(
                        objective: differentiable, parameters: perturbed, maxIterations: hessianIterations,
                        relativeStep: hessianStep, seed: seed &+ 2000,
                        gradientPair: DistributedHessian.gradientPair(
                            differentiable, parameters: perturbed,
                            communicator: world)
                    ) { it, lambda in
                        if !quiet {
                            note(String(format: "landscape: Hessian power iteration %d: λ = %.6g", it, lambda))
                        }
                    }
                    for (k, v) in h.attributes { surface.attributes[k] = v }
                    surface.attributes["hessian_step_relative"] = .double(hessianStep)
                    surface.attributes["hessian_seed"] = .int(Int(truncatingIfNeeded: seed &+ 2000))
                }
                if let st = try? LandscapeStatistics(surface: surface) {
                    for (k, v) in st.attributes { surface.attributes[k] = v }
                    print(
                        String(
                            format: "%@: %d points, centre loss %.6g, curvature %@, convex area %.4g",
                            out, surface.done.count, st.centerLoss,
                            st.curvature.map { String(format: "%.4g", $0) }.joined(separator: " / "), st.convexArea))
                } else {
                    print("\(out): \(surface.done.count) points")
                }
                try surface.write(to: out)
            }
        }

        /// The first `examples` inputs as batches of `batchSize`, with their ids (and labels for ce).
        func readExamples(_ ckpt: Checkpoint, imageSize: Int) throws -> ([LandscapeBatch], [String]) {
            var batches: [LandscapeBatch] = []
            var ids: [String] = []
            func collect(_ source: inout some InputSource) throws {
                // The examples: the first N, or N spread evenly over the inputs (index ⌊i·total/N⌋), which for a
                // class-sorted image folder gives every class.
                let total = source.expectedCount ?? examples
                let chosen =
                    pick == .first || total <= examples
                    ? Set(0..<examples)
                    : Set((0..<examples).map { $0 * total / examples })
                var index = 0, rows: [(id: String, label: Int, pixels: Tensor<Float>)] = []
                func flush() throws {
                    guard let first = rows.first else { return }
                    var pixels = Tensor<Float>(shape: [rows.count] + Array(first.pixels.shape.dropFirst()))
                    for (k, r) in rows.enumerated() { try pixels.setRows(k..<k + 1, from: r.pixels) }
                    batches.append(LandscapeBatch(pixels: pixels, labels: loss == .ce ? rows.map(\.label) : []))
                    rows = []
                }
                while ids.count < examples, let b = try source.next(maxCount: batchSize) {
                    for i in 0..<b.ids.count {
                        defer { index += 1 }
                        guard chosen.contains(index), ids.count < examples else { continue }
                        ids.append(b.ids[i])
                        rows.append((b.ids[i], b.labels[i], b.pixels.rows(i..<i + 1)))
                        if rows.count == batchSize { try flush() }
                    }
                }
                try flush()
                for s in source.skipped { note("warning: skipped \(s.id): \(s.reason)") }
            }
            if let inputs {
                var s = try PixelStoreInput(path: inputs, limit: pick == .first ? examples : nil)
                try collect(&s)
            } else {
                var s = try ImageFolderInput(
                    root: images!, preprocessing: evalTransform(for: ckpt, size: imageSize, preset: preprocessing),
                    batchSize: batchSize, limit: pick == .first ? examples : nil)
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
            return (batches, ids)
        }

        /// Masks from `/masks` [N, patches] of an HDF5 file, checked against the examples.
        func readMasks(_ path: String, ids: [String], patches: Int) throws -> [MAEMask] {
            let f = try HDF5File(path: path)
            let d = try f.dataset("masks")
            guard d.shape.count == 2, d.shape[1] == patches, d.shape[0] >= ids.count else {
                throw LandscapeError.mismatch(
                    file: path, what: "/masks", expected: "[≥\(ids.count), \(patches)]", got: "\(d.shape)")
            }
            if f.exists("inputs/ids") {
                let stored = try f.readStrings("inputs/ids")
                guard Array(stored.prefix(ids.count)) == ids else {
                    throw LandscapeError.mismatch(
                        file: path, what: "/inputs/ids", expected: "the examples of this run, in order",
                        got: "other examples")
                }
            }
            let rows = try d.readUInt8()
            return try (0..<ids.count).map { i in
                try MAEMask(maskRow: rows[(i * patches)..<((i + 1) * patches)].map { $0 != 0 })
            }
        }
    }
}

/// The input geometry of a checkpoint's model.
struct VisionTransformerSize {
    let imageSize: Int
    let patchCount: Int
    init(_ a: ViTArchitecture) {
        let side = a.imageSize ?? (a.gridSize ?? 14) * a.patchSize
        imageSize = side
        patchCount = (side / a.patchSize) * (side / a.patchSize)
    }
}

extension DirectionNormalization: ExpressibleByArgument {}
