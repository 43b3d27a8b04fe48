import CKAIO
import CKATensor
import Foundation

/// Where the Grams of a minibatch comparison come from.
public enum GramSource: String, CaseIterable, Sendable {
    /// For each layer, its stored `/grams/<layer>` when they match the batch size and token reduction (and no
    /// shuffling); its activations otherwise. A store from a default `extract` (pooled activations, token layers
    /// as Grams only) is compared whole this way.
    case auto
    /// Always from the activations.
    case activations
    /// Only stored Grams; an error if any is missing or does not match.
    case stored
}

/// Settings of a comparison between two activation stores.
public struct CKAOptions: Sendable {
    public var estimator: CKAEstimator = .minibatch
    /// Examples per minibatch (`minibatch` estimator); at least 4. Unless set, the batch size of the compared
    /// layers' stored Grams when they all agree on one, else 32.
    public var batchSize: Int {
        get { explicitBatchSize ?? 32 }
        set { explicitBatchSize = newValue }
    }
    /// The batch size the caller set, or nil (then taken from the stored Grams, see `batchSize`).
    public var explicitBatchSize: Int?
    /// How `[N, T, D]` layers become vectors.
    public var tokens: TokenReduction = .flatten
    /// Shuffle the examples with this seed (one permutation, applied to both files) before batching.
    public var shuffleSeed: UInt64?
    /// Number of passes over the data, each with its own permutation (seed, seed+1, …).
    public var passes = 1
    /// Layer name globs for A and B (`fnmatch` patterns, e.g. `blocks.*.norm1`); nil = all layers.
    public var layersA: [String]?
    public var layersB: [String]?
    /// RBF bandwidth as a fraction of √median squared distance, and the centring it uses.
    public var rbfThreshold = 0.5
    public var rbfDebiased = false
    public var gramSource: GramSource = .auto
    /// Upper bound on the memory of full-set Grams (N² Doubles per layer), in bytes.
    public var fullSetMemoryLimit = 8 << 30
    /// Read plain float32 layers through a memory map of the file (minibatch estimator; `--no-mmap` turns it off).
    public var memoryMap = true

    public init() {}
}

/// A layer×layer CKA matrix and how it was computed.
public struct CKAResult: Sendable {
    public var modelA: String
    public var modelB: String
    public var fileA: String
    public var fileB: String
    /// Row labels (A's layers, A's order) and column labels (B's layers).
    public var layersA: [String]
    public var layersB: [String]
    /// `matrix[i][j]` = CKA(A.layers[i], B.layers[j]).
    public var matrix: [[Double]]
    public var estimator: CKAEstimator
    /// Examples per minibatch, or N for full-set estimators.
    public var batchSize: Int
    public var tokens: TokenReduction
    /// Examples that entered the estimate (per pass).
    public var examplesUsed: Int
    public var batches: Int
    public var passes: Int
    public var usedStoredGrams: Bool
    /// True if the minibatch Grams were built straight from memory-mapped files.
    public var usedMemoryMap = false
    /// Things the user should know (e.g. a dropped short batch).
    public var warnings: [String]
}

/// Progress of a long computation: `done` of `total` units of `unit`.
public struct CKAProgress: Sendable {
    public let done: Int
    public let total: Int
    public let unit: String

    public init(done: Int, total: Int, unit: String) { self.done = done; self.total = total; self.unit = unit }
}

