import CKATensor
import Foundation
import Testing
import _CKATestSupport

@Suite("Transformer kernels split over workers")
struct KernelSplitTests {
    /// 131 rows of 771 floats: odd sizes, rows not a multiple of 4, width not a multiple of 8, and enough floats
    /// (101 001) for three workers of `parallelGrain` each, so 3 workers start their rows at 0, 43 and 87.
    static let rows = 131, width = 771

    @Test(
        "LayerNorm, GELU (forward and backward), residual add, LayerScale, bias broadcast: same bits on 1, 2, 3 workers"
    )
    func workerInvariance() {
        let (rows, width) = (Self.rows, Self.width), n = rows * width
        #expect(n / NeuralKernels.parallelGrain >= 3, "the size must be split three ways")
        let x = randomTensor([rows, width], seed: 21, offset: 3, as: Float.self)
        let y = randomTensor([rows, width], seed: 22, as: Float.self)
        let w = randomTensor([width], seed: 23, as: Float.self), b = randomTensor([width], seed: 24, as: Float.self)
        var results: [[[UInt32]]] = []
        for workers in [1, 2, 3] {
            var outputs: [Tensor<Float>] = []
            var out = Tensor<Float>(shape: [rows, width])
            NeuralKernels.layerNorm(
                x.pointer, out.mutablePointer(), rows: rows, width: width, weight: w.pointer, bias: b.pointer,
                workers: workers)
            outputs.append(out)
            var inPlace = x
            NeuralKernels.layerNorm(
                inPlace.pointer, inPlace.mutablePointer(), rows: rows, width: width, weight: w.pointer,
                bias: b.pointer, workers: workers)
            outputs.append(inPlace)
            var g = x
            NeuralKernels.gelu(g.mutablePointer(), count: n, workers: workers)
            outputs.append(g)
            var gOut = Tensor<Float>(shape: [rows, width])
            NeuralKernels.gelu(x.pointer, into: gOut.mutablePointer(), count: n, workers: workers)
            outputs.append(gOut)
            var gBack = y
            NeuralKernels.geluBackward(x.pointer, gradient: gBack.mutablePointer(), count: n, workers: workers)
            outputs.append(gBack)
            var sum = y
            NeuralKernels.addScaled(
                x.pointer, into: sum.mutablePointer(), rows: rows, width: width, scale: nil,
                workers: workers)
            outputs.append(sum)
            var scaledSum = y
            NeuralKernels.addScaled(
                x.pointer, into: scaledSum.mutablePointer(), rows: rows, width: width,
                scale: w.pointer, workers: workers)
            outputs.append(scaledSum)
            var scaled = x
            NeuralKernels.scaleColumns(
                scaled.mutablePointer(), rows: rows, width: width, scale: w.pointer,
                workers: workers)
            outputs.append(scaled)
            var broadcast = Tensor<Float>(shape: [rows, width])
            NeuralKernels.broadcastRows(
                b.pointer, into: broadcast.mutablePointer(), rows: rows, width: width,
                workers: workers)
            outputs.append(broadcast)
            results.append(outputs.map { $0.scalars.map(\.bitPattern) })
        }
        let names = [
            "layerNorm", "layerNorm in place", "gelu", "gelu out of place", "geluBackward", "addScaled",
            "addScaled ×scale", "scaleColumns",
            "broadcastRows",
        ]
        for (k, name) in names.enumerated() {
            #expect(results[1][k] == results[0][k] && results[2][k] == results[0][k], "\(name)")
        }
        // And against plain loops: the same elements, not merely the same split.
        #expect(results[0][0] == Self.plainLayerNorm(x, w, b).map(\.bitPattern), "layerNorm")
        #expect(results[0][1] == results[0][0], "layerNorm in place = out of place")
        #expect(results[0][3] == results[0][2], "gelu out of place = in place")
        let xs = x.scalars, ys = y.scalars, ws = w.scalars, bs = b.scalars
        #expect(results[0][5] == (0..<n).map { (ys[$0] + xs[$0]).bitPattern }, "addScaled")
        #expect(results[0][6] == (0..<n).map { (ys[$0] + xs[$0] * ws[$0 % width]).bitPattern }, "addScaled ×scale")
        #expect(results[0][7] == (0..<n).map { (xs[$0] * ws[$0 % width]).bitPattern }, "scaleColumns")
        #expect(results[0][8] == (0..<n).map { bs[$0 % width].bitPattern }, "broadcastRows")
    }

    @Test("LayerNorm (four rows side by side) has the bits of the one-row-at-a-time loop, widths 1 to 37 and 768")
    func layerNormBits() {
        for (rows, width) in [(7, 1), (9, 5), (5, 8), (11, 37), (6, 768)] {
            // Mixed magnitudes and a large offset, so a changed summation order would show in the last bits.
            var x = randomTensor([rows, width], seed: UInt64(width), offset: 50, as: Float.self)
            for i in stride(from: 0, to: x.count, by: 3) { x.mutablePointer()[i] *= 1e3 }
            let w = randomTensor([width], seed: 2, as: Float.self), b = randomTensor([width], seed: 3, as: Float.self)
            var y = Tensor<Float>(shape: [rows, width])
            NeuralKernels.layerNorm(
                x.pointer, y.mutablePointer(), rows: rows, width: width, weight: w.pointer, bias: b.pointer)
            let same = y.scalars.map(\.bitPattern) == Self.plainLayerNorm(x, w, b).map(\.bitPattern)
            #expect(same, "\(rows)×\(width)")
        }
    }

    /// LayerNorm as one row at a time with sequential Double sums: the loop the kernel had before it summed four
    /// rows side by side.
    static func plainLayerNorm(_ x: Tensor<Float>, _ w: Tensor<Float>, _ b: Tensor<Float>) -> [Float] {
        let rows = x.shape[0], width = x.shape[1], n = Double(width)
        var y = [Float](repeating: 0, count: rows * width)
        for r in 0..<rows {
            var sum = 0.0
            for j in 0..<width { sum += Double(x[r, j]) }
            let mean = sum / n
            var sq = 0.0
            for j in 0..<width {
                let d = Double(x[r, j]) - mean
                sq += d * d
            }
            let inv = Float(1 / (sq / n + Double(Float(1e-6))).squareRoot()), m = Float(mean)
            for j in 0..<width { y[r * width + j] = (x[r, j] - m) * inv * w[j] + b[j] }
        }
        return y
    }
}
