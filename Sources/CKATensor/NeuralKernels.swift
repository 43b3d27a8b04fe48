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

    /// GELU with the error function (PyTorch `nn.GELU()`): 0.5·x·(1 + erf(x/√2)), in place.
    ///
    /// erf is evaluated 16 lanes at a time with the Abramowitz–Stegun 7.1.26 rational approximation
    /// (|error| ≤ 1.5e-7, float precision) — the same formula PyTorch's vectorised CPU `erf` uses — so
    /// that GELU costs a few percent of the MLP's GEMMs instead of as much as they do with scalar `erff`.
    public static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        typealias V = SIMD16<Float>
        let c: Float = 0.707_106_781_186_547_5
        var i = 0
        let raw = UnsafeMutableRawPointer(x)
        while i + 16 <= count {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            let y = 0.5 * v * (1 + erf16(v * c))
            raw.storeBytes(of: y, toByteOffset: i * 4, as: V.self)
            i += 16
        }
        while i < count { x[i] = 0.5 * x[i] * (1 + erf1(x[i] * c)); i += 1 }
    }

    /// erf of 16 lanes (Abramowitz–Stegun 7.1.26).
    @inline(__always) static func erf16(_ z: SIMD16<Float>) -> SIMD16<Float> {
        typealias V = SIMD16<Float>
        let a = z.replacing(with: -z, where: z .< 0)
        let t = 1 / (1 + 0.327_591_1 * a)
        var poly = V(repeating: 1.061_405_429) * t - 1.453_152_027
        poly = poly * t + 1.421_413_741
        poly = poly * t - 0.284_496_736
        poly = poly * t + 0.254_829_592
        poly = poly * t
        let r = 1 - poly * exp16(-(a * a))
        return r.replacing(with: -r, where: z .< 0)
    }

    /// erf of one value with the same formula as `erf16` (for the tail of a buffer).
    @inline(__always) static func erf1(_ z: Float) -> Float {
        let a = abs(z), t = 1 / (1 + 0.327_591_1 * a)
        let poly = ((((1.061_405_429 * t - 1.453_152_027) * t + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592) * t
        let r = 1 - poly * expf(-a * a)
        return z < 0 ? -r : r
    }

    /// e^x of 16 lanes: range reduction x = n·ln2 + r and Cephes' degree-6 polynomial (≤ 2 ulp on [−87, 88]).
    @inline(__always) static func exp16(_ x0: SIMD16<Float>) -> SIMD16<Float> {
        typealias V = SIMD16<Float>
        let x = x0.clamped(lowerBound: V(repeating: -87.3), upperBound: V(repeating: 88.7))
        let n = (x * 1.442_695_04).rounded(.toNearestOrEven)
        let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4
        var p = V(repeating: 1.987_569_15e-4) * r + 1.398_199_950_7e-3
        p = p * r + 8.333_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        p = p * (r * r) + r + 1
        let bits = (SIMD16<Int32>(n, rounding: .towardZero) &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: V.self)
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
