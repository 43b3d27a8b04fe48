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
        subcommands: [
            Inspect.self, CheckpointInfo.self, Extract.self, Compare.self, CompareAll.self, Grams.self, Knn.self,
            Probe.self, Agreement.self, Landscape.self, LandscapePlot.self, LandscapeStats.self, Hessian.self,
        ]
    )
}

extension CKACommand {
    /// Tunes glibc's allocator, then runs the command. Streaming CKA and extraction allocate and free
    /// buffers of several MB per minibatch (ours and HDF5's); by default glibc serves each with a fresh
    /// mmap, and the page faults of re-mapping cost as much kernel time as reading the files. Keeping such
    /// blocks on the heap (bounded: freed memory is reused, not grown) removes that.
    static func main() {
        configureAllocatorForStreaming()
        _ = world  // under mpirun/srun: MPI_Init on the main thread, before anything else

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
        let text = cliWording(error is CocoaError ? error.localizedDescription : "\(error)")
        if world.isDistributed { world.abort(message: text) }
        FileHandle.standardError.write(
            Data(("error: " + terminalSafe(text.replacingOccurrences(of: "\n", with: " ")) + "\n").utf8))
        throw ExitCode(1)
    }
}

/// Library errors name options by their Swift names in backticks (`batchSize`); the command line says the flag.
private let flagOfOption = [
    "batchSize": "--batch-size", "gramBatchSize": "--gram-batch-size", "head": "--head",
    "top": "--top", "store": "--store", "layers": "--layers", "save": "--save",
    "shuffle": "--shuffle", "passes": "--passes", "estimator": "--estimator",
    "tokens": "--tokens", "svccaVariance": "--svcca-variance", "knnK": "--knn-k",
]

/// `text` with every backticked option name replaced by its command-line flag (other backticked words stay).
func cliWording(_ text: String) -> String {
    var out = "", rest = Substring(text)
    while let open = rest.firstIndex(of: "`"), let close = rest[rest.index(after: open)...].firstIndex(of: "`") {
        out += rest[..<open]
        out += flagOfOption[String(rest[rest.index(after: open)..<close])] ?? String(rest[open...close])
        rest = rest[rest.index(after: close)...]
    }
    return out + rest
}

/// Writes a message to stderr (warnings, progress): stdout stays clean for results.
func note(_ s: String) { FileHandle.standardError.write(Data((terminalSafe(s) + "\n").utf8)) }

/// Splits comma-separated glob lists.
func globs(_ s: String?) -> [String]? {
    s.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
}

/// `s` with control characters (C0 but newline and tab, DEL, C1) shown as `\xHH`: names read from a file (a
/// checkpoint key holding `ESC[2J`, a NUL) never reach the terminal as commands.
func terminalSafe(_ s: String) -> String {
    guard s.unicodeScalars.contains(where: { isControl($0) }) else { return s }
    var out = String.UnicodeScalarView()
    for u in s.unicodeScalars {
        if isControl(u) {
            out.append(contentsOf: String(format: "\\x%02X", u.value).unicodeScalars)
        } else {
            out.append(u)
        }
    }
    return String(out)
}

private func isControl(_ u: Unicode.Scalar) -> Bool {
    (u.value < 0x20 && u != "\n" && u != "\t") || (0x7F...0x9F).contains(u.value)
}

/// Every `print` of the command line goes through `terminalSafe` (results name layers, keys and files that come
/// from untrusted files).
func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
    Swift.print(terminalSafe(items.map { "\($0)" }.joined(separator: separator)), terminator: terminalSafe(terminator))
}
