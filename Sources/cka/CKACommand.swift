import ArgumentParser
import CKAKit
import Foundation

@main
struct CKACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cka",
        abstract: "Compare the internal representations of Vision Transformers with minibatch CKA.",
        discussion: """
        Typical session:
          cka inspect dino.h5                         # what is in an activation store
          cka compare dino.h5 mae.h5 --csv out.csv --heatmap out.png
          cka compare-all dino.h5 mae.h5 moco.h5 --out-dir cka-results/
        Files follow the formats in the README (HDF5 activation stores, format v1).
        """,
        version: toolkitVersion,
        subcommands: [Inspect.self, CheckpointInfo.self, Extract.self, Compare.self, CompareAll.self, Grams.self, WriteTestStore.self, Knn.self, Probe.self, Agreement.self, Landscape.self, LandscapePlot.self, LandscapeStats.self]
    )
}

extension CKACommand {
    /// Tunes glibc's allocator, then runs the command. Streaming CKA and extraction allocate and free
    /// buffers of several MB per minibatch (ours and HDF5's); by default glibc serves each with a fresh
    /// mmap, and the page faults of re-mapping cost as much kernel time as reading the files. Keeping such
    /// blocks on the heap (bounded: freed memory is reused, not grown) removes that.
    static func main() {
        configureAllocatorForStreaming()
        _ = world     // under mpirun/srun: MPI_Init on the main thread, before anything else

        main(nil)
    }
}

/// Runs `body`; a thrown error becomes one line `error: …` on stderr and exit status 1. Under mpirun with
/// several ranks the line names the rank (`error: rank 2: …`) and the whole job is aborted.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as CleanExit {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch {
        let text = error is CocoaError ? error.localizedDescription : "\(error)"
        if world.isDistributed { world.abort(message: text) }
        FileHandle.standardError.write(Data(("error: " + text.replacingOccurrences(of: "\n", with: " ") + "\n").utf8))
        throw ExitCode(1)
    }
}

/// Writes a message to stderr (warnings, progress): stdout stays clean for results.
func note(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

/// Progress on stderr: a rewritten line on a terminal, a line every 10% otherwise; quiet if asked.
final class ProgressLine {
    let label: String
    let quiet: Bool
    let isTerminal = isatty(2) != 0
    var lastPercent = -1
    let start = Date()

    /// Only rank 0 of an MPI job reports progress.
    init(_ label: String, quiet: Bool) { self.label = label; self.quiet = quiet || !world.isRoot }

    func update(_ p: CKAProgress) {
        guard !quiet, p.total > 0 else { return }
        let percent = p.done * 100 / p.total
        let elapsed = Date().timeIntervalSince(start)
        let eta = p.done > 0 ? elapsed / Double(p.done) * Double(p.total - p.done) : 0
        let text = "\(label): \(p.done)/\(p.total) \(p.unit) (\(percent)%, \(String(format: "%.1f", elapsed)) s, ~\(String(format: "%.0f", eta)) s left)"
        if isTerminal {
            FileHandle.standardError.write(Data(("\r" + text + (p.done == p.total ? "\n" : "")).utf8))
        } else if percent / 10 != lastPercent / 10 || p.done == p.total {
            if elapsed > 2 || p.done == p.total && elapsed > 2 { note(text) }
        }
        lastPercent = percent
    }
}

extension CKAEstimator: ExpressibleByArgument {}
extension TokenReduction: ExpressibleByArgument {}
extension GramSource: ExpressibleByArgument {}

/// Splits comma-separated glob lists.
func globs(_ s: String?) -> [String]? {
    s.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
}
