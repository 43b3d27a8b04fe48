/// Entry points for fuzzers: each takes arbitrary bytes, runs one reader over them and returns normally —
/// every malformed input must end in a caught `CheckpointError`. A libFuzzer harness is a three-line
/// `@_cdecl("LLVMFuzzerTestOneInput")` function calling one of these (see
/// Tests/Fuzz/).
package enum CheckpointFuzzing {
    /// The safetensors reader (header JSON, offsets), then every tensor converted to `Float`.
    public static func safetensors(_ data: UnsafeRawBufferPointer) {
        let file = MappedFile(bytes: data, name: "fuzz.safetensors")
        guard let st = try? SafeTensorsFile(file: file) else { return }
        for name in st.names where (st[name]?.elementCount ?? 0) <= 1 << 20 { _ = try? st[name]?.floatTensor() }
    }

    /// The zip directory reader (EOCD, ZIP64, central and local headers), then every stored entry read and
    /// CRC-checked.
    public static func zipDirectory(_ data: UnsafeRawBufferPointer) {
        let file = MappedFile(bytes: data, name: "fuzz.zip")
        guard let zip = try? ZipArchive(file: file) else { return }
        for e in zip.entries { _ = try? zip.read(e) }
    }

    /// The restricted unpickler. Persistent ids of the torch form `('storage', torch.<T>Storage, key, loc, n)`
    /// with `n ≤ 4096` resolve to a zero-filled storage, so tensor rebuilding is exercised too.
    public static func unpickler(_ data: UnsafeRawBufferPointer) {
        let zeros = MappedFile(bytes: [UInt8](repeating: 0, count: 4096 * 8), name: "fuzz-storage")
        let value = try? Unpickler.load(data, fileName: "fuzz.pkl") { pid, _ in
            guard case let .tuple(items) = pid, items.count >= 5, case let .string(key) = items[2],
                case let .global(_, type) = items[1], let dtype = DType(torchStorageClass: type),
                let n = items[4].intValue, n >= 0, n <= 4096
            else {
                return .none
            }
            return .storage(
                TorchStorage(
                    key: key, dtype: dtype, elementCount: n, location: "cpu", file: zeros,
                    byteOffset: 0, byteCount: n * dtype.byteSize))
        }
        if let v = value {
            var tensors: [StoredTensor] = []
            Checkpoint.collectTensors(v, into: &tensors)
            for t in tensors.prefix(64) where t.elementCount <= 1 << 16 { _ = try? t.floatTensor() }
            _ = v.describe(depth: 3)
        }
    }

    /// The whole loader: format detection, either reader, source detection, key mapping, architecture.
    public static func checkpoint(_ data: UnsafeRawBufferPointer) {
        let file = MappedFile(bytes: data, name: "fuzz.pth")
        if let c = try? Checkpoint(file: file, options: .init(heads: 1)) {
            _ = c.summaryText()
            _ = c.summaryJSON()
        }
    }
}
