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
                Evaluates L(θ₀ + α·dx + β·dy) over a grid (Li et al. 2018): dx, dy are seeded N(0,1) directions, \
                filter-normalised (every output row/filter rescaled to the norm of the weights' filter), with biases, \
                LayerNorm and LayerScale zeroed ('biasbn'). Fixed sin-cos position tables (MAE, RC-MAE, MoCo-v3 \
                pos_embed; decoder_pos_embed) are not perturbed unless --include-fixed; the command says which. \
                Losses (forward only, as the official code computes them):
                  mae    MAE reconstruction loss on masked patches (norm-pix targets unless
                         --no-norm-pix-loss); needs a checkpoint with the decoder
                         (mae_pretrain_vit_base_full.pth, mae_visualize_vit_base.pth, a Hugging
                         Face ViTMAEForPreTraining directory: decoder heads and norm_pix_loss
                         from config.json)
                  rcmae  RC-MAE: reconstruction + γ·consistency to the EMA teacher (--teacher;
                         same masks), the teacher held at its weights, the student moved
                  ce     cross-entropy and top-1 accuracy of the checkpoint's linear head (timm,
                         MoCo-v3 linear, MAE finetuned), DINO's linear weights or one of our
                         probes (--head); labels from class folders or /inputs/labels
                Each image has one mask for the whole grid: seeded (--mask-seed, default --seed) or --masks F.h5 \
                (/masks [N, patches] uint8, 1 = masked, e.g. another surface). Images get the method's eval transform. \
                The store (formats.md §3) is rewritten atomically after every grid point; rerunning the same command \
                resumes where it stopped. Directions are saved to --directions (default OUT.directions.h5) and reused \
                when that file exists. When the grid is complete, the store gets curvature and convex-area statistics \
                (see 'cka landscape-stats'), the largest Hessian eigenvalue over the perturbed parameters (power \
                iteration with finite-difference Hessian-vector products of backpropagated gradients), and with \
                --flatness-radius the average flatness.
                  cka landscape --checkpoint mae_pretrain_vit_base_full.pth --loss mae \\
                    --images val/ --examples 64 --grid -1:1:21 --out mae-surface.h5
                  cka landscape-plot mae-surface.h5
                With --from A --to B instead of --checkpoint, the 1-D path θ(t) = (1 − t)·θ_A + t·θ_B over the \
                parameters both checkpoints share (LayerNorm included, no normalisation; Goodfellow et al. 2015); \
                tensors of one side only are listed and held. The store is 1-D with t as its axis:
                  cka landscape --from mae_pretrain_vit_base.pth \\
                    --to mae_finetuned_vit_base.pth --loss ce --images val/ \\
                    --examples 64 --grid -0.25:1.25:31 --out mae-path.h5
                With --pca-of C1 C2 … the plane is that of a training trajectory ending at --checkpoint (Li et al. §7, as \
                loss-landscape's setup_PCA_directions): the first two principal directions (unit vectors) of the \
                centred differences Cᵢ − checkpoint over the perturbed tensors (1-D tensors left out with --ignore \
                biasbn), computed in the N×N Gram form. The grid is in parameter-norm units around the checkpoint; \
                the store keeps each direction's explained variance ratio and every checkpoint's coordinates, and \
                landscape-plot draws the trajectory over the contours:
                  cka landscape --checkpoint epoch_100.pth --pca-of epoch_0.pth \\
                    epoch_25.pth epoch_50.pth epoch_75.pth --loss ce --images val/ \\
                    --grid -2:2:41 --out trajectory.h5
                With --curvature-map every grid point also gets the extreme eigenvalues λ_min, λ_max of the Hessian over \
                the perturbed parameters (one Lanczos run of --curvature-steps central-difference Hessian-vector \
                products, step --hessian-step·‖θ‖) and |λ_min/λ_max| (Li et al.'s convexity map; the cost is printed \
                first); landscape-plot draws it as OUT-curvature.png.
                """)

        @Option(help: "Checkpoint whose loss landscape is drawn (the RC-MAE student).")
        var checkpoint: String?

        @Option(
            help:
                "Path mode: the start A of the path θ(t) = (1 − t)·θ_A + t·θ_B over the parameters both share (with --to; instead of --checkpoint)."
        )
        var from: String?

        @Option(
            help:
                "Path mode: the end B of the path (the objective is built from B, or from A when B lacks the MAE decoder)."
        )
        var to: String?

        @Option(
            name: .customLong("pca-of"), parsing: .upToNextOption,
            help:
                "Trajectory plane: checkpoints of a training run (at least 3); the plane of the first two principal directions of their differences to --checkpoint (the final one)."
        )
        var pcaOf: [String] = []

        @OptionGroup var objective: ObjectiveOptions

        @Option(help: "Number of examples the loss averages over (see --pick).")
        var examples = 64

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

        @Flag(
            name: .customLong("curvature-map"),
            help:
                "Also store |λ_min/λ_max| of the Hessian at every grid point (Li et al.'s convexity map), by Lanczos (--curvature-steps Hessian-vector products a point)."
        )
        var curvatureMap = false

        @Option(
            name: .customLong("curvature-steps"),
            help: "Lanczos steps of the curvature map (full re-orthogonalisation; start vector seeded by --seed).")
        var curvatureSteps = 20

        @Option(name: .customLong("max-points"), help: "Stop after this many new grid points (resume later).")
        var maxPoints: Int?

        @Option(help: "The landscape store to write (resumed if it exists with the same settings).")
        var out: String

        @Flag(help: "No progress messages.")
        var quiet = false

        @OptionGroup var parallel: ThreadOptions

        func validate() throws {
            if (checkpoint == nil) == (from == nil && to == nil) || (from == nil) != (to == nil) {
                throw ValidationError("give --checkpoint, or --from A and --to B for a path between two checkpoints")
            }
            if !pcaOf.isEmpty && (checkpoint == nil || dims != 2) {
                throw ValidationError(
                    "--pca-of makes a plane around --checkpoint: give --checkpoint, not --from/--to or --dims 1")
            }
            if !pcaOf.isEmpty && pcaOf.count < 3 {
                throw ValidationError(
                    "--pca-of needs at least 3 checkpoints (their centred differences span N − 1 dimensions)")
            }
            if curvatureMap && (from != nil || curvatureSteps < 2) {
                throw ValidationError("--curvature-map needs --checkpoint (not a path) and --curvature-steps ≥ 2")
            }
            if from != nil && yGrid != nil {
                throw ValidationError("a path between checkpoints is 1-D (its axis is t): leave out --y-grid")
            }
            if dims != 1 && dims != 2 { throw ValidationError("--dims must be 1 or 2") }
            if examples < 1 { throw ValidationError("--examples must be at least 1") }
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
                try OutputPlan.check(
                    inputs: [checkpoint, from, to] + objective.inputFiles + pcaOf.map { Optional($0) }, outputs: [out])
                if world.isRoot { removePartialOutputOnInterrupt(out, checkpoint: checkpoint ?? to) }
                var settings = objective.objective(checkpoint: checkpoint ?? to ?? "", seed: seed)
                let key = objective.checkpointKey
                var path: (from: Checkpoint, to: Checkpoint)?
                if let from, let to {
                    let a = try settings.load(from, key: key), b = try settings.load(to, key: key)
                    path = (a, b)
                    // The objective from B, or from A when only A has the MAE decoder the loss needs.
                    if objective.loss != .ce && b.decoder.isEmpty && !a.decoder.isEmpty { settings.checkpoint = from }
                }
                let ckpt =
                    try path.map { settings.checkpoint == from ? $0.from : $0.to }
                    ?? settings.load(settings.checkpoint, key: key)
                let teacherCkpt = try objective.loadTeacher(settings)
                let examples = try objective.examples(self.examples, for: ckpt)
                var o = LandscapeRun.Options(objective: settings, out: out)
                o.grid = grid
                o.yGrid = yGrid
                o.dims = dims
                o.seed = seed
                o.normalization = normalization
                o.ignore = ignore
                o.perturb = perturb.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
                o.includeFixed = includeFixed
                o.directions = directions
                o.flatnessRadii = try radii()
                o.flatnessSamples = flatnessSamples
                o.hessianIterations = hessianIterations
                o.hessianStep = hessianStep
                o.curvatureSteps = curvatureMap ? curvatureSteps : 0
                o.maxPoints = maxPoints
                o.pick = objective.pick
                o.model = objective.model ?? ActivationExtractor.modelName(for: ckpt)
                o.quiet = quiet
                if let from, let to { o.pathNames = (from, to) }
                o.pcaOf = pcaOf
                do {
                    try LandscapeRun(
                        options: o, checkpoint: ckpt, teacher: teacherCkpt, examples: examples, path: path
                    ).run(
                        split: RankLandscapeSplit(world), log: note, output: { print($0) })
                } catch let e as LandscapeError {
                    if case .unknownGroup = e { throw ValidationError("--perturb: \(e)") }
                    throw e
                }
            }
        }
    }
}

extension DirectionNormalization: ExpressibleByArgument {}
