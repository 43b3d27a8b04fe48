import CKAImages
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// The committed fixtures, written by notebooks-export/reference/images/make_image_fixtures.py from Pillow's
/// own output (see expected.json: `pillow`, `libjpeg_turbo`).
enum Fixtures {
    static var directory: URL { Bundle.module.resourceURL!.appendingPathComponent("Fixtures") }
    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }
    static func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: url(name))) }

    nonisolated(unsafe) static let expected: [String: Any] = {
        let data = (try? Data(contentsOf: Fixtures.url("expected.json"))) ?? Data()
        return ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any]) ?? [:]
    }()

    static let blob: [UInt8] = (try? Fixtures.bytes("expected.bin")) ?? []

    static func section(_ key: String) -> [String: Any] { expected[key] as? [String: Any] ?? [:] }
    static func list(_ key: String) -> [[String: Any]] { expected[key] as? [[String: Any]] ?? [] }

    /// Bytes `[offset, length]` of expected.bin.
    static func slice(_ entry: Any?) -> [UInt8] {
        guard let a = entry as? [Int], a.count == 2, a[0] >= 0, a[0] + a[1] <= blob.count else { return [] }
        return Array(blob[a[0]..<(a[0] + a[1])])
    }

    /// Little-endian float32 values of a `[offset, length]` range.
    static func floats(_ entry: Any?) -> [Float] {
        let b = slice(entry)
        return stride(from: 0, to: b.count - 3, by: 4).map {
            Float(
                bitPattern: UInt32(b[$0]) | UInt32(b[$0 + 1]) << 8 | UInt32(b[$0 + 2]) << 16 | UInt32(b[$0 + 3]) << 24)
        }
    }

    /// The shared data folder beside the checkout, when present. (`sharedDirectory` of _CKATestSupport climbs one
    /// folder too many; this falls back to `<checkout>/../shared` computed from this file's path.)
    static var shared: URL? {
        if let s = sharedDirectory { return s }
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // Tests/CKAImagesTests/Helpers.swift → checkout
        let shared = url.deletingLastPathComponent().appendingPathComponent("shared")
        return FileManager.default.fileExists(atPath: shared.path) ? shared : nil
    }
    static var photos: URL? { shared?.appendingPathComponent("data/images/photos") }
    static var hasPhotos: Bool { photos.map { FileManager.default.fileExists(atPath: $0.path) } ?? false }
}

/// CRC-32 (IEEE, as zlib.crc32), for comparing large outputs with the generator's checksums.
func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
    let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
}

func crc32(_ floats: [Float]) -> UInt32 {
    crc32(
        floats.flatMap { f -> [UInt8] in
            let b = f.bitPattern
            return [UInt8(b & 0xFF), UInt8(b >> 8 & 0xFF), UInt8(b >> 16 & 0xFF), UInt8(b >> 24)]
        })
}

/// A generator digest `{crc32, count, sum}`.
struct Digest: Equatable, CustomStringConvertible {
    var crc: UInt32
    var count: Int
    var sum: Double

    init?(_ json: Any?) {
        guard let d = json as? [String: Any], let c = (d["crc32"] as? NSNumber)?.uint32Value,
            let n = d["count"] as? Int, let s = (d["sum"] as? NSNumber)?.doubleValue
        else { return nil }
        crc = c; count = n; sum = s
    }

    init(_ bytes: [UInt8]) { crc = crc32(bytes); count = bytes.count; sum = Double(bytes.reduce(0) { $0 + Int($1) }) }

    init(_ floats: [Float]) { crc = crc32(floats); count = floats.count; sum = floats.reduce(0.0) { $0 + Double($1) } }

    var description: String { "crc \(String(crc, radix: 16)) n \(count) Σ \(sum)" }
}

/// Largest |a − b| over two equally long byte arrays (Int.max if the lengths differ).
func maxAbsDiff(_ a: [UInt8], _ b: [UInt8]) -> Int {
    guard a.count == b.count else { return .max }
    return zip(a, b).map { abs(Int($0) - Int($1)) }.max() ?? 0
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

/// `[3, C, C]` CHW floats of `t` strided by `step` in both spatial axes (like numpy `x[:, ::step, ::step]`).
func subsample(_ t: Tensor<Float>, step: Int) -> [Float] {
    let s = t.scalars, c = t.shape[1], w = t.shape[2]
    var out: [Float] = []
    for ch in 0..<3 {
        for y in stride(from: 0, to: c, by: step) {
            for x in stride(from: 0, to: w, by: step) {
                out.append(s[(ch * c + y) * w + x])
            }
        }
    }
    return out
}
