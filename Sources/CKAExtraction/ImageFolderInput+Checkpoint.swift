import CKACheckpoint
import CKAImages
import Foundation

extension ImageFolderInput {
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
        return try Preprocessing(
            resize: resize, interpolation: base.interpolation, crop: imageSize, mean: base.mean, std: base.std)
    }
}
