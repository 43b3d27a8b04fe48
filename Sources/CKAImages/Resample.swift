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
            let xmin = max(Int(center - support + 0.5), 0)            // C (int) truncates toward zero
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
                weights[xx * ksize + x] = v < 0 ? Int32(-0.5 + v * Double(1 << precisionBits))
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
/// (separable convolution with antialiasing, horizontal pass first, each pass rounded and clamped to uint8),
/// but computes only the output pixels in `columns × rows` (a crop of the full result; the values are the same).
func resample(_ src: RGBImage, width outWidth: Int, height outHeight: Int, filter: Interpolation,
              columns: Range<Int>, rows: Range<Int>) -> RGBImage {
    precondition(outWidth > 0 && outHeight > 0, "resize to \(outWidth)×\(outHeight)")
    precondition(src.width > 0 && src.height > 0, "resize of an empty \(src.width)×\(src.height) image")
    precondition(columns.lowerBound >= 0 && columns.upperBound <= outWidth && rows.lowerBound >= 0
                 && rows.upperBound <= outHeight, "region \(columns)×\(rows) outside \(outWidth)×\(outHeight)")
    let needHorizontal = outWidth != src.width
    let needVertical = outHeight != src.height
    let regionWidth = columns.count

    // Source rows the vertical pass reads (or the output rows themselves when there is no vertical pass).
    let vertical = needVertical ? ResampleCoefficients(inSize: src.height, outSize: outHeight, filter: filter) : nil
    var firstRow = rows.lowerBound, lastRow = rows.upperBound
    if let v = vertical, !rows.isEmpty {
        firstRow = rows.map { v.start[$0] }.min()!
        lastRow = rows.map { v.start[$0] + v.count[$0] }.max()!
    }
    let tempRows = max(lastRow - firstRow, 0)

    // Horizontal pass: source rows firstRow..<lastRow → regionWidth columns.
    var temp = [UInt8](repeating: 0, count: tempRows * regionWidth * 3)
    src.pixels.withUnsafeBufferPointer { s in
        temp.withUnsafeMutableBufferPointer { t in
            guard let sp = s.baseAddress, let tp = t.baseAddress else { return }
            if needHorizontal {
                let h = ResampleCoefficients(inSize: src.width, outSize: outWidth, filter: filter)
                h.weights.withUnsafeBufferPointer { wb in
                    let w = wb.baseAddress!
                    for r in 0..<tempRows {
                        let line = sp + (firstRow + r) * src.width * 3
                        var out = tp + r * regionWidth * 3
                        for xx in columns {
                            let k = w + xx * h.ksize
                            var p = line + h.start[xx] * 3
                            var s0: Int32 = 1 << (precisionBits - 1), s1 = s0, s2 = s0
                            for x in 0..<h.count[xx] {
                                let c = k[x]
                                s0 = s0 &+ Int32(p[0]) &* c
                                s1 = s1 &+ Int32(p[1]) &* c
                                s2 = s2 &+ Int32(p[2]) &* c
                                p += 3
                            }
                            out[0] = clip8(s0); out[1] = clip8(s1); out[2] = clip8(s2)
                            out += 3
                        }
                    }
                }
            } else {
                for r in 0..<tempRows {
                    (tp + r * regionWidth * 3).update(from: sp + ((firstRow + r) * src.width + columns.lowerBound) * 3,
                                                       count: regionWidth * 3)
                }
            }
        }
    }
    guard let v = vertical else {
        return RGBImage(width: regionWidth, height: rows.count, pixels: temp)
    }

    // Vertical pass: rows are accumulated a whole line at a time (integer sums, so the order is free).
    let lineLength = regionWidth * 3
    var out = [UInt8](repeating: 0, count: rows.count * lineLength)
    var acc = [Int32](repeating: 0, count: lineLength)
    temp.withUnsafeBufferPointer { t in
        out.withUnsafeMutableBufferPointer { o in
            acc.withUnsafeMutableBufferPointer { a in
                v.weights.withUnsafeBufferPointer { wb in
                    guard let tp = t.baseAddress, let op = o.baseAddress, let ap = a.baseAddress,
                          let w = wb.baseAddress else { return }
                    for (i, yy) in rows.enumerated() {
                        ap.update(repeating: 1 << (precisionBits - 1), count: lineLength)
                        let k = w + yy * v.ksize
                        for y in 0..<v.count[yy] {
                            let c = k[y]
                            let line = tp + (v.start[yy] + y - firstRow) * lineLength
                            for j in 0..<lineLength { ap[j] = ap[j] &+ Int32(line[j]) &* c }
                        }
                        let dst = op + i * lineLength
                        for j in 0..<lineLength { dst[j] = clip8(ap[j]) }
                    }
                }
            }
        }
    }
    return RGBImage(width: regionWidth, height: rows.count, pixels: out)
}
