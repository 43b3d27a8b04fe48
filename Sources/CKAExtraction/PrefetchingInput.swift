import CKAImages
import Dispatch

/// An input source that prepares batch i+1 (JPEG/PNG decoding and preprocessing, or an HDF5 read) on a
/// background thread while the caller runs batch i through the model.
///
/// At most one batch is read ahead, so memory grows by one batch. The wrapped source is only touched by one
/// thread at a time and is read in the same order with the same batch sizes, so the batches, the skipped inputs
/// and any error are exactly those of the source itself; an error of a prefetched batch is thrown by the `next`
/// call that would have read it. `finish()` waits for the background read and hands the source back.
package final class PrefetchingInput<Source: InputSource>: InputSource, @unchecked Sendable {
    private var source: Source
    private let queue = DispatchQueue(label: "cka.extract.prefetch")
    private var inFlight: DispatchGroup?
    private var prefetched: Result<InputBatch?, Error>?
    private var ended = false

    package let expectedCount: Int?
    package let classes: [String]?
    package let preprocessing: String
    /// The source's skipped inputs so far (waits for a background read in progress).
    package var skipped: [(id: String, reason: String)] {
        wait()
        return source.skipped
    }

    package init(_ source: Source) {
        self.source = source
        expectedCount = source.expectedCount
        classes = source.classes
        preprocessing = source.preprocessing
    }

    deinit { inFlight?.wait() }

    private func wait() {
        inFlight?.wait()
        inFlight = nil
    }

    package func next(maxCount: Int) throws -> InputBatch? {
        wait()
        let batch: InputBatch?
        if let result = prefetched {  // read with the same `maxCount`: callers keep it fixed
            prefetched = nil
            batch = try result.get()
        } else if ended {
            return nil
        } else {
            batch = try source.next(maxCount: maxCount)
        }
        guard batch != nil else {
            ended = true
            return nil
        }
        // Start the next batch while the caller works on this one.
        let group = DispatchGroup()
        inFlight = group
        queue.async(group: group) { [self] in
            prefetched = Result { try source.next(maxCount: maxCount) }
        }
        return batch
    }

    /// Waits for any background read and returns the source, in the state a plain loop over it would leave.
    package func finish() -> Source {
        wait()
        return source
    }
}
