import CKATensor
import Foundation
import _CKASupport

/// Provenance written as the store's file attributes (formats.md §1).
public struct StoreMetadata: Sendable {
    public var model: String
    public var checkpoint: String = ""
    public var checkpointSHA256: String = ""
    public var architecture: String = ""
    public var preprocessing: String = ""
    public var createdBy: String = "cka \(toolkitVersion)"
    /// Further attributes to record.
    public var extra: [String: HDF5AttributeValue] = [:]

    public init(model: String) { self.model = model }
}

/// The toolkit's version string (recorded in `created_by`).
public let toolkitVersion = "0.1.0"

/// Writes an activation store (formats.md §1, format v1), minibatch by minibatch.
///
/// The file is written under a temporary name and appears under `path` only when `finish()`
/// succeeds; an error, a crash or a kill leaves nothing under `path`.
///
/// ```swift
/// let w = try ActivationStoreWriter(path: "out.h5", ids: ids, metadata: StoreMetadata(model: "dino_vitb16"))
/// try w.addLayer("blocks.0", kind: .block, block: 0, featureShape: [197, 768])
/// try w.append(batch, to: "blocks.0")            // [b, 197, 768], as many times as needed
/// try w.finish()
/// ```
public final class ActivationStoreWriter {
    package let output: AtomicOutput
    private var file: HDF5File?
    private var layers: [String: HDF5Dataset] = [:]
    private var gramSets: [String: HDF5Dataset] = [:]
    private var extraDatasets: [String: HDF5Dataset] = [:]
    private var layerOrder: [String] = []
    /// Number of inputs N (nil until `setInputs` for a writer created without ids).
    public private(set) var count: Int?
    private var finished = false
    /// Held by an updating writer from before it reads the store until the updated copy is renamed over it.
    private var lock: FileLock?

    /// Starts a new store whose inputs are given later with `setInputs` (e.g. when unreadable images
    /// are skipped while the store is written).
    public convenience init(path: String, metadata: StoreMetadata) throws {
        try self.init(path: path, ids: nil, labels: nil, classes: nil, metadata: metadata)
    }

    /// Records `/inputs/ids` (and optional labels and class names) of a writer created without them.
    public func setInputs(ids: [String], labels: [Int]? = nil, classes: [String]? = nil) throws {
        let f = try openFile()
        guard count == nil else {
            throw HDF5Error.operationFailed(
                operation: "set inputs", path: output.finalPath, object: "/inputs/ids",
                stack: "the inputs were already recorded")
        }
        try writeInputs(f, ids: ids, labels: labels, classes: classes)
        count = ids.count
    }

    private func writeInputs(_ f: HDF5File, ids: [String], labels: [Int]?, classes: [String]?) throws {
        try f.writeStrings("inputs/ids", ids)
        if let labels {
            guard labels.count == ids.count else {
                throw ActivationStoreError.rowCountMismatch(
                    path: output.finalPath, dataset: "/inputs/labels",
                    expected: ids.count, got: labels.count)
            }
            let ds = try f.createDataset("inputs/labels", type: .int64, shape: [labels.count])
            try ds.write(labels.map { Int64($0) })
        }
        if let classes { try f.writeStrings("inputs/classes", classes) }
    }

    /// Starts a new store for the inputs `ids` (in order).
    public convenience init(
        path: String, ids: [String], labels: [Int]? = nil, classes: [String]? = nil,
        metadata: StoreMetadata
    ) throws {
        try self.init(path: path, ids: Optional(ids), labels: labels, classes: classes, metadata: metadata)
    }

    private init(path: String, ids: [String]?, labels: [Int]?, classes: [String]?, metadata: StoreMetadata) throws {
        output = try AtomicOutput.seekable(path: path)
        count = ids?.count
        do {
            let f = try HDF5File(path: output.temporaryPath, mode: .create, reportingAs: path)
            file = f
            var attrs: [(String, HDF5AttributeValue)] = [
                ("format", .string("activations")), ("format_version", .int(1)), ("model", .string(metadata.model)),
                ("checkpoint", .string(metadata.checkpoint)), ("checkpoint_sha256", .string(metadata.checkpointSHA256)),
                ("architecture", .string(metadata.architecture)), ("preprocessing", .string(metadata.preprocessing)),
                ("created_by", .string(metadata.createdBy)),
            ]
            attrs += metadata.extra.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            for (k, v) in attrs { try f.setAttribute(k, v) }
            if let ids { try writeInputs(f, ids: ids, labels: labels, classes: classes) }
        } catch {
            file = nil
            output.discard()
            throw error
        }
    }

    /// Opens an existing store for adding datasets (e.g. Grams): the store is copied to the
    /// temporary name, and the copy replaces the original only at `finish()`.
    ///
    /// Two updates of one store take turns (an advisory lock, held from before the read until the rename): the
    /// second starts from the first one's result, so neither is lost.
    public init(updating path: String) throws {
        try InputFile.checkRegular(path)
        lock = try FileLock(updating: path)
        let store = try ActivationStore(path: path)  // validates
        count = store.count
        layerOrder = store.layers.map(\.name)
        output = try AtomicOutput.seekable(path: path)
        output.discard()
        do {
            try FileManager.default.copyItem(atPath: path, toPath: output.temporaryPath)
            file = try HDF5File(path: output.temporaryPath, mode: .readWrite, reportingAs: path)
        } catch {
            file = nil
            output.discard()
            throw error
        }
    }

