import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation
import _CKASupport

/// The objective of a landscape: which loss is drawn.
public enum LandscapeLoss: String, Sendable, CaseIterable {
    /// MAE's masked-patch reconstruction loss.
    case mae
    /// RC-MAE: reconstruction plus consistency with the EMA teacher.
    case rcmae
    /// Cross-entropy of a linear head on the labels.
    case ce
}

/// Which inputs a landscape loss averages over.
public enum ExamplePick: String, Sendable, CaseIterable {
    /// N examples evenly spaced over the inputs (every class of a sorted folder).
    case spread
    /// The first N inputs.
    case first
}

/// Which parameters random directions leave at zero.
public enum IgnoredParameters: String, Sendable, CaseIterable {
    /// 1-D tensors (biases, norms, LayerScale) stay put.
    case biasbn
    /// Every parameter moves.
    case none
}

/// The fixed examples a landscape loss averages over: batches of normalised pixels (with labels for
/// cross-entropy) and their ids, in order.
public struct LandscapeExamples: Sendable {
    public var batches: [LandscapeBatch]
    public var ids: [String]

    public init(batches: [LandscapeBatch], ids: [String]) {
        self.batches = batches
        self.ids = ids
    }
}

/// The input geometry of a checkpoint's model.
package struct VisionTransformerSize {
    package let imageSize: Int
    package let patchCount: Int
    package init(_ a: ViTArchitecture) {
        let side = a.imageSize ?? (a.gridSize ?? 14) * a.patchSize
        imageSize = side
        patchCount = (side / a.patchSize) * (side / a.patchSize)
    }
}

/// The settings of a landscape objective (`cka landscape`, `cka hessian`): the loss, its checkpoints and head,
/// the MAE masks.
public struct LandscapeObjectiveOptions: Sendable {
    public var loss: LandscapeLoss
    /// The checkpoint whose loss is taken (the RC-MAE student), and its wrapper entry.
    public var checkpoint: String
    public var checkpointKey: String?
    /// RC-MAE's EMA teacher and its wrapper entry.
    public var teacher: String?
    public var teacherKey: String?
    /// Checkpoint layout (nil: detected).
    public var source: CheckpointSource?
    /// Encoder and MAE decoder attention heads (nil: saved arguments, else from the width).
    public var heads: Int?
    public var decoderHeads: Int?
    /// Cross-entropy: a DINO linear-weights file or a probe (.h5) instead of the checkpoint's head.
    public var head: String?
    public var maskRatio = 0.75
    /// Seed of the per-image MAE masks.
    public var maskSeed: UInt64 = 0
    /// Masks to use instead: an HDF5 file with `/masks [N, patches]` uint8.
    public var masks: String?
    /// Normalise each target patch (MAE's `--norm_pix_loss`); nil: a Hugging Face ViTMAE config's `norm_pix_loss`,
    /// else true (the released MAE models were trained with it).
    public var normPixLoss: Bool?
    /// RC-MAE weight γ of the consistency term.
    public var gamma = 1.0

    public init(loss: LandscapeLoss, checkpoint: String) {
        self.loss = loss
        self.checkpoint = checkpoint
    }

    /// Loads a checkpoint; head counts the checkpoint's saved `args` state win over the guess from the width.
    public func load(_ path: String, key: String?) throws -> Checkpoint {
        var o = Checkpoint.Options(source: source, heads: heads, checkpointKey: key)
        o.computeSHA256 = false
        let c = try Checkpoint(contentsOf: URL(fileURLWithPath: path), options: o)
        guard heads == nil, let saved = savedHeadCounts(c).encoder, saved != c.architecture.heads else {
            return c
        }
        o.heads = saved
        return try Checkpoint(contentsOf: URL(fileURLWithPath: path), options: o)
    }
}

/// A landscape objective built from `LandscapeObjectiveOptions` and the examples: the loss, its parameter groups,
/// the masks it holds fixed and the store attributes that describe it.
public struct LandscapeObjectiveSetup {
    public let objective: any LandscapeObjective
    /// Parameter groups of the loss (`encoder`, `decoder`, `head`).
    public let groups: [String: [String]]
    /// The masks as rows of `[N, patchCount]` (1 = masked); empty for cross-entropy.
    public let maskRows: [UInt8]
    public let patchCount: Int
    /// `head`, `masks_from` or `mask_seed`, `mask_ratio`, `norm_pix_loss`, `gamma`, `decoder_heads`.
    public let attributes: [String: HDF5AttributeValue]

