import CKAPlot
import CKASimilarity

extension CKAResult {
    /// The result as a heatmap (formats.md §2): A's layers on the y axis, B's on the x axis, colour
    /// bar 0–1, the two model names and the estimator in the title.
    public func heatmap(title: String? = nil) -> Heatmap {
        let detail = estimator == .minibatch ? "minibatch CKA, batch \(batchSize)" : "\(estimator.rawValue) CKA"
        return Heatmap(
            values: matrix, rowLabels: layersA, columnLabels: layersB,
            title: title ?? "\(modelA) vs \(modelB) — \(detail), N = \(examplesUsed)",
            xLabel: modelB, yLabel: modelA, colorbarLabel: "CKA (\(estimator.rawValue))")
    }
}
