import CKAPlot
import CKASimilarity

extension MeasureResult {
    /// The measure's matrix as a heatmap; with permutations, cells whose adjusted p-value exceeds α are marked.
    public func heatmap(title: String? = nil) -> Heatmap {
        let r = result
        let detail =
            measure == .cka
            ? (r.estimator == .minibatch ? "minibatch CKA, batch \(r.batchSize)" : "\(r.estimator.rawValue) CKA")
            : measure.rawValue
        let marks = statistics.notSignificant(alpha: statisticsOptions.alpha)
        let note = marks == nil ? "" : ", × p_adj > \(statisticsOptions.alpha)"
        var h = Heatmap(
            values: r.matrix, rowLabels: r.layersA, columnLabels: r.layersB,
            title: title ?? "\(r.modelA) vs \(r.modelB) — \(detail), N = \(r.examplesUsed)\(note)",
            xLabel: r.modelB, yLabel: r.modelA, colorbarLabel: measure.rawValue)
        h.marked = marks
        return h
    }
}