/// Layer×layer CKA between two activation stores, streaming minibatches with bounded memory.
public enum CKAComparison {
    /// Layer names of `store` matching any of `patterns` (`LayerGlob`; all layers if nil), in network order.
    /// Layers that only have stored Grams are included after the activation layers.
    public static func selectLayers(_ store: ActivationStore, patterns: [String]?) throws -> [String] {
        var names = store.layers.map(\.name)
        for g in store.grams.keys.sorted(by: naturalOrder) where !names.contains(g) { names.append(g) }
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
            let detail = setA == setB ? "same ids in another order (first difference at index \(i): '\(a.ids[i])' vs '\(b.ids[i])')"
                                      : "id \(i) is '\(a.ids[i])' vs '\(b.ids[i])'"
            throw CKAError.inputsDiffer(fileA: a.path, fileB: b.path, detail: detail)
        }
    }

    /// Compares every selected layer of `a` with every selected layer of `b` (or of `a` itself).
    public static func run(_ a: ActivationStore, _ b: ActivationStore? = nil, options: CKAOptions = CKAOptions(),
                           progress: ((CKAProgress) -> Void)? = nil) throws -> CKAResult {
        let other = b ?? a
        if b != nil { try checkSameInputs(a, other) }
        let layersA = try selectLayers(a, patterns: options.layersA)
        let layersB = try selectLayers(other, patterns: options.layersB ?? (b == nil ? options.layersA : nil))
        var options = options
        if options.explicitBatchSize == nil, options.estimator == .minibatch {
            // Defaults work on default outputs: the batch size the Grams were stored with.
            let stored = Set([(a, layersA), (other, layersB)].flatMap { store, names in names.compactMap { store.grams[$0]?.batchSize } })
            if stored.count == 1, let size = stored.first { options.batchSize = size }
        }
        var result = CKAResult(modelA: a.modelName, modelB: other.modelName, fileA: a.path, fileB: other.path,
                               layersA: layersA, layersB: layersB, matrix: [], estimator: options.estimator,
                               batchSize: options.batchSize, tokens: options.tokens, examplesUsed: 0, batches: 0,
                               passes: 1, usedStoredGrams: false, warnings: [])
        switch options.estimator {
        case .minibatch:
            try runMinibatch(a, other, layersA, layersB, options, &result, progress)
        case .debiased, .linear, .rbf:
            try runFullSet(a, other, layersA, layersB, options, &result, progress)
        }
        return result
    }

    // MARK: Minibatch

    private static func runMinibatch(_ a: ActivationStore, _ b: ActivationStore, _ la: [String], _ lb: [String],
                                     _ o: CKAOptions, _ result: inout CKAResult,
                                     _ progress: ((CKAProgress) -> Void)?) throws {
        let n = a.count, bs = o.batchSize
        guard bs >= 4, bs <= n else { throw CKAError.batchSize(requested: bs, examples: n) }
        guard o.passes >= 1 else { throw CKAError.invalidOption("--passes must be at least 1") }
        let k = n / bs
        if n % bs != 0 {
            result.warnings.append("the last \(n % bs) of \(n) examples do not fill a batch of \(bs) and were dropped")
        }
        let shuffled = o.shuffleSeed != nil || o.passes > 1
        let storedKeys = try decideStoredGrams(a, b, la, lb, o, shuffled: shuffled)
        let useStored = !storedKeys.isEmpty
        result.usedStoredGrams = useStored
        var acc = MinibatchCKA(layerCountA: la.count, layerCountB: lb.count)
        let total = k * o.passes
        var orders: [[Int]?] = []
        for pass in 0..<o.passes { orders.append(shuffled ? permutation(n, seed: (o.shuffleSeed ?? 0) &+ UInt64(pass)) : nil) }
        // Fast path: every layer's rows sit in its file as plain float32 (our writer, h5py's defaults) and need
        // no token reduction → each Gram is built straight from a memory map of the file (no read, no copy),
        // centred block by block in cache, the layers of a batch spread over the cores.
        if !useStored, o.memoryMap, let mapped = try mappedLayers(a, la, b, lb, tokens: o.tokens) {
            result.usedMemoryMap = true
            try runMapped(mapped, a, b, la, lb, batches: k, batchSize: bs, orders: orders, passes: o.passes,
                          accumulator: &acc, progress: progress)
            result.matrix = try acc.matrix(layerNamesA: la, layerNamesB: lb, fileA: a.path, fileB: b.path)
            result.examplesUsed = k * bs
            result.batches = k
            result.passes = o.passes
            return
        }
        // Every (batch, store, layer) read in the order the Grams are computed; a layer of a file compared
        // with itself is read once per batch.
        var jobs: [BatchPrefetcher.Job] = []
        for pass in 0..<o.passes {
            for batch in 0..<k {
                let rows = batch * bs..<(batch + 1) * bs
                var seen = Set<String>()
                for (store, names) in [(a, la), (b, lb)] {
                    for name in names where !storedKeys.contains("\(ObjectIdentifier(store).hashValue)|\(name)")
                        && seen.insert("\(ObjectIdentifier(store).hashValue)|\(name)").inserted {
                        jobs.append(.init(store: store, layer: name, rows: rows, indices: orders[pass].map { Array($0[rows]) },
                                          batch: batch))
                    }
                }
            }
        }
        // The reader thread reads (and reduces tokens) the next minibatches while the main thread builds Grams.
        // The centring goes to whichever thread has time: the reader centres a read batch in place unless the
        // main thread is already waiting for it, in which case the main thread centres it block by block in
        // cache while building the Gram (`centeredGramOfRows`). The two cores stay busy whichever is slower.
        let tokens = o.tokens
        let prefetcher = jobs.isEmpty ? nil : BatchPrefetcher(jobs: jobs, prepare: { x in
            if x.rank == 3 && tokens != .flatten { x = try tokens.apply(x) }
        }, centre: { x in try x.centerColumns() })
        defer { prefetcher?.cancel() }
        // The reader thread takes one core; leave BLAS the others (on 2 cores, 2 BLAS threads would
        // fight the reader and spin-wait).
        let blasThreads = blasThreadCount
        if prefetcher != nil && blasThreads > 1 { setBLASThreadCount(blasThreads - 1) }
        defer { setBLASThreadCount(blasThreads) }
        var next = 0
        for pass in 0..<o.passes {
            for batch in 0..<k {
                var cache: [String: Tensor<Double>] = [:]
                func grams(_ store: ActivationStore, _ names: [String]) throws -> [Tensor<Double>] {
                    try names.map { name in
                        let key = "\(ObjectIdentifier(store).hashValue)|\(name)"
                        if let g = cache[key] { return g }
                        let g: Tensor<Double>
                        if !storedKeys.contains(key), let prefetcher {
                            g = try prefetcher.withNext(next) { x, centred in try centred ? x.gramOfRows() : x.centeredGramOfRows() }
                            next += 1
                        } else {
                            g = try store.gram(name, batch: batch)
                        }
                        guard g.isFinite else { throw CKAError.nonFinite(file: store.path, layer: name, batch: batch) }
                        cache[key] = g
                        return g
                    }
                }
                let ga = try grams(a, la), gb = try grams(b, lb)
                try acc.add(gramsA: ga, gramsB: gb)
                progress?(CKAProgress(done: pass * k + batch + 1, total: total, unit: "minibatches"))
            }
        }
        result.matrix = try acc.matrix(layerNamesA: la, layerNamesB: lb, fileA: a.path, fileB: b.path)
        result.examplesUsed = k * bs
        result.batches = k
        result.passes = o.passes
    }

    /// The memory-mapped rows of every compared layer, keyed by store and layer, or nil if any layer cannot be
    /// mapped (compressed, float16, chunked across features) or needs a token reduction.
    private static func mappedLayers(_ a: ActivationStore, _ la: [String], _ b: ActivationStore, _ lb: [String],
                                     tokens: TokenReduction) throws -> [String: MappedRows]? {
        var out: [String: MappedRows] = [:]
        for (store, names) in [(a, la), (b, lb)] {
            for name in names {
                let key = "\(ObjectIdentifier(store).hashValue)|\(name)"
                if out[key] != nil { continue }
                guard try store.layer(name).shape.count == 2 || tokens == .flatten, let m = try store.mappedRows(name) else { return nil }
                out[key] = m
            }
        }
        return out
    }

    /// Minibatch CKA from memory-mapped rows: per batch, the Grams of all layers (one per core at a time,
    /// one BLAS thread each), then the HSIC sums.
    private static func runMapped(_ mapped: [String: MappedRows], _ a: ActivationStore, _ b: ActivationStore,
                                  _ la: [String], _ lb: [String], batches k: Int, batchSize bs: Int, orders: [[Int]?],
                                  passes: Int, accumulator acc: inout MinibatchCKA,
                                  progress: ((CKAProgress) -> Void)?) throws {
        var keys: [String] = [], owners: [(ActivationStore, String)] = []
        for (store, names) in [(a, la), (b, lb)] {
            for name in names {
                let key = "\(ObjectIdentifier(store).hashValue)|\(name)"
                if !keys.contains(key) { keys.append(key); owners.append((store, name)) }
            }
        }
        let blasThreads = blasThreadCount
        setBLASThreadCount(1)
        defer { setBLASThreadCount(blasThreads) }
        let results = GramResults(count: keys.count)
        let sources = keys.map { mapped[$0]! }
        for pass in 0..<passes {
            for batch in 0..<k {
                let rows = batch * bs..<(batch + 1) * bs
                let indices = orders[pass].map { Array($0[rows]) } ?? Array(rows)
                DispatchQueue.concurrentPerform(iterations: keys.count) { i in
                    let m = sources[i]
                    results.set(i, Result { try Tensor<Float>.centeredGram(rows: indices.map(m.row), width: m.rowLength) })
                    m.release(rows: indices)
                }
                var byKey: [String: Tensor<Double>] = [:]
                for (i, key) in keys.enumerated() {
                    let g = try results.get(i)
                    guard g.isFinite else { throw CKAError.nonFinite(file: owners[i].0.path, layer: owners[i].1, batch: batch) }
                    byKey[key] = g
                }
                let ga = la.map { byKey["\(ObjectIdentifier(a).hashValue)|\($0)"]! }
                let gb = lb.map { byKey["\(ObjectIdentifier(b).hashValue)|\($0)"]! }
                try acc.add(gramsA: ga, gramsB: gb)
                progress?(CKAProgress(done: pass * k + batch + 1, total: passes * k, unit: "minibatches"))
            }
        }
    }

    /// The layers (keys `store|name`) whose stored Grams are used; the others are read as activations.
    private static func decideStoredGrams(_ a: ActivationStore, _ b: ActivationStore, _ la: [String], _ lb: [String],
                                          _ o: CKAOptions, shuffled: Bool) throws -> Set<String> {
        if o.gramSource == .activations { return [] }
        var problems: [(String, String, String)] = []
        var stored = Set<String>()
        for (store, names) in [(a, la), (b, lb)] {
            for name in names {
                let hasActivations = store.layers.contains { $0.name == name }
                guard let g = store.grams[name] else {
                    problems.append((store.path, name, "no /grams/\(name)"))
                    continue
                }
                var why: String?
                if g.batchSize != o.batchSize { why = "stored with batch size \(g.batchSize), asked for \(o.batchSize)" }
                else if g.tokens != o.tokens.rawValue { why = "stored with tokens=\(g.tokens), asked for \(o.tokens.rawValue)" }
                else if g.batchCount < store.count / o.batchSize { why = "only \(g.batchCount) batches stored" }
                else if shuffled { why = "stored Grams follow file order, so --shuffle/--passes need activations" }
                if let why {
                    // Without activations to fall back on, a mismatch is an error even in auto mode.
                    if !hasActivations || o.gramSource == .stored { throw CKAError.gramsMismatch(file: store.path, layer: name, detail: why) }
                    problems.append((store.path, name, why))
                } else {
                    stored.insert("\(ObjectIdentifier(store).hashValue)|\(name)")
                }
            }
        }
        if o.gramSource == .stored, let p = problems.first { throw CKAError.gramsMismatch(file: p.0, layer: p.1, detail: p.2) }
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

    // MARK: Full set

    private static func runFullSet(_ a: ActivationStore, _ b: ActivationStore, _ la: [String], _ lb: [String],
                                   _ o: CKAOptions, _ result: inout CKAResult,
                                   _ progress: ((CKAProgress) -> Void)?) throws {
        let n = a.count
        guard n >= 4 else { throw CKAError.batchSize(requested: n, examples: n) }
        let distinct = a === b ? Array(Set(la).union(lb)).count : la.count + lb.count
        let bytes = distinct * n * n * 8
        guard bytes <= o.fullSetMemoryLimit else {
            throw CKAError.tooManyExamples(estimator: o.estimator, examples: n,
                                           limit: Int((Double(o.fullSetMemoryLimit) / Double(8 * max(distinct, 1))).squareRoot()))
        }
        var source = GramBuilder(stores: [a, b], tokens: o.tokens)
        var done = 0
        let total = distinct
        var centeredCache: [String: Tensor<Double>] = [:]
        func centered(_ store: ActivationStore, _ name: String) throws -> Tensor<Double> {
            let key = "\(ObjectIdentifier(store).hashValue)|\(name)"
            if let c = centeredCache[key] { return c }
            var g = try source.fullGram(store, name)
            guard g.isFinite else { throw CKAError.nonFinite(file: store.path, layer: name, batch: 0) }
            switch o.estimator {
            case .linear: g = try HSIC.centered(g)
            case .debiased: try HSIC.uCenter(&g)
            case .rbf:
                let r = try FullSetCKA.rbfGram(fromLinear: g, threshold: o.rbfThreshold)
                g = o.rbfDebiased ? try HSIC.uCentered(r) : try HSIC.centered(r)
            case .minibatch: break
            }
            let selfTerm = try HSIC.frobeniusInner(g, g)
            guard selfTerm > 0 else { throw CKAError.zeroVariance(file: store.path, layer: name) }
            centeredCache[key] = g
            done += 1
            progress?(CKAProgress(done: done, total: total, unit: "layers"))
            return g
        }
        let ca = try la.map { try centered(a, $0) }
        let cb = try lb.map { try centered(b, $0) }
        let na = try ca.map { try HSIC.frobeniusInner($0, $0).squareRoot() }
        let nb = try cb.map { try HSIC.frobeniusInner($0, $0).squareRoot() }
        result.matrix = try ca.indices.map { i in
            try cb.indices.map { j in try HSIC.frobeniusInner(ca[i], cb[j]) / (na[i] * nb[j]) }
        }
        result.batchSize = n
        result.examplesUsed = n
        result.batches = 1
    }
}

