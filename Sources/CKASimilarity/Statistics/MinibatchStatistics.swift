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
        try nullCross.withUnsafeMutableBufferPointer { out in
            switch statistics.permutationPrecision {
            case .float32:
                try Self.addNull(
                    Float.self, ua.stacked, ub.stacked, layersA: nA, layersB: nB, b: bs, permutations: p,
                    seed: statistics.seed, ordinal: ordinal, into: SharedBuffer(out.baseAddress!))
            case .float64:
                try Self.addNull(
                    Double.self, ua.stacked, ub.stacked, layersA: nA, layersB: nB, b: bs, permutations: p,
                    seed: statistics.seed, ordinal: ordinal, into: SharedBuffer(out.baseAddress!))
            }
        }
    }

    /// Adds Σ over this batch of the permuted cross terms ⟨K̃, P L̃ Pᵀ⟩/(b(b − 3)) to `sums` (`[permutation][LA·LB]`),
    /// with the products in `T`.
    ///
    /// ⟨K̃, P L̃ Pᵀ⟩ = 2 Σ_{a<c} K̃[a,c] L̃[π(a),π(c)] (symmetric, zero diagonal): A's packed upper triangles
    /// `[LA, b(b−1)/2]` against B's permuted ones. B's Grams are first interleaved as `[b, b, LB′]` (the LB layers of
    /// one entry side by side, padded to 16 bytes), so one permuted entry is one short contiguous copy for every
    /// layer. Permutations go in fixed groups of `permutationGroup`; each group walks the triangle in row chunks
    /// whose gathered entries `[chunk, group·LB′]` stay in cache, and adds one GEMM [LA, chunk]·[chunk, group·LB′]
    /// (in `T`, from zero) per chunk to float64 sums. Groups are spread over the threads; a group's arithmetic does
    /// not depend on which thread ran it, so the sums have the same bits for every thread count.
    private static func addNull<T: _BLASScalar & BinaryFloatingPoint>(
        _: T.Type, _ ua: Tensor<Double>, _ ub: Tensor<Double>, layersA nA: Int, layersB nB: Int, b bs: Int,
        permutations p: Int, seed: UInt64, ordinal: Int, into sums: SharedBuffer
    ) throws {
        let m = bs * (bs - 1) / 2
        let size = MemoryLayout<T>.stride
        let lanes = 16 / size  // scalars per 16-byte move
        let moves = (nB + lanes - 1) / lanes
        let width = ([1, 2, 3, 4, 6, 8].first { $0 >= moves } ?? moves) * lanes  // LB′: padded layers per entry
        let entryBytes = width * size
        let scale = 2 / (Double(bs) * Double(bs - 3))
        let group = Self.permutationGroup
        let groups = (p + group - 1) / group
        let workers = max(1, min(blasThreadCount, groups))
        let chunks = Self.rowChunks(b: bs, bytesPerEntry: group * entryBytes)
        // A's packed upper triangles [LA, m] and B's interleaved Grams [b, b, LB′] in T.
        let packedA = UnsafeMutablePointer<T>.allocate(capacity: max(1, nA * m))
        let interleaved = UnsafeMutableRawPointer.allocate(byteCount: max(16, bs * bs * entryBytes), alignment: 64)
        defer { packedA.deallocate(); interleaved.deallocate() }
        ua.withUnsafeBufferPointer { sp in
            for l in 0..<nA {
                var k = l * m
                for a in 0..<bs {
                    let row = l * bs * bs + a * bs
                    for c in (a + 1)..<max(bs, a + 1) { packedA[k] = T(sp[row + c]); k += 1 }
                }
            }
        }
        ub.withUnsafeBufferPointer { sp in
            let dst = interleaved.bindMemory(to: T.self, capacity: bs * bs * width)
            for e in 0..<(bs * bs) {
                for l in 0..<width { dst[e * width + l] = l < nB ? T(sp[l * bs * bs + e]) : 0 }
            }
        }
        let source = UnsafeRawPointer(interleaved), a0 = UnsafePointer(packedA)
        try withBLASThreads(1) {
            try parallelFor(workers) { w in
                let gathered = UnsafeMutableRawPointer.allocate(
                    byteCount: max(16, group * entryBytes * chunks.longest), alignment: 64)
                let cross = UnsafeMutablePointer<T>.allocate(capacity: nA * group * width)
                let total = UnsafeMutablePointer<Double>.allocate(capacity: nA * group * width)
                // Byte offsets in `source` of row π_q(a) and column π_q(a), `[a][q]`.
                let rowOffsets = UnsafeMutablePointer<Int>.allocate(capacity: group * bs)
                let columnOffsets = UnsafeMutablePointer<Int>.allocate(capacity: group * bs)
                defer {
                    gathered.deallocate(); cross.deallocate(); total.deallocate()
                    rowOffsets.deallocate(); columnOffsets.deallocate()
                }
                for g in stride(from: w, to: groups, by: workers) {
                    let q0 = g * group, qn = min(group, p - q0), n = qn * width
                    for q in 0..<qn {
                        let perm = Resampling.permutation(bs, seed: seed, replicate: q0 + q, part: ordinal)
                        for a in 0..<bs {
                            rowOffsets[a * qn + q] = perm[a] * bs * entryBytes
                            columnOffsets[a * qn + q] = perm[a] * entryBytes
                        }
                    }
                    total.initialize(repeating: 0, count: nA * n)  // stays 0 if the triangle is empty
                    for chunk in chunks.ranges {
                        Self.gather(
                            source, b: bs, entryBytes: entryBytes, rows: chunk.rows, rowOffsets: rowOffsets,
                            columnOffsets: columnOffsets, count: qn,
                            into: gathered)
                        T._gemm(
                            false, false, Int32(nA), Int32(n), Int32(chunk.k.count), 1, a0 + chunk.k.lowerBound,
                            Int32(m), gathered.assumingMemoryBound(to: T.self), Int32(n), 0, cross, Int32(n))
                        for i in 0..<(nA * n) { total[i] += Double(cross[i]) }
                    }
                    for q in 0..<qn {
                        let row = sums.pointer + (q0 + q) * nA * nB
                        for i in 0..<nA {
                            for j in 0..<nB { row[i * nB + j] += total[i * n + q * width + j] * scale }
                        }
                    }
                }
            }
        }
    }

    /// Permutations per group of the null's GEMMs.
    static let permutationGroup = 8

    /// Consecutive rows of the strict upper triangle of a b×b matrix, cut so that a chunk's gathered entries
    /// (`bytesPerEntry` each) fit in about 256 KiB; `k` is each chunk's range in the packed order.
    static func rowChunks(b: Int, bytesPerEntry: Int) -> (ranges: [(rows: Range<Int>, k: Range<Int>)], longest: Int) {
        let target = max(b, (256 << 10) / max(1, bytesPerEntry))
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

    /// For the triangle entries (a, c), a in `rows`, c > a, in packed order, and each of `count` permutations π_q:
    /// the entry [π_q(a), π_q(c)] of `src` (`[b, b]` entries of `entryBytes`, a multiple of 16), found at byte
    /// offset `rowOffsets[a·count + q] + columnOffsets[c·count + q]`, copied to `out`, entries side by side: `out`
    /// is `[chunk, count, entry]`.
    static func gather(
        _ src: UnsafeRawPointer, b: Int, entryBytes: Int, rows: Range<Int>, rowOffsets: UnsafePointer<Int>,
        columnOffsets: UnsafePointer<Int>, count: Int, into out: UnsafeMutableRawPointer
    ) {
        typealias V = SIMD4<UInt32>
        let r = rowOffsets, c = columnOffsets
        switch entryBytes {
        case 16: gather(V.self, src, b, rows, r, c, count, out)
        case 32: gather((V, V).self, src, b, rows, r, c, count, out)
        case 48: gather((V, V, V).self, src, b, rows, r, c, count, out)
        case 64: gather((V, V, V, V).self, src, b, rows, r, c, count, out)
        case 96: gather((V, V, V, V, V, V).self, src, b, rows, r, c, count, out)
        case 128: gather((V, V, V, V, V, V, V, V).self, src, b, rows, r, c, count, out)
        default:
            let moves = entryBytes / 16
            var dst = out
            for a in rows {
                for c in (a + 1)..<b {
                    for q in 0..<count {
                        let from = src + (rowOffsets[a * count + q] &+ columnOffsets[c * count + q])
                        for v in 0..<moves {
                            dst.storeBytes(
                                of: from.loadUnaligned(fromByteOffset: v * 16, as: V.self), toByteOffset: v * 16,
                                as: V.self)
                        }
                        dst += entryBytes
                    }
                }
            }
        }
    }

    /// `gather` for entries of one fixed-size type `E` (a few 16-byte vectors, copied without a loop).
    @inline(__always)
    private static func gather<E: BitwiseCopyable>(
        _: E.Type, _ src: UnsafeRawPointer, _ b: Int, _ rows: Range<Int>, _ rowOffsets: UnsafePointer<Int>,
        _ columnOffsets: UnsafePointer<Int>, _ count: Int, _ out: UnsafeMutableRawPointer
    ) {
        let entryBytes = MemoryLayout<E>.size
        var dst = out
        for a in rows {
            let rowsOf = rowOffsets + a * count
            for c in (a + 1)..<b {
                let columns = columnOffsets + c * count
                for q in 0..<count {
                    let from = src + (rowsOf[q] &+ columns[q])
                    dst.storeBytes(of: from.loadUnaligned(as: E.self), as: E.self)
                    dst += entryBytes
                }
            }
        }
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
