import CKAAnalysis
import CKAIO
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// A committed fixture (written by notebooks-export/reference/analysis/analysis_reference.py).
func fixture(_ name: String) -> String {
    Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)!.path
}

/// The expected values of the fixtures (`analysis_expected.json`).
var expected: [String: Any] {
    guard let data = try? Data(contentsOf: URL(fileURLWithPath: fixture("analysis_expected.json"))),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return [:] }
    return object
}

/// A JSON number (or null → NaN) as a Double.
func number(_ any: Any?) -> Double {
    if let n = any as? NSNumber { return n.doubleValue }
    return .nan
}

/// Writes a small activation store with `[N, D]` layers for tests.
func writeStore(
    _ path: String, ids: [String], labels: [Int]?, classes: [String]? = nil,
    layers: [(String, Tensor<Float>)], logits: Tensor<Float>? = nil, model: String = "test"
) throws {
    let w = try ActivationStoreWriter(
        path: path, ids: ids, labels: labels, classes: classes, metadata: StoreMetadata(model: model))
    for (name, x) in layers {
        try w.addLayer(
            name, kind: .pooled, block: LayerKind.blockIndex(of: name), featureShape: Array(x.shape.dropFirst()))
        try w.append(x, to: name)
    }
    if let logits { try w.writeDataset("logits", logits) }
    try w.finish()
}

/// Gaussian clusters: `n` rows of width `d` around one random mean per class (`spread` apart).
func clusters(labels: [Int], d: Int, spread: Double, seed: UInt64) -> Tensor<Float> {
    var g = SeededGenerator(seed: seed)
    let c = (labels.max() ?? 0) + 1
    let means = (0..<(c * d)).map { _ in g.gaussian() * spread }
    var x = Tensor<Float>(shape: [labels.count, d])
    for (i, l) in labels.enumerated() {
        for j in 0..<d { x[i, j] = Float(means[l * d + j] + g.gaussian()) }
    }
    return x
}