    public init(
        _ o: LandscapeObjectiveOptions, checkpoint ckpt: Checkpoint, teacher: Checkpoint?,
        examples: LandscapeExamples
    ) throws {
        var attributes: [String: HDF5AttributeValue] = [:]
        let size = VisionTransformerSize(ckpt.architecture)
        patchCount = size.patchCount
        if o.loss == .ce {
            let h =
                try o.head.map { path in
                    path.hasSuffix(".h5")
                        ? try ProbeHead.load(path, architecture: ckpt.architecture)
                        : try ClassifierHead(
                            dinoLinearFile: URL(fileURLWithPath: path), model: VisionTransformer(checkpoint: ckpt))
                } ?? ClassifierHead(checkpoint: ckpt)
            let c = try CrossEntropyLandscapeObjective(checkpoint: ckpt, head: h, batches: examples.batches)
            attributes["head"] = .string("\(h.readout.kind) (\(URL(fileURLWithPath: h.file).lastPathComponent))")
            objective = c
            groups = c.groups
            maskRows = []
        } else {
            let patches = size.patchCount
            let maskList: [MAEMask]
            if let masks = o.masks {
                maskList = try Self.readMasks(masks, ids: examples.ids, patches: patches)
                attributes["masks_from"] = .string(URL(fileURLWithPath: masks).lastPathComponent)
            } else {
                maskList = try MAEMask.random(
                    images: examples.ids.count, patches: patches, ratio: o.maskRatio, seed: o.maskSeed)
                attributes["mask_seed"] = .int(Int(truncatingIfNeeded: o.maskSeed))
            }
            attributes["mask_ratio"] = .double(Double(maskList.first?.maskedCount ?? 0) / Double(patches))
            let normPixLoss = o.normPixLoss ?? ckpt.hubNormPixLoss ?? true
            attributes["norm_pix_loss"] = .bool(normPixLoss)
            if o.loss == .rcmae { attributes["gamma"] = .double(o.gamma) }
            var withMasks: [LandscapeBatch] = []
            var start = 0
            for var b in examples.batches {
                let n = b.pixels.shape[0]
                b.masks = Array(maskList[start..<start + n])
                start += n
                withMasks.append(b)
            }
            maskRows = maskList.flatMap(\.mask)
            let dh = o.decoderHeads ?? savedHeadCounts(ckpt).decoder
            let m = try MAELandscapeObjective(
                checkpoint: ckpt, teacher: teacher, batches: withMasks,
                normPixLoss: normPixLoss, gamma: o.gamma, decoderHeads: dh)
            attributes["decoder_heads"] = .int(try m.decoderHeadCount())
            objective = m
            groups = m.groups
        }
        self.attributes = attributes
    }

