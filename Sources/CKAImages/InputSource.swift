import CKATensor
import Foundation

/// A minibatch of network inputs with the ids (and labels) of the examples it holds.
public struct InputBatch {
    public var ids: [String]
    /// Class index per example, −1 = unknown.
    public var labels: [Int]
    /// `[b, 3, H, W]`, normalised.
    public var pixels: Tensor<Float>

    public init(ids: [String], labels: [Int], pixels: Tensor<Float>) {
        self.ids = ids; self.labels = labels; self.pixels = pixels
    }
}

/// Where the examples of an extraction come from, in a fixed order.
public protocol InputSource {
    /// How many examples there will be at most (for progress), if known.
    var expectedCount: Int? { get }
    /// Class names in index order, if the inputs are labelled.
    var classes: [String]? { get }
    /// The preprocessing applied (stored in the output's `preprocessing` attribute).
    var preprocessing: String { get }
    /// Examples that could not be used, with the reason.
    var skipped: [(id: String, reason: String)] { get }
    /// The next batch of at most `maxCount` examples, or nil at the end.
    mutating func next(maxCount: Int) throws -> InputBatch?
}

/// Images from a folder (ImageFolder layout `class/file.jpg`, labels stored; or a flat folder), decoded and
/// preprocessed batch by batch. Unreadable images are skipped and listed (or, with `strict`, fail the run).
public struct ImageFolderInput: InputSource {
    package let folder: ImageFolder
    package var loader: ImageBatchLoader
    public let preprocessingTransform: Preprocessing
    public var expectedCount: Int? { folder.count }
    public var classes: [String]? { folder.layout == .classFolders ? folder.classes : nil }
    public var preprocessing: String { preprocessingTransform.description }
    public var skipped: [(id: String, reason: String)] { loader.failures.map { ($0.id, "\($0.error)") } }

    public init(root: String, preprocessing: Preprocessing, batchSize: Int, limit: Int? = nil, strict: Bool = false)
        throws
    {
        folder = try ImageFolder(root: URL(fileURLWithPath: root), limit: limit)
        preprocessingTransform = preprocessing
        loader = ImageBatchLoader(
            folder: folder, preprocessing: preprocessing, batchSize: max(1, batchSize), strict: strict)
    }

    public mutating func next(maxCount: Int) throws -> InputBatch? {
        guard let b = try loader.next() else { return nil }
        return InputBatch(ids: b.ids, labels: b.labels, pixels: b.pixels)
    }
}
