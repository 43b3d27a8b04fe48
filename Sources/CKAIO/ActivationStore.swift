import CKATensor
import Foundation

/// Errors about the content of activation stores (formats.md §1). Each names the file.
public enum ActivationStoreError: Error, Equatable, CustomStringConvertible {
    case wrongFormat(path: String, found: String)
    case unsupportedVersion(path: String, version: Int)
    case missingIDs(path: String)
    case rowCountMismatch(path: String, dataset: String, expected: Int, got: Int)
    case layerNotFound(path: String, layer: String, available: [String])
    case notFloat(path: String, layer: String, type: String)
    case missingLayerData(path: String, layer: String, expected: Int, got: Int)
    case gramsNotFound(path: String, layer: String)
    /// A file attribute with a value of the wrong kind (e.g. `format_version` 1.5).
    case invalidAttribute(path: String, name: String, value: String, expected: String)

    public var description: String {
        switch self {
        case let .wrongFormat(path, found):
            return "\(path): format is '\(found)', expected 'activations' (formats.md §1)"
        case let .unsupportedVersion(path, v):
            return "\(path): format_version \(v) is not supported (this toolkit reads version 1)"
        case let .missingIDs(path):
            return "\(path): no /inputs/ids dataset (an activation store needs the id of every input)"
        case let .rowCountMismatch(path, ds, expected, got):
            return "\(path): '\(ds)' has \(got) rows, expected N = \(expected) (the length of /inputs/ids)"
        case let .layerNotFound(path, layer, available):
            let shown = available.prefix(8).joined(separator: ", ") + (available.count > 8 ? ", …" : "")
            return "\(path): no layer '\(layer)' (layers: \(shown))"
        case let .notFloat(path, layer, type):
            return "\(path): layer '\(layer)' holds \(type), expected float16, float32 or float64"
        case let .missingLayerData(path, layer, expected, got):
            return "\(path): layer '\(layer)' has \(got) of \(expected) rows written"
        case let .gramsNotFound(path, layer):
            return "\(path): no stored Grams for layer '\(layer)'"
        case let .invalidAttribute(path, name, value, expected):
            return "\(path): attribute \(name) is \(value), expected \(expected)"
        }
    }
}

/// One stored representation: `/activations/<name>`.
public struct StoredLayer: Sendable, Equatable {
    public let name: String
    /// `[N, D]` or `[N, T, D]`.
    public let shape: [Int]
    public let elementType: HDF5ElementType
    public let kind: LayerKind
    public let block: Int
    /// Position in the network (the `order` attribute), if the file has it.
    public let order: Int?
}

/// Stored per-minibatch Gram matrices of a layer: `/grams/<name>` `[k, b, b]`.
public struct StoredGrams: Sendable, Equatable {
    public let layer: String
    public let batchCount: Int
    public let batchSize: Int
    public let tokens: String
    public let centered: Bool

    public init(layer: String, batchCount: Int, batchSize: Int, tokens: String, centered: Bool) {
        self.layer = layer; self.batchCount = batchCount; self.batchSize = batchSize
        self.tokens = tokens; self.centered = centered
    }
}

/// Reads an activation store (formats.md §1, format v1), or any HDF5 file with `/inputs/ids` and
/// `/activations/…` datasets such as an h5py user writes.
public final class ActivationStore {
    public let path: String
    let file: HDF5File
    /// File attributes (format, model, checkpoint, …).
    public let attributes: [String: HDF5AttributeValue]
    /// `format_version`, if the file states one.
    public let formatVersion: Int?
    /// One id per input, in file order (N of them).
    public let ids: [String]
    /// Class index per input (−1 = unknown), if stored.
    public let labels: [Int]?
    /// Class names in index order, if stored.
    public let classes: [String]?
    /// Layers in network order: the `order` attribute, else natural order of names.
    public let layers: [StoredLayer]
    /// Layers that have stored Grams, by layer name.
    public let grams: [String: StoredGrams]
    private var datasets: [String: HDF5Dataset] = [:]

