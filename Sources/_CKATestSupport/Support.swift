// Test support shared by the test bundles (not API).
import CKATensor
import Foundation
import Testing

/// The toolkit's seeded generator, under the name the tests use.
public typealias SeededGenerator = SplitMix64

/// A tensor of standard normal samples.
public func randomTensor<S: TensorScalar>(
    _ shape: [Int], seed: UInt64, scale: Double = 1, offset: Double = 0,
    as _: S.Type = S.self
) -> Tensor<S> {
    var g = SeededGenerator(seed: seed)
    return Tensor<S>(shape: shape) { _ in S(g.gaussian() * scale + offset) }
}

/// Expects `|actual − expected| ≤ atol + rtol·|expected|` element-wise, reporting the worst element.
public func expectClose(
    _ actual: [Double], _ expected: [Double], rtol: Double = 0, atol: Double = 0,
    _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(
        actual.count == expected.count, "count \(actual.count) vs \(expected.count)", sourceLocation: sourceLocation)
    var worst = 0.0, worstIndex = -1
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        let excess = abs(a - e) - (abs(rtol) * abs(e) + abs(atol))
        if !(excess <= worst) || a.isNaN != e.isNaN { worst = excess.isNaN ? .infinity : excess; worstIndex = i }
    }
    #expect(
        worstIndex < 0,
        "\(comment.map { "\($0): " } ?? "")element \(worstIndex): \(worstIndex >= 0 ? "\(actual[worstIndex]) vs \(expected[worstIndex])" : "")",
        sourceLocation: sourceLocation)
}

/// Scalar form of `expectClose`.
public func expectClose(
    _ actual: Double, _ expected: Double, rtol: Double = 0, atol: Double = 0,
    _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    expectClose([actual], [expected], rtol: rtol, atol: atol, comment, sourceLocation: sourceLocation)
}

/// Tensor form of `expectClose` (shapes must agree).
public func expectClose<A: TensorScalar, B: TensorScalar>(
    _ actual: Tensor<A>, _ expected: Tensor<B>, rtol: Double = 0,
    atol: Double = 0, _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual.shape == expected.shape, sourceLocation: sourceLocation)
    expectClose(
        actual.scalars.map(Double.init), expected.scalars.map(Double.init), rtol: rtol, atol: atol, comment,
        sourceLocation: sourceLocation)
}

/// A fresh temporary directory, removed by the caller with `FileManager.removeItem`.
/// A suite that keeps one for all its tests holds a ``ScratchDirectory`` instead.
public func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("cka-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A fresh temporary directory that is removed with everything in it when the last reference goes away:
/// a suite struct holds one, so each test's files disappear when the test ends.
public final class ScratchDirectory: Sendable {
    public let url: URL
    public init() throws { url = try makeTemporaryDirectory() }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// The `shared/` folder beside the checkout (`../shared`), if present: real data for tests.
public var sharedDirectory: URL? {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }  // Sources/_CKATestSupport/Support.swift → checkout
    let shared = url.deletingLastPathComponent().appendingPathComponent("shared")
    return FileManager.default.fileExists(atPath: shared.path) ? shared : nil
}
