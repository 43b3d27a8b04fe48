#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file's identity on disk (device and inode, symbolic links followed): two paths with the same identity are
/// the same file, whatever links or names lead there.
package struct FileIdentity: Hashable, Sendable {
    package let device: UInt64
    package let inode: UInt64
    /// True for a regular file.
    package let isRegular: Bool

    /// The identity of the file at `path`, or nil if it does not exist.
    package init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        isRegular = st.st_mode & S_IFMT == S_IFREG
    }
}

/// The checks every command makes before it writes anything.
package enum OutputPlan {
    /// Refuses outputs that resolve (through symbolic links or hard links) to one of `inputs`, or to another of
    /// `outputs`. Special files (`/dev/null`, FIFOs) may be given as several outputs. Nil entries are skipped.
    /// - Throws: `OutputError` naming the output and the file it collides with.
    package static func check(inputs: [String?], outputs: [String?]) throws {
        var inputIDs: [(FileIdentity, String)] = []
        for case let input? in inputs { if let id = FileIdentity(path: input) { inputIDs.append((id, input)) } }
        var seen: [String: String] = [:]
        for case let output? in outputs {
            let target = AtomicOutput.followingSymlinks(output)
            let key: String
            if let id = FileIdentity(path: target) {
                if !id.isRegular { continue }  // a device or FIFO: written in place, never replaced
                if let (_, input) = inputIDs.first(where: { $0.0 == id }) {
                    throw OutputError(
                        path: output,
                        input == output
                            ? "is also an input; refusing to overwrite an input"
                            : "is the input \(input) (the same file through a link); refusing to overwrite an input")
                }
                key = "inode \(id.device):\(id.inode)"
            } else {
                key = canonicalPath(target)
            }
            if let other = seen[key] {
                throw OutputError(
                    path: output,
                    other == output
                        ? "is given as two outputs; one would silently replace the other"
                        : "is the same file as the output \(other); one would silently replace the other")
            }
            seen[key] = output
        }
    }

    /// `path` made absolute, with its folder's links resolved (the file itself need not exist).
    static func canonicalPath(_ path: String) -> String {
        let (dir, name) = AtomicOutput.split(path)
        guard let resolved = realpath(dir, nil) else { return path }
        defer { free(resolved) }
        let d = String(cString: resolved)
        return (d == "/" ? "" : d) + "/" + name
    }
}

/// An input that cannot be read as a file.
package struct InputFileError: Error, Equatable, CustomStringConvertible {
    package let path: String
    package let message: String
    package var description: String { "\(path): \(message)" }
}

/// Checks on files the toolkit reads.
package enum InputFile {
    /// Throws `InputFileError` ("not a regular file (a FIFO)") unless `path` is a regular file (links followed).
    /// A missing file passes: the reader reports it in its own words. Opening a FIFO would block forever.
    package static func checkRegular(_ path: String) throws {
        if let kind = nonRegularKind(path) {
            throw InputFileError(path: path, message: "not a regular file (\(kind))")
        }
    }

    /// "a FIFO", "a directory", "a character device", … when `path` exists and is not a regular file; else nil.
    package static func nonRegularKind(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let type = st.st_mode & S_IFMT
        return type == S_IFREG ? nil : AtomicOutput.typeName(type)
    }
}
