import Foundation

/// Progress of a long computation: `done` of `total` units of `unit` (minibatches, layers, images, points),
/// `seconds` after it started. Every module reports progress with this one type.
public struct CKAProgress: Sendable, Equatable {
    public let done: Int
    /// Nil when the total is not known in advance (a stream of inputs).
    public let total: Int?
    public let unit: String
    /// Seconds since the work started, when the reporter measures it.
    public let seconds: Double?

    public init(done: Int, total: Int?, unit: String, seconds: Double? = nil) {
        self.done = done
        self.total = total
        self.unit = unit
        self.seconds = seconds
    }

    /// Units per second, when `seconds` is known and positive.
    public var perSecond: Double? { seconds.flatMap { $0 > 0 ? Double(done) / $0 : nil } }
}

/// Progress on stderr: a line rewritten in place on a terminal; elsewhere (logs, Slurm output files) a line
/// every 10 % once the work has run for 2 s. Quiet when asked (`--quiet`, or an MPI rank other than 0).
package final class ProgressLine {
    let label: String
    let quiet: Bool
    let isTerminal = isatty(2) != 0
    var lastPercent = -1
    let start = Date()

    package init(_ label: String, quiet: Bool) {
        self.label = label
        self.quiet = quiet
    }

    /// Shows `p`.
    package func update(_ p: CKAProgress) { update(p, detail: nil) }

    /// Shows `p`; `detail` (e.g. "12.3 img/s") is added after the unit.
    package func update(_ p: CKAProgress, detail: String?) {
        guard !quiet else { return }
        let elapsed = Date().timeIntervalSince(start)
        let unit = p.unit + (detail.map { ", " + $0 } ?? "")
        let text: String, finished: Bool, percent: Int
        if let total = p.total, total > 0 {
            percent = p.done * 100 / total
            finished = p.done == total
            let eta = p.done > 0 ? elapsed / Double(p.done) * Double(total - p.done) : 0
            text =
                "\(label): \(p.done)/\(total) \(unit) (\(percent)%, \(String(format: "%.1f", elapsed)) s, ~\(String(format: "%.0f", eta)) s left)"
        } else {
            percent = -1
            finished = false
            text = "\(label): \(p.done) \(unit) (\(String(format: "%.1f", elapsed)) s)"
        }
        if isTerminal {
            FileHandle.standardError.write(Data(("\r" + text + (finished ? "\n" : "")).utf8))
        } else if (percent / 10 != lastPercent / 10 || finished) && elapsed > 2 {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
        lastPercent = percent
    }
}
