/// The resampling filters of PIL's `Image.resize` (its convolution family, `libImaging/Resample.c`).
///
/// torchvision's `InterpolationMode.BILINEAR` / `.BICUBIC` on PIL images are `.bilinear` / `.bicubic`.
public enum Interpolation: String, Sendable, CaseIterable, Hashable {
    /// Triangle filter, support 1.
    case bilinear
    /// Keys cubic convolution with a = −0.5, support 2.
    case bicubic
    /// Box filter, support ½ (PIL `BOX`).
    case box
    /// Hamming-windowed sinc, support 1 (PIL `HAMMING`).
    case hamming
    /// Lanczos-3 windowed sinc, support 3 (PIL `LANCZOS`).
    case lanczos

    var support: Double {
        switch self {
        case .box: 0.5
        case .bilinear, .hamming: 1
        case .bicubic: 2
        case .lanczos: 3
        }
    }

    /// The filter kernel, written exactly as PIL evaluates it (same operations, same order, in Double).
    func weight(_ x: Double) -> Double {
        switch self {
        case .box:
            return x > -0.5 && x <= 0.5 ? 1 : 0
        case .bilinear:
            let x = abs(x)
            return x < 1 ? 1 - x : 0
        case .hamming:
            let x = abs(x)
            if x == 0 { return 1 }
            if x >= 1 { return 0 }
            let px = x * Double.pi
            return sin(px) / px * (Double(Float(0.54)) + Double(Float(0.46)) * cos(px))
        case .bicubic:
            let a = -0.5
            let x = abs(x)
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .lanczos:
            return -3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0
        }
    }

    private func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let px = x * Double.pi
        return sin(px) / px
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// PIL's fixed-point precision for 8-bit images: 32 − 8 − 2 bits (two bits of headroom for negative lobes).
private let precisionBits: Int32 = 32 - 8 - 2

/// Per-output-pixel filter taps along one axis, as PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`.
struct ResampleCoefficients {
    /// Taps per output pixel (the stride of `weights`).
    let ksize: Int
    /// First input index of output pixel i.
    var start: [Int]
    /// Number of taps of output pixel i.
    var count: [Int]
    /// Fixed-point weights, `ksize` per output pixel.
    var weights: [Int32]

    init(inSize: Int, outSize: Int, filter: Interpolation) {
        // PIL passes the box (0, 0, w, h) as floats: scale = (double)(in1 − in0) / outSize.
        let scale = Double(Float(inSize)) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        ksize = Int(support.rounded(.up)) * 2 + 1
        start = [Int](repeating: 0, count: outSize)
        count = [Int](repeating: 0, count: outSize)
        weights = [Int32](repeating: 0, count: outSize * ksize)
        let invFilterScale = 1.0 / filterScale
        var k = [Double](repeating: 0, count: ksize)
        for xx in 0..<outSize {
            let center = 0.0 + (Double(xx) + 0.5) * scale
            let xmin = max(Int(center - support + 0.5), 0)  // C (int) truncates toward zero
            let xmax = min(Int(center + support + 0.5), inSize) - xmin
            var ww = 0.0
            var x = 0
            while x < xmax {
                let w = filter.weight((Double(x + xmin) - center + 0.5) * invFilterScale)
                k[x] = w
                ww += w
                x += 1
            }
            for x in 0..<max(xmax, 0) {
                let v = ww != 0 ? k[x] / ww : k[x]
                // normalize_coeffs_8bpc: round half away from zero, then truncate.
                weights[xx * ksize + x] =
                    v < 0
                    ? Int32(-0.5 + v * Double(1 << precisionBits))
                    : Int32(0.5 + v * Double(1 << precisionBits))
            }
            start[xx] = xmin
            count[xx] = max(xmax, 0)
        }
    }
}

@inline(__always) private func clip8(_ v: Int32) -> UInt8 {
    let s = v >> precisionBits
    return s <= 0 ? 0 : s >= 255 ? 255 : UInt8(truncatingIfNeeded: s)
}

/// Resizes `src` to `outWidth × outHeight` exactly as PIL's `Image.resize(size, filter)` on an 8-bit RGB image
/// (separable convolution with antialiasing, each pass rounded and clamped to uint8), but computes only the
/// output pixels in `columns × rows` (a crop of the full result; the values are the same).
///
/// Pass order follows Pillow ≥ 13: horizontal first, unless the height shrinks by more than twice as many pixels
/// as the width (then vertical first). Pillow ≤ 12 always went horizontal first; the two orders can differ by a
/// few levels, and only for such images (e.g. a short-side resize of a portrait image taller than 2:1).
func resample(
    _ src: RGBImage, width outWidth: Int, height outHeight: Int, filter: Interpolation,
    columns: Range<Int>, rows: Range<Int>
) -> RGBImage {
    precondition(outWidth > 0 && outHeight > 0, "resize to \(outWidth)×\(outHeight)")
    precondition(src.width > 0 && src.height > 0, "resize of an empty \(src.width)×\(src.height) image")
    precondition(
        columns.lowerBound >= 0 && columns.upperBound <= outWidth && rows.lowerBound >= 0
            && rows.upperBound <= outHeight, "region \(columns)×\(rows) outside \(outWidth)×\(outHeight)")
    let horizontal =
        outWidth != src.width ? ResampleCoefficients(inSize: src.width, outSize: outWidth, filter: filter) : nil
    let vertical =
        outHeight != src.height ? ResampleCoefficients(inSize: src.height, outSize: outHeight, filter: filter) : nil
    let dh = src.height - outHeight, dw = src.width - outWidth
    let horizontalFirst = !(dh > 0 && dh > dw * 2)
    if columns.isEmpty || rows.isEmpty { return RGBImage(width: columns.count, height: rows.count) }

    return src.pixels.withUnsafeBufferPointer { s -> RGBImage in
        let sp = s.baseAddress!
        if horizontalFirst {
            // Source rows the vertical pass reads (or the output rows themselves without a vertical pass).
            let needed = vertical?.inputRange(of: rows) ?? rows
            var temp: [UInt8]
            if let h = horizontal {
                temp = horizontalPass(
                    sp + needed.lowerBound * src.width * 3, stride: src.width, rows: needed.count,
                    columnOffset: 0, h, columns: columns)
            } else {
                temp = copyRegion(sp, stride: src.width, rows: needed, columns: columns)
            }
            if let v = vertical {
                temp = temp.withUnsafeBufferPointer {
                    verticalPass(
                        $0.baseAddress!, stride: columns.count, rowOffset: needed.lowerBound,
                        columns: 0..<columns.count, v, rows: rows)
                }
            }
            return RGBImage(width: columns.count, height: rows.count, pixels: temp)
        } else {
            let v = vertical!  // dh > 0
            let needed = horizontal?.inputRange(of: columns) ?? columns
            var temp = verticalPass(sp, stride: src.width, rowOffset: 0, columns: needed, v, rows: rows)
            if let h = horizontal {
                temp = temp.withUnsafeBufferPointer {
                    horizontalPass(
                        $0.baseAddress!, stride: needed.count, rows: rows.count,
                        columnOffset: needed.lowerBound, h, columns: columns)
                }
            }
            return RGBImage(width: columns.count, height: rows.count, pixels: temp)
        }
    }
}

extension ResampleCoefficients {
    /// The input indices read by output pixels `outputs`.
    func inputRange(of outputs: Range<Int>) -> Range<Int> {
        var lo = Int.max, hi = Int.min
        for i in outputs { lo = min(lo, start[i]); hi = max(hi, start[i] + count[i]) }
        return lo < hi ? lo..<hi : 0..<0
    }
}

/// Rows `rows`, columns `columns` of an interleaved RGB buffer with `stride` pixels per row.
private func copyRegion(_ src: UnsafePointer<UInt8>, stride: Int, rows: Range<Int>, columns: Range<Int>) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: rows.count * columns.count * 3)
    out.withUnsafeMutableBufferPointer { o in
        for (i, r) in rows.enumerated() {
            (o.baseAddress! + i * columns.count * 3).update(
                from: src + (r * stride + columns.lowerBound) * 3,
                count: columns.count * 3)
        }
    }
    return out
}

