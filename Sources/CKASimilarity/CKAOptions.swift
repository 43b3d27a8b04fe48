import CKAIO
import CKATensor

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
