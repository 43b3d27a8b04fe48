import CKAIO
import CKATensor
import Foundation
import _CKASupport

/// Where the `[b, b]` Grams of a minibatch comparison come from. A source is made for a list of minibatches
/// and a list of layers, and is then asked for the batches in that order. Grams come back centred (feature
/// columns centred within the batch) in Double, keyed by layer.
package protocol MinibatchGramSource {
    /// The Grams of every layer of the source over the examples of `batch`.
    mutating func grams(for batch: Minibatch) throws -> [LayerRef: Tensor<Double>]
}

/// Grams stored by extraction (`/grams/<layer>`, formats.md §1), read batch by batch.
package struct StoredGramSource: MinibatchGramSource {
    public let layers: [LayerRef]

    public init(layers: [LayerRef]) { self.layers = layers }

    public mutating func grams(for batch: Minibatch) throws -> [LayerRef: Tensor<Double>] {
        var out: [LayerRef: Tensor<Double>] = [:]
        for ref in layers { out[ref] = try ref.store.gram(ref.name, batch: batch.index) }
        return out
    }
}

/// Grams built straight from memory-mapped float32 rows (`MappedRows`): no read, no copy. Each layer's
/// Gram is centred block by block in cache; the layers of a batch are spread over the cores, one BLAS
/// thread each, and the rows used are dropped from the mapping.
package struct MappedGramSource: MinibatchGramSource {
    public let layers: [LayerRef]
    private let rows: [MappedRows]

    /// Nil if any layer cannot be mapped (compressed, float16, chunked across features) or needs a token
    /// reduction (only `flatten` of `[N, T, D]` layers reads the stored rows as they are).
    public init?(layers: [LayerRef], tokens: TokenReduction) throws {
        var rows: [MappedRows] = []
        for ref in layers {
            guard try ref.store.layer(ref.name).shape.count == 2 || tokens == .flatten,
                let m = try ref.store.mappedRows(ref.name)
            else { return nil }
            rows.append(m)
        }
        self.layers = layers
        self.rows = rows
    }

    public mutating func grams(for batch: Minibatch) throws -> [LayerRef: Tensor<Double>] {
        let indices = batch.examples, sources = rows
        var grams = [Tensor<Double>](repeating: Tensor(shape: [0]), count: sources.count)
        try withBLASThreads(1) {
            try grams.withUnsafeMutableBufferPointer { out in
                try parallelFor(sources.count) { i in
                    let m = sources[i]
                    defer { m.release(rows: indices) }
                    out[i] = try Tensor<Float>.centeredGram(rows: indices.map(m.row), width: m.rowLength)
                }
            }
        }
        return Dictionary(uniqueKeysWithValues: zip(layers, grams))
    }
}

/// Grams from activations read through HDF5 (any layout, dtype and token reduction). A reader thread reads
/// (and reduces tokens of) the next minibatches while the caller centres each one block by block in cache
/// and builds its Gram.
package final class ReadGramSource: MinibatchGramSource {
    public let layers: [LayerRef]
    private let prefetcher: BatchPrefetcher
    private var next = 0
    /// BLAS threads while building Grams: the reader takes one core.
    private let blasThreads: Int

    /// - Parameter batches: the minibatches that `grams(for:)` will be asked for, in order.
    /// - Throws: `CKAError.invalidOption` for `gap_nocls` over stores whose prefix tokens differ.
    public init(layers: [LayerRef], batches: [Minibatch], tokens: TokenReduction) throws {
        self.layers = layers
        var jobs: [BatchPrefetcher.Job] = []
        for batch in batches {
            for ref in layers {
                jobs.append(
                    .init(
                        store: ref.store, layer: ref.name, rows: batch.rows, indices: batch.indices,
                        batch: batch.index))
            }
        }
        // The caller centres every batch in cache while building its Gram (`centeredGramOfRows`): one formula
        // whichever thread is ahead, so the bits never depend on timing.
        // gap_nocls leaves out each store's prefix tokens (class, distillation, registers).
        let prefixes = Set(layers.map(\.store.prefixTokens))
        if tokens == .gapNoCLS && prefixes.count > 1 {
            throw CKAError.invalidOption(
                "tokens gap_nocls over stores with different prefix tokens (\(prefixes.sorted())): store Grams at extraction (cka extract --gram-tokens gap_nocls)"
            )
        }
        let prefix = prefixes.first ?? 1
        prefetcher = BatchPrefetcher(
            jobs: jobs,
            prepare: { x in
                if x.rank == 3 && tokens != .flatten { x = try tokens.apply(x, prefixTokens: prefix) }
            }, centre: nil)
        blasThreads = max(1, blasThreadCount - 1)
    }

    deinit { prefetcher.cancel() }

    public func grams(for batch: Minibatch) throws -> [LayerRef: Tensor<Double>] {
        try withBLASThreads(blasThreads) {
            var out: [LayerRef: Tensor<Double>] = [:]
            for ref in layers {
                out[ref] = try prefetcher.withNext(next) { x, centred in
                    try centred ? x.gramOfRows() : x.centeredGramOfRows()
                }
                next += 1
            }
            return out
        }
    }
}

