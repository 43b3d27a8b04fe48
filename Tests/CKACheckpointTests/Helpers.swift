import CKACheckpoint
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// The committed fixtures (written by notebooks-export/reference/checkpoints/make_checkpoint_fixtures.py with
/// real torch.save / safetensors output).
enum Fixtures {
    static var directory: URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures")
    }

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    static func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: url(name))) }

    /// `expected.json`.
    nonisolated(unsafe) static let expected: [String: Any] = {
        let data = (try? Data(contentsOf: Fixtures.url("expected.json"))) ?? Data()
        return ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any]) ?? [:]
    }()

    static func fixture(_ name: String) -> [String: Any] {
        ((expected["fixtures"] as? [String: Any])?[name] as? [String: Any]) ?? [:]
    }

    /// The path a malicious payload would create if it ever ran.
    static var sentinel: String { expected["sentinel"] as? String ?? "/tmp/cka-checkpoint-fixture-pwned" }

    static let width = 8
    static let heads = 2
}

/// `../shared` beside the checkout, if present.
var sharedFolder: URL? { sharedDirectory }

/// `[shape, sum, Σ (i+1)·x_i]` as the generator records it.
struct TensorDigest: Equatable {
    var shape: [Int]
    var sum: Double
    var weighted: Double

    init(shape: [Int], sum: Double, weighted: Double) { self.shape = shape; self.sum = sum; self.weighted = weighted }

    init?(json: Any?) {
        guard let a = json as? [Any], a.count == 3, let shape = a[0] as? [Int],
            let s = (a[1] as? NSNumber)?.doubleValue, let w = (a[2] as? NSNumber)?.doubleValue
        else { return nil }
        self.init(shape: shape, sum: s, weighted: w)
    }

    init(_ t: Tensor<Float>) {
        var s = 0.0, w = 0.0
        t.withUnsafeBufferPointer { p in
            for (i, x) in p.enumerated() { s += Double(x); w += Double(i + 1) * Double(x) }
        }
        self.init(shape: t.shape, sum: s, weighted: w)
    }
}

/// Compares a tensor to the generator's digest (sums in float64 of the same float32 values: tight tolerance).
func expectDigest(
    _ t: Tensor<Float>?, _ expected: Any?, _ label: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let t else { Issue.record("\(label): missing tensor", sourceLocation: sourceLocation); return }
    guard let e = TensorDigest(json: expected) else {
        Issue.record("\(label): no digest in expected.json", sourceLocation: sourceLocation); return
    }
    let d = TensorDigest(t)
    #expect(d.shape == e.shape, "\(label) shape", sourceLocation: sourceLocation)
    expectClose(
        [d.sum, d.weighted], [e.sum, e.weighted], rtol: 1e-6, atol: 1e-7 * Double(max(t.count, 1)),
        "\(label) sums", sourceLocation: sourceLocation)
}

/// Runs `body` and returns the `CheckpointError` it throws (recording an issue for success or another error).
@discardableResult
func expectCheckpointError<T>(
    _ label: String = "", sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> T
) -> CheckpointError? {
    do {
        _ = try body()
        Issue.record("\(label): expected a CheckpointError, got success", sourceLocation: sourceLocation)
        return nil
    } catch let e as CheckpointError {
        return e
    } catch {
        Issue.record("\(label): expected a CheckpointError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Little-endian helpers for hand-made byte sequences.
extension Array where Element == UInt8 {
    mutating func le16(_ v: Int) { append(UInt8(v & 0xff)); append(UInt8((v >> 8) & 0xff)) }
    mutating func le32(_ v: Int) { for k in 0..<4 { append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
    mutating func le64(_ v: UInt64) { for k in 0..<8 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) } }
}

/// A minimal stored-entry zip writer for hand-made archives (optionally ZIP64 and with a chosen method).
func makeZip(_ entries: [(name: String, data: [UInt8])], method: Int = 0, zip64: Bool = false) -> [UInt8] {
    var out: [UInt8] = []
    var central: [UInt8] = []
    for e in entries {
        let offset = out.count
        let crc = CRC32.checksum(e.data)
        let name = Array(e.name.utf8)
        out.le32(0x0403_4b50); out.le16(20); out.le16(0); out.le16(method); out.le16(0); out.le16(0)
        out.le32(Int(crc)); out.le32(e.data.count); out.le32(e.data.count); out.le16(name.count); out.le16(0)
        out += name
        out += e.data
        central.le32(0x0201_4b50); central.le16(45); central.le16(zip64 ? 45 : 20); central.le16(0);
        central.le16(method)
        central.le16(0); central.le16(0); central.le32(Int(crc))
        if zip64 {
            central.le32(0xffff_ffff); central.le32(0xffff_ffff)
        } else {
            central.le32(e.data.count); central.le32(e.data.count)
        }
        central.le16(name.count); central.le16(zip64 ? 28 : 0); central.le16(0); central.le16(0); central.le16(0)
        central.le32(0); central.le32(zip64 ? 0xffff_ffff : offset)
        central += name
        if zip64 {
            central.le16(1); central.le16(24)
            central.le64(UInt64(e.data.count)); central.le64(UInt64(e.data.count)); central.le64(UInt64(offset))
        }
    }
    let cdOffset = out.count
    out += central
    if zip64 {
        let rec = out.count
        out.le32(0x0606_4b50); out.le64(44); out.le16(45); out.le16(45); out.le32(0); out.le32(0)
        out.le64(UInt64(entries.count)); out.le64(UInt64(entries.count)); out.le64(UInt64(central.count))
        out.le64(UInt64(cdOffset))
        out.le32(0x0706_4b50); out.le32(0); out.le64(UInt64(rec)); out.le32(1)
        out.le32(0x0605_4b50); out.le16(0); out.le16(0); out.le16(0xffff); out.le16(0xffff)
        out.le32(0xffff_ffff); out.le32(0xffff_ffff); out.le16(0)
    } else {
        out.le32(0x0605_4b50); out.le16(0); out.le16(0); out.le16(entries.count); out.le16(entries.count)
        out.le32(central.count); out.le32(cdOffset); out.le16(0)
    }
    return out
}

/// A hand-made torch archive: `archive/data.pkl` plus storage records.
func makeTorchZip(pickle: [UInt8], storages: [(key: String, data: [UInt8])] = [], zip64: Bool = false) -> [UInt8] {
    makeZip(
        [("archive/data.pkl", pickle)] + storages.map { ("archive/data/\($0.key)", $0.data) } + [
            ("archive/byteorder", Array("little".utf8)), ("archive/version", Array("3\n".utf8)),
        ], zip64: zip64)
}
