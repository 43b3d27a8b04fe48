import ArgumentParser
import CKAKit
import Foundation
import _CKASupport

extension CKACommand {
    struct Hessian: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The Hessian's spectrum at a checkpoint: top eigenvalues, trace and density, per block.",
            discussion: """
                For the MAE / RC-MAE pre-training loss or a linear head's cross-entropy (as 'cka landscape') over \
                fixed examples, the Hessian with respect to the weights (fixed sin-cos tables left out unless \
                --include-fixed):
                  top-k eigenvalues  Lanczos with full re-orthogonalisation (--top-k,
                                     --lanczos-steps)
                  trace              Hutchinson with Rademacher probes (--trace-samples)
                  spectral density   stochastic Lanczos quadrature (--density-runs,
                                     --lanczos-steps), Gaussian broadening as PyHessian
                                     (Ghorbani et al. 2019)
                With --per-block, the eigenvalues and trace of each diagonal block too: patch_embed (with cls_token, \
                pos_embed), blocks.{i}, norm, head or decoder. Every Hessian-vector product is a central difference \
                of two backpropagated gradients (--hessian-step × ‖θ‖; --richardson: four, error O(ε⁴)). MAE masks: \
                one per image for the whole run, seeded (--mask-seed) or --masks F.h5; stored as /masks. The cost is \
                printed first (one product timed). Output: --out (HDF5, docs/formats.md) and --csv with the columns \
                scope,quantity,index,value,stderr.
                  cka hessian --checkpoint mae_pretrain_vit_base_full.pth --loss mae \\
                    --images val/ --examples 16 --top-k 3 --per-block \\
                    --out mae-hessian.h5 --csv mae-hessian.csv
                  cka landscape-plot mae-hessian.h5
                """)

        @Option(help: "Checkpoint whose Hessian is taken (the RC-MAE student).")
        var checkpoint: String

        @OptionGroup var objective: ObjectiveOptions

        @Option(help: "Number of examples the loss averages over (see --pick).")
        var examples = 16

        @Option(name: .customLong("top-k"), help: "Top eigenvalues per scope.")
        var topK = 1

        @Option(name: .customLong("trace-samples"), help: "Rademacher probes of the Hutchinson trace.")
        var traceSamples = 16

        @Option(name: .customLong("density-runs"), help: "SLQ runs of the whole model's density (0: none).")
        var densityRuns = 1

        @Option(name: .customLong("lanczos-steps"), help: "Lanczos steps (top eigenvalues and each density run).")
        var lanczosSteps = 30

        @Option(name: .customLong("density-bins"), help: "Points of the broadened density curve.")
        var densityBins = 10_000

        @Option(
            name: .customLong("sigma-squared"),
            help: "Gaussian broadening variance, times max(1, spectrum width) (PyHessian: 1e-5).")
        var sigmaSquared = 1e-5

        @Flag(name: .customLong("per-block"), help: "Also each block: patch_embed, blocks.{i}, norm, head/decoder.")
        var perBlock = false

        @Option(help: "Repeats with other probe seeds (the spread is reported as stderr).")
        var repeats = 1

        @Option(help: "Seed of the probes and Lanczos starts.")
        var seed: UInt64 = 0

        @Option(
            name: .customLong("hessian-step"),
            help: "Finite-difference step of the Hessian-vector products, relative to ‖θ‖ of the scope.")
        var hessianStep = 1e-5

        @Flag(help: "Richardson-extrapolated products: error O(ε⁴) instead of O(ε²), twice the cost.")
        var richardson = false

        @Flag(name: .customLong("include-fixed"), help: "Also the fixed sin-cos position tables.")
        var includeFixed = false

        @Option(help: "The HDF5 output.")
        var out: String

        @Option(help: "A CSV of the numbers (scope,quantity,index,value,stderr).")
        var csv: String?

        @Flag(help: "No progress messages.")
        var quiet = false

        @OptionGroup var parallel: ThreadOptions

        func validate() throws {
            if examples < 1 { throw ValidationError("--examples must be at least 1") }
            if topK < 1 || traceSamples < 1 || lanczosSteps < 1 || repeats < 1 || densityRuns < 0 || densityBins < 2 {
                throw ValidationError(
                    "--top-k, --trace-samples, --lanczos-steps, --repeats must be ≥ 1, --density-runs ≥ 0, --density-bins ≥ 2"
                )
            }
            if !(hessianStep > 0) || !(sigmaSquared > 0) {
                throw ValidationError("--hessian-step and --sigma-squared must be positive")
            }
        }

        func run() throws {
            try reportingErrors {
                parallel.apply()
                // Under mpirun every rank runs the same iterations and computes its share of the gradients of
                // each Hessian-vector product; rank 0 alone speaks and writes.
                try OutputPlan.check(inputs: [checkpoint] + objective.inputFiles, outputs: [out, csv])
                if world.isRoot { removePartialOutputOnInterrupt(out, checkpoint: checkpoint) }
                let settings = objective.objective(checkpoint: checkpoint, seed: seed)
                let ckpt = try settings.load(checkpoint, key: objective.checkpointKey)
                let chosen = try objective.examples(examples, for: ckpt)
                var o = HessianRun.Options(objective: settings)
                o.topK = topK
                o.lanczosSteps = lanczosSteps
                o.traceSamples = traceSamples
                o.densityRuns = densityRuns
                o.densityBins = densityBins
                o.sigmaSquared = sigmaSquared
                o.perBlock = perBlock
                o.repeats = repeats
                o.seed = seed
                o.relativeStep = hessianStep
                o.extrapolate = richardson
                o.includeFixed = includeFixed
                o.pick = objective.pick
                o.model = objective.model ?? ActivationExtractor.modelName(for: ckpt)
                o.quiet = quiet || !world.isRoot
                let result = try HessianRun(
                    options: o, checkpoint: ckpt, teacher: objective.loadTeacher(settings), examples: chosen
                ).run(split: RankGradientSplit.of(world), log: note)
                guard world.isRoot else { return }
                try result.write(to: out)
                if let csv { try AtomicOutput.write(result.csv, to: csv) }
                // The table: per scope, parameters, top eigenvalues and trace.
                print("scope          parameters  eigenvalues (top \(topK))        trace ± stderr")
                let rows = result.rows
                for s in result.scopes {
                    let eig = rows.filter { $0.scope == s.scope && $0.quantity == "eigenvalue" }.map {
                        String(format: "%.5g", $0.value)
                    }
                    let tr = rows.first { $0.scope == s.scope && $0.quantity == "trace" }!
                    print(
                        String(
                            format: "%@ %11d  %@ %.5g ± %.2g",
                            s.scope.padding(toLength: 14, withPad: " ", startingAt: 0),
                            s.parameterCount,
                            eig.joined(separator: " ").padding(toLength: 30, withPad: " ", startingAt: 0), tr.value,
                            tr.stderr))
                }
                if let d = result.density {
                    print(
                        String(
                            format: "density moments (SLQ, %d runs): %.5g %.5g %.5g %.5g", d.nodes.count, d.moment(1),
                            d.moment(2), d.moment(3), d.moment(4)))
                }
                print("\(out)" + (csv.map { ", \($0)" } ?? ""))
            }
        }
    }
}
