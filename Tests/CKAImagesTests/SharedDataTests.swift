import CKAImages
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// Tests on the real data of shared/ (the photos, the torchvision reference tensors, the CIFAR-10 folder);
/// skipped when shared/ is absent. Only checksums and small subsamples of the expected outputs are committed.
@Suite("Real photos and CIFAR-10 against Pillow and torchvision", .enabled(if: Fixtures.hasPhotos))
struct SharedDataTests {
    static let photoNames = Fixtures.section("photos").keys.sorted()
    static let referenceNames = Fixtures.section("reference").keys.sorted()

    static func photo(_ name: String) throws -> RGBImage {
        try RGBImage(contentsOf: try #require(Fixtures.photos).appendingPathComponent(name))
    }

    @Test(
        "decode and short-side resize of the photos equal Pillow's (bicubic, bilinear; 100–700 px)",
        arguments: photoNames)
    func resizePhotos(_ name: String) throws {
        let entry = try #require(Fixtures.section("photos")[name] as? [String: Any])
        let image = try SharedDataTests.photo(name)
        #expect(Digest(image.pixels) == Digest(entry["decoded"]), "\(name) decode")
        let cases = try #require(entry["resize"] as? [String: [String: Any]])
        for (key, c) in cases.sorted(by: { $0.key < $1.key }) {
            let interpolation: Interpolation = key.hasPrefix("bicubic") ? .bicubic : .bilinear
            let side = Int(key.drop { $0.isLetter })!
            let out = image.resized(shortSide: side, interpolation: interpolation)
            #expect(out.width == c["width"] as? Int && out.height == c["height"] as? Int, "\(name) \(key)")
            let same = Digest(out.pixels) == Digest(c["digest"])
            #expect(same, "\(name) \(key): uint8 output differs from Pillow")
        }
    }

    @Test(
        "presets on the photos: uint8 crops and float32 tensors bit-identical to the torchvision emulation",
        arguments: photoNames)
    func presetsOnPhotos(_ name: String) throws {
        let entry = try #require(Fixtures.section("photos")[name] as? [String: Any])
        let presets = try #require(entry["presets"] as? [String: [String: Any]])
        let image = try SharedDataTests.photo(name)
        for (preset, c) in presets.sorted(by: { $0.key < $1.key }) {
            let p = try #require(Preprocessing.preset(named: preset))
            let u8 = p.resizedAndCropped(image)
            let x = p.tensor(image)
            #expect(Digest(u8.pixels) == Digest(c["uint8"]), "\(name) \(preset) uint8")
            #expect(crc32(x.scalars) == Digest(c["float32"])?.crc, "\(name) \(preset) float32")
            if c["float32_subsample"] != nil {
                let d = maxAbsDiff(subsample(x, step: 16), Fixtures.floats(c["float32_subsample"]))
                #expect(d == 0, "\(name) \(preset): subsample max |Δ| = \(d)")
            }
        }
    }

    @Test(
        "DINOv2 preprocessing equals the torchvision tensors of the reference activation file",
        arguments: referenceNames)
    func reference(_ name: String) throws {
        let entry = try #require(Fixtures.section("reference")[name] as? [String: Any])
        #expect(try Preprocessing(description: entry["preprocessing"] as? String ?? "") == .dinov2)
        let x = Preprocessing.dinov2.tensor(try SharedDataTests.photo(name))
        #expect(x.shape == [3, 224, 224])
        let digest = try #require(Digest(entry["float32"]))
        let d = maxAbsDiff(subsample(x, step: 16), Fixtures.floats(entry["float32_subsample"]))
        let identical = crc32(x.scalars) == digest.crc
        print(
            "\(name): torchvision reference [3,224,224] \(identical ? "bit-identical" : "DIFFERS"); "
                + "subsample max |Δ| = \(d)")
        #expect(identical)
        #expect(d == 0)
        expectClose(x.scalars.reduce(0.0) { $0 + Double($1) }, digest.sum, rtol: 1e-9)
    }

    @Test("the CIFAR-10 folder: listing in torchvision order and every JPEG decoded like Pillow")
    func cifar() throws {
        let e = Fixtures.section("cifar")
        let root = try #require(Fixtures.shared).appendingPathComponent("data/images/cifar10-test-1000")
        let folder = try ImageFolder(root: root)
        #expect(folder.classes == e["classes"] as? [String])
        #expect(folder.count == e["count"] as? Int)
        #expect(Array(folder.ids.prefix(3)) == e["first_ids"] as? [String])
        #expect(folder.ids.last == e["last_id"] as? String)
        #expect(crc32(Array(folder.ids.joined(separator: "\n").utf8)) == (e["ids_crc32"] as? NSNumber)?.uint32Value)
        let hex = try #require(e["decoded_crc32_hex"] as? String)
        let expected = stride(from: 0, to: hex.count, by: 8).map {
            UInt32(hex.dropFirst($0).prefix(8), radix: 16) ?? 0
        }
        var mismatches: [String] = []
        for (sample, crc) in zip(folder.samples, expected) {
            if crc32(try RGBImage(contentsOf: sample.url).pixels) != crc { mismatches.append(sample.id) }
        }
        #expect(mismatches.isEmpty, "decoded differently from Pillow: \(mismatches.prefix(10))")
        #expect(expected.count == folder.count)
    }

    @Test("timing: decode + DINO preprocessing of a 512×512 PNG photo, and a batch of 64 CIFAR images")
    func timing() throws {
        let url = try #require(Fixtures.photos).appendingPathComponent("astronaut.png")
        let clock = ContinuousClock()
        var x = Tensor<Float>(shape: [1])
        let t = clock.measure { for _ in 0..<3 { x = (try? Preprocessing.dino.tensor(contentsOf: url)) ?? x } }
        let root = try #require(Fixtures.shared).appendingPathComponent("data/images/cifar10-test-1000")
        var loader = ImageBatchLoader(
            folder: try ImageFolder(root: root, limit: 64), preprocessing: .dino,
            batchSize: 64)
        let tb = try clock.measure { _ = try loader.next() }
        print("astronaut.png decode + dino: \(t / 3) per image; 64 CIFAR images: \(tb) (this build's optimisation)")
        #expect(x.shape == [3, 224, 224])
    }
}
