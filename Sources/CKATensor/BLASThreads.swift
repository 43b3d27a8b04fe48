internal import CBLAS
import Foundation

/// Runs `body` with OpenBLAS limited to at most `n` threads, then restores the count.
///
/// OpenBLAS's thread count is one process-wide setting, so concurrent library calls that each switched it
/// and switched it back would race (one restoring 2 threads while the other still wants 1). Scopes are
/// counted instead: while any scope is open the count is the smallest that an open scope asked for (never
/// above the base count of `setBLASThreadCount`), and the base count returns when the last scope closes.
/// Use it around code that runs its own threads, each calling single-threaded BLAS.
public func withBLASThreads<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
    let token = BLASThreadScopes.shared.enter(max(1, n))
    defer { BLASThreadScopes.shared.exit(token) }
    return try body()
}

/// The open `withBLASThreads` scopes and the base count, under one lock.
final class BLASThreadScopes: @unchecked Sendable {
    static let shared = BLASThreadScopes()
    private let lock = NSLock()
    private var open: [Int: Int] = [:]
    private var nextToken = 0
    /// The count outside every scope; read from OpenBLAS when the first scope opens.
    private var base: Int?

    func enter(_ n: Int) -> Int {
        lock.withLock {
            if open.isEmpty && base == nil { base = Int(openblas_get_num_threads()) }
            nextToken += 1
            open[nextToken] = n
            apply()
            return nextToken
        }
    }

    func exit(_ token: Int) {
        lock.withLock {
            open[token] = nil
            apply()
        }
    }

    func setBase(_ n: Int) {
        lock.withLock {
            base = n
            apply()
        }
    }

    /// Sets OpenBLAS to min(base, every open scope's count), calling it only on a change. Caller holds the lock.
    private func apply() {
        let baseCount = base ?? Int(openblas_get_num_threads())
        let want = min(baseCount, open.values.min() ?? baseCount)
        if Int(openblas_get_num_threads()) != want { openblas_set_num_threads(Int32(want)) }
        if open.isEmpty { base = nil }
    }
}
