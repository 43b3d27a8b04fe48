import CKATensor
import Testing
import _CKATestSupport

/// The centred Gram of `x` `[n, d]` in float64 from the formula: columns centred by their mean, then X·Xᵀ.
func referenceCenteredGram(_ x: Tensor<Float>) -> [Double] {
    let n = x.shape[0], d = x.shape[1]
    var xs = x.scalars.map(Double.init)
    for j in 0..<d {
        var m = 0.0
        for i in 0..<n { m += xs[i * d + j] }
        m /= Double(n)
        for i in 0..<n { xs[i * d + j] -= m }
    }
    var g = [Double](repeating: 0, count: n * n)
    for i in 0..<n {
        for j in 0...i {
            var s = 0.0
            for p in 0..<d { s += xs[i * d + p] * xs[j * d + p] }
            g[i * n + j] = s
            g[j * n + i] = s
        }
    }
    return g
}

private func rows(of x: Tensor<Float>, _ body: ([UnsafePointer<Float>]) throws -> Tensor<Double>) rethrows
    -> Tensor<Double>
{
    let n = x.shape[0], d = x.shape[1]
    return try x.withUnsafeBufferPointer { p in try body((0..<n).map { p.baseAddress! + $0 * d }) }
}

@Suite("Gram kernel: shifted 16-lane sums, centred in float64")
struct GramKernelTests {
    @Test(
        "Every vector level (portable C, AVX2, AVX-512) gives the same bits",
        arguments: [(1, 33), (2, 17), (5, 1000), (13, 40_001), (33, 20_000), (256, 300)])
    func levelsAgree(n: Int, d: Int) {
        let x = randomTensor([n, d], seed: UInt64(n * 7 + d), offset: 3, as: Float.self)
        let levels = (0...Tensor<Float>.gramKernelBestLevel).map { level in
            rows(of: x) { Tensor<Float>.shiftedCenteredGram(rows: $0, width: d, level: level) }.scalars
        }
        #expect(Tensor<Float>.gramKernelBestLevel >= 0)
        for l in levels.indices.dropFirst() { #expect(levels[l] == levels[0], "level \(l) against portable C") }
    }

    @Test(
        "Equals the float64 centred Gram, with a mean 500× the spread; 256 rows by the kernel, 257 by SYRK",
        arguments: [(1, 50), (4, 3001), (17, 70_001), (256, 1000), (257, 1000)])
    func againstFloat64(n: Int, d: Int) throws {
        let x = randomTensor([n, d], seed: UInt64(n + d), offset: 500, as: Float.self)
        let g = try x.centeredGramOfRows()
        let ref = referenceCenteredGram(x)
        let scale = (0..<n).map { ref[$0 * n + $0] }.max()!
        // Entries are sums of d products of centred values of order 1: float32 rounding of the products and of
        // the 16-lane partial sums (flushed to float64 every 4096 columns) stays far below 1e-5 of the diagonal.
        expectClose(g.scalars, ref, atol: max(1e-5 * scale, 1e-9))
        #expect(g.scalars.allSatisfy { $0.isFinite })
        #expect((0..<n * n).allSatisfy { g[$0 / n, $0 % n] == g[$0 % n, $0 / n] }, "exactly symmetric")
    }

    @Test("Rows need not be evenly spaced or aligned; the input is untouched")
    func scatteredRows() throws {
        let n = 9, d = 5003
        let x = randomTensor([n, d], seed: 5, offset: -2, as: Float.self)
        // The same rows at odd offsets inside one buffer, in another order of addresses.
        var buffer = [Float](repeating: .nan, count: n * (d + 3) + 1)
        for i in 0..<n { for j in 0..<d { buffer[1 + (n - 1 - i) * (d + 3) + j] = x[i, j] } }
        let scattered = try buffer.withUnsafeBufferPointer { p in
            try Tensor<Float>.centeredGram(rows: (0..<n).map { p.baseAddress! + 1 + (n - 1 - $0) * (d + 3) }, width: d)
        }
        let contiguous = try x.centeredGramOfRows()
        #expect(scattered.scalars == contiguous.scalars)
        expectClose(scattered.scalars, referenceCenteredGram(x), atol: 1e-5 * Double(d))
    }
}
