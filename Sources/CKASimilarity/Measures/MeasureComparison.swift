import CKAIO
import CKATensor
import _CKASupport

/// One measure's layer×layer matrix between two stores, with its statistics.
public struct MeasureResult: Sendable {
    /// The measure (`cka`, `procrustes`, …).
    public var measure: MeasureName
    /// Layers, models, files, estimator, batch size, N, tokens (`cka`: as `CKAComparison.run`; other
    /// measures: `batchSize` = N, one batch, on the whole set).
    public var result: CKAResult
    public var statistics: CellStatistics
    public var statisticsOptions: StatisticsOptions

    /// The estimator column of the outputs: CKA's estimator, or `full` for the measures on the whole set.
    public var estimatorLabel: String { measure == .cka ? result.estimator.rawValue : "full" }
}

/// Layer×layer similarity between two activation stores with several measures (`--measure`), and bootstrap
/// intervals and permutation tests on every cell.
public enum MeasureComparison {
    /// Runs every measure of `measures` (`cka` through the CKA engine, the others on float64 full-set Grams)
    /// with the statistics asked for.
    public static func run(
        _ a: ActivationStore, _ b: ActivationStore? = nil, options o: CKAOptions = CKAOptions(),
        measures m: MeasureOptions = MeasureOptions(), statistics s: StatisticsOptions = StatisticsOptions(),
        progress: ((CKAProgress) -> Void)? = nil
    ) throws -> [MeasureResult] {
        let other = b ?? a
        if b != nil { try CKAComparison.checkSameInputs(a, other) }
        let la = try CKAComparison.selectLayers(a, patterns: o.layersA)
        let lb = try CKAComparison.selectLayers(other, patterns: o.layersB ?? (b == nil ? o.layersA : nil))
        var out: [MeasureResult] = []
        var grams: [LayerRef: LayerGrams] = [:]
        for name in m.measures {
            if name == .cka {
                out.append(try cka(a, b, la, lb, o, s, progress))
                continue
            }
            let measure = m.measure(name)!
            try loadGrams(&grams, a, la, other, lb, kinds: measure.needs, o, progress)
            let ga = la.map { grams[LayerRef(a, $0)]! }, gb = lb.map { grams[LayerRef(other, $0)]! }
            let (matrix, stats) = try compute(measure, ga, gb, a, la, other, lb, s, progress)
            let n = a.count
            let r = CKAResult(
                modelA: a.modelName, modelB: other.modelName, fileA: a.path, fileB: other.path,
                layersA: la, layersB: lb, matrix: matrix, estimator: o.estimator, batchSize: n,
                tokens: o.tokens, examplesUsed: n, batches: 1, passes: 1, usedStoredGrams: false, warnings: [])
            out.append(MeasureResult(measure: name, result: r, statistics: stats, statisticsOptions: s))
        }
        return out
    }

    private static func cka(
        _ a: ActivationStore, _ b: ActivationStore?, _ la: [String], _ lb: [String], _ o: CKAOptions,
        _ s: StatisticsOptions, _ progress: ((CKAProgress) -> Void)?
    ) throws -> MeasureResult {
        let other = b ?? a
        if !s.isEmpty && o.estimator == .minibatch {
            // One pass: the matrix (the bits of `CKAComparison.run`) and its statistics.
            let out = try MinibatchStatistics.run(a, la, other, lb, options: o, statistics: s) { done, total in
                progress?(CKAProgress(done: done, total: total, unit: "minibatches"))
            }
            let plan = out.plan
            let r = CKAResult(
                modelA: a.modelName, modelB: other.modelName, fileA: a.path, fileB: other.path, layersA: la,
                layersB: lb, matrix: out.matrix, estimator: o.estimator, batchSize: plan.batchSize, tokens: o.tokens,
                examplesUsed: plan.batchesPerPass * plan.batchSize, batches: plan.batchesPerPass,
                passes: plan.passes, usedStoredGrams: out.usedStoredGrams, warnings: plan.warnings)
            return MeasureResult(measure: .cka, result: r, statistics: out.statistics, statisticsOptions: s)
        }
        let r = try CKAComparison.run(a, b, options: o, progress: progress)
        var stats = CellStatistics()
        if !s.isEmpty {
            do {
                var grams: [LayerRef: LayerGrams] = [:]
                try loadGrams(&grams, a, la, other, lb, kinds: .centered, o, progress)
                let measure = FullSetCKAMeasure(
                    estimator: o.estimator, rbfThreshold: o.rbfThreshold, rbfDebiased: o.rbfDebiased)
                stats = try Resampling.statistics(
                    measure, gramsA: la.map { grams[LayerRef(a, $0)]! },
                    gramsB: lb.map { grams[LayerRef(other, $0)]! }, observed: r.matrix,
                    options: s
                ) { done, total in
                    progress?(CKAProgress(done: done, total: total, unit: "resamples"))
                }
            }
        }
        return MeasureResult(measure: .cka, result: r, statistics: stats, statisticsOptions: s)
    }

