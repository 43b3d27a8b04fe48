import ArgumentParser
import CKAKit
import Foundation
import _CKASupport

extension CKACommand {
    struct Probe: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "probe",
            abstract:
                "Linear-probe accuracy of every pooled feature layer (multinomial logistic regression on frozen features).",
            discussion: """
                Features are standardised with the training mean and standard deviation; the probe minimises the mean \
                cross-entropy + (λ/2)‖W‖² (bias not penalised; scikit-learn's LogisticRegression with C = 1/(λN)) by \
                deterministic full-batch L-BFGS from zero. It stops when the largest gradient component is ≤ --gtol, when an \
                iteration lowers the loss by a relative 1e-12 or less, when no step lowers it, or after --max-iterations. \
                With --train the probe is trained on TRAIN.h5 and tested on TEST.h5; without it, TEST.h5 is split per class \
                (--split of each class to training, shuffled with --seed). --save OUT.h5 writes one layer's probe and its test \
                logits as a store for 'cka agreement' (/logits, /inputs/ids, labels and classes, /probe/weight, bias, mean, \
                scale). The released checkpoint heads (MoCo-v3 head, MAE fc_norm+head, DINO linear) are applied by \
                'cka extract --store logits'.
                  cka probe feats.h5 --layers 'blocks.*:cls,norm:cls' --csv probe.csv
                  cka probe test.h5 --train train.h5 --layers norm:cls --save probe-logits.h5
                """)

        @Argument(help: "The activation store to test on (and to split, without --train).")
        var test: String

        @Option(help: "The activation store to train on (default: a seeded split of the test store).")
        var train: String?

        @Option(help: "Fraction of each class used for training when splitting one store.")
        var split = 0.5

        @Option(help: "Seed of the split.")
        var seed: UInt64 = 0

        @Option(help: "L2 penalty λ on the weights.")
        var l2 = 1e-2

        @Option(name: .customLong("max-iterations"), help: "L-BFGS iteration limit.")
        var maxIterations = 1000

        @Option(help: "Stop when the largest gradient component is at most this.")
        var gtol = 1e-6

        @Option(help: "Comma-separated globs of layers (default: every [N, D] layer).")
        var layers: String?

        @Option(help: "CSV output: layer,pooling,train_top1,test_top1,loss,iterations,stop.")
        var csv: String?

        @Option(help: "Write the probe and its test logits (one layer: select it with --layers) to this store.")
        var save: String?

        @Flag(help: "No progress messages.")
        var quiet = false

        @OptionGroup var parallel: ThreadOptions

        func validate() throws {
            if !(split > 0 && split < 1) { throw ValidationError("--split must be between 0 and 1 (exclusive)") }
            if !(l2 >= 0) || !l2.isFinite { throw ValidationError("--l2 must be ≥ 0") }
            if maxIterations < 0 { throw ValidationError("--max-iterations must be ≥ 0") }
            if !(gtol >= 0) { throw ValidationError("--gtol must be ≥ 0") }
        }

        func run() throws {
            try reportingErrors {
                parallel.apply()
                try OutputPlan.check(inputs: [test, train], outputs: [csv, save])
                let testStore = try ActivationStore(path: test)
                let trainStore = try train.map { try ActivationStore(path: $0) }
                if save != nil {
                    let selected = try FeatureLayer.select(testStore, patterns: globs(layers))
                    guard selected.count == 1 else {
                        throw AnalysisError.invalidOption(
                            "--save writes the probe of one layer, but \(selected.count) layers are selected (choose one with --layers, e.g. --layers 'norm:cls')"
                        )
                    }
                }
                var options = ProbeOptions(l2: l2)
                options.optimizer.maxIterations = maxIterations
                options.optimizer.gradientTolerance = gtol
                let progress = ProgressLine("probe", quiet: quiet || !world.isRoot)
                let report: ProbeReport
                if world.isDistributed {
                    // Under mpirun the layers are dealt out over the ranks; rank 0 writes the outputs.
                    guard
                        let r = try DistributedProbe.run(
                            test: testStore, train: trainStore, layers: globs(layers), trainFraction: split,
                            seed: seed, options: options, keepLogits: save != nil, communicator: world,
                            progress: { progress.update($0) })
                    else { return }
                    report = r
                } else {
                    report = try ProbeEvaluation.run(
                        test: testStore, train: trainStore, layers: globs(layers), trainFraction: split,
                        seed: seed, options: options, keepLogits: save != nil
                    ) {
                        progress.update($0)
                    }
                }
                for w in report.warnings { note("warning: \(w)") }
                if let csv { try report.writeCSV(to: csv) }
                if let save, let row = report.rows.first { try report.save(row, to: save) }
                print(report.table())
                if let save {
                    print(
                        "wrote the probe of \(report.rows[0].feature.name) and \(report.testCount) test logits to \(save)"
                    )
                }
            }
        }
    }
}
