import CKATensor
import Foundation

/// Position tables at another input size, as timm's `resample_abs_pos_embed` computes them: the prefix rows
/// (class, distillation, register tokens, when the table has them) are kept, the g×g patch rows are resampled to
/// n×n by `F.interpolate(mode='bicubic', antialias=True, align_corners=False)` — PyTorch's antialiased bicubic,
/// separable, Keys' kernel with a = −0.5, support 2·max(scale, 1), weights normalised per output row.
enum PositionTable {
    /// Which PyTorch bicubic: antialiased (timm, HF DINOv2 with registers) or plain `upsample_bicubic2d`
    /// (HF `Dinov2Model`: Keys' kernel with a = −0.75 at 4 clamped neighbours).
    enum Kernel { case antialiased, plain }

    /// Resamples `pos_embed` in `parameters` for inputs of `imageSize` pixels and updates the architecture.
    /// - Throws: `CheckpointError.unrecognizedLayout` if the size is not a multiple of the patch or the table
    ///   is not a square grid.
    static func resample(
        _ parameters: inout [String: Tensor<Float>], architecture a: inout ViTArchitecture, imageSize: Int,
        kernel: Kernel = .antialiased, fileName: String
    ) throws {
        guard imageSize > 0, imageSize % a.patchSize == 0 else {
            throw CheckpointError.unrecognizedLayout(
                file: fileName, expected: "an image size that is a multiple of the patch size \(a.patchSize)",
                found: "\(imageSize)")
        }
        guard let g = a.gridSize, let table = parameters["pos_embed"] else {
            throw CheckpointError.unrecognizedLayout(
                file: fileName, expected: "a square position table to resample", found: "\(a.tokenCount) rows")
        }
        let n = imageSize / a.patchSize, d = a.width
        let prefix = a.positionIncludesPrefix ? a.prefixTokens : 0
        let src = table.scalars
        let weights = kernel == .antialiased ? interpolationWeights(from: g, to: n) : plainWeights(from: g, to: n)
        // Horizontal then vertical pass, in Double; prefix rows copied.
        var horizontal = [Double](repeating: 0, count: g * n * d)
        for y in 0..<g {
            for (x, taps) in weights.enumerated() {
                let o = (y * n + x) * d
                for (k, wk) in taps {
                    let s = (prefix + y * g + k) * d
                    for c in 0..<d { horizontal[o + c] += wk * Double(src[s + c]) }
                }
            }
        }
        var out = [Float](repeating: 0, count: (prefix + n * n) * d)
        for i in 0..<prefix * d { out[i] = src[i] }
        for (y, taps) in weights.enumerated() {
            for x in 0..<n {
                let o = (prefix + y * n + x) * d
                for c in 0..<d {
                    var v = 0.0
                    for (k, wk) in taps { v += wk * horizontal[(k * n + x) * d + c] }
                    out[o + c] = Float(v)
                }
            }
        }
        parameters["pos_embed"] = try Tensor(shape: [1, prefix + n * n, d], scalars: out)
        a.gridSize = n
        a.imageSize = imageSize
        a.tokenCount = prefix + n * n
    }

    /// For each of `m` outputs along one axis of `g` inputs: the first input index and the normalised weights
    /// (PyTorch's `_compute_indices_min_size_weights_aa` for bicubic).
    static func interpolationWeights(from g: Int, to m: Int) -> [[(Int, Double)]] {
        let scale = Double(g) / Double(m)
        let support = 2 * max(scale, 1), invscale = scale >= 1 ? 1 / scale : 1
        func cubic(_ x0: Double) -> Double {
            let a = -0.5, x = abs(x0)
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        }
        return (0..<m).map { i in
            let center = scale * (Double(i) + 0.5)
            let first = max(Int(center - support + 0.5), 0)
            let count = min(Int(center + support + 0.5), g) - first
            var w = (0..<count).map { j in cubic((Double(j + first) - center + 0.5) * invscale) }
            let total = w.reduce(0, +)
            if total != 0 { w = w.map { $0 / total } }
            return w.enumerated().map { (first + $0.offset, $0.element) }
        }
    }

    /// PyTorch's `upsample_bicubic2d` (align_corners false, no antialias): source x = scale·(i + ½) − ½, the 4
    /// neighbours of ⌊x⌋ (clamped to the grid) weighted by Keys' kernel with a = −0.75.
    static func plainWeights(from g: Int, to m: Int) -> [[(Int, Double)]] {
        let scale = Double(g) / Double(m), a = -0.75
        func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        return (0..<m).map { i in
            let real = scale * (Double(i) + 0.5) - 0.5
            let base = Int(real.rounded(.down)), t = real - Double(base)
            let w = [far(t + 1), near(t), near(1 - t), far(2 - t)]
            return (0..<4).map { k in (min(max(base - 1 + k, 0), g - 1), w[k]) }
        }
    }
}
