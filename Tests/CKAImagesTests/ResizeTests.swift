import CKAImages
import CKATensor
import Foundation
import Testing
import _CKATestSupport

@Suite("Resizing and the eval transforms, against Pillow and torchvision")
struct ResizeTests {
    static let resizeCases = Array(Fixtures.list("resize").indices)
    static let pipelineCases = Array(Fixtures.list("pipelines").indices)

    @Test("Image.resize for every filter and size equals Pillow's uint8 output", arguments: resizeCases)
    func resize(_ index: Int) throws {
        let c = Fixtures.list("resize")[index]
        let sourceName = try #require(c["source"] as? String), filterName = try #require(c["filter"] as? String)
        let source = try RGBImage(contentsOf: Fixtures.url(sourceName))
        let w = try #require(c["width"] as? Int), h = try #require(c["height"] as? Int)
        let filter = try #require(Interpolation(rawValue: filterName))
        let out = source.resized(width: w, height: h, interpolation: filter)
        #expect(out.width == w && out.height == h)
        let diff = maxAbsDiff(out.pixels, Fixtures.slice(c["pixels"]))
        #expect(diff == 0, "\(filter) \(source.width)×\(source.height) → \(w)×\(h): max |Δ| = \(diff)")
    }

    @Test("Resize → CenterCrop → ToTensor → Normalize equals the torchvision emulation", arguments: pipelineCases)
    func pipeline(_ index: Int) throws {
        let c = Fixtures.list("pipelines")[index]
        let file = try #require(c["file"] as? String)
        let image = try RGBImage(contentsOf: Fixtures.url(file))
        let p: Preprocessing
        if let preset = c["preset"] as? String {
            p = try #require(Preprocessing.preset(named: preset))
        } else {
            let interpolation = try #require(Interpolation(rawValue: c["interpolation"] as? String ?? ""))
            let crop = try #require(c["crop"] as? Int)
            let mean = try #require(c["mean"] as? [Double]), std = try #require(c["std"] as? [Double])
            p = try Preprocessing(
                resize: c["resize"] as? Int, interpolation: interpolation, crop: crop, mean: mean,
                std: std)
        }
        let u8 = p.resizedAndCropped(image)
        #expect(u8.width == p.crop && u8.height == p.crop)
        let x = p.tensor(image)
        #expect(x.shape == [3, p.crop, p.crop])
        if c["uint8"] != nil {
            let d = maxAbsDiff(u8.pixels, Fixtures.slice(c["uint8"]))
            #expect(d == 0, "\(p): uint8 max |Δ| = \(d)")
        } else {
            #expect(Digest(u8.pixels) == Digest(c["uint8_digest"]), "\(p) uint8")
        }
        if c["float32"] != nil {
            let d = maxAbsDiff(x.scalars, Fixtures.floats(c["float32"]))
            #expect(d == 0, "\(p): float max |Δ| = \(d)")
        }
        let digest = try #require(Digest(c["float32_digest"]))
        #expect(crc32(x.scalars) == digest.crc, "\(p): float32 tensor not bit-identical")
        expectClose(x.scalars.reduce(0.0) { $0 + Double($1) }, digest.sum, rtol: 1e-9)
    }

    @Test("torchvision output sizes and crop offsets")
    func geometry() {
        #expect(RGBImage.resizedSize(width: 451, height: 300, shortSide: 256) == (384, 256))
        #expect(RGBImage.resizedSize(width: 300, height: 451, shortSide: 256) == (256, 384))
        #expect(RGBImage.resizedSize(width: 640, height: 427, shortSide: 248) == (371, 248))
        #expect(RGBImage.resizedSize(width: 32, height: 32, shortSide: 256) == (256, 256))
        // int(round((H − C) / 2)) with Python's round-half-even: 33/2 = 16.5 → 16, 35/2 = 17.5 → 18.
        #expect(RGBImage.centerCropOrigin(width: 257, height: 259, cropWidth: 224, cropHeight: 224) == (16, 18))
        #expect(RGBImage.centerCropOrigin(width: 384, height: 256, cropWidth: 224, cropHeight: 224) == (80, 16))
        // Larger crops pad: (C − size) // 2 on the left/top.
        #expect(RGBImage.centerCropOrigin(width: 40, height: 30, cropWidth: 34, cropHeight: 34) == (3, -2))
        let img = RGBImage(width: 2, height: 1, pixels: [1, 2, 3, 4, 5, 6])
        #expect(img.centerCropped(width: 5, height: 1).pixels == [0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0])
    }

    @Test("presets and their descriptions")
    func presets() throws {
        #expect(Preprocessing.dino.description == "resize256-bicubic-crop224-imagenet")
        #expect(Preprocessing.mocov3.description == "resize256-bilinear-crop224-imagenet")
        #expect(Preprocessing.mae.description == "resize256-bicubic-crop224-imagenet")
        #expect(Preprocessing.timmAugreg.description == "resize248-bicubic-crop224-mean0.5-std0.5")
        #expect(Preprocessing.dinov2.description == "resize256-bicubic-crop224-imagenet")
        for (name, p) in Preprocessing.presets {
            #expect(try Preprocessing(description: p.description) == p)
            #expect(try Preprocessing(description: name) == p)
        }
        #expect(try Preprocessing(description: "resize256-bicubic-antialias-crop224-imagenet") == .dinov2)
        let custom = try Preprocessing(resize: nil, crop: 32, mean: [0.1, 0.2, 0.3], std: [1, 2, 3])
        #expect(custom.description == "crop32-mean0.1,0.2,0.3-std1.0,2.0,3.0")
        #expect(try Preprocessing(description: custom.description) == custom)
        #expect(try Preprocessing.dinov2.with(crop: 518).description == "resize256-bicubic-crop518-imagenet")
        #expect(throws: ImageError.self) { try Preprocessing(description: "resize256-bicubic") }
        #expect(throws: ImageError.self) { try Preprocessing(description: "resize256-cubic-crop224-imagenet") }
        #expect(throws: ImageError.self) { try Preprocessing(resize: 0, crop: 224) }
        #expect(throws: ImageError.self) { try Preprocessing(resize: 256, crop: 224, mean: [0.5], std: [1, 1, 1]) }
        #expect(throws: ImageError.self) { try Preprocessing(resize: 256, crop: 224, std: [1, 0, 1]) }
    }

    @Test("batch() stacks tensor() outputs")
    func batch() throws {
        let a = try RGBImage(contentsOf: Fixtures.url("cifar_cat_0000.jpg"))
        let b = try RGBImage(contentsOf: Fixtures.url("chelsea_420.jpg"))
        let p = try Preprocessing(resize: 40, interpolation: .bicubic, crop: 32)
        let x = p.batch([a, b])
        #expect(x.shape == [2, 3, 32, 32])
        #expect(x.rows(0..<1).scalars == p.tensor(a).scalars)
        #expect(x.rows(1..<2).scalars == p.tensor(b).scalars)
    }

    @Test("resizing to the same size and cropping everything are identities")
    func identities() throws {
        let a = try RGBImage(contentsOf: Fixtures.url("resize_source.png"))
        for f in Interpolation.allCases { #expect(a.resized(width: a.width, height: a.height, interpolation: f) == a) }
        #expect(a.cropped(x: 0, y: 0, width: a.width, height: a.height) == a)
        #expect(a.resized(shortSide: 30, interpolation: .bicubic) == a)
    }
}
