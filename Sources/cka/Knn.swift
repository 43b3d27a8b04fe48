import ArgumentParser
import CKAKit
import Foundation
import _CKASupport

/// Parses a comma-separated list of positive integers (`10,20,100`).
func positiveIntegers(_ s: String, option: String) throws -> [Int] {
    let parts = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 1 }) else {
        throw ValidationError("\(option) takes comma-separated positive integers, e.g. 10,20,100 (got '\(s)')")
    }
    return values
}

extension CKACommand {
    struct Knn: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "knn",
            abstract: "DINO's weighted k-NN accuracy of every pooled feature layer (class separability across depth).",
            discussion: """
                For every selected [N, D] layer (blocks.{i}:cls, :gap, :gap_nocls, norm:…, or plain [N, D] layers): L2-normalised \
                features, cosine similarity, the k most similar training examples vote with weight exp(sim / T); top-1 and \
                top-5 accuracy in percent. With --train, TEST.h5 holds the queries and TRAIN.h5 the neighbours; without it, \
                leave-one-out within TEST.h5 (a query never counts as its own neighbour). Both need /inputs/labels. \
                Ties: equal similarity → lower training index first; equal class score → lower class index first. \
                Prints a table; --csv writes layer,pooling,k,top1,top5 (layer without the pooling suffix, accuracies in \
                percent); --plot draws top-1 accuracy against block index, one line per pooling ('norm' after the last block).
                  cka extract --checkpoint model.safetensors --images cifar/ \\
                    --out feats.h5 --store pooled
                  cka knn feats.h5 --k 10,20,100 --csv knn.csv --plot knn.png
                """)

        @Argument(help: "The activation store of the queries (and of the neighbours, without --train).")
        var test: String

        @Option(help: "The activation store of the training examples (default: leave-one-out within the test store).")
        var train: String?

        @Option(help: "Comma-separated neighbourhood sizes, all from one top-k pass (default 20).")
        var k = "20"

        @Option(help: "Temperature T of the votes exp(similarity / T).")
        var temperature = 0.07

        @Option(help: "Comma-separated globs of layers, e.g. 'blocks.*:cls,norm:*' (default: every [N, D] layer).")
        var layers: String?

        @Option(help: "CSV output: layer,pooling,k,top1,top5.")
        var csv: String?

        @Option(help: "Picture of top-1 accuracy against block index (.png or .svg), one line per pooling.")
        var plot: String?

        @Option(name: .customLong("plot-k"), help: "The k drawn in --plot (default: 20 if asked, else the first k).")
        var plotK: Int?

        @Flag(help: "No progress messages.")
        var quiet = false

        @OptionGroup var parallel: ThreadOptions

        func validate() throws {
            _ = try positiveIntegers(k, option: "--k")
            if !(temperature > 0) || !temperature.isFinite { throw ValidationError("--temperature must be positive") }
            if let plot, !(plot.hasSuffix(".png") || plot.hasSuffix(".svg")) {
                throw ValidationError("--plot must end in .png or .svg")
            }
            if let plotK, !(try positiveIntegers(k, option: "--k")).contains(plotK) {
                throw ValidationError("--plot-k \(plotK) is not among --k \(k)")
            }
        }

        func run() throws {
            try reportingErrors {
                parallel.apply()
                try OutputPlan.check(inputs: [test, train], outputs: [csv, plot])
                let testStore = try ActivationStore(path: test)
                let trainStore = try train.map { try ActivationStore(path: $0) }
                let ks = try positiveIntegers(k, option: "--k")
                let progress = ProgressLine("knn", quiet: quiet || !world.isRoot)
                let options = KNNOptions(ks: ks, temperature: temperature)
                let report: KNNReport
                if world.isDistributed {
                    // Under mpirun the layers are dealt out over the ranks; rank 0 writes the outputs.
                    guard
                        let r = try DistributedKnn.run(
                            test: testStore, train: trainStore, layers: globs(layers), options: options,
                            communicator: world, progress: { progress.update($0) })
                    else { return }
                    report = r
                } else {
                    report = try KNNEvaluation.run(
                        test: testStore, train: trainStore, layers: globs(layers), options: options
                    ) {
                        progress.update($0)
                    }
                }
                for w in report.warnings { note("warning: \(w)") }
                if let csv { try report.writeCSV(to: csv) }
                if let plot {
                    let drawnK = plotK ?? (ks.contains(20) ? 20 : ks[0])
                    let curves = report.curves(k: drawnK)
                    guard !curves.isEmpty else {
                        throw AnalysisError.invalidOption(
                            "--plot: no selected layer has a block index (blocks.{i} or norm) to place on the x axis")
                    }
                    let mode =
                        report.leaveOneOut ? "leave-one-out" : "train \(report.trainCount) / test \(report.testCount)"
                    let lastBlock = report.rows.map(\.feature.block).max() ?? -1
                    let hasNorm = report.rows.contains { $0.feature.block < 0 }
                    try LinePlot(
                        series: curves.map { LinePlot.Series(name: $0.pooling.rawValue, x: $0.x, y: $0.y) },
                        title: "\(report.model): \(drawnK)-NN top-1 accuracy (\(mode))",
                        xLabel: hasNorm ? "block (\(lastBlock + 1) = final norm)" : "block",
                        yLabel: "top-1 accuracy (%)"
                    ).write(to: plot)
                }
                print(report.table())
                if !quiet && report.totalSeconds >= 1 {
                    note(
                        String(
                            format: "knn: %.2f s (read %.2f s, similarity GEMM %.2f s, selection and votes %.2f s)",
                            report.totalSeconds, report.readSeconds, report.gemmSeconds, report.selectionSeconds))
                }
            }
        }
    }
}
