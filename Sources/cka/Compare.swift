import ArgumentParser
import CKADistributed
import CKAKit
import Foundation
import _CKASupport

/// Options shared by `compare` and `compare-all`.
struct EstimatorOptions: ParsableArguments {
    @Option(
        help:
            "Estimator: minibatch (unbiased HSIC₁ averaged over minibatches), debiased (HSIC₁ on all N), linear (biased, Kornblith 2019) or rbf (Gaussian kernel, full set)."
    )
    var estimator: CKAEstimator = .minibatch

    @Option(
        help:
            "Examples per minibatch (minibatch estimator; default: the stored Grams' batch size, else 32). Batches are consecutive runs in file order; a short last batch is dropped."
    )
    var batchSize: Int?

    @Option(
        help:
            "How [N, T, D] token layers become vectors: flatten (T·D, the default), cls, gap (mean of all tokens) or gap_nocls."
    )
    var tokens: TokenReduction = .flatten

    @Option(help: "Comma-separated globs of layers to compare, e.g. 'blocks.*.norm1,blocks.*.mlp.fc1' (default: all).")
    var layers: String?

    @Option(name: .customLong("layers-b"), help: "Globs for the second file's layers (default: --layers).")
    var layersB: String?

    @Option(help: "Shuffle the examples with this seed before batching (one permutation, applied to both files).")
    var shuffle: UInt64?

    @Option(help: "Passes over the data, each with its own permutation (seed, seed+1, …).")
    var passes = 1

    @Option(name: .customLong("rbf-threshold"), help: "RBF bandwidth: σ = threshold · √median squared distance.")
    var rbfThreshold = 0.5

    @Flag(name: .customLong("rbf-debiased"), help: "Use the debiased (U-statistic) centring with the RBF kernel.")
    var rbfDebiased = false

    @Option(help: "Where minibatch Grams come from: auto (stored /grams when they match), activations, or stored.")
    var grams: GramSource = .auto

    @Flag(
        name: .customLong("no-mmap"),
        help: "Read activations with HDF5 reads instead of a memory map of plain float32 files.")
    var noMmap = false

    @Flag(help: "No progress messages.")
    var quiet = false

    @OptionGroup var parallel: ThreadOptions

    func validate() throws {
        if let batchSize, batchSize < 4 {
            throw ValidationError("--batch-size must be at least 4 (HSIC₁ divides by n(n−3))")
        }
        if passes < 1 { throw ValidationError("--passes must be at least 1") }
        if !(rbfThreshold > 0) { throw ValidationError("--rbf-threshold must be positive") }
    }

    var options: CKAOptions {
        var o = CKAOptions()
        o.estimator = estimator
        o.explicitBatchSize = batchSize
        o.tokens = tokens
        o.layersA = globs(layers)
        o.layersB = globs(layersB) ?? globs(layers)
        o.shuffleSeed = shuffle
        o.passes = passes
        o.rbfThreshold = rbfThreshold
        o.rbfDebiased = rbfDebiased
        o.gramSource = grams
        o.memoryMap = !noMmap
        return o
    }
}

