import CKAIO
import CKATensor
import Foundation

/// Reads the activation minibatches of a comparison on a background thread, one step ahead of the Gram
/// computation, into two alternating buffers — so reading the files and building Grams overlap and memory
/// stays at two minibatches of the largest layer.
final class BatchPrefetcher: @unchecked Sendable {
    struct Job {
        let store: ActivationStore
        let layer: String
        let rows: Range<Int>
        let indices: [Int]?
        let batch: Int
    }

    /// Who centres a slot's batch.
    private enum State { case reading, raw, centring, centred, takenRaw }

    private let jobs: [Job]
    private let prepare: @Sendable (inout Tensor<Float>) throws -> Void
    private let centre: (@Sendable (inout Tensor<Float>) throws -> Void)?
    private let slots: UnsafeMutablePointer<Tensor<Float>>
    private var failures: [Error?] = [nil, nil]
    private var states: [State] = [.reading, .reading]
    private var consumerWaiting = [false, false]
    private let filled = [DispatchSemaphore(value: 0), DispatchSemaphore(value: 0)]
    // Created at 0 and signalled once in init: libdispatch traps when a semaphore is destroyed with a
    // value below the one it was created with, which a cancelled run can leave behind.
    private let free = [DispatchSemaphore(value: 0), DispatchSemaphore(value: 0)]
    private let done = DispatchSemaphore(value: 0)
    private let condition = NSCondition()
    private var cancelled = false

    /// - Parameters:
    ///   - prepare: applied to each minibatch on the reader thread after it is read (token reduction).
    ///   - centre: applied on the reader thread too when the consumer is not yet waiting for that minibatch.
    init(
        jobs: [Job], prepare: @escaping @Sendable (inout Tensor<Float>) throws -> Void,
        centre: (@Sendable (inout Tensor<Float>) throws -> Void)?
    ) {
        self.jobs = jobs
        self.prepare = prepare
        self.centre = centre
        slots = .allocate(capacity: 2)
        slots.initialize(repeating: Tensor<Float>(shape: [0]), count: 2)
        free[0].signal(); free[1].signal()
        let thread = Thread { [self] in run() }
        thread.stackSize = 1 << 20
        thread.start()
    }

    private func run() {
        defer { done.signal() }
        for (i, job) in jobs.enumerated() {
            let s = i % 2
            free[s].wait()
            if condition.withLock({ cancelled }) { return }
            do {
                if let indices = job.indices {
                    try job.store.read(job.layer, rowIndices: indices, into: &slots[s])
                } else {
                    try job.store.read(job.layer, rows: job.rows, into: &slots[s])
                }
                try prepare(&slots[s])
                failures[s] = nil
            } catch {
                failures[s] = error
            }
            // Centre here unless the consumer is already waiting for this batch (then it centres on the fly).
            let claim = condition.withLock {
                states[s] = failures[s] == nil && !consumerWaiting[s] && centre != nil ? .centring : .raw
                return states[s] == .centring
            }
            filled[s].signal()
            if claim {
                do { try centre?(&slots[s]) } catch { failures[s] = error }
                condition.withLock {
                    states[s] = .centred; condition.broadcast()
                }
            }
        }
    }

    /// Waits for job `i` (taken in order) and calls `body` with its activations and whether they are centred.
    func withNext<R>(_ i: Int, _ body: (Tensor<Float>, _ centred: Bool) throws -> R) throws -> R {
        let s = i % 2
        condition.withLock { consumerWaiting[s] = true }
        filled[s].wait()
        let centred: Bool = condition.withLock {
            consumerWaiting[s] = false
            while states[s] == .centring { condition.wait() }
            let c = states[s] == .centred
            states[s] = c ? .centred : .takenRaw
            return c
        }
        defer {
            condition.withLock { states[s] = .reading }
            free[s].signal()
        }
        if let e = failures[s] { throw e }
        return try body(slots[s], centred)
    }

    /// Stops the reader (after its current read) and waits for it.
    func cancel() {
        condition.withLock { cancelled = true }
        free[0].signal(); free[1].signal()
        done.wait()
    }

    deinit {
        slots.deinitialize(count: 2)
        slots.deallocate()
    }
}
