import Foundation
import _CKASupport

/// Element-wise and row-wise kernels of a transformer forward pass, on raw row-major buffers.
///
/// They work in place or into caller-owned buffers so a forward pass allocates nothing per layer.
/// Semantics follow PyTorch: LayerNorm with biased variance, exact-erf GELU, numerically stable softmax.
package enum NeuralKernels {
    /// LayerNorm over the last axis of `rows × width`: y = (x − mean)/√(var + eps)·weight + bias,
    /// biased variance (÷ width), statistics accumulated in Double. `input` and `output` may alias.
    ///
    /// Each row's sums run in order over its elements whatever `workers` is; four rows are summed side by
    /// side (one lane each) so the additions overlap instead of waiting on one another.
    public static func layerNorm(
        _ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, rows: Int, width: Int,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float = 1e-6, workers: Int = 1
    ) {
        forEachRange(rows, unitSize: width, workers: workers) { range in
            var r = range.lowerBound
            while r + 4 <= range.upperBound {
                layerNorm4(input + r * width, output + r * width, width: width, weight, bias, epsilon)
                r += 4
            }
            while r < range.upperBound {
                layerNorm1(input + r * width, output + r * width, width: width, weight, bias, epsilon)
                r += 1
            }
        }
    }

    /// LayerNorm of four consecutive rows, their statistics in the four lanes of one SIMD value.
    private static func layerNorm4(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, width: Int,
        _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>, _ epsilon: Float
    ) {
        let x1 = x + width, x2 = x + 2 * width, x3 = x + 3 * width
        @inline(__always) func load(_ j: Int) -> SIMD4<Double> {
            SIMD4(Double(x[j]), Double(x1[j]), Double(x2[j]), Double(x3[j]))
        }
        let n = Double(width)
        var sum = SIMD4<Double>()
        for j in 0..<width { sum += load(j) }
        let mean = sum / n
        var sq = SIMD4<Double>()
        for j in 0..<width { let d = load(j) - mean; sq += d * d }
        let inv = 1 / (sq / n + Double(epsilon)).squareRoot()
        for k in 0..<4 {
            normalizeRow(x + k * width, y + k * width, width: width, Float(mean[k]), Float(inv[k]), weight, bias)
        }
    }

    /// LayerNorm of one row (the same arithmetic as one lane of `layerNorm4`).
    private static func layerNorm1(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, width: Int,
        _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>, _ epsilon: Float
    ) {
        let (mean, inv) = rowMoments(x, width: width, epsilon: epsilon)
        normalizeRow(x, y, width: width, Float(mean), Float(inv), weight, bias)
    }

    /// Mean and 1/√(biased variance + ε) of one row, summed in Double in column order (two passes).
    @inline(__always) static func rowMoments(_ x: UnsafePointer<Float>, width: Int, epsilon: Float) -> (
        mean: Double, inverseStd: Double
    ) {
        let n = Double(width)
        var sum = 0.0
        for j in 0..<width { sum += Double(x[j]) }
        let mean = sum / n
        var sq = 0.0
        for j in 0..<width { let d = Double(x[j]) - mean; sq += d * d }
        return (mean, 1 / (sq / n + Double(epsilon)).squareRoot())
    }

    /// y[j] = (x[j] − mean)·inv·weight[j] + bias[j], eight lanes at a time (explicit SIMD, so an in-place row
    /// vectorises too; the compiler's own alias check sends `x == y` to a scalar loop).
    @inline(__always) private static func normalizeRow(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, width: Int, _ mean: Float, _ inv: Float,
        _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>
    ) {
        let xr = UnsafeRawPointer(x), wr = UnsafeRawPointer(weight), br = UnsafeRawPointer(bias)
        let yr = UnsafeMutableRawPointer(y)
        var j = 0
        while j + 8 <= width {
            let o = j * 4
            let v = xr.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            let w = wr.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            let b = br.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            yr.storeBytes(of: (v - mean) * inv * w + b, toByteOffset: o, as: SIMD8<Float>.self)
            j += 8
        }
        while j < width { y[j] = (x[j] - mean) * inv * weight[j] + bias[j]; j += 1 }
    }

    /// GELU with the error function (PyTorch `nn.GELU()`): 0.5·x·(1 + erf(x/√2)), in place.
    ///
    /// erf uses the Abramowitz–Stegun 7.1.26 rational approximation (|error| ≤ 1.5e-7, float precision) —
    /// the formula PyTorch's vectorised CPU `erf` uses — with an inlined `exp`, written as a call-free loop
    /// that the compiler vectorises, so GELU costs a few percent of the MLP's GEMMs instead of as much as
    /// they do with scalar `erff`.
    public static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int, workers: Int = 1) {
        forEachRange(count, workers: workers) { range in
            for i in range {
                let v = x[i]
                x[i] = 0.5 * v * (1 + erfApprox(v * 0.707_106_781_186_547_5))
            }
        }
    }

    /// erf(z) by Abramowitz–Stegun 7.1.26: 1 − (a₁t + … + a₅t⁵)·e^(−z²), t = 1/(1 + p·|z|), odd in z.
    @inline(__always) static func erfApprox(_ z: Float) -> Float {
        let bits = z.bitPattern
        let a = Float(bitPattern: bits & 0x7fff_ffff)
        let t = 1 / (1 + 0.327_591_1 * a)
        let poly =
            ((((1.061_405_429 * t - 1.453_152_027) * t + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592) * t
        let r = 1 - poly * expApprox(-(a * a))
        return Float(bitPattern: r.bitPattern | (bits & 0x8000_0000))
    }

    /// e^x: x = n·ln2 + r with n rounded by adding 1.5·2²³, Cephes' degree-6 polynomial for e^r, and 2ⁿ
    /// assembled in the exponent bits (≤ 2 ulp on [−87, 88]; inputs outside are clamped). No calls, so
    /// loops around it vectorise.
    @inline(__always) static func expApprox(_ x0: Float) -> Float {
        let x = min(max(x0, -87.3), 88.7)
        let shifted = x * 1.442_695_04 + 12_582_912
        let n = shifted - 12_582_912
        let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4
        var p: Float = 1.987_569_15e-4 * r + 1.398_199_950_7e-3
        p = p * r + 8.333_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        p = p * (r * r) + r + 1
        let ni = Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000
        return p * Float(bitPattern: UInt32(bitPattern: (ni &+ 127) &<< 23))
    }

    /// Softmax over each row of `rows × width` (leading dimension `stride`), in place, after
    /// subtracting the row maximum. Each pass is a separate loop so the compiler vectorises it; the
    /// sum uses eight partial accumulators.
    public static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, stride: Int? = nil) {
        let ld = stride ?? width
        for r in 0..<rows {
            let p = x + r * ld
            var (m0, m1, m2, m3) = (-Float.infinity, -Float.infinity, -Float.infinity, -Float.infinity)
            var j = 0
            while j + 4 <= width {
                m0 = max(m0, p[j]); m1 = max(m1, p[j + 1]); m2 = max(m2, p[j + 2]); m3 = max(m3, p[j + 3]); j += 4
            }
            var mx = max(max(m0, m1), max(m2, m3))
            while j < width { mx = max(mx, p[j]); j += 1 }
            let raw = UnsafeRawPointer(p)
            for k in 0..<width { p[k] = expApprox(p[k] - mx) }
            var s8 = SIMD8<Float>()
            j = 0
            while j + 8 <= width { s8 += raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self); j += 8 }
            var sum = s8.sum()
            while j < width { sum += p[j]; j += 1 }
            let inv = 1 / sum
            for k in 0..<width { p[k] *= inv }
        }
    }

    /// Fills each of `rows` rows (length `width`) with `bias` — the starting value of a GEMM with beta = 1.
    public static func broadcastRows(
        _ bias: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, rows: Int, width: Int, workers: Int = 1
    ) {
        forEachRange(rows, unitSize: width, workers: workers) { range in
            for r in range { (out + r * width).update(from: bias, count: width) }
        }
    }

    /// y[i] += x[i]·scale[i mod width] (residual add, with an optional per-channel LayerScale).
    public static func addScaled(
        _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, width: Int,
        scale: UnsafePointer<Float>?, workers: Int = 1
    ) {
        if let scale {
            forEachRange(rows, unitSize: width, workers: workers) { range in
                for r in range {
                    let a = x + r * width, b = y + r * width
                    for j in 0..<width { b[j] += a[j] * scale[j] }
                }
            }
        } else {
            forEachRange(rows * width, workers: workers) { range in
                for i in range { y[i] += x[i] }
            }
        }
    }

    /// x[i] *= scale[i mod width], in place (LayerScale).
    public static func scaleColumns(
        _ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, scale: UnsafePointer<Float>, workers: Int = 1
    ) {
        forEachRange(rows, unitSize: width, workers: workers) { range in
            for r in range {
                let a = x + r * width
                for j in 0..<width { a[j] *= scale[j] }
            }
        }
    }

    /// Floats below which a kernel's work is not split: the hand-off to a second thread costs about as much
    /// as a few ten thousand floats of element-wise work.
    package static let parallelGrain = 1 << 15

    /// Calls `body` on contiguous ranges that together cover `0..<count` exactly once — rows of `unitSize`
    /// floats, or single elements — spread over up to `workers` threads with at least `parallelGrain` floats
    /// each; less work runs as `body(0..<count)` on the calling thread, without allocating. Every kernel
    /// that uses it is element- or row-wise, so its bits do not depend on the split.
    @inline(__always)
    package static func forEachRange(_ count: Int, unitSize: Int = 1, workers: Int, _ body: (Range<Int>) -> Void) {
        let parts = Swift.min(workers, count, count * unitSize / parallelGrain)
        if parts <= 1 {
            body(0..<count)
            return
        }
        withoutActuallyEscaping(body) { body in
            let work = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: parts) { k in
                work.value(count * k / parts..<count * (k + 1) / parts)
            }
        }
    }
}

