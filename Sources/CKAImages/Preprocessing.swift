import CKATensor
import Foundation

/// The eval transform of the reference models (shared/docs/reference-models.md §4), as torchvision computes it
/// on a PIL image:
///
///     Resize(resize, interpolation) → CenterCrop(crop) → ToTensor() → Normalize(mean, std)
///
/// Resize and crop are bit-exact with PIL/torchvision (uint8); ToTensor and Normalize use the same float32
/// operations as torch (`x / 255`, then `(x − mean) / std`), so the output tensors are identical too.
///
/// ```swift
/// let image = try RGBImage(contentsOf: url)
/// let x = Preprocessing.dino.tensor(image)          // [3, 224, 224]
/// ```
public struct Preprocessing: Sendable, Hashable, CustomStringConvertible {
    /// Target length of the shorter side, or nil for no resize.
    public let resize: Int?
    /// Resize to `resize × resize` regardless of the aspect ratio (Hugging Face processors with
    /// `size = {height, width}`: ViT, DeiT, SigLIP) instead of keeping it.
    public var squash = false
    /// Resampling filter of the resize.
    public let interpolation: Interpolation
    /// Side of the square centre crop.
    public let crop: Int
    /// Per-channel (R, G, B) mean subtracted after scaling to [0, 1].
    public let mean: [Double]
    /// Per-channel (R, G, B) divisor.
    public let std: [Double]

    /// ImageNet statistics (torchvision / timm `IMAGENET_DEFAULT_MEAN`, `_STD`).
    public static let imagenetMean = [0.485, 0.456, 0.406]
    public static let imagenetStd = [0.229, 0.224, 0.225]

    /// A custom transform.
    /// - Throws: `ImageError.invalidParameter` unless `resize` (if any) and `crop` are positive, and `mean`
    ///   and `std` have three finite values with `std > 0`.
    public init(
        resize: Int?, interpolation: Interpolation = .bilinear, crop: Int,
        mean: [Double] = Preprocessing.imagenetMean, std: [Double] = Preprocessing.imagenetStd
    ) throws {
        if let r = resize, r <= 0 { throw ImageError.invalidParameter("resize must be positive, got \(r)") }
        guard crop > 0 else { throw ImageError.invalidParameter("crop must be positive, got \(crop)") }
        guard mean.count == 3, std.count == 3, mean.allSatisfy(\.isFinite), std.allSatisfy({ $0.isFinite && $0 > 0 })
        else { throw ImageError.invalidParameter("mean and std need 3 finite values, std > 0; got \(mean), \(std)") }
        self.resize = resize
        self.interpolation = interpolation
        self.crop = crop
        self.mean = mean
        self.std = std
    }

    private init(_ resize: Int, _ interpolation: Interpolation, _ crop: Int, _ mean: [Double], _ std: [Double]) {
        self.resize = resize; self.interpolation = interpolation; self.crop = crop; self.mean = mean; self.std = std
    }