/// Builds Grams from activation stores with reusable buffers (one per thread of work).
struct GramBuilder {
    let stores: [ActivationStore]
    let tokens: TokenReduction
    var buffer = Tensor<Float>(shape: [0])

    init(stores: [ActivationStore], tokens: TokenReduction) {
        self.stores = stores
        self.tokens = tokens
    }

    /// The centred Gram `[N, N]` of a whole layer, built from slices along the second axis so that
    /// memory stays bounded (about 256 MiB of activations at a time).
    mutating func fullGram(_ store: ActivationStore, _ name: String) throws -> Tensor<Double> {
        let layer = try store.layer(name)
        let n = store.count
        if tokens != .flatten && layer.shape.count == 3 {
            // Reduce in row batches, then one Gram of the reduced [N, D] matrix.
            var reduced = Tensor<Float>(shape: [n, layer.shape[2]])
            let step = max(1, (64 << 20) / max(1, layer.shape.dropFirst().reduce(1, *)))
            for start in stride(from: 0, to: n, by: step) {
                let r = start..<min(n, start + step)
                try store.read(name, rows: r, into: &buffer)
                try reduced.setRows(r, from: tokens.apply(buffer))
            }
            try reduced.centerColumns()
            return try reduced.gramOfRows()
        }
        guard layer.shape.count >= 2 else {
            throw TensorError.shapeMismatch(op: "CKA of \(name)", expected: "[N, D] or [N, T, D]", got: describeShape(layer.shape))
        }
        let perAxis1 = max(1, layer.shape.dropFirst(2).reduce(1, *))
        let step = max(1, (64 << 20) / max(1, n * perAxis1))
        var total = Tensor<Double>(shape: [n, n])
        for start in stride(from: 0, to: layer.shape[1], by: step) {
            try store.read(name, rows: 0..<n, axis1: start..<min(layer.shape[1], start + step), into: &buffer)
            try buffer.centerColumns()
            let g = try buffer.gramOfRows()
            total.withUnsafeMutableBufferPointer { t in
                g.withUnsafeBufferPointer { p in for i in 0..<p.count { t[i] += p[i] } }
            }
        }
        return total
    }
}

