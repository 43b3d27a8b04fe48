extension RGBImage {
    /// The image resized to `width × height` with exactly PIL's `Image.resize((width, height), filter)` result
    /// (antialiased separable convolution in 22-bit fixed point, each pass rounded and clamped to uint8; see
    /// `Interpolation`). The order of the two passes is Pillow ≥ 13's: vertical first only when the height shrinks
    /// by more than twice as many pixels as the width (Pillow ≤ 12 always went horizontal first; the results can
    /// then differ by a few levels, e.g. for a short-side resize of a portrait image taller than 2:1).
    /// - Precondition: `width, height > 0` and the image is not empty.
    public func resized(width: Int, height: Int, interpolation: Interpolation) -> RGBImage {
        if width == self.width && height == self.height { return self }
        return resample(
            self, width: width, height: height, filter: interpolation,
            columns: 0..<width, rows: 0..<height)
    }

    /// torchvision's `Resize(shortSide)`: the shorter side becomes `shortSide`, the longer
    /// `int(shortSide · long / short)`; an image already of that size is returned unchanged.
    public func resized(shortSide: Int, interpolation: Interpolation) -> RGBImage {
        let (w, h) = RGBImage.resizedSize(width: width, height: height, shortSide: shortSide)
        return resized(width: w, height: h, interpolation: interpolation)
    }

    /// The size torchvision's `Resize(shortSide)` gives an image of `width × height`.
    public static func resizedSize(width: Int, height: Int, shortSide: Int) -> (width: Int, height: Int) {
        let (short, long) = width <= height ? (width, height) : (height, width)
        // Python: int(S * long / short), a correctly rounded true division then truncation.
        let newLong = Int(Double(shortSide * long) / Double(short))
        return width <= height ? (shortSide, newLong) : (newLong, shortSide)
    }

    /// The top-left corner torchvision's `CenterCrop` takes from an image of `width × height`:
    /// `int(round((size − crop) / 2))` with Python's round-half-to-even; when the crop is larger than the image,
    /// torchvision first pads with zeros by `(crop − size) // 2` on the left/top, giving a negative origin.
    public static func centerCropOrigin(width: Int, height: Int, cropWidth: Int, cropHeight: Int) -> (x: Int, y: Int) {
        func origin(_ size: Int, _ crop: Int) -> Int {
            if crop > size { return -((crop - size) / 2) }
            return Int((Double(size - crop) / 2).rounded(.toNearestOrEven))
        }
        return (origin(width, cropWidth), origin(height, cropHeight))
    }

    /// The `width × height` region whose top-left corner is `(x, y)`; pixels outside the image are black
    /// (torchvision pads with 0).
    public func cropped(x: Int, y: Int, width cw: Int, height ch: Int) -> RGBImage {
        precondition(cw >= 0 && ch >= 0, "crop of \(cw)×\(ch)")
        if x == 0 && y == 0 && cw == width && ch == height { return self }
        var out = [UInt8](repeating: 0, count: cw * ch * 3)
        let x0 = max(x, 0), x1 = min(x + cw, width)
        guard x1 > x0 else { return RGBImage(width: cw, height: ch, pixels: out) }
        pixels.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for r in max(y, 0)..<max(min(y + ch, height), max(y, 0)) {
                    (o.baseAddress! + ((r - y) * cw + (x0 - x)) * 3)
                        .update(from: s.baseAddress! + (r * width + x0) * 3, count: (x1 - x0) * 3)
                }
            }
        }
        return RGBImage(width: cw, height: ch, pixels: out)
    }

    /// torchvision's `CenterCrop((height, width))` (zero-padded when the crop is larger than the image).
    public func centerCropped(width cw: Int, height ch: Int) -> RGBImage {
        let o = RGBImage.centerCropOrigin(width: width, height: height, cropWidth: cw, cropHeight: ch)
        return cropped(x: o.x, y: o.y, width: cw, height: ch)
    }
}