// MARK: - Backward (reverse-mode) kernels

extension NeuralKernels {
    /// Backward of `layerNorm`: given x and ∂L/∂y, adds ∂L/∂x to `inputGradient` (or writes it when
    /// `accumulate` is false) and adds Σ_rows ∂L/∂y·x̂ to `weightGradient`, Σ_rows ∂L/∂y to `biasGradient`.
    /// ∂L/∂x = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = ∂L/∂y·weight, x̂ = (x − mean)·rstd; row statistics are
    /// recomputed in Double as in the forward pass. `inputGradient` must not alias `outputGradient`.
    public static func layerNormBackward(
        input x0: UnsafePointer<Float>, outputGradient dy0: UnsafePointer<Float>,
        rows: Int, width: Int, weight: UnsafePointer<Float>, epsilon: Float = 1e-6,
        inputGradient dx0: UnsafeMutablePointer<Float>, accumulate: Bool,
        weightGradient dw: UnsafeMutablePointer<Float>, biasGradient db: UnsafeMutablePointer<Float>
    ) {
        let n = Double(width)
        let acc = UnsafeMutablePointer<Double>.allocate(capacity: 2 * width)
        acc.initialize(repeating: 0, count: 2 * width)
        let xhat = UnsafeMutablePointer<Float>.allocate(capacity: width)
        defer { acc.deallocate(); xhat.deallocate() }
        let accW = acc, accB = acc + width
        for r in 0..<rows {
            let x = x0 + r * width, dy = dy0 + r * width, dx = dx0 + r * width
            let (mean, rstd) = rowMoments(x, width: width, epsilon: epsilon)
            let m = Float(mean), rs = Float(rstd)
            var s1 = 0.0, s2 = 0.0
            for j in 0..<width {
                let h = (x[j] - m) * rs
                xhat[j] = h
                let g = Double(dy[j] * weight[j])
                s1 += g
                s2 += g * Double(h)
                accW[j] += Double(dy[j] * h)
                accB[j] += Double(dy[j])
            }
            let a = Float(s1 / n), c = Float(s2 / n)
            if accumulate {
                for j in 0..<width { dx[j] += rs * (dy[j] * weight[j] - a - xhat[j] * c) }
            } else {
                for j in 0..<width { dx[j] = rs * (dy[j] * weight[j] - a - xhat[j] * c) }
            }
        }
        for j in 0..<width { dw[j] += Float(accW[j]); db[j] += Float(accB[j]) }
    }