    /// Masks from `/masks` [N, patches] of an HDF5 file, checked against the examples.
    public static func readMasks(_ path: String, ids: [String], patches: Int) throws -> [MAEMask] {
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

    /// The parameters of the chosen groups (all groups when nil), without the fixed ones unless `includeFixed`.
    /// - Throws: `LandscapeError.unknownGroup` for a group the loss does not have.
    public func parameters(groups chosen: [String]?, includeFixed: Bool) throws -> (
        groups: [String], parameters: Set<String>, excluded: [String]
    ) {
        let names =
            try chosen.map { list in
                try list.map { name -> String in
                    guard groups[name] != nil else {
                        throw LandscapeError.unknownGroup(
                            name: name, loss: objective.name, groups: groups.keys.sorted())
                    }
                    return name
                }
            } ?? groups.keys.sorted()
        var perturbed = Set(names.flatMap { groups[$0]! })
        let excluded = includeFixed ? [] : objective.fixedParameters.keys.filter(perturbed.contains).sorted()
        perturbed.subtract(excluded)
        return (names, perturbed, excluded)
    }
}

/// How a landscape run shares its work with other processes (the ranks of an MPI job); `SingleProcess` otherwise.
///
/// Every process runs the same `LandscapeRun`; process 0 (the root) alone writes files and speaks.
public protocol LandscapeWorkSplit {
    var rank: Int { get }
    var size: Int { get }
    /// Waits until every process arrives here.
    func barrier()
    /// The root: the surface with every point (or `maxPoints` new ones) done, written after each point.
    /// The other processes: nil, once the root has no point left for them.
    func evaluate(
        _ run: SurfaceEvaluation, surface: LandscapeSurface, savingTo path: String, maxPoints: Int?,
        progress: SurfaceEvaluation.Progress?
    ) throws -> LandscapeSurface?
    /// The root's `decision`, on every process (each calls this once after the grid).
    func shareDecision(_ decision: Bool) -> Bool
    /// How the processes share the gradients of the Hessian power iteration (nil: each computes them all).
    var gradients: (any GradientWorkSplit)? { get }
    /// Every process's values (task index → value; tasks are disjoint) merged on the root; nil elsewhere.
    func gather(_ values: [Int: Double]) throws -> [Int: Double]?
}

extension LandscapeWorkSplit {
    public var isRoot: Bool { rank == 0 }
    public var isDistributed: Bool { size > 1 }
}

/// One process does all the work.
public struct SingleProcess: LandscapeWorkSplit {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func barrier() {}
    public func evaluate(
        _ run: SurfaceEvaluation, surface: LandscapeSurface, savingTo path: String, maxPoints: Int?,
        progress: SurfaceEvaluation.Progress?
    ) throws -> LandscapeSurface? {
        try run.evaluate(surface, savingTo: path, maxPoints: maxPoints, progress: progress)
    }
    public func shareDecision(_ decision: Bool) -> Bool { decision }
    public var gradients: (any GradientWorkSplit)? { nil }
    public func gather(_ values: [Int: Double]) throws -> [Int: Double]? { values }
}

/// A whole `cka landscape` run: the objective, the directions (read or drawn and saved), the grid (resumed,
/// written after every point), then on the complete surface the average flatness, the largest Hessian eigenvalue
/// and the statistics.
///
/// ```swift
/// var options = LandscapeRun.Options(objective: .init(loss: .mae, checkpoint: "mae.pth"), out: "surface.h5")
/// options.grid = "-1:1:21"
/// try LandscapeRun(options: options, checkpoint: ckpt, teacher: nil, examples: examples).run()
/// ```
public struct LandscapeRun {
    /// The settings of a run (the options of `cka landscape`).
    public struct Options: Sendable {
        public var objective: LandscapeObjectiveOptions
        /// The store to write (resumed if it exists with the same settings).
        public var out: String
        /// Grids of α and β: `MIN:MAX:NUM`.
        public var grid = "-1:1:51"
        public var yGrid: String?
        /// 1 for a line, 2 for a plane.
        public var dims = 2
        /// Seed of the directions (dx: seed, dy: seed + 1).
        public var seed: UInt64 = 0
        public var normalization = DirectionNormalization.filter
        public var ignore = IgnoredParameters.biasbn
        /// Parameter groups to perturb (nil: all).
        public var perturb: [String]?
        /// Also perturb fixed sin-cos position tables.
        public var includeFixed = false
        /// Direction file: read if it exists, else written (nil: OUT without .h5 + .directions.h5).
        public var directions: String?
        /// Radii of the average-flatness estimate (none: skipped) and samples per radius.
        public var flatnessRadii: [Double] = []
        public var flatnessSamples = 8
        /// Power iterations of the largest Hessian eigenvalue (0: skipped) and the step relative to ‖θ‖.
        public var hessianIterations = 10
        public var hessianStep = 1e-5
        /// Also |λ_min/λ_max| of the Hessian at every grid point (`CurvatureMap`), by Lanczos with this many steps
        /// (0: no curvature map), with the step `hessianStep` and the start vector of seed + 3000.
        public var curvatureSteps = 0
        /// Stop after this many new grid points.
        public var maxPoints: Int?
        /// Recorded in the store: how the examples were picked, the model's name.
        public var pick = ExamplePick.spread
        public var model = ""
        public var quiet = false
        /// A path between two checkpoints instead of random directions: their file names, recorded in the store
        /// (the checkpoints themselves are given to `LandscapeRun.init`).
        public var pathNames: (from: String, to: String)?
        /// A trajectory plane instead of random directions: the checkpoints of the trajectory (the final one is
        /// `objective.checkpoint`), read one at a time (see `TrajectoryPlane`).
        public var pcaOf: [String] = []

        public init(objective: LandscapeObjectiveOptions, out: String) {
            self.objective = objective
            self.out = out
        }

        /// The direction file of the run.
        public var directionPath: String {
            directions ?? ((out.hasSuffix(".h5") ? String(out.dropLast(3)) : out) + ".directions.h5")
        }
    }

    public let options: Options
    public let checkpoint: Checkpoint
    public let teacher: Checkpoint?
    public let examples: LandscapeExamples
    /// The ends A and B of a checkpoint path (`Options.pathNames`), or nil for random directions.
    public let path: (from: Checkpoint, to: Checkpoint)?