    /// DINO `eval_knn` / `eval_linear`: resize 256 bicubic, crop 224, ImageNet mean/std.
    public static let dino = Preprocessing(256, .bicubic, 224, imagenetMean, imagenetStd)
    /// MoCo-v3 `main_lincls`: resize 256 **bilinear**, crop 224, ImageNet.
    public static let mocov3 = Preprocessing(256, .bilinear, 224, imagenetMean, imagenetStd)
    /// MAE / RC-MAE: resize 256 bicubic, crop 224, ImageNet.
    public static let mae = Preprocessing(256, .bicubic, 224, imagenetMean, imagenetStd)
    /// timm augreg ViTs (`crop_pct` 0.9): resize 248 bicubic, crop 224, mean = std = 0.5.
    public static let timmAugreg = Preprocessing(248, .bicubic, 224, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    /// DINOv2 (patch 14): resize 256 bicubic, crop 224 (16 × 16 patches), ImageNet.
    public static let dinov2 = Preprocessing(256, .bicubic, 224, imagenetMean, imagenetStd)

    /// OpenAI CLIP / open_clip statistics.
    public static let clipMean = [0.48145466, 0.4578275, 0.40821073]
    public static let clipStd = [0.26862954, 0.26130258, 0.27577711]
    /// CLIP (OpenAI, open_clip, HF `CLIPImageProcessor`): resize 224 bicubic, crop 224, CLIP mean/std.
    public static let clip = Preprocessing(224, .bicubic, 224, clipMean, clipStd)
    /// SigLIP (HF `SiglipImageProcessor`): resize to 224 × 224 bicubic (aspect not kept), mean = std = 0.5.
    public static let siglip: Preprocessing = {
        var p = Preprocessing(224, .bicubic, 224, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        p.squash = true
        return p
    }()
    /// DeiT (timm `crop_pct` 0.875): resize 256 bicubic, crop 224, ImageNet.
    public static let deit = Preprocessing(256, .bicubic, 224, imagenetMean, imagenetStd)

    /// The presets by name (`dino`, `mocov3`, `mae`, `timm-augreg`, `dinov2`, `clip`, `siglip`, `deit`), in that order.
    public static let presets: [(name: String, preprocessing: Preprocessing)] = [
        ("dino", .dino), ("mocov3", .mocov3), ("mae", .mae), ("timm-augreg", .timmAugreg), ("dinov2", .dinov2),
        ("clip", .clip), ("siglip", .siglip), ("deit", .deit),
    ]

    /// The preset called `name` (see `presets`), or nil.
    public static func preset(named name: String) -> Preprocessing? {
        presets.first { $0.name == name }?.preprocessing
    }

    /// The same transform with another crop, e.g. `Preprocessing.dinov2.with(crop: 518)`.
    /// - Throws: `ImageError.invalidParameter` unless `crop > 0`.
    public func with(crop newCrop: Int) throws -> Preprocessing {
        var p = try Preprocessing(resize: resize, interpolation: interpolation, crop: newCrop, mean: mean, std: std)
        p.squash = squash
        return p
    }

    /// A stable name stored in activation files: `resize256-bicubic-crop224-imagenet`; other statistics are
    /// written `mean0.5-std0.5` (one value when all three agree) or `mean0.1,0.2,0.3-std…`; without a resize the
    /// first two parts are absent.
    public var description: String {
        var parts: [String] = []
        if let r = resize { parts += ["resize\(r)", interpolation.rawValue] + (squash ? ["squash"] : []) }
        parts.append("crop\(crop)")
        if mean == Preprocessing.imagenetMean && std == Preprocessing.imagenetStd {
            parts.append("imagenet")
        } else {
            func list(_ v: [Double]) -> String {
                v.allSatisfy { $0 == v[0] } ? "\(v[0])" : v.map { "\($0)" }.joined(separator: ",")
            }
            parts += ["mean" + list(mean), "std" + list(std)]
        }
        return parts.joined(separator: "-")
    }

    /// Parses a `description` (also accepts an `antialias` part, as in reference files, and a preset name).
    /// - Throws: `ImageError.invalidParameter` if the string is not of that form.
    public init(description text: String) throws {
        if let p = Preprocessing.preset(named: text) { self = p; return }
        func bad(_ why: String) -> ImageError { .invalidParameter("cannot parse preprocessing \"\(text)\": \(why)") }
        func values(_ s: Substring) throws -> [Double] {
            let v = try s.split(separator: ",", omittingEmptySubsequences: false).map {
                guard let d = Double($0) else { throw bad("not a number list: \(s)") }
                return d
            }
            if v.count == 1 { return [v[0], v[0], v[0]] }
            guard v.count == 3 else { throw bad("need 1 or 3 values: \(s)") }
            return v
        }
        var resize: Int?, interpolation: Interpolation?, crop: Int?, mean: [Double]?, std: [Double]?, squash = false
        for part in text.split(separator: "-", omittingEmptySubsequences: false) {
            if part.hasPrefix("resize"), let n = Int(part.dropFirst(6)) {
                resize = n
            } else if part.hasPrefix("crop"), let n = Int(part.dropFirst(4)) {
                crop = n
            } else if let i = Interpolation(rawValue: String(part)) {
                interpolation = i
            } else if part == "antialias" {
                continue
            } else if part == "squash" {
                squash = true
            } else if part == "imagenet" {
                (mean, std) = (Preprocessing.imagenetMean, Preprocessing.imagenetStd)
            } else if part.hasPrefix("mean") {
                mean = try values(part.dropFirst(4))
            } else if part.hasPrefix("std") {
                std = try values(part.dropFirst(3))
            } else {
                throw bad("unknown part \"\(part)\"")
            }
        }
        guard let crop else { throw bad("no crop") }
        guard let mean, let std else { throw bad("no normalisation (imagenet, or mean…-std…)") }
        if resize != nil && interpolation == nil { throw bad("no interpolation") }
        try self.init(resize: resize, interpolation: interpolation ?? .bilinear, crop: crop, mean: mean, std: std)
        self.squash = squash && resize != nil
    }

    /// Shape of one output: `[3, crop, crop]`.
    public var outputShape: [Int] { [3, crop, crop] }

    /// Resize and centre crop (the uint8 stages), exactly as PIL/torchvision.
    public func resizedAndCropped(_ image: RGBImage) -> RGBImage {
        precondition(image.width > 0 && image.height > 0, "preprocessing of an empty image")
        var (w, h) = (image.width, image.height)
        if let r = resize { (w, h) = squash ? (r, r) : RGBImage.resizedSize(width: w, height: h, shortSide: r) }
        let o = RGBImage.centerCropOrigin(width: w, height: h, cropWidth: crop, cropHeight: crop)
        if w == image.width && h == image.height {
            return image.cropped(x: o.x, y: o.y, width: crop, height: crop)
        }
        if o.x >= 0 && o.y >= 0 && o.x + crop <= w && o.y + crop <= h {
            // Only the cropped output pixels are computed; they equal those of the full resize.
            return resample(
                image, width: w, height: h, filter: interpolation,
                columns: o.x..<(o.x + crop), rows: o.y..<(o.y + crop))
        }
        return image.resized(width: w, height: h, interpolation: interpolation)
            .cropped(x: o.x, y: o.y, width: crop, height: crop)
    }

    /// The network input for one image: `[3, crop, crop]` (CHW).
    public func tensor(_ image: RGBImage) -> Tensor<Float> {
        var out = Tensor<Float>(shape: outputShape)
        out.withUnsafeMutableBufferPointer { write(image, into: $0.baseAddress!) }
        return out
    }

    /// The network input for several images: `[B, 3, crop, crop]`.
    public func batch(_ images: [RGBImage]) -> Tensor<Float> {
        var out = Tensor<Float>(shape: [images.count] + outputShape)
        let n = 3 * crop * crop
        out.withUnsafeMutableBufferPointer { p in
            for (i, image) in images.enumerated() { write(image, into: p.baseAddress! + i * n) }
        }
        return out
    }

    /// Decodes a file and returns its network input `[3, crop, crop]`.
    /// - Throws: `ImageError` from decoding.
    public func tensor(contentsOf url: URL, maxPixels: Int = RGBImage.defaultMaxPixels) throws -> Tensor<Float> {
        tensor(try RGBImage(contentsOf: url, maxPixels: maxPixels))
    }

    /// Writes the `3 · crop · crop` normalised values (CHW) of `image` at `destination`.
    func write(_ image: RGBImage, into destination: UnsafeMutablePointer<Float>) {
        normalize(resizedAndCropped(image), into: destination)
    }

    /// ToTensor + Normalize of a `crop × crop` image, through a per-channel table of the 256 float32 values
    /// `(Float(v) / 255 − Float(mean)) / Float(std)` (torch's operations, in torch's order).
    func normalize(_ image: RGBImage, into destination: UnsafeMutablePointer<Float>) {
        precondition(image.width == crop && image.height == crop)
        var table = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            let m = Float(mean[c]), s = Float(std[c])
            for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 - m) / s }
        }
        let n = crop * crop
        image.pixels.withUnsafeBufferPointer { px in
            table.withUnsafeBufferPointer { t in
                let p = px.baseAddress!, tb = t.baseAddress!
                for c in 0..<3 {
                    let dst = destination + c * n, lut = tb + c * 256
                    for i in 0..<n { dst[i] = lut[Int(p[3 * i + c])] }
                }
            }
        }
    }
}
