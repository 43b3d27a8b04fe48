import ArgumentParser
import CKADistributed
import CKAKit
import Foundation
import _CKASupport

extension RSA.Dissimilarity: ExpressibleByArgument {}
extension RSA.Comparison: ExpressibleByArgument {}
extension MultipleTestingCorrection: ExpressibleByArgument {}
extension PermutationPrecision: ExpressibleByArgument {}

/// `--measure LIST` and the statistics options of `compare` and `compare-all` (issue 15).
struct MeasureCLIOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Comma-separated measures: cka (default; the --estimator), mutual-knn, cknna, procrustes, svcca, pwcca, rsa.",
            discussion: """
                mutual-knn: mean over examples of |kNN_A ∩ kNN_B| / k on L2-normalised rows (Huh et al. 2024). cknna: centred kernel \
                nearest-neighbour alignment, as platonic-rep's metrics.py. procrustes: ‖X̃ᵀỸ‖_* / (‖X̃‖_F ‖Ỹ‖_F) of the centred \
                features (arccos: Williams et al. 2021's angular shape distance). svcca: mean canonical correlation of the top \
                directions explaining --svcca-variance (Raghu et al. 2017). pwcca: projection-weighted CCA, weights of google/svcca's \
                pwcca.py (Morcos et al. 2018). rsa: Spearman (--rsa-compare) between RDMs (--rdm) (Kriegeskorte et al. 2008). \
                All but minibatch cka use N×N float64 Grams of the whole set.
                """))
    var measure: String?

    @Option(name: .customLong("knn-k"), help: "Neighbours of mutual-knn and cknna.")
    var knnK = 10

    @Option(name: .customLong("svcca-variance"), help: "Fraction of the variance the SVCCA/PWCCA directions keep.")
    var svccaVariance = 0.99

    @Option(help: "RSA dissimilarity: correlation (1 − Pearson) or euclidean (squared, / features, as rsatoolbox).")
    var rdm: RSA.Dissimilarity = .correlation

    @Option(name: .customLong("rsa-compare"), help: "How RSA compares two RDMs: spearman, pearson or kendall (τ_b).")
    var rsaCompare: RSA.Comparison = .spearman

    @Option(
        help: "Bootstrap resamples per cell (minibatch CKA: of minibatches' HSIC terms; other measures: of examples).")
    var bootstrap = 0

    @Option(help: "Level of the bootstrap percentile interval.")
    var ci = 0.95

    @Option(help: "Permutations per cell (null: B's examples reordered; minibatch CKA: within each minibatch).")
    var permutations = 0

    @Option(
        help:
            "Arithmetic of minibatch CKA's permutation null: float32 (within (k + 2)·2⁻²⁴ of float64 in CKA units, k ≤ max(batch size, 682); null means and sds ≈ 1e-10 in practice) or float64. Observed values stay float64."
    )
    var permutationPrecision: PermutationPrecision = .float32

    @Option(help: "Seed of the bootstrap and permutation draws.")
    var seed: UInt64 = 0

    @Option(help: "Multiple-testing correction across the cells of each matrix: holm, bh or none.")
    var correction: MultipleTestingCorrection = .holm

    @Option(help: "Significance level; the heatmap marks cells with adjusted p > alpha.")
    var alpha = 0.05

    func validate() throws {
        if let measure { do { _ = try MeasureName.list(measure) } catch { throw ValidationError("\(error)") } }
        if knnK < 1 { throw ValidationError("--knn-k must be at least 1") }
        if !(svccaVariance > 0 && svccaVariance <= 1) { throw ValidationError("--svcca-variance must be in (0, 1]") }
        if bootstrap < 0 || permutations < 0 { throw ValidationError("--bootstrap and --permutations must be ≥ 0") }
        if !(ci > 0 && ci < 1) { throw ValidationError("--ci must be in (0, 1)") }
        if !(alpha > 0 && alpha < 1) { throw ValidationError("--alpha must be in (0, 1)") }
    }

    /// True when the run uses the measure outputs (any of --measure, --bootstrap, --permutations); otherwise
    /// `compare` writes exactly what it wrote before.
    var isActive: Bool { measure != nil || bootstrap > 0 || permutations > 0 }

    var measures: MeasureOptions {
        var m = MeasureOptions(measures: (try? MeasureName.list(measure ?? "cka")) ?? [.cka])
        m.knnK = knnK
        m.svccaVariance = svccaVariance
        m.rdm = rdm
        m.rsaComparison = rsaCompare
        return m
    }

    var statistics: StatisticsOptions {
        var s = StatisticsOptions()
        s.bootstrap = bootstrap
        s.confidence = ci
        s.permutations = permutations
        s.permutationPrecision = permutationPrecision
        s.seed = seed
        s.correction = correction
        s.alpha = alpha
        return s
    }
}

extension CKACommand.Compare {
    /// `compare` with `--measure` or statistics: one result per measure; outputs per formats.md §2.
    func runMeasures() throws {
        // Measures beyond CKA and statistics run on one process (rank 0 under mpirun).
        guard world.isRoot else { return }
        let names = measureOptions.measures.measures, several = names.count > 1
        let perMeasure = names.flatMap { m in
            [csv, heatmap].compactMap { $0.map { MeasureResult.path($0, measure: m, several: several) } }
        }
        try OutputPlan.check(inputs: [a, b], outputs: perMeasure + [longCSV, h5])
        let storeA = try ActivationStore(path: a)
        let storeB = try b.map { try ActivationStore(path: $0) }
        settings.parallel.apply()
        let progress = ProgressLine("compare", quiet: settings.quiet)
        let results = try MeasureComparison.run(
            storeA, storeB, options: settings.options, measures: measureOptions.measures,
            statistics: measureOptions.statistics, progress: progress.update)
        for w in results.flatMap(\.result.warnings) { note("warning: \(w)") }
        for r in results {
            if let csv { try r.result.writeWideCSV(to: MeasureResult.path(csv, measure: r.measure, several: several)) }
            if let heatmap {
                try r.heatmap().write(to: MeasureResult.path(heatmap, measure: r.measure, several: several))
            }
        }
        if let longCSV { try AtomicOutput.write(MeasureResult.longCSV(results), to: longCSV) }
        if let h5 { try MeasureResult.writeHDF5(results, to: h5) }
        for r in results { print(Self.summary(r)) }
    }

