import ArgumentParser
import CKAKit
import Foundation
import _CKASupport

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
        subcommands: [Inspect.self, CheckpointInfo.self, Extract.self, Compare.self, CompareAll.self, Grams.self, Knn.self, Probe.self, Agreement.self, Landscape.self, LandscapePlot.self, LandscapeStats.self]
    )
}

extension CKACommand {
    /// Tunes glibc's allocator, then runs the command. Streaming CKA and extraction allocate and free
    /// buffers of several MB per minibatch (ours and HDF5's); by default glibc serves each with a fresh
    /// mmap, and the page faults of re-mapping cost as much kernel time as reading the files. Keeping such
    /// blocks on the heap (bounded: freed memory is reused, not grown) removes that.
    static func main() {
        configureAllocatorForStreaming()
        main(nil)
    }
}

/// Runs `body`; a thrown error becomes one line `error: …` on stderr and exit status 1.
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
        FileHandle.standardError.write(Data(("error: " + text.replacingOccurrences(of: "\n", with: " ") + "\n").utf8))
        throw ExitCode(1)
    }
}

/// Writes a message to stderr (warnings, progress): stdout stays clean for results.
func note(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

extension CKAEstimator: ExpressibleByArgument {}
extension TokenReduction: ExpressibleByArgument {}
extension GramSource: ExpressibleByArgument {}

/// Splits comma-separated glob lists.
func globs(_ s: String?) -> [String]? {
    s.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
}