    /// Number of inputs N.
    public var count: Int { ids.count }
    /// Tokens before the patches (class, distillation, registers) that `gap_nocls` leaves out: the `prefix_tokens`
    /// attribute, 1 when absent.
    public var prefixTokens: Int { max(0, attributes["prefix_tokens"]?.intValue ?? 1) }
    /// The model name (the `model` attribute), or the file name without extension.
    public var modelName: String {
        attributes["model"]?.stringValue ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
    }

    /// Opens and validates a store: format, version, ids, and that every dataset has N rows.
    /// - Throws: `HDF5Error` (missing or non-HDF5 file) or `ActivationStoreError`.
    public init(path: String) throws {
        self.path = path
        file = try HDF5File(path: path, mode: .readOnly)
        attributes = try file.attributes(of: "/")
        if let f = attributes["format"] {
            guard f.stringValue == "activations" else {
                throw ActivationStoreError.wrongFormat(path: path, found: f.description)
            }
        }
        if let v = attributes["format_version"] {
            guard v.intValue == 1 else {
                guard let version = v.intValue else {  // 1.5, "one", …: say what the file holds
                    throw ActivationStoreError.invalidAttribute(
                        path: path, name: "format_version", value: "\(v)",
                        expected: "the integer 1")
                }
                throw ActivationStoreError.unsupportedVersion(path: path, version: version)
            }
        }
        formatVersion = attributes["format_version"]?.intValue
        guard file.isDataset("inputs/ids") else { throw ActivationStoreError.missingIDs(path: path) }
        ids = try file.readStrings("inputs/ids")
        let n = ids.count
        if file.isDataset("inputs/labels") {
            let l = try file.dataset("inputs/labels").readInt64()
            guard l.count == n else {
                throw ActivationStoreError.rowCountMismatch(
                    path: path, dataset: "/inputs/labels", expected: n, got: l.count)
            }
            labels = l.map { Int($0) }
        } else {
            labels = nil
        }
        classes = file.isDataset("inputs/classes") ? try file.readStrings("inputs/classes") : nil

        var found: [StoredLayer] = []
        let names = file.isGroup("activations") ? try file.children(of: "activations") : []
        for name in names {
            let ds = try file.dataset("activations/\(name)")
            guard ds.rowCount == n, ds.shape.count >= 1 else {
                throw ActivationStoreError.rowCountMismatch(
                    path: path, dataset: "/activations/\(name)", expected: n,
                    got: ds.shape.first ?? 0)
            }
            let attrs = try file.attributes(of: "activations/\(name)")
            let kind = attrs["kind"]?.stringValue.flatMap(LayerKind.init(rawValue:)) ?? LayerKind.infer(from: name)
            found.append(
                StoredLayer(
                    name: name, shape: ds.shape, elementType: ds.elementType, kind: kind,
                    block: attrs["block"]?.intValue ?? LayerKind.blockIndex(of: name),
                    order: attrs["order"]?.intValue))
        }
        layers = found.sorted { a, b in
            switch (a.order, b.order) {
            case let (x?, y?) where x != y: return x < y
            case (_?, nil): return true
            case (nil, _?): return false
            default: return naturalOrder(a.name, b.name)
            }
        }
        var g: [String: StoredGrams] = [:]
        for name in file.isGroup("grams") ? try file.children(of: "grams") : [] {
            let ds = try file.dataset("grams/\(name)")
            let attrs = try file.attributes(of: "grams/\(name)")
            guard ds.shape.count == 3, ds.shape[1] == ds.shape[2] else {
                throw HDF5Error.shapeMismatch(
                    path: path, object: "/grams/\(name)", expected: "[k, b, b]",
                    got: describeShape(ds.shape))
            }
            let b = attrs["batch_size"]?.intValue ?? ds.shape[1]
            // k Grams of b inputs each cover k·b distinct inputs: never more than N (a file declaring 10⁹ empty
            // Grams would otherwise have `compare` read them all).
            guard b == ds.shape[1], ds.shape[0].multipliedReportingOverflow(by: b).partialValue <= n,
                ds.shape[0] <= n
            else {
                throw HDF5Error.shapeMismatch(
                    path: path, object: "/grams/\(name)",
                    expected: "[k, b, b] with b = batch_size and k·b ≤ N = \(n)",
                    got: describeShape(ds.shape) + " (batch_size \(b))")
            }
            g[name] = StoredGrams(
                layer: name, batchCount: ds.shape[0], batchSize: b,
                tokens: attrs["tokens"]?.stringValue ?? "flatten",
                centered: attrs["centered"]?.boolValue ?? false)
        }
        grams = g
    }

