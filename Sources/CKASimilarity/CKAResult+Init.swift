import CKATensor

extension CKAResult {
    /// A result from its parts (e.g. one computed by another process and received as a message).
    public static func assembled(
        modelA: String, modelB: String, fileA: String, fileB: String, layersA: [String], layersB: [String],
        matrix: [[Double]], estimator: CKAEstimator, batchSize: Int, tokens: TokenReduction, examplesUsed: Int,
        batches: Int, passes: Int, usedStoredGrams: Bool, usedMemoryMap: Bool, warnings: [String]
    ) -> CKAResult {
        CKAResult(
            modelA: modelA, modelB: modelB, fileA: fileA, fileB: fileB, layersA: layersA, layersB: layersB,
            matrix: matrix, estimator: estimator, batchSize: batchSize, tokens: tokens, examplesUsed: examplesUsed,
            batches: batches, passes: passes, usedStoredGrams: usedStoredGrams, usedMemoryMap: usedMemoryMap,
            warnings: warnings)
    }
}
