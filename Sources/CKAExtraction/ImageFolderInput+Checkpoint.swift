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
        case .huggingFace, .openCLIP: base = .clip
        }
        return try rescaled(base, to: imageSize)
    }

    /// The checkpoint's own transform: a hub model's published preprocessing (`preprocessor_config.json`,
    /// open_clip's `preprocess_cfg`), else its family's preset (`clip`, `siglip`, `deit`, `dinov2`, timm augreg for
    /// HF ViT), else the method's (`defaultPreprocessing(for:imageSize:)`), at the model's input size.
    public static func defaultPreprocessing(for checkpoint: Checkpoint, imageSize: Int) throws -> Preprocessing {
        if let hub = try checkpoint.hubPreprocessing() {
            let filters: [Int: Interpolation] = [1: .lanczos, 2: .bilinear, 3: .bicubic, 4: .box, 5: .hamming]
            guard let interpolation = filters[hub.resample] else {
                throw ExtractionError.invalidOption(
                    "\(hub.file): resample \(hub.resample) (PIL nearest) is not supported; give --preprocessing")
            }
            var p = try Preprocessing(
                resize: hub.shortestEdge ?? hub.square, interpolation: interpolation,
                crop: hub.crop ?? hub.square ?? hub.shortestEdge ?? imageSize, mean: hub.mean, std: hub.std)
            p.squash = hub.square != nil
            return try rescaled(p, to: imageSize)
        }
        let base: Preprocessing
        switch checkpoint.modelType ?? (checkpoint.source == .openCLIP ? "clip" : "") {
        case "clip", "clip_vision_model": base = .clip
        case "siglip", "siglip_vision_model": base = .siglip
        case "deit": base = .deit
        case "dinov2", "dinov2_with_registers": base = .dinov2
        case "vit": base = .timmAugreg
        case "vit_mae": base = .mae
        default: return try defaultPreprocessing(for: checkpoint.source, imageSize: imageSize)
        }
        return try rescaled(base, to: imageSize)
    }

    /// `base` at another input size, keeping its resize/crop ratio.
    static func rescaled(_ base: Preprocessing, to imageSize: Int) throws -> Preprocessing {
        if base.crop == imageSize { return base }
        let resize = base.resize.map { Int((Double($0) * Double(imageSize) / Double(base.crop)).rounded()) }
        var p = try Preprocessing(
            resize: resize, interpolation: base.interpolation, crop: imageSize, mean: base.mean, std: base.std)
        p.squash = base.squash
        return p
    }
}