/// Reads the activation minibatches of a comparison on a background thread, one step ahead of the Gram
/// computation, into two alternating buffers — so reading the files and building Grams overlap and memory
/// stays at two minibatches of the largest layer.
final class BatchPrefetcher: @unchecked Sendable {
    struct Job {
        let store: ActivationStore
        let layer: String
        let rows: Range<Int>
        let indices: [Int]?
        let batch: Int
    }

    /// Who centres a slot's batch.
    private enum State { case reading, raw, centring, centred, takenRaw }

    private let jobs: [Job]
    private let prepare: @Sendable (inout Tensor<Float>) throws -> Void
    private let centre: @Sendable (inout Tensor<Float>) throws -> Void
    private let slots: UnsafeMutablePointer<Tensor<Float>>
    private var failures: [Error?] = [nil, nil]
    private var states: [State] = [.reading, .reading]
    private var consumerWaiting = [false, false]
    private let filled = [DispatchSemaphore(value: 0), DispatchSemaphore(value: 0)]
    // Created at 0 and signalled once in init: libdispatch traps when a semaphore is destroyed with a
    // value below the one it was created with, which a cancelled run can leave behind.
    private let free = [DispatchSemaphore(value: 0), DispatchSemaphore(value: 0)]
    private let done = DispatchSemaphore(value: 0)
    private let condition = NSCondition()
    private var cancelled = false

