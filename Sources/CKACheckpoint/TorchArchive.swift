import Foundation

/// A PyTorch checkpoint in the zip format `torch.save` writes since torch 1.6:
/// `<archive>/data.pkl` (the pickled object), `<archive>/data/<key>` (one stored record per storage),
/// `<archive>/byteorder`, `<archive>/version`, ….
///
/// The pickle is decoded by `Unpickler` (nothing is ever called); storages referenced by its persistent ids
/// (`('storage', torch.<Type>Storage, key, location, numel)`) are bound to their records in the mapped file
/// without copying. Tensors in `root` are `StoredTensor`s over those records.
public struct TorchArchive: Sendable {
    /// Options for reading.
    public struct Options: Sendable {
        public var unpickler = PickleOptions()
        /// Check the CRC-32 of every storage record (costs one pass over the data). `data.pkl` is always checked.
        public var verifyStorageCRC = false
        public init() {}
    }

    package let zip: ZipArchive
    /// The folder prefix of every record, e.g. `archive/` or `vit-b-300ep/`.
    public let prefix: String
    /// The decoded object (usually a dict).
    package let root: PickleValue
    /// The storages bound while decoding, by key.
    package let storages: [String: TorchStorage]
    /// The `version` record (serialization format), if present.
    public let formatVersion: String?

    /// Maps and reads the archive at `url`.
    public init(contentsOf url: URL, options: Options = Options()) throws {
        try self.init(file: MappedFile(url: url), options: options)
    }

    /// Reads an archive from a mapped (or in-memory) file.
    package init(file: MappedFile, options: Options = Options()) throws {
        let zip = try ZipArchive(file: file)
        self.zip = zip
        let name = file.name
        // The pickle: exactly one `<prefix>/data.pkl` at the top level of one folder.
        let pickles = zip.entries.filter { e in
            let parts = e.name.split(separator: "/", omittingEmptySubsequences: false)
            return parts.count == 2 && parts[1] == "data.pkl" && !parts[0].isEmpty
        }
        guard pickles.count == 1, let pkl = pickles.first else {
            let names = zip.entries.prefix(5).map(\.name).joined(separator: ", ")
            throw CheckpointError.unrecognizedLayout(
                file: name, expected: "a PyTorch zip checkpoint with one '<archive>/data.pkl' record",
                found: pickles.isEmpty
                    ? "a zip archive without it (entries: \(names)\(zip.entries.count > 5 ? ", …" : ""))"
                    : "\(pickles.count) data.pkl records")
        }
        let prefix = String(pkl.name.dropLast("data.pkl".count))
        self.prefix = prefix
        // A TorchScript archive (torch.jit.save; OpenAI's CLIP `ViT-B-16.pt`) pickles scripted module objects whose
        // weights are attributes of classes defined by its `code/`: reading them means running that code.
        if zip.entry(prefix + "constants.pkl") != nil
            || zip.entries.contains(where: { $0.name.hasPrefix(prefix + "code/") })
        {
            let stem = URL(fileURLWithPath: name).deletingPathExtension().lastPathComponent
            throw CheckpointError.unrecognizedLayout(
                file: name, expected: "a state dict (torch.save), not a TorchScript program",
                found:
                    "a TorchScript archive (e.g. OpenAI CLIP's ViT-B-16.pt), whose weights are read only by running its code; convert it once with: python -c \"import torch; torch.save(torch.jit.load('\(URL(fileURLWithPath: name).lastPathComponent)', map_location='cpu').state_dict(), '\(stem).state_dict.pt')\" and load \(stem).state_dict.pt (OpenAI weights: QuickGELU is applied)"
            )
        }
        func text(_ record: String) throws -> String? {
            guard let e = zip.entry(prefix + record) else { return nil }
            guard e.uncompressedSize <= 4096 else { return nil }
            return String(decoding: try zip.read(e), as: UTF8.self).trimmingWhitespace
        }
        if let order = try text("byteorder"), order != "little" {
            throw CheckpointError.unrecognizedLayout(
                file: name, expected: "little-endian storages (byteorder 'little')",
                found: "byteorder '\(order.prefix(20))'")
        }
        formatVersion = try text("version")
        let pklRange = try zip.storedRange(of: pkl)
        try zip.verifyCRC(of: pkl)

        var storages: [String: TorchStorage] = [:]
        let verify = options.verifyStorageCRC
        let pickleName = "\(name):\(pkl.name)"
        let root = try file.withUnsafeBytes { raw in
            try Unpickler.load(
                UnsafeRawBufferPointer(rebasing: raw[pklRange]), fileName: pickleName,
                options: options.unpickler
            ) { pid, offset in
                try TorchArchive.persistentLoad(
                    pid, offset: offset, zip: zip, prefix: prefix, pickleName: pickleName,
                    verifyCRC: verify, cache: &storages)
            }
        }
        self.root = root
        self.storages = storages
    }

    /// Resolves `('storage', storage_type, key, location, numel)`.
    static func persistentLoad(
        _ pid: PickleValue, offset: Int, zip: ZipArchive, prefix: String, pickleName: String,
        verifyCRC: Bool, cache: inout [String: TorchStorage]
    ) throws -> PickleValue {
        func bad(_ expected: String, _ found: String) -> CheckpointError {
            .malformedPickle(file: pickleName, offset: offset, expected: expected, found: found)
        }
        guard case let .tuple(items) = pid, items.count >= 5, case .string("storage") = items[0] else {
            throw bad("a persistent id ('storage', type, key, location, numel)", pid.describe(depth: 1))
        }
        guard case let .string(key) = items[2], !key.isEmpty, !key.contains("/"), !key.contains("..") else {
            throw bad("a storage key string", items[2].describe(depth: 0))
        }
        let location: String
        if case let .string(l) = items[3] { location = l } else { location = items[3].describe(depth: 0) }
        guard let numel = items[4].intValue, numel >= 0 else {
            throw bad("a non-negative storage size", items[4].describe(depth: 0))
        }
        guard case let .global(module, typeName) = items[1],
            module == "torch" || module == "torch.storage" || module == "torch.cuda",
            let dtype = DType(torchStorageClass: typeName)
        else {
            // Unknown storage type (UntypedStorage, quantized, complex, …): keep it opaque.
            return .object(
                OpaqueObject(
                    kind: .persistent, module: "", name: "storage", args: items, kwargs: [],
                    state: nil, listItems: [], dictItems: []))
        }
        if let s = cache[key] {
            guard s.dtype == dtype, s.elementCount == numel else {
                throw bad(
                    "storage \(key) declared consistently (\(s.dtype.rawValue) × \(s.elementCount))",
                    "\(dtype.rawValue) × \(numel)")
            }
            return .storage(s)
        }
        guard let entry = zip.entry(prefix + "data/" + key) else {
            throw bad("a record '\(prefix)data/\(key)' for storage \(key)", "no such record")
        }
        let range = try zip.storedRange(of: entry)
        guard let bytes = checkedMul(numel, dtype.byteSize), bytes <= range.count else {
            throw CheckpointError.invalidTensor(
                file: zip.file.name, name: "storage \(key)",
                expected: "\(numel) \(dtype.rawValue) elements in the record",
                found: "\(range.count) bytes")
        }
        if verifyCRC { try zip.verifyCRC(of: entry) }
        let s = TorchStorage(
            key: key, dtype: dtype, elementCount: numel, location: location, file: zip.file,
            byteOffset: range.lowerBound, byteCount: range.count)
        cache[key] = s
        return .storage(s)
    }
}