/// The Grams of one comparison's minibatches: stored Grams for the layers in `storedGrams`, and for the others
/// memory-mapped rows when every one of them lies in its file as plain float32 (and `options.memoryMap`), else
/// HDF5 reads. Checks every Gram for NaN/Inf and hands them back in A's and B's layer order.
package struct ComparisonGrams {
    let refsA: [LayerRef]
    let refsB: [LayerRef]
    let layers: [LayerRef]
    private var stored: StoredGramSource?
    private var computed: (any MinibatchGramSource)?
    /// True when the computed layers come from memory-mapped rows.
    package let usesMemoryMap: Bool
    /// The BLAS threads that keep the sources' layout: one per core for mapped Grams (each single-threaded),
    /// one core fewer beside the reader thread of HDF5 reads.
    package let blasThreads: Int

    /// - Parameter batches: the minibatches that `grams(for:)` will be asked for, in order.
    package init(
        _ a: ActivationStore, _ la: [String], _ b: ActivationStore, _ lb: [String], storedGrams: Set<LayerRef>,
        options o: CKAOptions, batches: [Minibatch]
    ) throws {
        refsA = la.map { LayerRef(a, $0) }
        refsB = lb.map { LayerRef(b, $0) }
        layers = LayerRef.distinct(refsA, refsB)
        let fromStore = layers.filter { storedGrams.contains($0) }
        let rest = layers.filter { !storedGrams.contains($0) }
        stored = fromStore.isEmpty ? nil : StoredGramSource(layers: fromStore)
        let mapped = !rest.isEmpty && o.memoryMap ? try MappedGramSource(layers: rest, tokens: o.tokens) : nil
        if let mapped {
            computed = mapped
        } else if !rest.isEmpty {
            computed = try ReadGramSource(layers: rest, batches: batches, tokens: o.tokens)
        }
        usesMemoryMap = mapped != nil
        blasThreads = usesMemoryMap ? 1 : computed != nil ? max(1, blasThreadCount - 1) : blasThreadCount
    }

    /// The Grams of `batch`, A's layers then B's, each `[b, b]`.
    /// - Throws: `CKAError.nonFinite` naming the file, the layer and the minibatch.
    package mutating func grams(for batch: Minibatch) throws -> (a: [Tensor<Double>], b: [Tensor<Double>]) {
        var grams = try stored?.grams(for: batch) ?? [:]
        if let more = try computed?.grams(for: batch) { grams.merge(more) { first, _ in first } }
        for ref in layers where !grams[ref]!.isFinite {
            throw CKAError.nonFinite(file: ref.store.path, layer: ref.name, batch: batch.index)
        }
        return (refsA.map { grams[$0]! }, refsB.map { grams[$0]! })
    }
}