    /// - Parameters:
    ///   - prepare: applied to each minibatch on the reader thread after it is read (token reduction).
    ///   - centre: applied on the reader thread too when the consumer is not yet waiting for that minibatch.
    init(jobs: [Job], prepare: @escaping @Sendable (inout Tensor<Float>) throws -> Void,
         centre: @escaping @Sendable (inout Tensor<Float>) throws -> Void) {
        self.jobs = jobs
        self.prepare = prepare
        self.centre = centre
        slots = .allocate(capacity: 2)
        slots.initialize(repeating: Tensor<Float>(shape: [0]), count: 2)
        free[0].signal(); free[1].signal()
        let thread = Thread { [self] in run() }
        thread.stackSize = 1 << 20
        thread.start()
    }

    private func run() {
        defer { done.signal() }
        for (i, job) in jobs.enumerated() {
            let s = i % 2
            free[s].wait()
            if condition.withLock({ cancelled }) { return }
            do {
                if let indices = job.indices { try job.store.read(job.layer, rowIndices: indices, into: &slots[s]) }
                else { try job.store.read(job.layer, rows: job.rows, into: &slots[s]) }
                try prepare(&slots[s])
                failures[s] = nil
            } catch {
                failures[s] = error
            }
            // Centre here unless the consumer is already waiting for this batch (then it centres on the fly).
            let claim = condition.withLock {
                states[s] = failures[s] == nil && !consumerWaiting[s] ? .centring : .raw
                return states[s] == .centring
            }
            filled[s].signal()
            if claim {
                do { try centre(&slots[s]) } catch { failures[s] = error }
                condition.withLock { states[s] = .centred; condition.broadcast() }
            }
        }
    }

