// knn-report: DINO's weighted k-NN of 10 000 queries against 50 000 × 768 training features, against
// the one GEMM it needs (queries·trainᵀ), measured in the same run.
//
//   swift run -c release knn-report [--queries 10000] [--train 50000] [--dim 768] [--k 20]
import CKAKit
import Foundation
import ReportSupport

#if DEBUG
    FileHandle.standardError.write(Data("knn-report: build with -c release\n".utf8))
    exit(1)
#endif

let q = Int(option("--queries", "10000"))!, n = Int(option("--train", "50000"))!, d = Int(option("--dim", "768"))!
let ks = option("--k", "20").split(separator: ",").compactMap { Int($0) }

let classes = 100
/// Gaussian clusters around 100 class centres.
func sample(_ count: Int, seed: UInt64) -> (Tensor<Float>, [Int]) {
    var rng = SplitMix64(seed: 7)
    let centres = Tensor<Float>(shape: [classes, d]) { _ in Float(rng.gaussian()) }
    rng = SplitMix64(seed: seed)
    let labels = (0..<count).map { _ in Int(rng.next() % UInt64(classes)) }
    let x = Tensor<Float>(shape: [count, d]) { i in centres[labels[i / d], i % d] + Float(rng.gaussian()) * 2 }
    return (x, labels)
}
let (train, trainLabels) = sample(n, seed: 1), (test, testLabels) = sample(q, seed: 2)
let knn = try KNNClassifier(features: train, labels: trainLabels, classCount: classes)

// The GEMM alone, chunked as the classifier does (memory of one chunk × train).
let chunk = max(64, (64 << 20) / (4 * n))
var sims = Tensor<Float>(shape: [chunk, n])
var tGemm = Double.infinity
for _ in 0..<2 {
    let t = now()
    for s in stride(from: 0, to: q, by: chunk) {
        let rows = min(chunk, q - s)
        try gemm(
            MatrixRef(test.pointer + s * d, rows: rows, cols: d), MatrixRef(train.pointer, rows: n, cols: d),
            transposeB: true, into: MutableMatrixRef(sims.mutablePointer(), rows: rows, cols: n))
    }
    tGemm = min(tGemm, now() - t)
}
var tKNN = Double.infinity
var result: [KNNAccuracy] = []
for _ in 0..<2 {
    let t = now()
    result = try knn.evaluate(queries: test, labels: testLabels, options: KNNOptions(ks: ks))
    tKNN = min(tKNN, now() - t)
}
let gflop = 2 * Double(q) * Double(n) * Double(d) / 1e9
print(
    """
    knn-report: \(q) queries × \(n) train × \(d) dims, k = \(ks), OpenBLAS \(blasCoreName), \(blasThreadCount) thread(s)
      similarity GEMM alone   \(String(format: "%.2f", tGemm)) s (\(String(format: "%.0f", gflop / tGemm)) GFLOP/s)
      k-NN (all of it)        \(String(format: "%.2f", tKNN)) s = \(String(format: "%.2f", tKNN / tGemm))× the GEMM (goal ≤ 1.5×)
      top-1 \(result.map { "k=\($0.k): \(String(format: "%.1f", $0.top1))%" }.joined(separator: ", "))
    """)