    /// - Parameters:
    ///   - checkpoint: the checkpoint the objective is built from (for a path: B, or A when only A has what the
    ///     loss needs, such as the MAE decoder).
    ///   - path: the two ends of a path θ(t) = (1 − t)·θ_A + t·θ_B.
    public init(
        options: Options, checkpoint: Checkpoint, teacher: Checkpoint?, examples: LandscapeExamples,
        path: (from: Checkpoint, to: Checkpoint)? = nil
    ) {
        self.options = options
        self.checkpoint = checkpoint
        self.teacher = teacher
        self.examples = examples
        self.path = path
    }

    /// Runs the landscape on this process's share of `split`.
    /// - Parameters:
    ///   - log: progress messages and notes (stderr of the command); only the root speaks.
    ///   - output: the result line (stdout of the command).
    public func run(
        split: any LandscapeWorkSplit = SingleProcess(), log: @escaping (String) -> Void = { _ in },
        output: (String) -> Void = { _ in }
    ) throws {
        if let path { return try runPath(path, split: split, log: log, output: output) }
        let o = options, out = o.out, seed = o.seed, dims = o.dims
        let quiet = o.quiet || !split.isRoot
        let directionGuard = DirectionFileGuard(surfacePath: out)
        let ckpt = checkpoint
        var attributes: [String: HDF5AttributeValue] = [
            "loss": .string(o.objective.loss.rawValue),
            "checkpoint": .string(URL(fileURLWithPath: o.objective.checkpoint).lastPathComponent),
            "normalization": .string(o.normalization.rawValue), "ignore": .string(o.ignore.rawValue),
            "seed": .int(Int(truncatingIfNeeded: seed)), "n_examples": .int(examples.ids.count),
            "pick": .string(o.pick.rawValue),
            "directions_seeds": .ints(
                [Int(truncatingIfNeeded: seed), Int(truncatingIfNeeded: seed &+ 1)].prefix(dims).map { $0 }),
            "source": .string(ckpt.source.rawValue), "architecture": .string(ckpt.architecture.timmName),
            "heads": .int(ckpt.architecture.heads), "model": .string(o.model),
            "created_by": .string("cka \(toolkitVersion)"),
        ]
        if let teacher = o.objective.teacher {
            attributes["teacher"] = .string(URL(fileURLWithPath: teacher).lastPathComponent)
        }
        let isPCA = !o.pcaOf.isEmpty
        let pcaNames = o.pcaOf.map { URL(fileURLWithPath: $0).lastPathComponent }
        if isPCA {
            guard dims == 2 else { throw LandscapeError.invalidArgument("a --pca-of plane is 2-D: leave out --dims 1") }
            attributes["normalization"] = .string(DirectionNormalization.none.rawValue)
            attributes["pca_of"] = .strings(pcaNames)
            attributes["seed"] = nil
            attributes["directions_seeds"] = nil
        }

        // The loss.
        let setup = try LandscapeObjectiveSetup(o.objective, checkpoint: ckpt, teacher: teacher, examples: examples)
        let objective = setup.objective
        for (k, v) in setup.attributes { attributes[k] = v }

        // What moves.
        let (chosen, perturbed, excluded) = try setup.parameters(groups: o.perturb, includeFixed: o.includeFixed)
        attributes["perturbed"] = .strings(chosen)
        attributes["excluded"] = .strings(excluded.isEmpty ? ["none"] : excluded)
        let weights = objective.center.restricted(to: perturbed)
        if !quiet {
            log(
                "landscape: \(o.objective.loss.rawValue) loss over \(examples.ids.count) examples; perturbing \(chosen.joined(separator: "+")): "
                    + "\(weights.names.count) tensors, \(weights.scalarCount) parameters")
            for name in excluded { log("  not perturbed: \(name) — \(objective.fixedParameters[name]!)") }
        }

        // Directions: reuse the saved ones, or draw and save them.
        let directionPath = o.directionPath
        var dirs: [ParameterSet]
        if !split.isRoot { split.barrier() }  // the root writes the directions first; the others read them
        let recipe: [String: HDF5AttributeValue] =
            isPCA
            ? [
                "pca_of": .strings(pcaNames), "ignore": .string(o.ignore.rawValue),
                "checkpoint": attributes["checkpoint"]!,
            ]
            : [
                "seed": .int(Int(truncatingIfNeeded: seed)), "normalization": .string(o.normalization.rawValue),
                "ignore": .string(o.ignore.rawValue), "checkpoint": attributes["checkpoint"]!,
            ]
        /// The PCA results, kept in the direction file's attributes so a rerun that reads it has them.
        let pcaKeys = [
            "pca_explained_variance_ratio", "pca_explained_variance", "pca_singular_values", "pca_coordinates",
        ]
        var pcaResults: [String: HDF5AttributeValue] = [:]
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
            for k in pcaKeys where isPCA { pcaResults[k] = attrs[k] }
            if !quiet { log("landscape: directions from \(directionPath)") }
        } else if isPCA {
            // The root computes the plane and writes it; the other processes read it after the barrier.
            if !quiet { log("landscape: PCA of the differences of \(o.pcaOf.count) checkpoints to the final one") }
            let outURL = URL(fileURLWithPath: out)
            let plane = try TrajectoryPlane(
                final: weights, count: o.pcaOf.count, names: o.pcaOf, ignoreBiasAndNorm: o.ignore == .biasbn,
                scratch: outURL.deletingLastPathComponent().appendingPathComponent(
                    ".\(outURL.lastPathComponent).pca-\(getpid())"
                ).path
            ) { i in try Self.tensors(of: o.objective.load(o.pcaOf[i], key: o.objective.checkpointKey)) }
            dirs = plane.directions
            pcaResults = [
                "pca_explained_variance_ratio": .doubles(plane.explainedVarianceRatio),
                "pca_explained_variance": .doubles(plane.explainedVariance),
                "pca_singular_values": .doubles(plane.singularValues),
                "pca_coordinates": .doubles(plane.coordinates.flatMap { $0 }),
            ]
            try DirectionFile.write(dirs, attributes: recipe.merging(pcaResults) { a, _ in a }, to: directionPath)
            directionGuard.written = directionPath
            if !quiet { log("landscape: directions saved to \(directionPath)") }
        } else {
            dirs = (0..<dims).map { k in
                FilterNormalizedDirections.random(
                    like: weights, seed: seed &+ UInt64(k), normalization: o.normalization,
                    ignoreBiasAndNorm: o.ignore == .biasbn)
            }
            try DirectionFile.write(dirs, attributes: recipe, to: directionPath)
            directionGuard.written = directionPath
            if !quiet { log("landscape: directions saved to \(directionPath)") }
        }
        if split.isRoot { split.barrier() }
        attributes["directions"] = .string(URL(fileURLWithPath: directionPath).lastPathComponent)
        var trajectory: LandscapeTrajectory?
        if isPCA {
            guard case .doubles(let ratio)? = pcaResults["pca_explained_variance_ratio"],
                case .doubles(let flat)? = pcaResults["pca_coordinates"], flat.count == 2 * o.pcaOf.count
            else {
                throw LandscapeError.mismatch(
                    file: directionPath, what: "the PCA attributes", expected: "those of \(o.pcaOf.count) checkpoints",
                    got: "missing or of another length")
            }
            for k in pcaKeys where k != "pca_coordinates" { attributes[k] = pcaResults[k] }
            // The trajectory ends at the final checkpoint, the plane's centre (unless the list ends with it).
            var names = pcaNames, coordinates = (0..<o.pcaOf.count).map { [flat[2 * $0], flat[2 * $0 + 1]] }
            let last = o.pcaOf.last.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            if last != URL(fileURLWithPath: o.objective.checkpoint).standardizedFileURL.path {
                names.append(URL(fileURLWithPath: o.objective.checkpoint).lastPathComponent)
                coordinates.append([0, 0])
            }
            trajectory = LandscapeTrajectory(checkpoints: names, coordinates: coordinates)
            if !quiet {
                log(
                    String(
                        format:
                            "landscape: PCA plane: explained variance ratios %.4f, %.4f; trajectory α in [%.4g, %.4g], β in [%.4g, %.4g]",
                        ratio[0], ratio[1], coordinates.map { $0[0] }.min()!, coordinates.map { $0[0] }.max()!,
                        coordinates.map { $0[1] }.min()!, coordinates.map { $0[1] }.max()!))
            }
        }

