import CKATensor
import Foundation

/// A flat binary message between ranks: integers, strings, arrays and tensors appended in order and read back
/// in the same order (native byte order: every rank of a job runs the same binary on the same architecture).
public struct Message: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func append(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { bytes += $0 } }

    public mutating func append(_ s: String) {
        let utf8 = Array(s.utf8)
        append(utf8.count)
        bytes += utf8
    }

    public mutating func append(_ strings: [String]) {
        append(strings.count)
        for s in strings { append(s) }
    }

    public mutating func append(_ values: [Int]) {
        append(values.count)
        for v in values { append(v) }
    }

    public mutating func append<T: BitwiseCopyable>(scalars p: UnsafeBufferPointer<T>) {
        append(p.count)
        bytes += UnsafeRawBufferPointer(p)
    }

    public mutating func append(_ values: [Double]) { values.withUnsafeBufferPointer { append(scalars: $0) } }

    /// A tensor: its shape, then its scalars (bit for bit).
    public mutating func append<S: TensorScalar & BitwiseCopyable>(_ t: Tensor<S>) {
        append(t.shape)
        t.withUnsafeBufferPointer { append(scalars: $0) }
    }

    static func encode(_ values: [Double]) -> [UInt8] {
        values.withUnsafeBufferPointer { Array(UnsafeRawBufferPointer($0)) }
    }

    static func decodeDoubles(_ bytes: [UInt8]) -> [Double] {
        let n = bytes.count / 8
        var out = [Double](repeating: 0, count: n)
        out.withUnsafeMutableBytes { $0.copyBytes(from: bytes.prefix(n * 8)) }
        return out
    }
}

/// Reads a `Message`'s values in the order they were appended.
public struct MessageReader {
    let bytes: [UInt8]
    var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// True when everything was read.
    public var atEnd: Bool { offset == bytes.count }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, offset + n <= bytes.count else { throw DistributedError.malformedMessage(offset: offset) }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    public mutating func int() throws -> Int {
        var v: Int64 = 0
        let s = try take(8)
        withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: s) }
        return Int(Int64(littleEndian: v))
    }

    public mutating func string() throws -> String { String(decoding: try take(try int()), as: UTF8.self) }

    public mutating func strings() throws -> [String] { try (0..<int()).map { _ in try string() } }

    public mutating func ints() throws -> [Int] { try (0..<int()).map { _ in try int() } }

    public mutating func scalars<T: BitwiseCopyable>(_: T.Type) throws -> [T] {
        let n = try int()
        guard n >= 0, n <= (bytes.count - offset) / MemoryLayout<T>.stride else {
            throw DistributedError.malformedMessage(offset: offset)
        }
        let s = try take(n * MemoryLayout<T>.stride)
        return [T](unsafeUninitializedCapacity: n) { p, count in
            UnsafeMutableRawBufferPointer(p).copyBytes(from: s)
            count = n
        }
    }

    public mutating func doubles() throws -> [Double] { try scalars(Double.self) }

    public mutating func tensor<S: TensorScalar & BitwiseCopyable>(_: S.Type) throws -> Tensor<S> {
        let shape = try ints()
        let values = try scalars(S.self)
        return try Tensor(shape: shape, scalars: values)
    }
}

/// Errors of distributed runs.
public enum DistributedError: Error, Equatable, CustomStringConvertible {
    /// A message between ranks did not hold what was expected (a bug, or ranks running different binaries).
    case malformedMessage(offset: Int)
    /// Another rank reported a failure.
    case remote(rank: Int, message: String)

    public var description: String {
        switch self {
        case let .malformedMessage(offset):
            return "malformed message between ranks (at byte \(offset)): are all ranks running the same cka?"
        case let .remote(rank, message): return "rank \(rank): \(message)"
        }
    }
}
