import CKACheckpoint
import CKAImages
import Foundation

/// Images from a folder (ImageFolder layout `class/file.jpg`, labels stored; or a flat folder), decoded and
/// preprocessed batch by batch. Unreadable images are skipped and listed (or, with `strict`, fail the run).
public struct ImageFolderInput: InputSource {
    let folder: ImageFolder
    var loader: ImageBatchLoader
    public let preprocessingTransform: Preprocessing
    public var expectedCount: Int? { folder.count }
    public var classes: [String]? { folder.layout == .classFolders ? folder.classes : nil }
    public var preprocessing: String { preprocessingTransform.description }
    public var skipped: [(id: String, reason: String)] { loader.failures.map { ($0.id, "\($0.error)") } }

    public init(root: String, preprocessing: Preprocessing, batchSize: Int, limit: Int? = nil, strict: Bool = false) throws {
        folder = try ImageFolder(root: URL(fileURLWithPath: root), limit: limit)
        preprocessingTransform = preprocessing
        loader = ImageBatchLoader(folder: folder, preprocessing: preprocessing, batchSize: max(1, batchSize), strict: strict)
    }

    public mutating func next(maxCount: Int) throws -> InputBatch? {
        guard let b = try loader.next() else { return nil }
        return InputBatch(ids: b.ids, labels: b.labels, pixels: b.pixels)
    }

    /// The evaluation transform each method used (reference-models.md §4), at the model's input size.
    public static func defaultPreprocessing(for source: CheckpointSource, imageSize: Int) throws -> Preprocessing {
        let base: Preprocessing
        switch source {
        case .dino, .dinoFull: base = .dino
        case .mocoV3: base = .mocov3
        case .mae, .rcmae: base = .mae
        case .timm: base = .timmAugreg
        case .dinov2: base = .dinov2
        }
        if base.crop == imageSize { return base }
        // Keep the method's resize/crop ratio at another input size.
        let resize = base.resize.map { Int((Double($0) * Double(imageSize) / Double(base.crop)).rounded()) }
        return try Preprocessing(resize: resize, interpolation: base.interpolation, crop: imageSize, mean: base.mean, std: base.std)
    }
}
