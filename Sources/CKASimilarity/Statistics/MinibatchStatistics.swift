import CKAIO
import CKATensor
import _CKASupport

/// A buffer whose disjoint parts are written by concurrent workers.
private struct SharedBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Double>
    init(_ p: UnsafeMutablePointer<Double>) { pointer = p }
}

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
    package static func run(
        _ a: ActivationStore, _ la: [String], _ b: ActivationStore, _ lb: [String],
        options o: CKAOptions, statistics s: StatisticsOptions,
        progress: ((Int, Int) -> Void)? = nil
    ) throws
        -> (
            matrix: [[Double]], statistics: CellStatistics, terms: [MinibatchCKA.BatchTerms], plan: MinibatchPlan,
            usedStoredGrams: Bool
        )
    {
        let plan = try MinibatchPlan(examples: a.count, options: o)
        let storedGrams = try CKAComparison.decideStoredGrams(a, b, la, lb, o, shuffled: plan.shuffled)
        var source = try ComparisonGrams(a, la, b, lb, storedGrams: storedGrams, options: o, batches: plan.batches)
        var acc = MinibatchStatisticsAccumulator(layerCountA: la.count, layerCountB: lb.count, statistics: s)
        try withBLASThreads(source.blasThreads) {
            for batch in plan.batches {
                let grams = try source.grams(for: batch)
                try acc.add(gramsA: grams.a, gramsB: grams.b, ordinal: batch.ordinal)
                progress?(batch.ordinal + 1, plan.batches.count)
            }
        }
        let out = try acc.finish(layerNamesA: la, layerNamesB: lb, fileA: a.path, fileB: b.path)
        return (out.matrix, out.statistics, acc.terms, plan, !storedGrams.isEmpty)
    }

    /// Bootstrap replicates `[LA][LB][B]` of minibatch CKA from per-batch terms (batches drawn with replacement).
    public static func bootstrap(
        _ terms: [MinibatchCKA.BatchTerms], layersA nA: Int, layersB nB: Int,
        options s: StatisticsOptions
    ) -> [[[Double]]] {
        let k = terms.count
        var out = Array(repeating: Array(repeating: [Double](repeating: 0, count: s.bootstrap), count: nB), count: nA)
        var cross = [Double](repeating: 0, count: nA * nB), sa = [Double](repeating: 0, count: nA),
            sb = [Double](repeating: 0, count: nB)
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

/// The minibatch statistics of in-memory minibatches: add each batch's Grams (or representations) with its
/// ordinal in the comparison (the permutations drawn for a batch depend on seed, replicate and ordinal only).
///
/// ```swift
/// var s = StatisticsOptions(); s.bootstrap = 1000; s.permutations = 1000; s.seed = 1
/// var acc = MinibatchStatisticsAccumulator(layerCountA: 12, layerCountB: 12, statistics: s)
/// for (k, batch) in batches.enumerated() { try acc.add(representationsA: batch.a, representationsB: batch.b, ordinal: k) }
/// let (cka, stats) = try acc.finish()
/// ```
public struct MinibatchStatisticsAccumulator: Sendable {
    public let statistics: StatisticsOptions
    public private(set) var accumulator: MinibatchCKA
    /// The HSIC₁ terms of every batch added, in order (what the bootstrap resamples).
    public private(set) var terms: [MinibatchCKA.BatchTerms] = []
    /// Σ over batches of the permuted cross terms, `[permutation][LA·LB]`.
    private var nullCross: [Double]

    public init(layerCountA: Int, layerCountB: Int, statistics: StatisticsOptions) {
        self.statistics = statistics
        accumulator = MinibatchCKA(layerCountA: layerCountA, layerCountB: layerCountB)
        nullCross = [Double](repeating: 0, count: statistics.permutations * layerCountA * layerCountB)
    }

    /// Adds one minibatch given as representations `[b, …]` (one per layer), Grams built with centred columns.
    public mutating func add(representationsA: [Tensor<Float>], representationsB: [Tensor<Float>], ordinal: Int) throws
    {
        try add(
            gramsA: representationsA.map { try $0.gram(centered: true) },
            gramsB: representationsB.map { try $0.gram(centered: true) },
            ordinal: ordinal)
    }

    /// Adds one minibatch given as `[b, b]` Grams (one per layer).
    public mutating func add(gramsA: [Tensor<Double>], gramsB: [Tensor<Double>], ordinal: Int) throws {
        let nA = accumulator.layerCountA, nB = accumulator.layerCountB
        let ua = try MinibatchCKA.stackUCentered(gramsA, expectedLayers: nA)
        let ub = try MinibatchCKA.stackUCentered(gramsB, expectedLayers: nB)
        guard ua.b == ub.b else {
            throw TensorError.shapeMismatch(
                op: "MinibatchStatistics.add", expected: "Grams of one batch size", got: "\(ua.b) and \(ub.b)")
        }
        let bs = ua.b
        let t = try MinibatchCKA.terms(uCenteredA: ua.stacked, uCenteredB: ub.stacked, batchSize: bs)
        try accumulator.add(t)
        terms.append(t)
        let p = statistics.permutations
        guard p > 0 else { return }
        // ⟨K̃, P L̃ Pᵀ⟩ = 2 Σ_{a<c} K̃[a,c] L̃[π(a),π(c)] (symmetric, zero diagonal): A's packed upper triangles
        // against B's permuted ones. Permutations go in fixed groups of `permutationGroup`; each group walks the
        // triangle in row chunks whose gathered B rows (group × LB × chunk) stay in cache, and adds one GEMM
        // [LA, chunk]·[group·LB, chunk]ᵀ per chunk. Groups are spread over the threads; a group's arithmetic
        // does not depend on which thread ran it, so the sums have the same bits for every thread count.
        let m = bs * (bs - 1) / 2
        let packedA = Self.packUpper(ua.stacked, layers: nA, b: bs)
        let scale = 2 / (Double(bs) * Double(bs - 3))
        let group = Self.permutationGroup
        let groups = (p + group - 1) / group
        let workers = max(1, min(blasThreadCount, groups))
        let chunks = Self.rowChunks(b: bs, columns: group * nB)
        let seed = statistics.seed
        let src = ub.stacked
        try nullCross.withUnsafeMutableBufferPointer { out in
            let sums = SharedBuffer(out.baseAddress!)
            try withBLASThreads(1) {
                try parallelFor(workers) { w in
                    let width = group * nB
                    let gathered = UnsafeMutablePointer<Double>.allocate(capacity: max(1, width * chunks.longest))
                    let cross = UnsafeMutablePointer<Double>.allocate(capacity: nA * width)
                    cross.initialize(repeating: 0, count: nA * width)  // stays 0 if the triangle is empty
                    let perms = UnsafeMutablePointer<Int32>.allocate(capacity: group * bs)
                    defer { gathered.deallocate(); cross.deallocate(); perms.deallocate() }
                    for g in stride(from: w, to: groups, by: workers) {
                        let q0 = g * group, qn = min(group, p - q0)
                        for q in 0..<qn {
                            let perm = Resampling.permutation(bs, seed: seed, replicate: q0 + q, part: ordinal)
                            for a in 0..<bs { perms[q * bs + a] = Int32(perm[a]) }
                        }
                        packedA.withUnsafeBufferPointer { pa in
                            src.withUnsafeBufferPointer { sp in
                                for (n, chunk) in chunks.ranges.enumerated() {
                                    let length = chunk.k.count
                                    Self.gather(
                                        sp.baseAddress!, layers: nB, b: bs, rows: chunk.rows, perms: perms,
                                        count: qn, into: gathered, stride: length)
                                    Double._gemm(
                                        false, true, Int32(nA), Int32(qn * nB), Int32(length), 1,
                                        pa.baseAddress! + chunk.k.lowerBound, Int32(m), gathered, Int32(length),
                                        n == 0 ? 0 : 1, cross, Int32(width))
                                }
                            }
                        }
                        for q in 0..<qn {
                            let row = sums.pointer + (q0 + q) * nA * nB
                            for i in 0..<nA {
                                for j in 0..<nB { row[i * nB + j] += cross[i * width + q * nB + j] * scale }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Permutations per group of the null's GEMMs.
    static let permutationGroup = 8

    /// Consecutive rows of the strict upper triangle of a b×b matrix, cut so that `columns` gathered rows of a
    /// chunk fit in about 768 KiB; `k` is each chunk's range in the packed order.
    static func rowChunks(b: Int, columns: Int) -> (ranges: [(rows: Range<Int>, k: Range<Int>)], longest: Int) {
        let target = max(b, (768 << 10) / (8 * max(1, columns)))
        var ranges: [(rows: Range<Int>, k: Range<Int>)] = []
        var a0 = 0, k0 = 0
        while a0 < b - 1 {
            var a1 = a0, k1 = k0
            while a1 < b - 1 && (k1 == k0 || k1 + (b - 1 - a1) <= k0 + target) { k1 += b - 1 - a1; a1 += 1 }
            ranges.append((a0..<a1, k0..<k1))
            a0 = a1
            k0 = k1
        }
        return (ranges, ranges.map(\.k.count).max() ?? 0)
    }

    /// For each of `count` permutations π (`perms`, b entries each) and each of `layers` stacked b×b matrices of
    /// `src`: the entries [π(a), π(c)] for a in `rows`, c > a, packed in order, as row `q·layers + l` of `out`
    /// (leading dimension `stride`).
    @inline(__always)
    static func gather(
        _ src: UnsafePointer<Double>, layers: Int, b: Int, rows: Range<Int>, perms: UnsafePointer<Int32>,
        count: Int, into out: UnsafeMutablePointer<Double>, stride: Int
    ) {
        for q in 0..<count {
            let perm = perms + q * b
            for l in 0..<layers {
                var dst = out + (q * layers + l) * stride
                let matrix = src + l * b * b
                for a in rows {
                    let row = matrix + Int(perm[a]) * b, columns = perm + a + 1, n = b - 1 - a
                    for t in 0..<n { dst[t] = row[Int(columns[t])] }
                    dst += n
                }
            }
        }
    }

    /// The strict upper triangles (row-major, a < c) of `layers` stacked `[b·b]` matrices, as `[layers, b(b−1)/2]`.
    static func packUpper(_ stacked: Tensor<Double>, layers: Int, b: Int) -> Tensor<Double> {
        let m = b * (b - 1) / 2
        var out = Tensor<Double>(shape: [layers, m])
        stacked.withUnsafeBufferPointer { sp in
            out.withUnsafeMutableBufferPointer { dst in
                for l in 0..<layers {
                    var k = l * m
                    for a in 0..<b { for c in (a + 1)..<max(b, a + 1) { dst[k] = sp[l * b * b + a * b + c]; k += 1 } }
                }
            }
        }
        return out
    }

    /// The CKA matrix (the bits of `MinibatchCKA.matrix`) and its statistics.
    public func finish(
        layerNamesA: [String]? = nil, layerNamesB: [String]? = nil, fileA: String = "A",
        fileB: String = "B"
    ) throws -> (matrix: [[Double]], statistics: CellStatistics) {
        let matrix = try accumulator.matrix(
            layerNamesA: layerNamesA, layerNamesB: layerNamesB, fileA: fileA, fileB: fileB)
        let nA = accumulator.layerCountA, nB = accumulator.layerCountB, p = statistics.permutations
        var boot: [[[Double]]]?
        if statistics.bootstrap > 0 {
            boot = MinibatchStatistics.bootstrap(terms, layersA: nA, layersB: nB, options: statistics)
        }
        var null: [[[Double]]]?
        if p > 0 {
            let sa = accumulator.selfSumsA, sb = accumulator.selfSumsB
            null = (0..<nA).map { i in
                (0..<nB).map { j in
                    (0..<p).map { r in nullCross[r * nA * nB + i * nB + j] / (sa[i] * sb[j]).squareRoot() }
                }
            }
        }
        return (matrix, Resampling.summarise(observed: matrix, boot: boot, null: null, options: statistics))
    }
}