    /// Waits for job `i` (taken in order) and calls `body` with its activations and whether they are centred.
    func withNext<R>(_ i: Int, _ body: (Tensor<Float>, _ centred: Bool) throws -> R) throws -> R {
        let s = i % 2
        condition.withLock { consumerWaiting[s] = true }
        filled[s].wait()
        let centred: Bool = condition.withLock {
            consumerWaiting[s] = false
            while states[s] == .centring { condition.wait() }
            let c = states[s] == .centred
            states[s] = c ? .centred : .takenRaw
            return c
        }
        defer {
            condition.withLock { states[s] = .reading }
            free[s].signal()
        }
        if let e = failures[s] { throw e }
        return try body(slots[s], centred)
    }

    /// Stops the reader (after its current read) and waits for it.
    func cancel() {
        condition.withLock { cancelled = true }
        free[0].signal(); free[1].signal()
        done.wait()
    }

    deinit {
        slots.deinitialize(count: 2)
        slots.deallocate()
    }
}

/// Per-layer Gram results written by `concurrentPerform` workers (each index by one worker).
private final class GramResults: @unchecked Sendable {
    private var values: [Result<Tensor<Double>, Error>?]
    private let lock = NSLock()
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<Tensor<Double>, Error>) { lock.withLock { values[i] = r } }
    func get(_ i: Int) throws -> Tensor<Double> { try lock.withLock { values[i]! }.get() }
}
