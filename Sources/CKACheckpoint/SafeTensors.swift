import CKATensor
import Foundation
import _CKASupport

/// A safetensors file, memory-mapped and validated against the format's rules:
///
/// - an 8-byte little-endian header length `N` with `2 ≤ N ≤ maxHeaderBytes` and `8 + N ≤` file size;
/// - the header is UTF-8 JSON starting with `{` (trailing spaces allowed), one object whose keys are unique;
/// - `__metadata__`, if present, maps strings to strings;
/// - every other entry has exactly `dtype` (a known name), `shape` (non-negative integers) and `data_offsets`
///   `[begin, end]` with `end − begin = product(shape) · dtype size`;
/// - sorted by `begin`, the tensors tile the data buffer exactly: the first starts at 0, each starts where the
///   previous ended (no gaps, no overlaps) and the last ends at the end of the file.
package struct SafeTensorsFile: Sendable {
    /// The largest header accepted (the reference implementation's limit).
    public static let maxHeaderBytes = 100_000_000

    /// The mapped file.
    public let file: MappedFile
    /// The `__metadata__` strings (empty if absent).
    public let metadata: [String: String]
    /// Tensor names in data order.
    public let names: [String]
    /// The tensors by name.
    public let tensors: [String: StoredTensor]
    /// Byte offset of the data buffer in the file (`8 + N`).
    public let dataOffset: Int

    /// Maps and validates the file at `url`.
    public init(contentsOf url: URL) throws {
        try self.init(file: MappedFile(url: url))
    }

    /// Validates an already mapped (or in-memory) file.
    public init(file: MappedFile) throws {
        self.file = file
        let name = file.name
        func bad(_ offset: Int, _ expected: String, _ found: String) -> CheckpointError {
            .malformedSafeTensors(file: name, offset: offset, expected: expected, found: found)
        }
        let total = file.count
        guard total >= 8 else { throw bad(0, "an 8-byte header length", "a \(total)-byte file") }
        let (headerLength, parsed): (Int, JSONValue) = try file.withUnsafeBytes { raw in
            let n64 = raw.le64(0)
            guard n64 <= UInt64(SafeTensorsFile.maxHeaderBytes) else {
                throw CheckpointError.limitExceeded(
                    file: name, offset: 0, what: "safetensors header length (\(n64))",
                    limit: SafeTensorsFile.maxHeaderBytes)
            }
            let n = Int(n64)
            guard n >= 2, n <= total - 8 else {
                throw bad(0, "a header length between 2 and \(total - 8) (file size − 8)", "\(n64)")
            }
            guard raw[8] == UInt8(ascii: "{") else {
                throw bad(8, "a JSON object starting with '{'", "byte 0x\(String(raw[8], radix: 16))")
            }
            // Trailing spaces are allowed padding.
            var end = 8 + n
            while end > 9, raw[end - 1] == 0x20 { end -= 1 }
            var parser = JSONParser(bytes: UnsafeRawBufferPointer(rebasing: raw[8..<end])) { o, e, f in bad(8 + o, e, f)
            }
            return (n, try parser.parseDocument())
        }
        guard case let .object(members) = parsed else { throw bad(8, "a JSON object", parsed.typeName) }
        let dataOffset = 8 + headerLength
        let dataLength = total - dataOffset
        var metadata: [String: String] = [:]
        var entries: [(name: String, dtype: DType, shape: [Int], begin: Int, end: Int)] = []
        entries.reserveCapacity(members.count)
        for (key, value) in members {
            if key == "__metadata__" {
                guard case let .object(kv) = value else {
                    throw bad(8, "__metadata__ to be an object of strings", value.typeName)
                }
                for (k, v) in kv {
                    guard case let .string(s) = v else {
                        throw bad(8, "__metadata__[\"\(k)\"] to be a string", v.typeName)
                    }
                    metadata[k] = s
                }
                continue
            }
            guard case let .object(fields) = value else {
                throw bad(8, "tensor \"\(key)\" to be an object", value.typeName)
            }
            var dtype: DType?, shape: [Int]?, offsets: [Int]?
            for (f, v) in fields {
                switch f {
                case "dtype":
                    guard case let .string(s) = v else { throw bad(8, "\"\(key)\".dtype to be a string", v.typeName) }
                    guard let d = DType(safetensorsName: s) else {
                        throw bad(
                            8,
                            "\"\(key)\".dtype to be one of \(DType.allCases.map(\.safetensorsName).joined(separator: ", "))",
                            "\"\(s)\"")
                    }
                    dtype = d
                case "shape", "data_offsets":
                    guard case let .array(items) = v else { throw bad(8, "\"\(key)\".\(f) to be an array", v.typeName) }
                    guard items.count <= 64 else {
                        throw bad(8, "\"\(key)\".\(f) with at most 64 entries", "\(items.count)")
                    }
                    var ints: [Int] = []
                    for item in items {
                        guard case let .int(x) = item, x >= 0 else {
                            throw bad(8, "\"\(key)\".\(f) to hold non-negative integers", "\(item)")
                        }
                        ints.append(x)
                    }
                    if f == "shape" { shape = ints } else { offsets = ints }
                default:
                    throw bad(8, "\"\(key)\" to have only dtype, shape and data_offsets", "field \"\(f)\"")
                }
            }
            guard let dt = dtype, let sh = shape, let off = offsets else {
                throw bad(8, "\"\(key)\" to have dtype, shape and data_offsets", "missing field")
            }
            guard off.count == 2, off[0] <= off[1] else {
                throw bad(8, "\"\(key)\".data_offsets = [begin, end] with begin ≤ end", "\(off)")
            }
            guard let numel = checkedProduct(sh), let bytes = checkedMul(numel, dt.byteSize) else {
                throw bad(8, "\"\(key)\" to have a size that fits in 64 bits", "shape \(sh)")
            }
            guard off[1] - off[0] == bytes else {
                throw bad(
                    8, "\"\(key)\" to span \(bytes) bytes (\(dt.safetensorsName) \(describeShape(sh)))",
                    "data_offsets \(off) (\(off[1] - off[0]) bytes)")
            }
            guard off[1] <= dataLength else {
                throw bad(dataOffset, "\"\(key)\" inside the data buffer (\(dataLength) bytes)", "data_offsets \(off)")
            }
            entries.append((key, dt, sh, off[0], off[1]))
        }
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var cursor = 0
        for e in entries {
            guard e.begin == cursor else {
                throw bad(
                    dataOffset + min(e.begin, cursor),
                    "\"\(e.name)\" to start at data offset \(cursor) (tensors must tile the buffer)",
                    e.begin < cursor ? "an overlap (begin \(e.begin))" : "a gap (begin \(e.begin))")
            }
            cursor = e.end
        }
        guard cursor == dataLength else {
            throw bad(
                dataOffset + cursor, "the tensors to cover the data buffer (\(dataLength) bytes)",
                "\(dataLength - cursor) bytes not covered")
        }
        var tensors: [String: StoredTensor] = [:]
        tensors.reserveCapacity(entries.count)
        for e in entries {
            tensors[e.name] = try StoredTensor(
                name: e.name, dtype: e.dtype, shape: e.shape, file: file,
                storageByteOffset: dataOffset + e.begin,
                storageByteCount: e.end - e.begin, storageID: e.name)
        }
        self.metadata = metadata
        self.names = entries.map(\.name)
        self.tensors = tensors
        self.dataOffset = dataOffset
    }

    /// The tensor called `name`, if any.
    public subscript(name: String) -> StoredTensor? { tensors[name] }
}