/// PIL's horizontal 8-bit pass over `rows` rows of `src` (`stride` pixels each; buffer column 0 is input column
/// `columnOffset`), for output columns `columns`.
private func horizontalPass(
    _ src: UnsafePointer<UInt8>, stride: Int, rows: Int, columnOffset: Int,
    _ h: ResampleCoefficients, columns: Range<Int>
) -> [UInt8] {
    let width = columns.count
    var out = [UInt8](repeating: 0, count: rows * width * 3)
    out.withUnsafeMutableBufferPointer { o in
        h.weights.withUnsafeBufferPointer { wb in
            h.start.withUnsafeBufferPointer { starts in
                h.count.withUnsafeBufferPointer { counts in
                    let w = wb.baseAddress!
                    for r in 0..<rows {
                        let line = src + r * stride * 3
                        var dst = o.baseAddress! + r * width * 3
                        for xx in columns {
                            let k = w + xx * h.ksize
                            var p = line + (starts[xx] - columnOffset) * 3
                            var s0: Int32 = 1 << (precisionBits - 1), s1 = s0, s2 = s0
                            for x in 0..<counts[xx] {
                                let c = k[x]
                                s0 = s0 &+ Int32(p[0]) &* c
                                s1 = s1 &+ Int32(p[1]) &* c
                                s2 = s2 &+ Int32(p[2]) &* c
                                p += 3
                            }
                            dst[0] = clip8(s0); dst[1] = clip8(s1); dst[2] = clip8(s2)
                            dst += 3
                        }
                    }
                }
            }
        }
    }
    return out
}

/// PIL's vertical 8-bit pass: output rows `rows` from `src` (`stride` pixels per row; buffer row 0 is input row
/// `rowOffset`), over input columns `columns`. Integer sums are accumulated a whole line at a time (the order of
/// integer additions does not change the result).
private func verticalPass(
    _ src: UnsafePointer<UInt8>, stride: Int, rowOffset: Int, columns: Range<Int>,
    _ v: ResampleCoefficients, rows: Range<Int>
) -> [UInt8] {
    let lineLength = columns.count * 3
    var out = [UInt8](repeating: 0, count: rows.count * lineLength)
    var acc = [Int32](repeating: 0, count: lineLength)
    out.withUnsafeMutableBufferPointer { o in
        acc.withUnsafeMutableBufferPointer { a in
            v.weights.withUnsafeBufferPointer { wb in
                let ap = a.baseAddress!, w = wb.baseAddress!
                for (i, yy) in rows.enumerated() {
                    ap.update(repeating: 1 << (precisionBits - 1), count: lineLength)
                    let k = w + yy * v.ksize
                    for y in 0..<v.count[yy] {
                        let c = k[y]
                        let line = src + ((v.start[yy] + y - rowOffset) * stride + columns.lowerBound) * 3
                        for j in 0..<lineLength { ap[j] = ap[j] &+ Int32(line[j]) &* c }
                    }
                    let dst = o.baseAddress! + i * lineLength
                    for j in 0..<lineLength { dst[j] = clip8(ap[j]) }
                }
            }
        }
    }
    return out
}