    /// GELU out of place: `output[i] = gelu(input[i])` (the same function as `gelu(_:count:)`).
    public static func gelu(
        _ input: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, count: Int, workers: Int = 1
    ) {
        forEachRange(count, workers: workers) { range in
            for i in range {
                let v = input[i]
                output[i] = 0.5 * v * (1 + erfApprox(v * 0.707_106_781_186_547_5))
            }
        }
    }

    /// Backward of GELU: `gradient[i] *= Φ(a) + a·φ(a)` at the pre-activation a = `input[i]`, the derivative of
    /// exact-erf GELU with Φ from the same erf approximation as the forward pass (|error| ≤ 1.5e-7) and
    /// φ(a) = e^(−a²/2)/√(2π).
    public static func geluBackward(
        _ input: UnsafePointer<Float>, gradient g: UnsafeMutablePointer<Float>, count: Int, workers: Int = 1
    ) {
        forEachRange(count, workers: workers) { range in
            for i in range {
                let a = input[i]
                let cdf = 0.5 * (1 + erfApprox(a * 0.707_106_781_186_547_5))
                let pdf = 0.398_942_280_401_432_7 * expApprox(-0.5 * a * a)
                g[i] *= cdf + a * pdf
            }
        }
    }

    /// Backward of `softmaxRows`: given the probabilities s and ∂L/∂s in `gradient` (both `rows × width`,
    /// leading dimension `stride`), replaces it by ∂L/∂z = s ⊙ (∂L/∂s − Σⱼ ∂L/∂sⱼ·sⱼ).
    public static func softmaxBackwardRows(
        _ s0: UnsafePointer<Float>, gradient g0: UnsafeMutablePointer<Float>,
        rows: Int, width: Int, stride: Int? = nil
    ) {
        let ld = stride ?? width
        for r in 0..<rows {
            let s = s0 + r * ld, g = g0 + r * ld
            var dot: Float = 0
            for j in 0..<width { dot += s[j] * g[j] }
            for j in 0..<width { g[j] = s[j] * (g[j] - dot) }
        }
    }

