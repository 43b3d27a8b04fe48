import Foundation

/// Element-wise and row-wise kernels of a transformer forward pass, on raw row-major buffers.
///
/// They work in place or into caller-owned buffers so a forward pass allocates nothing per layer.
/// Semantics follow PyTorch: LayerNorm with biased variance, exact-erf GELU, numerically stable softmax.
public enum NeuralKernels {
    /// LayerNorm over the last axis of `rows × width`: y = (x − mean)/√(var + eps)·weight + bias,
    /// biased variance (÷ width), statistics accumulated in Double. `input` and `output` may alias.
    public static func layerNorm(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, rows: Int, width: Int,
                                 weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float = 1e-6) {
        let n = Double(width)
        for r in 0..<rows {
            let x = input + r * width, y = output + r * width
            var sum = 0.0
            for j in 0..<width { sum += Double(x[j]) }
            let mean = sum / n
            var sq = 0.0
            for j in 0..<width { let d = Double(x[j]) - mean; sq += d * d }
            let inv = Float(1 / (sq / n + Double(epsilon)).squareRoot())
            let m = Float(mean)
            for j in 0..<width { y[j] = (x[j] - m) * inv * weight[j] + bias[j] }
        }
    }

    /// GELU with the exact error function (PyTorch `nn.GELU()`): 0.5·x·(1 + erf(x/√2)), in place.
    public static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let c: Float = 0.707_106_781_186_547_5
        for i in 0..<count {
            let v = x[i]
            x[i] = 0.5 * v * (1 + erff(v * c))
        }
    }

    /// Softmax over each row of `rows × width` (leading dimension `stride`), in place, after
    /// subtracting the row maximum.
    public static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, stride: Int? = nil) {
        let ld = stride ?? width
        for r in 0..<rows {
            let p = x + r * ld
            var mx = -Float.infinity
            for j in 0..<width { mx = max(mx, p[j]) }
            var s: Float = 0
            for j in 0..<width { let e = expf(p[j] - mx); p[j] = e; s += e }
            let inv = 1 / s
            for j in 0..<width { p[j] *= inv }
        }
    }

    /// Fills each of `rows` rows (length `width`) with `bias` — the starting value of a GEMM with beta = 1.
    public static func broadcastRows(_ bias: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        for r in 0..<rows { (out + r * width).update(from: bias, count: width) }
    }

    /// y[i] += x[i]·scale[i mod width] (residual add, with an optional per-channel LayerScale).
    public static func addScaled(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, width: Int,
                                 scale: UnsafePointer<Float>?) {
        if let scale {
            for r in 0..<rows {
                let a = x + r * width, b = y + r * width
                for j in 0..<width { b[j] += a[j] * scale[j] }
            }
        } else {
            for i in 0..<(rows * width) { y[i] += x[i] }
        }
    }

    /// x[i] *= scale[i mod width], in place (LayerScale).
    public static func scaleColumns(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, scale: UnsafePointer<Float>) {
        for r in 0..<rows {
            let a = x + r * width
            for j in 0..<width { a[j] *= scale[j] }
        }
    }
}