extension CKACommand {
    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Layer×layer CKA between two activation stores (or one store with itself).",
            discussion: """
                Prints a summary (matrix size, estimator, N used, the diagonal); writes the matrix as a wide CSV \
                (--csv), a long CSV for pandas (--long-csv), HDF5 (--h5) and a heatmap (--heatmap, .png or .svg). \
                Both files must hold the same inputs in the same order (/inputs/ids).
                """)

        @Argument(help: "Activation store A.")
        var a: String
        @Argument(help: "Activation store B (default: A itself).")
        var b: String?

        @OptionGroup var settings: EstimatorOptions
        @OptionGroup(title: "Measures and statistics") var measureOptions: MeasureCLIOptions

        @Option(help: "Wide CSV: header 'layer,<B layers>', one row per layer of A.")
        var csv: String?
        @Option(
            name: .customLong("long-csv"), help: "Long CSV: model_a,layer_a,model_b,layer_b,estimator,batch_size,cka.")
        var longCSV: String?
        @Option(help: "HDF5 result (format cka-matrix).")
        var h5: String?
        @Option(help: "Heatmap picture (.png or .svg).")
        var heatmap: String?

        func validate() throws {
            if let heatmap, !(heatmap.hasSuffix(".png") || heatmap.hasSuffix(".svg")) {
                throw ValidationError("--heatmap must end in .png or .svg")
            }
        }

        func run() throws {
            if measureOptions.isActive { try reportingErrors { try runMeasures() }; return }
            try reportingErrors {
                try OutputPlan.check(inputs: [a, b], outputs: [csv, longCSV, h5, heatmap])
                let storeA = try ActivationStore(path: a)
                let storeB = try b.map { try ActivationStore(path: $0) }
                settings.parallel.apply()
                // Under mpirun the minibatches are split over the ranks; full-set estimators run on rank 0.
                if world.isDistributed && settings.estimator != .minibatch && !world.isRoot { return }
                let distribution =
                    world.isDistributed && settings.estimator == .minibatch ? RankDistribution(world) : nil
                let progress = ProgressLine("compare", quiet: settings.quiet || !world.isRoot)
                let r = try CKAComparison.run(
                    storeA, storeB, options: settings.options, distribution: distribution,
                    progress: progress.update)
                guard world.isRoot else { return }
                for w in r.warnings { note("warning: \(w)") }
                if let csv { try r.writeWideCSV(to: csv) }
                if let longCSV { try r.writeLongCSV(to: longCSV) }
                if let h5 { try r.writeHDF5(to: h5) }
                if let heatmap { try r.heatmap().write(to: heatmap) }
                print(Compare.summary(r))
            }
        }

        static func summary(_ r: CKAResult) -> String {
            var s =
                "\(r.modelA) × \(r.modelB): \(r.layersA.count)×\(r.layersB.count) CKA matrix, estimator \(r.estimator.rawValue)"
            if r.estimator == .minibatch {
                s += ", batch size \(r.batchSize), \(r.batches) batches × \(r.passes) pass\(r.passes == 1 ? "" : "es")"
                if r.usedStoredGrams { s += " (stored Grams)" }
            }
            s += ", N used \(r.examplesUsed), tokens \(r.tokens.rawValue)"
            let names = zip(r.layersA, r.layersB).map { $0 == $1 ? $0 : "\($0) / \($1)" }
            let width = (names.map(\.count).max() ?? 0) + 2
            let label = r.layersA == r.layersB ? "diagonal" : "diagonal (A[i] vs B[i])"
            s += "\n\(label):"
            for (name, v) in zip(names, r.diagonal) {
                s += "\n  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + String(format: "%.4f", v)
            }
            return s
        }
    }

    struct CompareAll: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "compare-all",
            abstract: "CKA of every pair of models (and each with itself): CSVs, heatmaps and one overview picture.",
            discussion: """
                Writes into --out-dir: <A>__<B>.csv (wide) and <A>__<B>.png per pair, all.csv (long, one row per cell, \
                for pandas) and overview.png (all heatmaps in a grid). Model names come from each file's 'model' \
                attribute (else the file name).
                """)

        @Argument(help: "Two or more activation stores over the same inputs.")
        var files: [String]

        @OptionGroup var settings: EstimatorOptions
        @OptionGroup(title: "Measures and statistics") var measureOptions: MeasureCLIOptions

        @Option(name: .customLong("out-dir"), help: "Folder for the outputs (created if missing).")
        var outDir: String

        @Option(help: "Picture format: png or svg.")
        var format = PictureFormat.png

        func validate() throws {
            if files.isEmpty { throw ValidationError("give at least one activation store") }
        }

        func run() throws {
            if measureOptions.isActive { try reportingErrors { try runMeasures() }; return }
            try reportingErrors {
                settings.parallel.apply()
                if world.isRoot {
                    do {
                        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
                    } catch {
                        let posix = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
                        throw OutputError(
                            path: outDir,
                            "cannot create the output folder ("
                                + (posix.map { String(cString: strerror(Int32($0.code))) } ?? error.localizedDescription)
                                + ")")
                    }
                }
                let stores = try files.map { try ActivationStore(path: $0) }
                for s in stores.dropFirst() { try CKAComparison.checkSameInputs(stores[0], s) }
                var names = stores.map { safeName($0.modelName) }
                for i in names.indices where names[..<i].contains(names[i]) { names[i] += "_\(i)" }
                let bases: [String] = stores.indices.flatMap { i in
                    (i..<stores.count).map { "\(outDir)/\(names[i])__\(names[$0])" }
                }
                let outputs: [String] = bases.flatMap { [$0 + ".csv", $0 + "." + format.rawValue] }
                try OutputPlan.check(
                    inputs: files, outputs: outputs + ["\(outDir)/all.csv", "\(outDir)/overview.\(format.rawValue)"])
                var long = [CKAResult.longCSVHeader]
                var panels: [Heatmap] = []
                // Under mpirun pair p is computed by rank p % size; rank 0 writes every output, in pair order.
                let pairs = stores.indices.flatMap { i in (i..<stores.count).map { (i, $0) } }
                for (p, (i, j)) in pairs.enumerated() {
                    let owner = p % world.size
                    guard world.isRoot || owner == world.rank else { continue }
                    let r: CKAResult
                    if owner == world.rank {
                        let progress = ProgressLine("\(names[i]) × \(names[j])", quiet: settings.quiet || !world.isRoot)
                        r = try CKAComparison.run(
                            stores[i], i == j ? nil : stores[j], options: settings.options,
                            progress: progress.update)
                        if !world.isRoot { world.send(r.message.bytes, to: 0, tag: 2); continue }
                    } else {
                        r = try CKAResult(message: world.receive(from: owner, tag: 2).bytes)
                    }
                    for w in r.warnings where i == 0 && j == 0 { note("warning: \(w)") }
                    let base = "\(outDir)/\(names[i])__\(names[j])"
                    try r.writeWideCSV(to: base + ".csv")
                    try r.heatmap().write(to: base + "." + format.rawValue)
                    long += r.longCSVRows()
                    panels.append(r.heatmap(title: "\(r.modelA) vs \(r.modelB)"))
                    print(
                        "\(names[i]) × \(names[j]): mean diagonal \(String(format: "%.4f", r.diagonal.reduce(0, +) / Double(max(1, r.diagonal.count))))  → \(base).csv"
                    )
                }
                guard world.isRoot else { return }
                try AtomicOutput.write(long.joined(separator: "\n") + "\n", to: "\(outDir)/all.csv")
                let est =
                    settings.estimator == .minibatch
                    ? "minibatch CKA, batch \(settings.batchSize.map(String.init) ?? "from the Grams")"
                    : "\(settings.estimator.rawValue) CKA"
                try HeatmapGrid(panels: panels, title: "Layer×layer \(est) of \(stores.count) models").write(
                    to: "\(outDir)/overview.\(format.rawValue)")
                print("wrote \(panels.count) pairs, \(outDir)/all.csv and \(outDir)/overview.\(format.rawValue)")
            }
        }
    }
}

/// A model name usable in a file name.
func safeName(_ s: String) -> String {
    String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
}