        // The surface, resumed if it exists.
        let xAxis = try GridAxis(parsing: o.grid), yAxis = try GridAxis(parsing: o.yGrid ?? o.grid)
        var surface = LandscapeSurface(
            x: xAxis.coordinates, y: dims == 2 ? yAxis.coordinates : nil, ids: examples.ids, attributes: attributes)
        if !setup.maskRows.isEmpty { surface.masks = setup.maskRows; surface.patchCount = setup.patchCount }
        surface.trajectory = trajectory
        if o.curvatureSteps > 0 {
            surface.attributes["curvature_steps"] = .int(o.curvatureSteps)
            surface.attributes["curvature_seed"] = .int(Int(truncatingIfNeeded: seed &+ 3000))
            surface.attributes["curvature_step_relative"] = .double(o.hessianStep)
        }
        if let done = try surface.resume(from: out), !quiet {
            log("landscape: resuming \(out): \(done) of \(surface.done.count) points done")
        }
        var run = SurfaceEvaluation(objective: objective, directions: dirs)
        if o.curvatureSteps > 0 {
            guard let differentiable = objective as? any DifferentiableLandscapeObjective else {
                throw LandscapeError.invalidArgument("--curvature-map: the \(objective.name) loss has no gradient")
            }
            let map = try CurvatureMap(
                objective: differentiable, parameters: perturbed, steps: o.curvatureSteps,
                relativeStep: o.hessianStep, seed: seed &+ 3000)
            run.curvature = map
            if !quiet {
                // Cost first: one Hessian-vector product at the centre, timed, × the steps × the points left.
                let op = try map.hessian(at: objective.center)
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try op(op.rademacher(seed: seed &+ 3000))
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                let points = surface.done.count - surface.completedCount
                log(
                    String(
                        format:
                            "landscape: curvature map cost estimate: %d points × %d Lanczos steps × %.3f s per Hessian-vector product = %.0f s on one process (besides the losses)",
                        points, o.curvatureSteps, seconds, Double(points * o.curvatureSteps) * seconds))
            }
        }
        let line = ProgressLine("landscape", quiet: quiet)
        var estimated = false
        let report: SurfaceEvaluation.Progress = { done, total, v, seconds in
            if !estimated && !quiet {
                // Cost, measured on the first point: the points left × its time, and at the job's rank count.
                estimated = true
                let left = Double(total - done + 1), r = Double(split.size)
                log(
                    String(
                        format:
                            "landscape: cost estimate: %.0f points × %.2f s = %.0f s on one process; %.0f s on %d ranks (at most; --threads per rank: %d)",
                        left, seconds, left * seconds, left * seconds / r, split.size, blasThreadCount))
            }
            line.update(
                CKAProgress(
                    done: done, total: total, unit: String(format: "points, last %.4g in %.1f s", v.loss, seconds)))
        }
        let hessianSeed = seed &+ 2000
        guard
            let evaluated = try split.evaluate(
                run, surface: surface, savingTo: out, maxPoints: o.maxPoints, progress: report)
        else {
            // Not the root: after the grid, the flatness samples are dealt out over the processes, and every
            // process computes its share of the gradients of each Hessian-vector product.
            if split.shareDecision(false) {
                _ = try split.gather(try flatnessLosses(objective, perturbed, split: split))
            }
            guard split.shareDecision(false), let differentiable = objective as? any DifferentiableLandscapeObjective
            else { return }
            _ = try HessianEigenvalue(
                objective: differentiable, parameters: perturbed, maxIterations: o.hessianIterations,
                relativeStep: o.hessianStep, seed: hessianSeed, split: split.gradients)
            return
        }
        surface = evaluated
        guard surface.completedCount == surface.done.count else {
            _ = split.shareDecision(false)
            _ = split.shareDecision(false)
            output(
                "\(out): \(surface.completedCount) of \(surface.done.count) points (stopped by --max-points; rerun to resume)"
            )
            return
        }

