import ArgumentParser
import CKAKit
import Foundation
import _CKASupport

extension RankedClasses: ExpressibleByArgument {}

extension CKACommand {
    struct Agreement: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "agreement",
            abstract:
                "Whether two models rank classes alike: Kendall τ-b of top-k scores and top-1 agreement of two /logits stores.",
            discussion: """
                A.h5 and B.h5 hold /logits [N, C] for the same inputs (/inputs/ids, e.g. written by 'cka probe --save'). \
                Per example, τ-b (scipy.stats.kendalltau's default, tie-corrected) between A's and B's scores on the union of \
                A's and B's top-k classes (--classes a: A's top-k only), averaged over the examples where it is defined; the \
                top-1 agreement rate; and the macro-F1 of B's top-1 predictions scored against A's. Each for all examples \
                and, with /inputs/labels, those both models get right (both_correct) or wrong (both_wrong). \
                --csv writes metric,subset,k,value (k empty for top1_agreement and top1_f1; nan for an empty subset).
                  cka agreement dino-logits.h5 mae-logits.h5 --top 5,10,100 --csv agreement.csv
                """)

        @Argument(help: "Logits store of model A (the reference of the F1).")
        var a: String

        @Argument(help: "Logits store of model B.")
        var b: String

        @Option(help: "Comma-separated k of the top-k class sets.")
        var top = "5,10,100"

        @Option(help: "Classes the τ-b ranks: union (of A's and B's top-k) or a (A's top-k).")
        var classes: RankedClasses = .union

        @Option(help: "CSV output: metric,subset,k,value.")
        var csv: String?

        func validate() throws { _ = try positiveIntegers(top, option: "--top") }

        func run() throws {
            try reportingErrors {
                try OutputPlan.check(inputs: [a, b], outputs: [csv])
                let storeA = try ActivationStore(path: a), storeB = try ActivationStore(path: b)
                let report = try PredictionAgreement.run(
                    storeA, storeB,
                    options: AgreementOptions(
                        ks: try positiveIntegers(top, option: "--top"),
                        classes: classes))
                for w in report.warnings { note("warning: \(w)") }
                if let csv { try report.writeCSV(to: csv) }
                print(report.table())
            }
        }
    }
}
