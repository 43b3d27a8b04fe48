import Foundation

/// Runs `body(i)` for every i in 0..<count, spread over the cores (`DispatchQueue.concurrentPerform`), and
/// rethrows the first error any iteration threw (by iteration order of recording; the others still run).
/// Iterations must write disjoint outputs.
package func parallelFor(_ count: Int, _ body: (Int) throws -> Void) throws {
    let failure = FirstError()
    try withoutActuallyEscaping(body) { body in
        let work = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: count) { i in
            do { try work.value(i) } catch { failure.record(error) }
        }
        if let e = failure.error { throw e }
    }
}

/// The first error recorded by concurrent workers.
package final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Error?

    package init() {}

    /// Keeps `e` unless an error was already recorded.
    package func record(_ e: Error) { lock.withLock { if stored == nil { stored = e } } }

    package var error: Error? { lock.withLock { stored } }
}

/// A value handed across threads by code that guarantees the accesses do not overlap.
package struct UncheckedSendable<T>: @unchecked Sendable {
    package let value: T
    package init(_ value: T) { self.value = value }
}
