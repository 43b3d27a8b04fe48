import CKAImages
import CKAIO
import CKATensor

/// Inputs already preprocessed into an HDF5 file: `/inputs/pixels` `[N, 3, H, W]` with `/inputs/ids`
/// (and optional labels/classes) — an activation store or any file an h5py user writes.
public struct PixelStoreInput: InputSource {
    let store: ActivationStore
    var limit: Int
    var position = 0
    public let expectedCount: Int?
    public var classes: [String]? { store.classes }
    public var preprocessing: String { store.attributes["preprocessing"]?.stringValue ?? "precomputed /inputs/pixels" }
    public var skipped: [(id: String, reason: String)] { [] }

    public init(path: String, limit: Int? = nil) throws {
        store = try ActivationStore(path: path)
        guard store.hasDataset("inputs/pixels") else {
            throw HDF5Error.objectNotFound(path: path, object: "/inputs/pixels")
        }
        self.limit = min(limit ?? store.count, store.count)
        expectedCount = self.limit
    }

    public mutating func next(maxCount: Int) throws -> InputBatch? {
        guard position < limit else { return nil }
        let r = position..<min(limit, position + maxCount)
        position = r.upperBound
        let pixels = try store.readFloatDataset("inputs/pixels", rows: r)
        guard pixels.rank == 4, pixels.shape[1] == 3 else {
            throw HDF5Error.shapeMismatch(
                path: store.path, object: "/inputs/pixels", expected: "[N, 3, H, W]",
                got: describeShape(pixels.shape))
        }
        return InputBatch(
            ids: Array(store.ids[r]), labels: store.labels.map { Array($0[r]) } ?? Array(repeating: -1, count: r.count),
            pixels: pixels)
    }
}
