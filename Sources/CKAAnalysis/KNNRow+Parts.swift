extension KNNRow {
    /// A row from its parts (e.g. computed by another process and received as a message).
    public static func assembled(feature: FeatureLayer, k: Int, top1: Double, top5: Double, count: Int) -> KNNRow {
        KNNRow(feature: feature, k: k, top1: top1, top5: top5, count: count)
    }
}
