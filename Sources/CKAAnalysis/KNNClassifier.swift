import CKATensor
import Foundation

/// Settings of DINO's weighted k-NN classifier (reference-models.md §5).
public struct KNNOptions: Sendable, Equatable {
    /// The neighbourhood sizes to evaluate; all come from one top-`max(ks)` selection per query.
    public var ks: [Int] = [20]
    /// Temperature T of the neighbour votes `exp(similarity / T)`.
    public var temperature: Double = 0.07
    /// Target size, in bytes, of the similarity buffer of one chunk of queries (`chunk × train size`
    /// `Float`s). A chunk holds at least `minimumChunk` queries (fewer would make the GEMM stream the
    /// whole training set for a handful of queries), so memory is `max(chunkMemory, 4·64·n)` bytes.
    public var chunkMemory: Int = 64 << 20
    /// The smallest number of queries per chunk when the chunk is derived from `chunkMemory`.
    public static let minimumChunk = 64
    /// Queries per chunk; nil derives it from `chunkMemory`. Chunking never changes the result.
    public var queryChunkSize: Int?
    /// Worker threads for the top-k selection (the GEMM uses OpenBLAS's own threads); nil = the
    /// number of active processors. The result does not depend on it.
    public var selectionThreads: Int?

    public init(ks: [Int] = [20], temperature: Double = 0.07) {
        self.ks = ks
        self.temperature = temperature
    }

    func validate() throws {
        guard !ks.isEmpty, ks.allSatisfy({ $0 >= 1 }) else {
            throw AnalysisError.invalidOption(
                "k must be at least 1 (got \(ks.map(String.init).joined(separator: ",")))")
        }
        guard temperature > 0, temperature.isFinite else {
            throw AnalysisError.invalidOption("the temperature must be positive and finite (got \(temperature))")
        }
        guard chunkMemory > 0, (queryChunkSize ?? 1) >= 1, (selectionThreads ?? 1) >= 1 else {
            throw AnalysisError.invalidOption("chunk memory, chunk size and thread count must be positive")
        }
    }
}

/// k-NN accuracy for one k.
public struct KNNAccuracy: Sendable, Equatable {
    /// Neighbourhood size.
    public let k: Int
    /// Queries whose best-scoring class is their label.
    public let top1Correct: Int
    /// Queries whose label is among the first `min(5, k, C)` classes by score.
    public let top5Correct: Int
    /// Queries evaluated.
    public let count: Int

    /// Top-1 accuracy in percent.
    public var top1: Double { count > 0 ? 100 * Double(top1Correct) / Double(count) : .nan }
    /// Top-5 accuracy in percent.
    public var top5: Double { count > 0 ? 100 * Double(top5Correct) / Double(count) : .nan }
}

/// Running counts of correct queries per k (for streaming queries chunk by chunk).
public struct KNNTally: Sendable, Equatable {
    /// The ks, in the order asked.
    public let ks: [Int]
    public fileprivate(set) var top1Correct: [Int]
    public fileprivate(set) var top5Correct: [Int]
    public fileprivate(set) var count = 0
    /// Seconds spent in the similarity GEMM and in the neighbour selection and voting.
    public fileprivate(set) var gemmSeconds = 0.0
    public fileprivate(set) var selectionSeconds = 0.0

    init(ks: [Int]) {
        self.ks = ks
        top1Correct = Array(repeating: 0, count: ks.count)
        top5Correct = Array(repeating: 0, count: ks.count)
    }

    /// The accuracies so far, one per k.
    public var accuracies: [KNNAccuracy] {
        ks.indices.map {
            KNNAccuracy(k: ks[$0], top1Correct: top1Correct[$0], top5Correct: top5Correct[$0], count: count)
        }
    }
}

