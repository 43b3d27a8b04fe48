import CKAIO
import CKATensor

/// Bootstrap intervals and permutation tests of minibatch CKA, without recomputing a Gram:
///
/// - bootstrap: each replicate draws the plan's K minibatches with replacement and recombines their
///   HSIC₁ terms (`MinibatchCKA.BatchTerms`): CKA* = Σ cross / √(Σ selfA · Σ selfB) over the draw;
/// - permutations: within every minibatch, a random permutation π (a function of seed, replicate and the
///   batch's ordinal) is applied to the rows and columns of B's U-centred Grams; the self terms do not
///   change, the cross terms become ⟨K̃, P L̃ Pᵀ⟩/(b(b − 3)). One pass over the data computes every replicate.
public enum MinibatchStatistics {
    /// The minibatch CKA matrix of `a`'s layers `la` against `b`'s `lb` (the same bits as `CKAComparison.run`)
    /// and its statistics.
    public static func run(_ a: ActivationStore, _ la: [String], _ b: ActivationStore, _ lb: [String],
                           options o: CKAOptions, statistics s: StatisticsOptions,
                           progress: ((Int, Int) -> Void)? = nil) throws -> (matrix: [[Double]], statistics: CellStatistics, terms: [MinibatchCKA.BatchTerms]) {
        let plan = try MinibatchPlan(examples: a.count, options: o)
        let stored = try CKAComparison.decideStoredGrams(a, b, la, lb, o, shuffled: plan.shuffled)
        let refsA = la.map { LayerRef(a, $0) }, refsB = lb.map { LayerRef(b, $0) }
        let layers = LayerRef.distinct(refsA, refsB)
        var mapped: MappedGramSource?
        if !stored, o.memoryMap { mapped = try MappedGramSource(layers: layers, tokens: o.tokens) }
        var source: any MinibatchGramSource = if stored { StoredGramSource(layers: layers) }
            else if let mapped { mapped } else { ReadGramSource(layers: layers, batches: plan.batches, tokens: o.tokens) }
        let nA = la.count, nB = lb.count, p = s.permutations
        var acc = MinibatchCKA(layerCountA: nA, layerCountB: nB)
        var terms: [MinibatchCKA.BatchTerms] = []
        var nullCross = [Double](repeating: 0, count: p * nA * nB)
        for batch in plan.batches {
            let grams = try source.grams(for: batch)
            for ref in layers where !grams[ref]!.isFinite {
                throw CKAError.nonFinite(file: ref.store.path, layer: ref.name, batch: batch.index)
            }
            let ua = try MinibatchCKA.stackUCentered(refsA.map { grams[$0]! })
            let ub = try MinibatchCKA.stackUCentered(refsB.map { grams[$0]! })
            let bs = ua.b
            let t = try MinibatchCKA.terms(uCenteredA: ua.stacked, uCenteredB: ub.stacked, batchSize: bs)
            try acc.add(t)
            terms.append(t)
            if p > 0 {
                let norm = 1 / (Double(bs) * Double(bs - 3))
                var permuted = Tensor<Double>(shape: [nB, bs * bs])
                for r in 0..<p {
                    let perm = Resampling.permutation(bs, seed: s.seed, replicate: r, part: batch.ordinal)
                    ub.stacked.withUnsafeBufferPointer { src in
                        permuted.withUnsafeMutableBufferPointer { dst in
                            for l in 0..<nB {
                                let base = l * bs * bs
                                for i in 0..<bs {
                                    let row = base + perm[i] * bs
                                    for j in 0..<bs { dst[base + i * bs + j] = src[row + perm[j]] }
                                }
                            }
                        }
                    }
                    let cross = try ua.stacked.matmul(permuted, transposeOther: true)
                    cross.withUnsafeBufferPointer { c in
                        for k in 0..<(nA * nB) { nullCross[r * nA * nB + k] += c[k] * norm }
                    }
                }
            }
            progress?(batch.ordinal + 1, plan.batches.count + (s.bootstrap > 0 ? 1 : 0))
        }
        let matrix = try acc.matrix(layerNamesA: la, layerNamesB: lb, fileA: a.path, fileB: b.path)
        var boot: [[[Double]]]?
        if s.bootstrap > 0 { boot = bootstrap(terms, layersA: nA, layersB: nB, options: s) }
        var null: [[[Double]]]?
        if p > 0 {
            null = (0..<nA).map { i in (0..<nB).map { j in
                (0..<p).map { r in nullCross[r * nA * nB + i * nB + j] / (acc.selfSumsA[i] * acc.selfSumsB[j]).squareRoot() }
            } }
        }
        return (matrix, Resampling.summarise(observed: matrix, boot: boot, null: null, options: s), terms)
    }

    /// Bootstrap replicates `[LA][LB][B]` of minibatch CKA from per-batch terms (batches drawn with replacement).
    public static func bootstrap(_ terms: [MinibatchCKA.BatchTerms], layersA nA: Int, layersB nB: Int,
                                 options s: StatisticsOptions) -> [[[Double]]] {
        let k = terms.count
        var out = Array(repeating: Array(repeating: [Double](repeating: 0, count: s.bootstrap), count: nB), count: nA)
        var cross = [Double](repeating: 0, count: nA * nB), sa = [Double](repeating: 0, count: nA), sb = [Double](repeating: 0, count: nB)
        for r in 0..<s.bootstrap {
            for i in cross.indices { cross[i] = 0 }
            for i in sa.indices { sa[i] = 0 }
            for j in sb.indices { sb[j] = 0 }
            for t in Resampling.bootstrapIndices(k, seed: s.seed, replicate: r).map({ terms[$0] }) {
                for i in cross.indices { cross[i] += t.cross[i] }
                for i in sa.indices { sa[i] += t.selfA[i] }
                for j in sb.indices { sb[j] += t.selfB[j] }
            }
            for i in 0..<nA { for j in 0..<nB { out[i][j][r] = cross[i * nB + j] / (sa[i] * sb[j]).squareRoot() } }
        }
        return out
    }
}
