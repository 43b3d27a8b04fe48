import Foundation

/// A file written under a temporary name beside its destination and renamed into place only when
/// complete, so a killed process never leaves a half-written file under the final name.
///
/// The temporary name is `.<name>.partial-<pid>` in the destination's folder (same file system,
/// so the final `rename(2)` is atomic).
public struct AtomicOutput: Sendable {
    /// The destination.
    public let finalPath: String
    /// Where the content is written until `commit()`.
    public let temporaryPath: String

    public init(path: String) {
        finalPath = path
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        temporaryPath = dir + "/." + url.lastPathComponent + ".partial-\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// Moves the temporary file to the final path (replacing any file there).
    public func commit() throws {
        guard rename(temporaryPath, finalPath) == 0 else {
            let reason = String(cString: strerror(errno))
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: finalPath,
                                                            NSLocalizedDescriptionKey: "\(finalPath): cannot rename into place (\(reason))"])
        }
    }

    /// Removes the temporary file, if any.
    public func discard() { unlink(temporaryPath) }

    /// Writes `data` atomically.
    public static func write(_ data: Data, to path: String) throws {
        let out = AtomicOutput(path: path)
        do {
            try data.write(to: URL(fileURLWithPath: out.temporaryPath))
            try out.commit()
        } catch {
            out.discard()
            throw error
        }
    }

    /// Writes `text` (UTF-8) atomically.
    public static func write(_ text: String, to path: String) throws { try write(Data(text.utf8), to: path) }
}