/// DINO's weighted k-NN classifier (`eval_knn.py`, reference-models.md §5) on frozen features.
///
/// Train and query features are L2-normalised (`x / max(‖x‖, 1e-12)`, as `torch.nn.functional.normalize`)
/// and compared by cosine similarity. The similarities of a chunk of queries to all training examples
/// come from one float32 GEMM through the tensor core (memory: one chunk × the train size). Each query
/// keeps its `max(ks)` most similar training examples by partial selection (a bounded heap, no full
/// sort), plus every example whose float32 similarity lies within the GEMM's rounding bound
/// (`2·(D+4)·2⁻²⁴`) of the last one kept; the similarities of that short list are recomputed in
/// float64 and it is ranked exactly. So the neighbours, their similarities and the accuracies are those
/// of a float64 computation, independent of BLAS's summation order, at a cost of about
/// `max(ks)·D` multiply-adds per query next to the GEMM's `n·D`. The first `k` neighbours, for every
/// asked k, vote for their classes with weight `exp(similarity / T)`. Top-1 is correct when the best
/// class is the label; top-5 when the label is among the first `min(5, k, C)` classes.
///
/// **Ties are broken deterministically.** Neighbours are ordered by similarity (descending), equal
/// similarities by lower training index first; classes by score (descending), equal scores by lower
/// class index first (so a class with no vote ranks after every voted class, and zero-score classes in
/// index order). Votes are summed in `Double` in neighbour order. The float64 reference
/// (`notebooks-export/reference/analysis/analysis_reference.py`) does the same.
///
/// In leave-one-out mode each query is a training example and never counts as its own neighbour:
/// it is excluded by index, not by similarity, so a duplicate of it elsewhere in the set still counts.
///
/// ```swift
/// let knn = try KNNClassifier(features: train, labels: trainLabels)
/// let acc = try knn.evaluate(queries: test, labels: testLabels, options: KNNOptions(ks: [10, 20]))
/// print(acc[1].top1)            // 20-NN top-1 accuracy in percent
/// ```
public struct KNNClassifier: Sendable {
    /// The training features `[n, D]`, as given (normalisation is applied through `norms`), except rows of extreme
    /// magnitude (beyond 2^±40), which are scaled by a power of two (exact; cosine similarities unchanged) so that
    /// the float32 dot products neither overflow nor underflow.
    public let features: Tensor<Float>
    /// The L2 norm of each training row, `max(‖x‖, 1e-12)`, in `Double` (`[n]`).
    public let norms: Tensor<Double>
    /// `Float(1 / norms[j])`: the column scale of the float32 similarities (`[n]`).
    let inverseNorms: Tensor<Float>
    /// The class of each training example.
    public let labels: [Int]
    /// Number of classes C (scores are kept for classes `0..<C`).
    public let classCount: Int

    /// Training examples n.
    public var trainCount: Int { features.rowCount }
    /// Feature width D.
    public var width: Int { features.rank == 2 ? features.shape[1] : 0 }

    /// A classifier over `features` `[n, D]` with `labels` (each in `0..<classCount`).
    /// - Parameter classCount: C; nil = the largest label + 1.
    /// - Throws: `AnalysisError.invalidOption` for a non-matrix, mismatched labels, a label outside
    ///   `0..<C`; `.nonFinite` (with an empty path: callers with a file add it) for NaN/Inf features.
    public init(features: Tensor<Float>, labels: [Int], classCount: Int? = nil) throws {
        guard features.rank == 2 else {
            throw AnalysisError.invalidOption("k-NN features must be [n, D], got \(describeShape(features.shape))")
        }
        guard labels.count == features.rowCount else {
            throw AnalysisError.invalidOption("k-NN: \(labels.count) labels for \(features.rowCount) training examples")
        }
        let c = classCount ?? ((labels.max() ?? -1) + 1)
        if let bad = labels.first(where: { $0 < 0 || $0 >= c }) {
            throw AnalysisError.invalidOption("k-NN: training label \(bad) is outside 0..<\(c)")
        }
        guard allFinite(features) else { throw AnalysisError.nonFinite(path: "", layer: "") }
        let features = KNNClassifier.rescaledRows(features)
        self.features = features
        let rowNorms = KNNClassifier.rowNorms(features)
        norms = try Tensor(shape: [rowNorms.count], scalars: rowNorms)
        inverseNorms = try Tensor(shape: [rowNorms.count], scalars: rowNorms.map { Float(1 / $0) })
        self.labels = labels
        self.classCount = c
    }

    /// `max(‖x_i‖, 1e-12)` for each row, accumulated in `Double`.
    static func rowNorms(_ x: Tensor<Float>) -> [Double] {
        let n = x.rowCount, d = x.rowSize
        var out = [Double](repeating: 0, count: n)
        x.withUnsafeBufferPointer { src in
            guard let s = src.baseAddress else { return }
            for i in 0..<n {
                let row = s + i * d
                var ss: Double = 0
                for j in 0..<d { let v = Double(row[j]); ss += v * v }
                out[i] = max(ss.squareRoot(), 1e-12)
            }
        }
        return out
    }