/// Writes safetensors files (tensors in the given order, header padded to 8 bytes), atomically: the bytes go
/// to a temporary file in the destination folder, which is synced and renamed over the destination.
public enum SafeTensorsWriter {
    /// One tensor to write.
    public struct Entry: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        enum Payload: @unchecked Sendable {
            case float(Tensor<Float>)
            case raw([UInt8])
            case stored(StoredTensor)
        }
        let payload: Payload

        /// A `Float` tensor, stored as float32, float16, bfloat16 or float64.
        public init(name: String, tensor: Tensor<Float>, dtype: DType = .float32) throws {
            guard [.float32, .float16, .bfloat16, .float64].contains(dtype) else {
                throw CheckpointError.unsupportedDType(
                    file: name, name: name, dtype: dtype.rawValue,
                    expected: "float32, float16, bfloat16 or float64 for a Float tensor")
            }
            self.name = name; self.dtype = dtype; self.shape = tensor.shape; payload = .float(tensor)
        }

        /// A tensor read from a checkpoint, written in its own dtype (gathered to row-major if needed).
        public init(name: String, stored: StoredTensor) {
            self.name = name; dtype = stored.dtype; shape = stored.shape; payload = .stored(stored)
        }

        /// Raw little-endian bytes of `dtype` elements in row-major order.
        public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) throws {
            guard let n = checkedProduct(shape), n * dtype.byteSize == bytes.count else {
                throw CheckpointError.invalidTensor(
                    file: name, name: name,
                    expected: "\(dtype.rawValue)\(describeShape(shape)) bytes",
                    found: "\(bytes.count) bytes")
            }
            self.name = name; self.dtype = dtype; self.shape = shape; payload = .raw(bytes)
        }

        var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
    }

    /// The header JSON (padded with spaces to a multiple of 8 bytes) for `entries`.
    static func header(_ entries: [Entry], metadata: [String: String]) -> [UInt8] {
        var parts: [String] = []
        if !metadata.isEmpty {
            let kv = metadata.sorted { $0.key < $1.key }
                .map { JSONWriter.quote($0.key) + ":" + JSONWriter.quote($0.value) }
            parts.append("\"__metadata__\":{" + kv.joined(separator: ",") + "}")
        }
        var offset = 0
        for e in entries {
            let end = offset + e.byteCount
            parts.append(
                JSONWriter.quote(e.name) + ":{\"dtype\":\"\(e.dtype.safetensorsName)\",\"shape\":["
                    + e.shape.map(String.init).joined(separator: ",") + "],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var bytes = Array(("{" + parts.joined(separator: ",") + "}").utf8)
        while bytes.count % 8 != 0 { bytes.append(0x20) }
        return bytes
    }

    /// Writes `entries` (names must be unique and not `__metadata__`) with optional string metadata to `url`.
    public static func write(_ entries: [Entry], metadata: [String: String] = [:], to url: URL) throws {
        var seen = Set<String>()
        for e in entries {
            guard e.name != "__metadata__", seen.insert(e.name).inserted else {
                throw CheckpointError.writeFailed(
                    file: url.path, reason: "duplicate or reserved tensor name '\(e.name)'")
            }
        }
        let head = header(entries, metadata: metadata)
        do {
            try AtomicOutput.write(to: url.path) { out in
                var n = UInt64(head.count).littleEndian
                try withUnsafeBytes(of: &n) { try out.write($0) }
                try head.withUnsafeBytes { try out.write($0) }
                for e in entries {
                    switch e.payload {
                    case let .raw(bytes):
                        try bytes.withUnsafeBytes { try out.write($0) }
                    case let .stored(t):
                        if t.isContiguous {
                            try t.file.withUnsafeBytes { raw in
                                let start = t.storageByteOffset + t.storageOffset * t.dtype.byteSize
                                try out.write(UnsafeRawBufferPointer(rebasing: raw[start..<(start + t.byteCount)]))
                            }
                        } else {
                            try t.contiguousBytes().withUnsafeBytes { try out.write($0) }
                        }
                    case let .float(tensor):
                        try tensor.withUnsafeBufferPointer { src in
                            try writeFloats(src, as: e.dtype, to: out)
                        }
                    }
                }
            }
        } catch let e as OutputError {
            throw CheckpointError.writeFailed(file: url.path, reason: e.message)
        }
    }

    /// Encodes `src` as `dtype` little-endian in chunks.
    static func writeFloats(_ src: UnsafeBufferPointer<Float>, as dtype: DType, to out: AtomicOutput.Stream) throws {
        #if _endian(little)
            if dtype == .float32 { try out.write(UnsafeRawBufferPointer(src)); return }
        #endif
        let chunk = 1 << 16
        var buffer = [UInt8](repeating: 0, count: chunk * 8)
        var start = 0
        while start < src.count {
            let n = min(chunk, src.count - start)
            try buffer.withUnsafeMutableBytes { b in
                for i in 0..<n {
                    let x = src[start + i]
                    switch dtype {
                    case .float16: b.storeBytes(of: x.halfBits.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
                    case .bfloat16: b.storeBytes(of: bfloat16Bits(x).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
                    case .float64:
                        b.storeBytes(of: Double(x).bitPattern.littleEndian, toByteOffset: 8 * i, as: UInt64.self)
                    default: b.storeBytes(of: x.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
                    }
                }
                try out.write(UnsafeRawBufferPointer(rebasing: b[0..<(n * dtype.byteSize)]))
            }
            start += n
        }
    }

    /// Rounds a Float to bfloat16 (nearest even; NaN stays NaN).
    static func bfloat16Bits(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(b >> 16) | 0x40 }
        let rounded = b &+ 0x7fff &+ ((b >> 16) & 1)
        return UInt16(rounded >> 16)
    }
}