    /// `sums[j] += Σ_r x[r, j]` over `rows × width` (bias gradients), accumulated in Double.
    public static func addColumnSums(
        _ x: UnsafePointer<Float>, rows: Int, width: Int, into sums: UnsafeMutablePointer<Float>
    ) {
        let acc = UnsafeMutablePointer<Double>.allocate(capacity: width)
        acc.initialize(repeating: 0, count: width)
        defer { acc.deallocate() }
        for r in 0..<rows {
            let row = x + r * width
            for j in 0..<width { acc[j] += Double(row[j]) }
        }
        for j in 0..<width { sums[j] += Float(acc[j]) }
    }

    /// `sums[j] += Σ_r x[r, j]·y[r, j]` (LayerScale γ gradients), accumulated in Double.
    public static func addColumnDots(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, rows: Int, width: Int,
        into sums: UnsafeMutablePointer<Float>
    ) {
        let acc = UnsafeMutablePointer<Double>.allocate(capacity: width)
        acc.initialize(repeating: 0, count: width)
        defer { acc.deallocate() }
        for r in 0..<rows {
            let a = x + r * width, b = y + r * width
            for j in 0..<width { acc[j] += Double(a[j] * b[j]) }
        }
        for j in 0..<width { sums[j] += Float(acc[j]) }
    }
}