    /// `x` with each row whose largest magnitude lies beyond 2^±40 multiplied by a power of two that brings it into
    /// [0.5, 1): exact in float32, so the cosine similarities are unchanged, and the float32 dot products of features
    /// at scales of 10²⁰ (or 10⁻²⁰) no longer overflow (underflow). `x` itself when no row needs it.
    static func rescaledRows(_ x: Tensor<Float>) -> Tensor<Float> {
        guard x.rank == 2 else { return x }
        let n = x.rowCount, d = x.rowSize
        var scales: [Float] = Array(repeating: 1, count: n), any = false
        x.withUnsafeBufferPointer { p in
            for i in 0..<n {
                var m: Float = 0
                for j in 0..<d { m = max(m, abs(p[i * d + j])) }
                if m.isFinite, m > 0x1p40 || (m > 0 && m < 0x1p-40) {
                    scales[i] = Float(sign: .plus, exponent: -(m.exponent + 1), significand: 1)
                    any = true
                }
            }
        }
        guard any else { return x }
        var out = x
        out.withUnsafeMutableBufferPointer { p in
            for i in 0..<n where scales[i] != 1 { for j in 0..<d { p[i * d + j] *= scales[i] } }
        }
        return out
    }

    /// Rows scaled to unit L2 norm (`x / max(‖x‖, 1e-12)`), as a new tensor.
    public static func normalized(_ x: Tensor<Float>) -> Tensor<Float> {
        let n = x.rowCount, d = x.rowSize
        let norms = rowNorms(x)
        var out = Tensor<Float>(shape: [n, d])
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                guard let s = src.baseAddress, let o = dst.baseAddress else { return }
                for i in 0..<n {
                    let inv = 1 / norms[i]
                    for j in 0..<d { o[i * d + j] = Float(Double(s[i * d + j]) * inv) }
                }
            }
        }
        return out
    }

    /// Accuracy on `queries` `[m, D]` with `labels`, one entry per k of `options.ks` (in that order).
    /// - Throws: `AnalysisError` for bad options, k > train size, a width mismatch or non-finite queries.
    public func evaluate(queries: Tensor<Float>, labels: [Int], options: KNNOptions = KNNOptions()) throws
        -> [KNNAccuracy]
    {
        var tally = try makeTally(options: options, leaveOneOut: false)
        try accumulate(queries: queries, labels: labels, options: options, into: &tally)
        return tally.accuracies
    }

    /// Leave-one-out accuracy: every training example is a query against all the others.
    public func evaluateLeaveOneOut(options: KNNOptions = KNNOptions()) throws -> [KNNAccuracy] {
        var tally = try makeTally(options: options, leaveOneOut: true)
        try accumulateLeaveOneOut(rows: 0..<trainCount, options: options, into: &tally)
        return tally.accuracies
    }

    /// An empty tally for `options`, after checking them against this training set.
    /// - Throws: `AnalysisError.invalidOption` or `.kTooLarge` (path empty: callers with a file add it).
    public func makeTally(options: KNNOptions, leaveOneOut: Bool) throws -> KNNTally {
        try options.validate()
        let available = leaveOneOut ? trainCount - 1 : trainCount
        if let k = options.ks.max(), k > available {
            throw AnalysisError.kTooLarge(k: k, trainCount: available, path: "", leaveOneOut: leaveOneOut)
        }
        return KNNTally(ks: options.ks)
    }

    /// Adds the queries `[m, D]` with their labels to `tally`. Call it chunk by chunk to stream a large
    /// query set; the result does not depend on the chunks.
    public func accumulate(
        queries: Tensor<Float>, labels queryLabels: [Int], options: KNNOptions,
        into tally: inout KNNTally
    ) throws {
        guard queries.rank == 2, queries.shape[1] == width else {
            throw AnalysisError.invalidOption(
                "k-NN: queries have shape \(describeShape(queries.shape)), expected [m, \(width)]")
        }
        guard allFinite(queries) else { throw AnalysisError.nonFinite(path: "", layer: "") }
        try run(queries, labels: queryLabels, firstTrainIndex: nil, options: options, into: &tally)
    }

    /// Adds training examples `rows` as leave-one-out queries to `tally`: each is classified by all
    /// the other training examples (it is excluded from its own neighbours by index).
    public func accumulateLeaveOneOut(rows: Range<Int>, options: KNNOptions, into tally: inout KNNTally) throws {
        guard rows.lowerBound >= 0, rows.upperBound <= trainCount else {
            throw AnalysisError.invalidOption(
                "k-NN: leave-one-out rows \(rows) are not training examples 0..<\(trainCount)")
        }
        try run(
            features.rows(rows), labels: Array(labels[rows]), firstTrainIndex: rows.lowerBound, options: options,
            into: &tally)
    }

    /// Chunked GEMM + exact neighbour search; calls `body(worker, query index, search)` for every
    /// query, on `workers` threads (each query once; `body` must only touch per-worker state).
    private func search(
        _ q: Tensor<Float>, firstTrainIndex: Int?, kMax: Int, options: KNNOptions,
        body: @escaping @Sendable (_ worker: Int, _ query: Int, _ search: inout NeighbourSearch) -> Void
    )
        throws -> (gemm: Double, selection: Double)
    {
        var gemmTime = 0.0, selectionTime = 0.0
        let q = KNNClassifier.rescaledRows(q)
        let m = q.rowCount, n = trainCount, d = width
        let chunk = max(
            1,
            min(
                m,
                options.queryChunkSize
                    ?? max(KNNOptions.minimumChunk, options.chunkMemory / max(1, n * MemoryLayout<Float>.stride))))
        let threads = max(1, options.selectionThreads ?? ProcessInfo.processInfo.activeProcessorCount)
        let queryNorms = firstTrainIndex.map { f in (0..<m).map { norms.pointer[f + $0] } } ?? KNNClassifier.rowNorms(q)
        // Rounding bound of a float32 dot product of length D, relative to ‖q‖‖t‖, for both compared values.
        let relativeMargin = 2 * Double(d + 4) * 0x1p-24
        // The similarity buffer of one chunk: raw memory (GEMM with beta = 0 writes every element).
        let sims = UnsafeMutablePointer<Float>.allocate(capacity: max(1, chunk * n))
        defer { sims.deallocate() }
        let context = SearchContext(
            train: UnsafeSendablePointer(features.pointer), trainNorms: UnsafeSendablePointer(norms.pointer),
            inverseNorms: UnsafeSendablePointer(inverseNorms.pointer), n: n, d: d)
        try withExtendedLifetime((features, norms, inverseNorms)) {
            var start = 0
            while start < m {
                let rows = min(chunk, m - start)
                let block = q.rows(start..<start + rows)
                let t0 = DispatchTime.now().uptimeNanoseconds
                try gemm(
                    MatrixRef(block.pointer, rows: rows, cols: d), MatrixRef(features.pointer, rows: n, cols: d),
                    transposeB: true, into: MutableMatrixRef(sims, rows: rows, cols: n))
                let t1 = DispatchTime.now().uptimeNanoseconds
                gemmTime += Double(t1 - t0) * 1e-9
                let workers = rows >= 64 ? min(threads, rows / 32) : 1
                let simPointer = UnsafeSendablePointer(UnsafePointer(sims)),
                    queryPointer = UnsafeSendablePointer(block.pointer)
                let first = start
                withExtendedLifetime(block) {
                    let work: @Sendable (Int) -> Void = { w in
                        let lo = rows * w / workers, hi = rows * (w + 1) / workers
                        var s = NeighbourSearch(capacity: kMax)
                        for i in lo..<hi {
                            let qi = first + i
                            s.search(
                                keys: simPointer.base + i * n, query: queryPointer.base + i * d,
                                queryNorm: queryNorms[qi],
                                excluding: firstTrainIndex.map { $0 + qi } ?? -1,
                                margin: relativeMargin * queryNorms[qi],
                                context: context)
                            body(w, qi, &s)
                        }
                    }
                    if workers == 1 {
                        work(0)
                    } else {
                        DispatchQueue.concurrentPerform(iterations: workers, execute: work)
                    }
                }
                selectionTime += Double(DispatchTime.now().uptimeNanoseconds - t1) * 1e-9
                start += rows
            }
        }
        return (gemmTime, selectionTime)
    }

    /// The core: raw queries `q`; query `i` is training example `firstTrainIndex + i` when that is given
    /// (leave-one-out).
    private func run(
        _ q: Tensor<Float>, labels queryLabels: [Int], firstTrainIndex: Int?, options: KNNOptions,
        into tally: inout KNNTally
    ) throws {
        try options.validate()
        guard tally.ks == options.ks else {
            throw AnalysisError.invalidOption("k-NN: the tally was made for k = \(tally.ks), not \(options.ks)")
        }
        let m = q.rowCount
        guard queryLabels.count == m else {
            throw AnalysisError.invalidOption("k-NN: \(queryLabels.count) labels for \(m) queries")
        }
        let kMax = options.ks.max() ?? 1
        let loo = firstTrainIndex != nil
        guard kMax <= trainCount - (loo ? 1 : 0) else {
            throw AnalysisError.kTooLarge(k: kMax, trainCount: trainCount - (loo ? 1 : 0), path: "", leaveOneOut: loo)
        }
        let ks = options.ks, c = classCount, temperature = options.temperature
        let trainLabels = labels
        let maxWorkers = max(1, options.selectionThreads ?? ProcessInfo.processInfo.activeProcessorCount)
        // Per worker: correct counts (top-1, top-5 per k) and a score buffer of C classes.
        let counts = UnsafeSendableBuffer<Int>(count: maxWorkers * ks.count * 2)
        let scores = UnsafeSendableBuffer<Double>(count: maxWorkers * c)
        defer { counts.deallocate(); scores.deallocate() }
        let time = try search(
            q, firstTrainIndex: firstTrainIndex, kMax: kMax, options: options,
            body: { w, qi, s in
                let sc = UnsafeMutableBufferPointer(start: scores.base + w * c, count: c)
                let out = counts.base + w * ks.count * 2
                let label = queryLabels[qi]
                for (ki, k) in ks.enumerated() {
                    for cc in 0..<c { sc[cc] = 0 }
                    for j in 0..<k { sc[trainLabels[s.index(j)]] += Foundation.exp(s.similarity(j) / temperature) }
                    let rank = classRank(of: label, scores: sc)
                    if rank == 0 { out[2 * ki] += 1 }
                    if rank < min(5, k, c) { out[2 * ki + 1] += 1 }
                }
            })
        for w in 0..<maxWorkers {
            for ki in ks.indices {
                tally.top1Correct[ki] += counts.base[w * ks.count * 2 + 2 * ki]
                tally.top5Correct[ki] += counts.base[w * ks.count * 2 + 2 * ki + 1]
            }
        }
        tally.count += m
        tally.gemmSeconds += time.gemm
        tally.selectionSeconds += time.selection
    }

    /// The `k` nearest training examples of each query, most similar first (ties: lower index first):
    /// training indices and cosine similarities (float64), `[m][k]`. For inspection and tests.
    public func neighbours(of queries: Tensor<Float>, k: Int) throws -> (indices: [[Int]], similarities: [[Double]]) {
        guard queries.rank == 2, queries.shape[1] == width else {
            throw AnalysisError.invalidOption(
                "k-NN: queries have shape \(describeShape(queries.shape)), expected [m, \(width)]")
        }
        guard allFinite(queries) else { throw AnalysisError.nonFinite(path: "", layer: "") }
        return try nearest(queries, k: k, firstTrainIndex: nil)
    }

    /// The `k` nearest other training examples of training examples `rows` (leave-one-out).
    public func leaveOneOutNeighbours(rows: Range<Int>, k: Int) throws -> (indices: [[Int]], similarities: [[Double]]) {
        guard rows.lowerBound >= 0, rows.upperBound <= trainCount else {
            throw AnalysisError.invalidOption("k-NN: rows \(rows) are not training examples 0..<\(trainCount)")
        }
        return try nearest(features.rows(rows), k: k, firstTrainIndex: rows.lowerBound)
    }

    private func nearest(_ q: Tensor<Float>, k: Int, firstTrainIndex: Int?) throws -> (
        indices: [[Int]], similarities: [[Double]]
    ) {
        let available = trainCount - (firstTrainIndex == nil ? 0 : 1)
        guard k >= 1, k <= available else {
            throw AnalysisError.kTooLarge(k: k, trainCount: available, path: "", leaveOneOut: firstTrainIndex != nil)
        }
        let m = q.rowCount
        let idx = UnsafeSendableBuffer<Int>(count: m * k), sim = UnsafeSendableBuffer<Double>(count: m * k)
        defer { idx.deallocate(); sim.deallocate() }
        var o = KNNOptions(ks: [k])
        o.selectionThreads = 1
        _ = try search(
            q, firstTrainIndex: firstTrainIndex, kMax: k, options: o,
            body: { _, qi, s in
                for j in 0..<k { idx.base[qi * k + j] = s.index(j); sim.base[qi * k + j] = s.similarity(j) }
            })
        return (
            (0..<m).map { i in (0..<k).map { idx.base[i * k + $0] } },
            (0..<m).map { i in (0..<k).map { sim.base[i * k + $0] } }
        )
    }
}