    /// The layer called `name`.
    public func layer(_ name: String) throws -> StoredLayer {
        guard let l = layers.first(where: { $0.name == name }) else {
            throw ActivationStoreError.layerNotFound(path: path, layer: name, available: layers.map(\.name))
        }
        return l
    }

    func activationDataset(_ name: String) throws -> HDF5Dataset { try dataset(name) }

    private func dataset(_ name: String, group: String = "activations") throws -> HDF5Dataset {
        let key = "\(group)/\(name)"
        if let d = datasets[key] { return d }
        let d = try file.dataset(key)
        datasets[key] = d
        return d
    }

    /// Rows `rows` of layer `name` as `Float`, whatever the stored float type; reuses `out`'s memory.
    public func read(_ name: String, rows: Range<Int>, into out: inout Tensor<Float>) throws {
        let l = try layer(name)
        guard l.elementType.isFloat else {
            throw ActivationStoreError.notFloat(path: path, layer: name, type: "\(l.elementType)")
        }
        try dataset(name).readFloat(rows: rows, into: &out)
    }

    /// The rows listed in `indices` (e.g. a shuffled minibatch) of layer `name`, into `out`.
    public func read(_ name: String, rowIndices indices: [Int], into out: inout Tensor<Float>) throws {
        let l = try layer(name)
        guard l.elementType.isFloat else {
            throw ActivationStoreError.notFloat(path: path, layer: name, type: "\(l.elementType)")
        }
        try dataset(name).readFloat(rowIndices: indices, into: &out)
    }

    /// All rows of layer `name`, restricted to `axis1` along the second axis (tokens or features).
    public func read(_ name: String, rows: Range<Int>, axis1: Range<Int>, into out: inout Tensor<Float>) throws {
        let l = try layer(name)
        guard l.elementType.isFloat else {
            throw ActivationStoreError.notFloat(path: path, layer: name, type: "\(l.elementType)")
        }
        try dataset(name).readFloat(rows: rows, axis1: axis1, into: &out)
    }

    /// Rows `rows` (default all) of layer `name` as a new `Float` tensor.
    public func read(_ name: String, rows: Range<Int>? = nil) throws -> Tensor<Float> {
        var t = Tensor<Float>(shape: [0])
        try read(name, rows: rows ?? 0..<count, into: &t)
        return t
    }

    /// The stored Gram of minibatch `batch` of layer `name` (`[b, b]`, Double).
    public func gram(_ name: String, batch: Int) throws -> Tensor<Double> {
        guard let g = grams[name] else { throw ActivationStoreError.gramsNotFound(path: path, layer: name) }
        let t = try dataset(name, group: "grams").readDouble(rows: batch..<batch + 1)
        return try t.reshaped([g.batchSize, g.batchSize])
    }

    /// A dataset of the file by path (e.g. `inputs/pixels`), read as `Float`.
    public func readFloatDataset(_ name: String, rows: Range<Int>? = nil) throws -> Tensor<Float> {
        try file.dataset(name).readFloat(rows: rows)
    }

    /// True if the file holds dataset `name` (e.g. `inputs/pixels`, `logits`).
    public func hasDataset(_ name: String) -> Bool { file.isDataset(name) }
}