        // Numbers of the complete surface.
        let r = o.flatnessRadii
        let runFlatness =
            !r.isEmpty && surface.attributes["flatness_radius"]?.normalized != HDF5AttributeValue.doubles(r).normalized
        if split.shareDecision(runFlatness),
            let losses = try split.gather(flatnessLosses(objective, perturbed, split: split))
        {
            var means: [Double] = [], errors: [Double] = []
            let n = o.flatnessSamples
            for (k, radius) in r.enumerated() {
                let f = AverageFlatness(
                    radius: radius, centerLoss: losses[0]!, losses: (0..<n).map { losses[1 + k * n + $0]! })
                means.append(f.meanIncrease)
                errors.append(f.standardError)
                if !quiet {
                    log(
                        String(
                            format: "landscape: average flatness at radius %g: +%.6g ± %.2g", radius, f.meanIncrease,
                            f.standardError))
                }
            }
            surface.attributes["flatness_radius"] = .doubles(r)
            surface.attributes["flatness_mean_increase"] = .doubles(means)
            surface.attributes["flatness_standard_error"] = .doubles(errors)
            surface.attributes["flatness_samples"] = .int(o.flatnessSamples)
            surface.attributes["flatness_seed"] = .int(Int(truncatingIfNeeded: seed &+ 1000))
        }
        let runHessian =
            o.hessianIterations > 0 && objective is any DifferentiableLandscapeObjective
            && (surface.attributes["hessian_max_eigenvalue"] == nil
                || surface.attributes["hessian_step_relative"]?.normalized != .double(o.hessianStep))
        if split.shareDecision(runHessian), let differentiable = objective as? any DifferentiableLandscapeObjective {
            let h = try HessianEigenvalue(
                objective: differentiable, parameters: perturbed, maxIterations: o.hessianIterations,
                relativeStep: o.hessianStep, seed: hessianSeed, split: split.gradients
            ) { it, lambda in
                if !quiet { log(String(format: "landscape: Hessian power iteration %d: λ = %.6g", it, lambda)) }
            }
            for (k, v) in h.attributes { surface.attributes[k] = v }
            surface.attributes["hessian_step_relative"] = .double(o.hessianStep)
            surface.attributes["hessian_seed"] = .int(Int(truncatingIfNeeded: hessianSeed))
        }
        if let st = try? LandscapeStatistics(surface: surface) {
            for (k, v) in st.attributes { surface.attributes[k] = v }
            output(
                String(
                    format: "%@: %d points, centre loss %.6g, curvature %@, convex area %.4g",
                    out, surface.done.count, st.centerLoss,
                    st.curvature.map { String(format: "%.4g", $0) }.joined(separator: " / "), st.convexArea))
        } else {
            output("\(out): \(surface.done.count) points")
        }
        try surface.write(to: out)
    }