    /// Adds the Grams of `kinds` of every selected layer that lacks them (each layer read once per kind set).
    private static func loadGrams(
        _ cache: inout [LayerRef: LayerGrams], _ a: ActivationStore, _ la: [String],
        _ b: ActivationStore, _ lb: [String], kinds: GramKinds, _ o: CKAOptions,
        _ progress: ((CKAProgress) -> Void)?
    ) throws {
        let refs = LayerRef.distinct(la.map { LayerRef(a, $0) }, lb.map { LayerRef(b, $0) })
        let n = a.count
        var perLayer = 0
        for k in [GramKinds.centered, .raw, .rowCentered] where kinds.contains(k) { perLayer += 1 }
        let held = cache.values.reduce(0) { $0 + [$1.centered, $1.raw, $1.rowCentered].compactMap { $0 }.count }
        let bytes = (held + refs.count * perLayer) * n * n * 8
        guard bytes <= o.fullSetMemoryLimit else {
            throw CKAError.invalidOption(
                "the measures beyond minibatch CKA keep N×N float64 Grams of every layer: \(refs.count) layers at N = \(n) need \(bytes >> 20) MiB, over the limit of \(o.fullSetMemoryLimit >> 20) MiB (select fewer `layers`)"
            )
        }
        for (done, ref) in refs.enumerated() {
            let have = cache[ref]
            var missing = GramKinds()
            if kinds.contains(.centered) && have?.centered == nil { missing.insert(.centered) }
            if kinds.contains(.raw) && have?.raw == nil { missing.insert(.raw) }
            if kinds.contains(.rowCentered) && have?.rowCentered == nil { missing.insert(.rowCentered) }
            if missing.isEmpty { continue }
            let g = try LayerGrams(store: ref.store, layer: ref.name, tokens: o.tokens, kinds: missing)
            var merged = have ?? g
            if have != nil {
                merged.centered = merged.centered ?? g.centered
                merged.raw = merged.raw ?? g.raw
                merged.rowCentered = merged.rowCentered ?? g.rowCentered
            }
            cache[ref] = merged
            progress?(CKAProgress(done: done + 1, total: refs.count, unit: "layers"))
        }
    }

    private static func compute(
        _ measure: any SimilarityMeasure, _ ga: [LayerGrams], _ gb: [LayerGrams],
        _ a: ActivationStore, _ la: [String], _ b: ActivationStore, _ lb: [String],
        _ s: StatisticsOptions, _ progress: ((CKAProgress) -> Void)?
    ) throws -> ([[Double]], CellStatistics) {
        try open(measure, ga, gb, a, la, b, lb, s, progress)
    }

    private static func open<M: SimilarityMeasure>(
        _ measure: M, _ ga: [LayerGrams], _ gb: [LayerGrams],
        _ a: ActivationStore, _ la: [String], _ b: ActivationStore, _ lb: [String],
        _ s: StatisticsOptions, _ progress: ((CKAProgress) -> Void)?
    ) throws -> ([[Double]], CellStatistics) {
        func prepare(_ g: LayerGrams, _ store: ActivationStore, _ name: String) throws -> M.Prepared {
            do { return try measure.prepare(g) } catch let e as MeasureError {
                throw e.at(file: store.path, layer: name)
            }
        }
        let pa = try zip(ga, la).map { try prepare($0, a, $1) }
        let pb = try zip(gb, lb).map { try prepare($0, b, $1) }
        let matrix = try pa.map { x in try pb.map { y in try measure.value(x, y) } }
        guard !s.isEmpty else { return (matrix, CellStatistics()) }
        let stats = try Resampling.statistics(measure, gramsA: ga, gramsB: gb, observed: matrix, options: s) {
            done, total in
            progress?(CKAProgress(done: done, total: total, unit: "\(measure.name) resamples"))
        }
        return (matrix, stats)
    }
}