    private func openFile() throws -> HDF5File {
        guard let file, !finished else {
            throw HDF5Error.operationFailed(
                operation: "write", path: output.finalPath, object: "/",
                stack: "the store was already finished or abandoned")
        }
        return file
    }

    /// Declares `/activations/<name>` with rows of `featureShape`, stored as float32 or float16.
    public func addLayer(
        _ name: String, kind: LayerKind, block: Int, featureShape: [Int],
        elementType: HDF5ElementType = .float32
    ) throws {
        let f = try openFile()
        let ds = try f.createDataset(
            "activations/\(name)", type: elementType, shape: [0] + featureShape, extendable: true)
        try f.setAttribute("order", .int(layerOrder.count), of: "activations/\(name)")
        try f.setAttribute("kind", .string(kind.rawValue), of: "activations/\(name)")
        try f.setAttribute("block", .int(block), of: "activations/\(name)")
        layers[name] = ds
        layerOrder.append(name)
    }

    /// Appends a minibatch `[b] + featureShape` to layer `name`.
    public func append(_ batch: Tensor<Float>, to name: String) throws {
        _ = try openFile()
        guard let ds = layers[name] else {
            throw ActivationStoreError.layerNotFound(
                path: output.finalPath, layer: name, available: Array(layers.keys).sorted())
        }
        if let count, ds.rowCount + batch.rowCount > count {
            throw ActivationStoreError.rowCountMismatch(
                path: output.finalPath, dataset: "/activations/\(name)",
                expected: count, got: ds.rowCount + batch.rowCount)
        }
        try ds.append(batch)
    }

    /// Declares an extendable `Float` dataset at `name` (e.g. `inputs/pixels`) with rows of `featureShape`.
    public func addLayerDataset(_ name: String, featureShape: [Int], elementType: HDF5ElementType = .float32) throws {
        let f = try openFile()
        extraDatasets[name] = try f.createDataset(name, type: elementType, shape: [0] + featureShape, extendable: true)
    }

    /// Appends rows to a dataset declared with `addLayerDataset`.
    public func appendRows(_ batch: Tensor<Float>, to name: String) throws {
        _ = try openFile()
        guard let ds = extraDatasets[name] else { throw HDF5Error.objectNotFound(path: output.finalPath, object: name) }
        try ds.append(batch)
    }

    /// Declares `/grams/<layer>` for per-minibatch Grams of `batchSize` inputs.
    public func addGrams(_ layer: String, batchSize: Int, tokens: TokenReduction, centered: Bool) throws {
        let f = try openFile()
        let name = "grams/\(layer)"
        if f.exists(name) { try f.remove(name) }
        let ds = try f.createDataset(
            name, type: .float64, shape: [0, batchSize, batchSize], extendable: true,
            chunkRows: max(1, min(64, (1 << 20) / max(1, batchSize * batchSize * 8))))
        try f.setAttribute("batch_size", .int(batchSize), of: name)
        try f.setAttribute("tokens", .string(tokens.rawValue), of: name)
        try f.setAttribute("centered", .bool(centered), of: name)
        gramSets[layer] = ds
    }

    /// Appends one minibatch's Gram `[b, b]` to `/grams/<layer>`.
    public func appendGram(_ gram: Tensor<Double>, to layer: String) throws {
        _ = try openFile()
        guard let ds = gramSets[layer] else {
            throw ActivationStoreError.gramsNotFound(path: output.finalPath, layer: layer)
        }
        try ds.append(try gram.reshaped([1] + gram.shape))
    }

    /// Writes a whole `Float` dataset at `name` (e.g. `inputs/pixels` or `logits`), first axis N.
    public func writeDataset(_ name: String, _ values: Tensor<Float>, elementType: HDF5ElementType = .float32) throws {
        let f = try openFile()
        if f.exists(name) { try f.remove(name) }
        let ds = try f.createDataset(
            name, type: elementType, shape: values.shape, chunkRows: values.rank > 0 ? nil : nil)
        try ds.write(values)
    }

    /// Sets a file attribute.
    public func setAttribute(_ name: String, _ value: HDF5AttributeValue) throws {
        try openFile().setAttribute(name, value)
    }

    /// Sets an attribute of the dataset or group `object` (e.g. `logits`).
    public func setAttribute(_ name: String, _ value: HDF5AttributeValue, of object: String) throws {
        try openFile().setAttribute(name, value, of: object)
    }

    /// Checks that every layer has N rows, closes the file and renames it into place.
    public func finish() throws {
        _ = try openFile()
        do {
            guard let count else {
                throw ActivationStoreError.missingIDs(path: output.finalPath)
            }
            for (name, ds) in layers where ds.rowCount != count {
                throw ActivationStoreError.missingLayerData(
                    path: output.finalPath, layer: name, expected: count, got: ds.rowCount)
            }
            try file?.flush()
            layers.removeAll()
            gramSets.removeAll()
            extraDatasets.removeAll()
            try file?.close()  // a failure here (full disk) must not rename a broken file into place
            file = nil
            finished = true
            try output.commit()
            lock?.unlock()
        } catch {
            abandon()
            throw error
        }
    }

    /// Gives up: closes and deletes the temporary file; nothing appears under the final path.
    public func abandon() {
        layers.removeAll()
        gramSets.removeAll()
        extraDatasets.removeAll()
        file = nil
        finished = true
        output.discard()
        lock?.unlock()
    }

    deinit { if !finished { abandon() } }
}