    /// This process's share of the average-flatness evaluations: task t (see `AverageFlatness.losses`) runs on
    /// process t mod size.
    private func flatnessLosses(
        _ objective: any LandscapeObjective, _ perturbed: Set<String>, split: any LandscapeWorkSplit
    ) throws -> [Int: Double] {
        let o = options
        return try AverageFlatness.losses(
            objective: objective, perturbed: perturbed, radii: o.flatnessRadii, samples: o.flatnessSamples,
            seed: o.seed &+ 1000, normalization: o.normalization, ignoreBiasAndNorm: o.ignore == .biasbn,
            include: { $0 % split.size == split.rank })
    }
}

extension LandscapeRun {
    /// Every float tensor of a checkpoint the landscape objectives can read: the backbone, the head and the
    /// MAE decoder, under the objectives' names.
    static func tensors(of c: Checkpoint) throws -> [String: Tensor<Float>] {
        var out = c.parameters
        for (name, t) in c.head { out[name] = try t.floatTensor() }
        for (name, t) in c.decoder { out[name] = try t.floatTensor() }
        return out
    }

    /// The 1-D path θ(t) = (1 − t)·θ_A + t·θ_B over the parameters of the objective both ends have (same
    /// shapes; LayerNorm included, no normalisation); the objective's other parameters are held at the value of
    /// the checkpoint it was built from. Computed as θ_A + t·(θ_B − θ_A) in float32.
    func runPath(
        _ ends: (from: Checkpoint, to: Checkpoint), split: any LandscapeWorkSplit, log: @escaping (String) -> Void,
        output: (String) -> Void
    ) throws {
        let o = options, out = o.out
        let quiet = o.quiet || !split.isRoot
        let names = o.pathNames ?? (ends.from.file, ends.to.file)
        let setup = try LandscapeObjectiveSetup(
            o.objective, checkpoint: checkpoint, teacher: teacher, examples: examples)
        let objective = setup.objective
        let a = try Self.tensors(of: ends.from), b = try Self.tensors(of: ends.to)
        let center = objective.center
        var shared: [String] = [], held: [String] = []
        for n in center.names {
            if let x = a[n], let y = b[n], x.shape == y.shape, x.count == center[n]!.count {
                shared.append(n)
            } else {
                held.append(n)
            }
        }
        guard !shared.isEmpty else {
            throw LandscapeError.invalidArgument(
                "\(names.from) and \(names.to) share no parameter of the \(objective.name) loss")
        }
        let onlyFrom = a.keys.filter { b[$0] == nil || b[$0]!.shape != a[$0]!.shape }.sorted(by: naturalOrder)
        let onlyTo = b.keys.filter { a[$0] == nil || a[$0]!.shape != b[$0]!.shape }.sorted(by: naturalOrder)
        var start = center, direction = ParameterSet()
        for n in shared {
            let x = try a[n]!.reshaped(center[n]!.shape), y = try b[n]!.reshaped(center[n]!.shape)
            start.set(n, x)
            var d = Tensor<Float>(shape: x.shape)
            let pd = d.mutablePointer(), px = x.pointer, py = y.pointer
            for i in 0..<d.count { pd[i] = py[i] - px[i] }
            direction.set(n, d)
        }
        if !quiet {
            log(
                "landscape: path \(URL(fileURLWithPath: names.from).lastPathComponent) → \(URL(fileURLWithPath: names.to).lastPathComponent), \(o.objective.loss.rawValue) loss over \(examples.ids.count) examples: "
                    + "\(shared.count) shared tensors, \(direction.scalarCount) parameters")
            for n in held { log("  held (\(URL(fileURLWithPath: checkpoint.file).lastPathComponent)): \(n)") }
            for n in onlyFrom where !held.contains(n) { log("  only in A, not used: \(n)") }
            for n in onlyTo where !held.contains(n) { log("  only in B, not used: \(n)") }
        }
        var attributes: [String: HDF5AttributeValue] = [
            "loss": .string(o.objective.loss.rawValue),
            "checkpoint": .string(URL(fileURLWithPath: o.objective.checkpoint).lastPathComponent),
            "path_from": .string(URL(fileURLWithPath: names.from).lastPathComponent),
            "path_to": .string(URL(fileURLWithPath: names.to).lastPathComponent),
            "axis": .string("t"), "n_examples": .int(examples.ids.count), "pick": .string(o.pick.rawValue),
            "source": .string(checkpoint.source.rawValue), "architecture": .string(checkpoint.architecture.timmName),
            "heads": .int(checkpoint.architecture.heads), "model": .string(o.model),
            "shared": .int(shared.count), "held": .strings(held.isEmpty ? ["none"] : held),
            "only_in_from": .strings(onlyFrom.isEmpty ? ["none"] : onlyFrom),
            "only_in_to": .strings(onlyTo.isEmpty ? ["none"] : onlyTo),
            "created_by": .string("cka \(toolkitVersion)"),
        ]
        if let teacher = o.objective.teacher {
            attributes["teacher"] = .string(URL(fileURLWithPath: teacher).lastPathComponent)
        }
        for (k, v) in setup.attributes { attributes[k] = v }
        let pathObjective = ClosureObjective(name: objective.name, center: start, evaluate: objective.evaluate)
        var surface = LandscapeSurface(
            x: try GridAxis(parsing: o.grid).coordinates, y: nil, ids: examples.ids, attributes: attributes)
        if !setup.maskRows.isEmpty { surface.masks = setup.maskRows; surface.patchCount = setup.patchCount }
        if let done = try surface.resume(from: out), !quiet {
            log("landscape: resuming \(out): \(done) of \(surface.done.count) points done")
        }
        let run = SurfaceEvaluation(objective: pathObjective, directions: [direction])
        let line = ProgressLine("landscape", quiet: quiet)
        var estimated = false
        let report: SurfaceEvaluation.Progress = { done, total, v, seconds in
            if !estimated && !quiet {
                estimated = true
                let left = Double(total - done + 1)
                log(
                    String(
                        format:
                            "landscape: cost estimate: %.0f points × %.2f s = %.0f s on one process; %.0f s on %d ranks",
                        left, seconds, left * seconds, left * seconds / Double(split.size), split.size))
            }
            line.update(
                CKAProgress(
                    done: done, total: total, unit: String(format: "points, last %.4g in %.1f s", v.loss, seconds)))
        }
        let evaluated = try split.evaluate(
            run, surface: surface, savingTo: out, maxPoints: o.maxPoints, progress: report)
        _ = split.shareDecision(false)  // no Hessian on a path
        guard let evaluated else { return }
        surface = evaluated
        guard surface.completedCount == surface.done.count else {
            output(
                "\(out): \(surface.completedCount) of \(surface.done.count) points (stopped by --max-points; rerun to resume)"
            )
            return
        }
        func loss(at t: Double) -> String {
            guard let i = surface.x.firstIndex(where: { abs($0 - t) < 1e-12 }) else { return "" }
            return String(format: ", loss at t = %g: %.6g", t, surface.loss[i])
        }
        output("\(out): \(surface.done.count) points on the path" + loss(at: 0) + loss(at: 1))
        try surface.write(to: out)
    }
}
