import CKATensor
import Foundation

/// Errors of the masked-autoencoder loss: bad inputs, masks or decoder weights.
public enum MAEError: Error, Equatable, CustomStringConvertible {
    /// The checkpoint (file) has no MAE decoder tensors (`decoder_embed.*`, `mask_token`, `decoder_blocks.*`, …).
    case noDecoder(file: String)
    /// The argument `parameter` has the wrong shape.
    case inputShape(parameter: String, expected: String, got: [Int])
    /// The argument `parameter` holds an invalid value.
    case invalidArgument(parameter: String, expected: String, got: String)

    public var description: String {
        switch self {
        case let .noDecoder(file):
            return
                "\(file): no MAE decoder (decoder_embed.*, mask_token, decoder_pos_embed, decoder_blocks.*, decoder_norm.*, "
                + "decoder_pred.*); an encoder-only checkpoint (e.g. mae_pretrain_vit_base.pth, or a Hugging Face ViTMAEModel "
                + "rather than ViTMAEForPreTraining) cannot compute the reconstruction loss"
        case let .inputShape(parameter, expected, got):
            return "\(parameter) has shape \(describeShape(got)), expected \(expected)"
        case let .invalidArgument(parameter, expected, got): return "\(parameter): expected \(expected), got \(got)"
        }
    }
}

/// The random masking of one image in MAE pre-training (`models_mae.py random_masking`).
///
/// `idsShuffle` lists the patch indices with the `keepCount` visible patches first; `idsRestore` is its inverse
/// permutation (`idsShuffle[idsRestore[k]] == k`); `mask[k]` is 1 if patch k (raster order) is masked (removed),
/// 0 if visible. The encoder sees the visible patches in `idsShuffle` order; the loss does not depend on that order.
public struct MAEMask: Sendable, Equatable {
    /// Patch indices, the `keepCount` visible ones first.
    public let idsShuffle: [Int]
    /// The inverse permutation of `idsShuffle`.
    public let idsRestore: [Int]
    /// Number of visible patches.
    public let keepCount: Int
    /// 1 = masked (removed), 0 = visible, per patch in raster order.
    public let mask: [UInt8]

    /// Number of patches of the image.
    public var patchCount: Int { idsShuffle.count }
    /// Number of masked patches (`patchCount − keepCount`).
    public var maskedCount: Int { idsShuffle.count - keepCount }

    /// Visible patches for a masking ratio, as the official code computes it: `Int(Double(patches)·(1 − ratio))`
    /// (truncation; e.g. 49 of 196 at 0.75).
    public static func keepCount(patches: Int, ratio: Double) -> Int { Int(Double(patches) * (1 - ratio)) }

    /// A mask from an explicit order: `idsShuffle` must be a permutation of `0..<n` and `0 ≤ keepCount ≤ n`.
    /// - Throws: `MAEError.invalidArgument`.
    public init(idsShuffle: [Int], keepCount: Int) throws {
        let n = idsShuffle.count
        guard (0...n).contains(keepCount) else {
            throw MAEError.invalidArgument(parameter: "keepCount", expected: "0…\(n)", got: "\(keepCount)")
        }
        var restore = [Int](repeating: -1, count: n)
        for (pos, k) in idsShuffle.enumerated() {
            guard (0..<n).contains(k), restore[k] < 0 else {
                throw MAEError.invalidArgument(
                    parameter: "idsShuffle", expected: "a permutation of 0..<\(n)",
                    got: "\(k) at position \(pos)")
            }
            restore[k] = pos
        }
        self.idsShuffle = idsShuffle
        self.idsRestore = restore
        self.keepCount = keepCount
        self.mask = restore.map { $0 < keepCount ? 0 : 1 }
    }

    /// The official masking from per-patch noise: `idsShuffle = argsort(noise)` ascending (ties by index), the
    /// first `keepCount(patches:ratio:)` patches visible.
    /// - Throws: `MAEError.invalidArgument` for a ratio outside [0, 1] or NaN noise.
    public init<T: BinaryFloatingPoint>(noise: [T], ratio: Double) throws {
        guard ratio.isFinite, (0...1).contains(ratio) else {
            throw MAEError.invalidArgument(parameter: "ratio", expected: "a masking ratio in [0, 1]", got: "\(ratio)")
        }
        if let bad = noise.firstIndex(where: { $0.isNaN }) {
            throw MAEError.invalidArgument(parameter: "noise", expected: "numbers", got: "NaN at index \(bad)")
        }
        let order = noise.indices.sorted { noise[$0] < noise[$1] || (noise[$0] == noise[$1] && $0 < $1) }
        try self.init(idsShuffle: order, keepCount: MAEMask.keepCount(patches: noise.count, ratio: ratio))
    }

    /// A mask from a stored 0/1 row (1 = masked): visible patch indices ascending, then masked ones ascending.
    /// - Throws: `MAEError.invalidArgument` if a value is neither 0 nor 1.
    public init<T: BinaryFloatingPoint>(maskRow: [T]) throws {
        if let bad = maskRow.firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw MAEError.invalidArgument(
                parameter: "maskRow", expected: "0 (visible) or 1 (masked)",
                got: "\(Double(maskRow[bad])) at index \(bad)")
        }
        try self.init(maskRow: maskRow.map { $0 == 1 })
    }

    /// A mask from flags (true = masked): visible patch indices ascending, then masked ones ascending.
    public init(maskRow: [Bool]) throws {
        let visible = maskRow.indices.filter { !maskRow[$0] }, masked = maskRow.indices.filter { maskRow[$0] }
        try self.init(idsShuffle: visible + masked, keepCount: visible.count)
    }

    /// Random masks for `images` images of `patches` patches: image by image, `patches` draws of
    /// `SplitMix64(seed:).unit()` (one generator for the whole batch) are the noise of `init(noise:ratio:)`.
    /// The same seed gives the same masks on every machine (not torch's `torch.rand` stream).
    /// - Throws: `MAEError.invalidArgument` for a ratio outside [0, 1].
    public static func random(images: Int, patches: Int, ratio: Double, seed: UInt64) throws -> [MAEMask] {
        var rng = SplitMix64(seed: seed)
        return try (0..<max(images, 0)).map { _ in
            try MAEMask(noise: (0..<max(patches, 0)).map { _ in rng.unit() }, ratio: ratio)
        }
    }
}
