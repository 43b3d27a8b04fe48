import CKAIO
import CKATensor
import Foundation
import _CKASupport

/// Layer×layer CKA between two activation stores, streaming minibatches with bounded memory.
public enum CKAComparison {
    /// Layer names of `store` matching any of `patterns` (`LayerGlob`; all layers if nil), in network order.
    /// Layers that only have stored Grams are included after the activation layers.
    public static func selectLayers(_ store: ActivationStore, patterns: [String]?) throws -> [String] {
        var names = store.layers.map(\.name)
        for g in store.grams.keys.sorted(by: naturalOrder) where !names.contains(g) { names.append(g) }
        guard !names.isEmpty else { throw CKAError.noLayers(file: store.path) }
        guard let patterns, !patterns.isEmpty else { return names }
        let picked = names.filter { LayerGlob.matches(any: patterns, $0) }
        guard !picked.isEmpty else {
            throw CKAError.noLayersMatch(pattern: patterns.joined(separator: ","), file: store.path, available: names)
        }
        return picked
    }

    /// Checks that two stores hold the same inputs in the same order.
    public static func checkSameInputs(_ a: ActivationStore, _ b: ActivationStore) throws {
        guard a.count == b.count else {
            throw CKAError.inputsDiffer(fileA: a.path, fileB: b.path, detail: "N = \(a.count) vs N = \(b.count)")
        }
        if let i = a.ids.indices.first(where: { a.ids[$0] != b.ids[$0] }) {
            let setA = Set(a.ids), setB = Set(b.ids)
            let detail =
                setA == setB
                ? "same ids in another order (first difference at index \(i): '\(a.ids[i])' vs '\(b.ids[i])')"
                : "id \(i) is '\(a.ids[i])' vs '\(b.ids[i])'"
            throw CKAError.inputsDiffer(fileA: a.path, fileB: b.path, detail: detail)
        }
    }

    /// Compares every selected layer of `a` with every selected layer of `b` (or of `a` itself).
    /// - Parameter distribution: shares the minibatches with other processes (minibatch estimator); the matrix
    ///   is then filled on the accumulating process only (empty elsewhere), with the same bits as one process.
    public static func run(
        _ a: ActivationStore, _ b: ActivationStore? = nil, options: CKAOptions = CKAOptions(),
        distribution: MinibatchDistribution? = nil,
        progress: ((CKAProgress) -> Void)? = nil
    ) throws -> CKAResult {
        let other = b ?? a
        if b != nil { try checkSameInputs(a, other) }
        let layersA = try selectLayers(a, patterns: options.layersA)
        let layersB = try selectLayers(other, patterns: options.layersB ?? (b == nil ? options.layersA : nil))
        var options = options
        if options.explicitBatchSize == nil, options.estimator == .minibatch {
            // Defaults work on default outputs: the batch size the Grams were stored with.
            let stored = Set(
                [(a, layersA), (other, layersB)].flatMap { store, names in
                    names.compactMap { store.grams[$0]?.batchSize }
                })
            if stored.count == 1, let size = stored.first { options.batchSize = size }
        }
        var result = CKAResult(
            modelA: a.modelName, modelB: other.modelName, fileA: a.path, fileB: other.path,
            layersA: layersA, layersB: layersB, matrix: [], estimator: options.estimator,
            batchSize: options.batchSize, tokens: options.tokens, examplesUsed: 0, batches: 0,
            passes: 1, usedStoredGrams: false, warnings: [])
        do {
            switch options.estimator {
            case .minibatch:
                try runMinibatch(a, other, layersA, layersB, options, &result, distribution, progress)
            case .debiased, .linear, .rbf:
                try runFullSet(a, other, layersA, layersB, options, &result, progress)
            }
        } catch let e as CKAError {
            throw rangeDiagnosis(e, stores: [a, other]) ?? e
        }
        return result
    }
    /// A finite layer whose Grams overflow (values ≳ 10¹⁹) or underflow (≲ 10⁻¹⁹) in float32 is reported as
    /// such, not as "NaN or Inf" or "zero variance". Looks at the first rows of the layer named by `error`.
    static func rangeDiagnosis(_ error: CKAError, stores: [ActivationStore]) -> CKAError? {
        let file: String, layer: String
        switch error {
        case let .nonFinite(f, l, _), let .zeroVariance(f, l): (file, layer) = (f, l)
        default: return nil
        }
        guard let store = stores.first(where: { $0.path == file }), store.layers.contains(where: { $0.name == layer }),
            let x = try? store.read(layer, rows: 0..<min(store.count, 256))
        else { return nil }
        var largest: Float = 0, finite = true
        x.withUnsafeBufferPointer { p in
            for v in p { if v.isFinite { largest = max(largest, abs(v)) } else { finite = false } }
        }
        guard finite else { return nil }
        if largest > 1e18 {
            return .outOfRange(
                file: file, layer: layer,
                detail: "holds values up to \(largest): its float32 Grams overflow "
                    + "(CKA does not change when a layer is scaled: divide it by a constant)")
        }
        if largest > 0, largest < 1e-15 {
            return .outOfRange(
                file: file, layer: layer,
                detail: "holds values of at most \(largest): its float32 Grams underflow "
                    + "to 0 (CKA does not change when a layer is scaled: multiply it by a constant)")
        }
        return nil
    }

