import CKAImages
import Foundation
import Testing
import _CKATestSupport

@Suite("Decoding JPEG and PNG like PIL's convert('RGB')")
struct DecodingTests {
    static let decodeFixtures = Fixtures.section("decode").keys.sorted()
    static let errorFixtures = Fixtures.section("errors").keys.sorted()

    @Test("expected.json and expected.bin are present")
    func fixturesPresent() {
        #expect(DecodingTests.decodeFixtures.count >= 20)
        #expect(DecodingTests.errorFixtures.count >= 8)
        #expect(!Fixtures.blob.isEmpty)
    }

    @Test("every decode fixture equals Pillow's uint8 output", arguments: decodeFixtures)
    func decodeMatchesPillow(_ name: String) throws {
        let entry = try #require(Fixtures.section("decode")[name] as? [String: Any])
        let image = try RGBImage(contentsOf: Fixtures.url(name))
        #expect(image.width == entry["width"] as? Int)
        #expect(image.height == entry["height"] as? Int)
        let expected = Fixtures.slice(entry["pixels"])
        let diff = maxAbsDiff(image.pixels, expected)
        let tolerance = entry["tolerance"] as? Int ?? 0  // 1 for 16-bit with alpha (see the note)
        #expect(diff <= tolerance, "\(name): max |Δ| = \(diff) against Pillow")
        if diff > 0 { print("\(name): max |Δ| = \(diff) (\(entry["note"] as? String ?? ""))") }
    }

    @Test("format is detected from the bytes, not the extension")
    func detection() throws {
        func format(_ name: String) throws -> ImageFormat? {
            ImageFormat(detecting: try Fixtures.bytes(name))
        }
        #expect(try format("png_named.jpg") == .png)
        #expect(try format("cifar_cat_0000.jpg") == .jpeg)
        #expect(try format("not_an_image.gif") == nil)
        // The same bytes decode from memory, with the label in errors.
        let image = try RGBImage(data: try Fixtures.bytes("png_named.jpg"))
        #expect(image == (try RGBImage(contentsOf: Fixtures.url("png_named.jpg"))))
    }

    @Test("error fixtures throw the expected ImageError with the path", arguments: errorFixtures)
    func errors(_ name: String) throws {
        let kind = try #require(Fixtures.section("errors")[name] as? String)
        let url = Fixtures.url(name)
        do {
            let image = try RGBImage(contentsOf: url)
            Issue.record("\(name) decoded to \(image.width)×\(image.height)")
        } catch let error as ImageError {
            #expect(error.path == url.path)
            switch (kind, error) {
            case ("corrupt", .corrupt), ("empty", .empty), ("unsupportedFormat", .unsupportedFormat),
                ("tooLarge", .tooLarge):
                break
            default:
                Issue.record("\(name): expected \(kind), got \(error)")
            }
            #expect(!error.description.isEmpty)
        }
    }

    @Test("a GIF is named in the error; a missing file is unreadable")
    func messages() {
        #expect(throws: ImageError.unsupportedFormat(path: Fixtures.url("not_an_image.gif").path, found: "GIF")) {
            try RGBImage(contentsOf: Fixtures.url("not_an_image.gif"))
        }
        let missing = Fixtures.url("no-such-file.png")
        do {
            _ = try RGBImage(contentsOf: missing)
            Issue.record("decoded a missing file")
        } catch let ImageError.unreadable(path, reason) {
            #expect(path == missing.path)
            #expect(!reason.isEmpty)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("maxPixels is checked before decoding")
    func pixelLimit() throws {
        #expect(throws: ImageError.tooLarge(path: "<memory>", width: 32, height: 32, limit: 1000)) {
            try RGBImage(data: try Fixtures.bytes("cifar_cat_0000.jpg"), maxPixels: 1000)
        }
        #expect(throws: ImageError.tooLarge(path: "<memory>", width: 23, height: 17, limit: 100)) {
            try RGBImage(data: try Fixtures.bytes("rgb.png"), maxPixels: 100)
        }
        let big = try #require(Fixtures.section("errors")["huge.png"] as? String)
        #expect(big == "tooLarge")
    }

    /// Truncations and byte flips of valid files: every variant throws an ImageError or decodes; none traps.
    @Test(
        "fuzz: truncated and bit-flipped files never crash",
        arguments: [
            "cifar_cat_0000.jpg", "chelsea_444_progressive.jpg", "cmyk.jpg", "grey.jpg", "rgba.png",
            "palette_trns.png", "interlaced.png", "rgb16.png", "la16.png", "gamma.png", "odd_sampling.jpg",
        ])
    func fuzz(_ name: String) throws {
        let original = try Fixtures.bytes(name)
        var generator = SeededGenerator(seed: UInt64(name.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }))
        var decoded = 0, failed = 0
        func attempt(_ bytes: [UInt8]) {
            do {
                let image = try RGBImage(data: bytes, path: name)
                #expect(image.pixels.count == image.width * image.height * 3)
                decoded += 1
            } catch is ImageError {
                failed += 1
            } catch {
                Issue.record("\(name): non-ImageError \(error)")
            }
        }
        for cut in stride(from: 0, to: original.count, by: max(1, original.count / 97)) {
            attempt(Array(original[..<cut]))
        }
        for _ in 0..<300 {
            var b = original
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let i = Int.random(in: 0..<b.count, using: &generator)
                b[i] ^= UInt8.random(in: 1...255, using: &generator)
            }
            attempt(b)
        }
        for _ in 0..<50 {  // header fields scribbled over
            var b = original
            let i = Int.random(in: 0..<min(b.count, 200), using: &generator)
            for j in i..<min(i + 8, b.count) { b[j] = UInt8.random(in: 0...255, using: &generator) }
            attempt(b)
        }
        #expect(decoded + failed > 400)
        #expect(failed > 0)
    }
}
