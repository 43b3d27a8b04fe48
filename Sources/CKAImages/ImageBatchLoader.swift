import CKATensor
import Dispatch
import Foundation

/// One batch of network inputs.
public struct ImageBatch: Sendable {
    /// Sample ids (relative paths), in order.
    public var ids: [String]
    /// Labels (class index, −1 when unknown).
    public var labels: [Int]
    /// `[B, 3, crop, crop]`.
    public var pixels: Tensor<Float>
    /// Number of images.
    public var count: Int { ids.count }
}

/// An image that could not be loaded (lenient mode skips it).
public struct ImageLoadFailure: Sendable, Equatable, CustomStringConvertible {
    public var id: String
    public var error: ImageError
    public var description: String { "skipped \(id): \(error)" }
}

/// Decodes and preprocesses samples batch by batch, in order.
///
/// Each batch holds `batchSize` images (the last one may hold fewer). In lenient mode (the default) an image
/// that cannot be decoded is skipped, recorded in `failures`, and replaced by the next sample, so batches stay
/// full; in strict mode `next()` throws its error. Decoding and preprocessing of a batch run on `threads`
/// threads; the result does not depend on the thread count.
///
/// ```swift
/// var loader = ImageBatchLoader(samples: folder.samples, preprocessing: .dino, batchSize: 32)
/// while let batch = try loader.next() { … batch.pixels … }
/// for failure in loader.failures { print("warning:", failure) }
/// ```
public struct ImageBatchLoader: Sendable {
    public let samples: [ImageFolder.Sample]
    public let preprocessing: Preprocessing
    public let batchSize: Int
    public let strict: Bool
    public let threads: Int
    public let maxPixels: Int
    /// Index of the next sample to read.
    public private(set) var position = 0
    /// The samples skipped so far (lenient mode).
    public private(set) var failures: [ImageLoadFailure] = []

    /// - Precondition: `batchSize > 0`. A batch size above the number of samples is clamped to it.
    public init(
        samples: [ImageFolder.Sample], preprocessing: Preprocessing, batchSize: Int, strict: Bool = false,
        threads: Int = 2, maxPixels: Int = RGBImage.defaultMaxPixels
    ) {
        precondition(batchSize > 0, "batchSize must be positive")
        self.samples = samples
        self.preprocessing = preprocessing
        // Never more than the images there are: the batch buffer is allocated at this size.
        self.batchSize = min(batchSize, max(1, samples.count))
        self.strict = strict
        self.threads = max(threads, 1)
        self.maxPixels = maxPixels
    }

    /// A loader over all images of `folder`.
    public init(
        folder: ImageFolder, preprocessing: Preprocessing, batchSize: Int, strict: Bool = false,
        threads: Int = 2
    ) {
        self.init(
            samples: folder.samples, preprocessing: preprocessing, batchSize: batchSize, strict: strict,
            threads: threads)
    }

    /// The next batch, or nil when every sample has been read.
    /// - Throws: in strict mode, the `ImageError` of the first sample that fails (the position is then past it).
    public mutating func next() throws -> ImageBatch? {
        guard position < samples.count else { return nil }
        let perImage = 3 * preprocessing.crop * preprocessing.crop
        var pixels = Tensor<Float>(shape: [batchSize] + preprocessing.outputShape)
        var ids: [String] = [], labels: [Int] = []
        while ids.count < batchSize && position < samples.count {
            let chunk = Array(samples[position..<min(position + batchSize - ids.count, samples.count)])
            let filled = ids.count
            let errors = pixels.withUnsafeMutableBufferPointer { p in
                decode(chunk, into: p.baseAddress! + filled * perImage, stride: perImage)
            }
            for (i, sample) in chunk.enumerated() {
                if let error = errors[i] {
                    if strict {
                        position += i + 1
                        throw error
                    }
                    failures.append(ImageLoadFailure(id: sample.id, error: error))
                } else {
                    // Compact: move this image's values down over skipped slots.
                    let slot = ids.count
                    if slot != filled + i {
                        pixels.withUnsafeMutableBufferPointer { p in
                            (p.baseAddress! + slot * perImage).update(
                                from: p.baseAddress! + (filled + i) * perImage,
                                count: perImage)
                        }
                    }
                    ids.append(sample.id)
                    labels.append(sample.label)
                }
            }
            position += chunk.count
        }
        if ids.isEmpty { return nil }
        return ImageBatch(
            ids: ids, labels: labels, pixels: ids.count == batchSize ? pixels : pixels.rows(0..<ids.count))
    }

    /// Decodes `chunk[i]` into `base + i · stride` on up to `threads` threads; returns each sample's error.
    private func decode(
        _ chunk: [ImageFolder.Sample], into base: UnsafeMutablePointer<Float>,
        stride: Int
    ) -> [ImageError?] {
        let out = SendableBuffer(base: base)
        let results = ResultSlots(count: chunk.count)
        let preprocessing = preprocessing, maxPixels = maxPixels
        let workers = min(threads, chunk.count)
        let work: @Sendable (Int) -> Void = { worker in
            for i in Swift.stride(from: worker, to: chunk.count, by: workers) {
                do {
                    let image = try RGBImage(contentsOf: chunk[i].url, maxPixels: maxPixels)
                    preprocessing.write(image, into: out.base + i * stride)
                } catch let error as ImageError {
                    results.set(i, error)
                } catch {
                    results.set(i, .unreadable(path: chunk[i].url.path, reason: "\(error)"))
                }
            }
        }
        if workers <= 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        return results.values
    }
}

/// The output pointer shared by the decoding threads; each writes a disjoint slice.
private final class SendableBuffer: @unchecked Sendable {
    let base: UnsafeMutablePointer<Float>
    init(base: UnsafeMutablePointer<Float>) { self.base = base }
}

/// Per-sample error slots written by the decoding threads (each index by exactly one thread).
private final class ResultSlots: @unchecked Sendable {
    private let slots: UnsafeMutablePointer<ImageError?>
    private let count: Int
    init(count: Int) {
        self.count = count
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil, count: count)
    }
    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }
    func set(_ i: Int, _ error: ImageError) { slots[i] = error }
    var values: [ImageError?] { Array(UnsafeBufferPointer(start: slots, count: count)) }
}
