import CKATensor

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

    public init(
        modelA: String, modelB: String, fileA: String, fileB: String, layersA: [String], layersB: [String],
        matrix: [[Double]], estimator: CKAEstimator, batchSize: Int, tokens: TokenReduction, examplesUsed: Int,
        batches: Int, passes: Int, usedStoredGrams: Bool, usedMemoryMap: Bool = false, warnings: [String]
    ) {
        self.modelA = modelA; self.modelB = modelB; self.fileA = fileA; self.fileB = fileB
        self.layersA = layersA; self.layersB = layersB; self.matrix = matrix; self.estimator = estimator
        self.batchSize = batchSize; self.tokens = tokens; self.examplesUsed = examplesUsed; self.batches = batches
        self.passes = passes; self.usedStoredGrams = usedStoredGrams; self.usedMemoryMap = usedMemoryMap
        self.warnings = warnings
    }
}