    // MARK: Minibatch

    private static func runMinibatch(
        _ a: ActivationStore, _ b: ActivationStore, _ la: [String], _ lb: [String],
        _ o: CKAOptions, _ result: inout CKAResult, _ distribution: MinibatchDistribution?,
        _ progress: ((CKAProgress) -> Void)?
    ) throws {
        let plan = try MinibatchPlan(examples: a.count, options: o)
        result.warnings += plan.warnings
        let stored = try decideStoredGrams(a, b, la, lb, o, shuffled: plan.shuffled)
        result.usedStoredGrams = !stored.isEmpty
        var acc = MinibatchCKA(layerCountA: la.count, layerCountB: lb.count)
        let total = plan.batches.count
        var rounds = BatchRounds(distribution, total: total)
        result.usedMemoryMap = try hsicTerms(
            a, la, b, lb, options: o, batches: plan.batches.filter(rounds.owns),
            storedGrams: stored
        ) { batch, terms in
            try rounds.add(terms, into: &acc)
            progress?(CKAProgress(done: batch.ordinal + 1, total: total, unit: "minibatches"))
        }
        try rounds.finish(into: &acc)
        if rounds.accumulates {
            result.matrix = try acc.matrix(layerNamesA: la, layerNamesB: lb, fileA: a.path, fileB: b.path)
        }
        result.examplesUsed = plan.batchesPerPass * plan.batchSize
        result.batches = plan.batchesPerPass
        result.passes = plan.passes
    }

    /// The HSIC₁ terms of `batches` (a plan's minibatches, or any subset of them in plan order), handed to
    /// `consume` batch by batch. The layers in `storedGrams` come from their stored Grams; the others from
    /// memory-mapped rows when every one of them lies in its file as plain float32 (and `options.memoryMap`),
    /// else from HDF5 reads. Adding the terms of a plan's batches in ordinal order gives the same bits however
    /// the plan was split.
    /// - Returns: true if the memory-mapped source was used.
    @discardableResult
    package static func hsicTerms(
        _ a: ActivationStore, _ la: [String], _ b: ActivationStore, _ lb: [String],
        options o: CKAOptions, batches: [Minibatch], storedGrams: Set<LayerRef> = [],
        consume: (Minibatch, MinibatchCKA.BatchTerms) throws -> Void
    ) throws -> Bool {
        var source = try ComparisonGrams(a, la, b, lb, storedGrams: storedGrams, options: o, batches: batches)
        try withBLASThreads(source.blasThreads) {
            for batch in batches {
                let grams = try source.grams(for: batch)
                try consume(batch, MinibatchCKA.terms(gramsA: grams.a, gramsB: grams.b))
            }
        }
        return source.usesMemoryMap
    }

    /// The layers whose stored Grams are used; the others are computed from their activations.
    static func decideStoredGrams(
        _ a: ActivationStore, _ b: ActivationStore, _ la: [String], _ lb: [String],
        _ o: CKAOptions, shuffled: Bool
    ) throws -> Set<LayerRef> {
        if o.gramSource == .activations { return [] }
        var problems: [(String, String, String)] = []
        var stored = Set<LayerRef>()
        for (store, names) in [(a, la), (b, lb)] {
            for name in names {
                let hasActivations = store.layers.contains { $0.name == name }
                guard let g = store.grams[name] else {
                    problems.append((store.path, name, "no /grams/\(name)"))
                    continue
                }
                var why: String?
                if g.batchSize != o.batchSize {
                    why = "stored with batch size \(g.batchSize), asked for \(o.batchSize)"
                } else if g.tokens != o.tokens.rawValue {
                    why = "stored with tokens=\(g.tokens), asked for \(o.tokens.rawValue)"
                } else if g.batchCount < store.count / o.batchSize {
                    why = "only \(g.batchCount) batches stored"
                } else if shuffled {
                    why = "stored Grams follow file order, so `shuffle`/`passes` need activations"
                }
                if let why {
                    // Without activations to fall back on, a mismatch is an error even in auto mode.
                    if !hasActivations || o.gramSource == .stored {
                        throw CKAError.gramsMismatch(file: store.path, layer: name, detail: why)
                    }
                    problems.append((store.path, name, why))
                } else {
                    stored.insert(LayerRef(store, name))
                }
            }
        }
        if o.gramSource == .stored, let p = problems.first {
            throw CKAError.gramsMismatch(file: p.0, layer: p.1, detail: p.2)
        }
        return stored
    }

    /// A seeded permutation of 0..<n (Fisher–Yates with SplitMix64; the same on every platform).
    public static func permutation(_ n: Int, seed: UInt64) -> [Int] {
        var rng = SplitMix64(seed: seed)
        var p = Array(0..<n)
        if n < 2 { return p }
        for i in stride(from: n - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            p.swapAt(i, j)
        }
        return p
    }
}