    static func summary(_ m: MeasureResult) -> String {
        let r = m.result
        var s = "\(r.modelA) × \(r.modelB): \(r.layersA.count)×\(r.layersB.count) \(m.measure.rawValue) matrix"
        s += m.measure == .cka ? ", estimator \(r.estimator.rawValue)" : ", full set"
        s += ", N used \(r.examplesUsed), tokens \(r.tokens.rawValue)"
        let o = m.statisticsOptions
        if o.bootstrap > 0 {
            s += ", \(o.bootstrap) bootstrap resamples (\(Int((o.confidence * 100).rounded())) % intervals)"
        }
        if o.permutations > 0 { s += ", \(o.permutations) permutations (\(o.correction.rawValue), α = \(o.alpha))" }
        let names = zip(r.layersA, r.layersB).map { $0 == $1 ? $0 : "\($0) / \($1)" }
        let width = (names.map(\.count).max() ?? 0) + 2
        s += "\n\(r.layersA == r.layersB ? "diagonal" : "diagonal (A[i] vs B[i])"):"
        for (i, name) in names.enumerated() {
            s +=
                "\n  " + name.padding(toLength: width, withPad: " ", startingAt: 0)
                + String(format: "%.4f", r.matrix[i][i])
            if let lo = m.statistics.ciLow?[i][i], let hi = m.statistics.ciHigh?[i][i] {
                s += String(format: "  [%.4f, %.4f]", lo, hi)
            }
            if let p = m.statistics.pAdjusted?[i][i] { s += String(format: "  p_adj %.4g", p) }
        }
        return s
    }
}

extension CKACommand.CompareAll {
    /// `compare-all` with `--measure` or statistics: per pair and measure a wide CSV and a heatmap
    /// (`<A>__<B>.<measure>.csv|png` when several measures), `all.csv` in the long format with measures and
    /// statistics, and `overview.<format>` with one row of panels per measure.
    func runMeasures() throws {
        guard world.isRoot else { return }
        settings.parallel.apply()
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let stores = try files.map { try ActivationStore(path: $0) }
        for s in stores.dropFirst() { try CKAComparison.checkSameInputs(stores[0], s) }
        var names = stores.map { safeName($0.modelName) }
        for i in names.indices where names[..<i].contains(names[i]) { names[i] += "_\(i)" }
        let pairs = stores.indices.flatMap { i in (i..<stores.count).map { (i, $0) } }
        let measures = measureOptions.measures
        let several = measures.measures.count > 1
        let outputs: [String] = pairs.flatMap { i, j in
            measures.measures.flatMap { m in
                ["csv", format.rawValue].map {
                    MeasureResult.path("\(outDir)/\(names[i])__\(names[j]).\($0)", measure: m, several: several)
                }
            }
        }
        try OutputPlan.check(
            inputs: files, outputs: outputs + ["\(outDir)/all.csv", "\(outDir)/overview.\(format.rawValue)"])
        var long = [MeasureResult.longCSVHeader]
        var panels: [[Heatmap]] = Array(repeating: [], count: measures.measures.count)
        for (i, j) in pairs {
            let progress = ProgressLine("\(names[i]) × \(names[j])", quiet: settings.quiet)
            let results = try MeasureComparison.run(
                stores[i], i == j ? nil : stores[j], options: settings.options,
                measures: measures, statistics: measureOptions.statistics,
                progress: progress.update)
            let base = "\(outDir)/\(names[i])__\(names[j])"
            for (k, r) in results.enumerated() {
                try r.result.writeWideCSV(to: MeasureResult.path(base + ".csv", measure: r.measure, several: several))
                try r.heatmap().write(
                    to: MeasureResult.path(base + "." + format.rawValue, measure: r.measure, several: several))
                long += r.longCSVRows()
                panels[k].append(r.heatmap(title: "\(r.measure.rawValue): \(r.result.modelA) vs \(r.result.modelB)"))
            }
            print(
                "\(names[i]) × \(names[j]): "
                    + results.map { r in
                        "\(r.measure.rawValue) mean diagonal \(String(format: "%.4f", r.result.diagonal.reduce(0, +) / Double(max(1, r.result.diagonal.count))))"
                    }.joined(separator: ", ") + "  → \(base).*")
        }
        try AtomicOutput.write(long.joined(separator: "\n") + "\n", to: "\(outDir)/all.csv")
        try HeatmapGrid(
            panels: panels.flatMap { $0 }, columns: pairs.count,
            title: "Layer×layer \(measures.measures.map(\.rawValue).joined(separator: ", ")) of \(stores.count) models",
            colorbarLabel: "similarity"
        )
        .write(to: "\(outDir)/overview.\(format.rawValue)")
        print(
            "wrote \(pairs.count) pairs × \(measures.measures.count) measures, \(outDir)/all.csv and \(outDir)/overview.\(format.rawValue)"
        )
    }
}
