#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An output that failed: the path the user gave and what went wrong (one line).
package struct OutputError: Error, Equatable, CustomStringConvertible {
    package let path: String
    package let message: String
    package init(path: String, _ message: String) { self.path = path; self.message = message }
    package var description: String { "\(path): \(message)" }
}

/// The one way the toolkit writes a file: complete or not at all.
///
/// - A regular file (or a new one) is written under `.NAME.partial-PID` beside it, synced and renamed into place,
///   so a killed run never leaves a half-written file under the final name.
/// - A symbolic link is followed: the temporary file goes beside the link's *target*, which is replaced
///   atomically; the link stays a link.
/// - A FIFO, character device or socket (`/dev/null`, `/dev/stdout`, a pipe) is written directly, never renamed
///   over; outputs that must be seekable (HDF5) refuse them.
/// - A directory is refused.
/// - Temporary files `.NAME.partial-PID` left by killed runs (their PID gone, untouched for `staleAge` seconds)
///   are removed when the same output is written again.
package struct AtomicOutput: Sendable {
    /// The path as given (what errors name).
    package let finalPath: String
    /// The file that is replaced: `finalPath` with symbolic links followed.
    package let targetPath: String
    /// Where the content is written until `commit()` (equal to `targetPath` for a special file).
    package let temporaryPath: String
    /// True for a FIFO, character device or socket: written in place, nothing renamed.
    package let isSpecialFile: Bool

    /// Seconds a dead run's temporary file must have been left untouched before it is removed (a run on another
    /// machine sharing the folder has a PID this machine does not know, but keeps its file fresh).
    package static let staleAge: Double = 600

    /// Why this output cannot be written (a directory, an empty name), checked by `validate()` and `write`.
    package let problem: String?

    /// Plans the output `path` (nothing is touched but stale temporary files of dead runs).
    package init(path: String) {
        finalPath = path
        let target = AtomicOutput.followingSymlinks(path)
        targetPath = target
        let (dir, name) = AtomicOutput.split(target)
        var st = stat()
        var special = false, problem: String?
        if name.isEmpty || name == "." || name == ".." {
            problem = "names a directory, not a file"
        } else if stat(target, &st) == 0 {
            let type = st.st_mode & S_IFMT
            if type == S_IFDIR { problem = "is a directory" }
            special = type != S_IFREG && type != S_IFDIR
        }
        self.problem = problem
        isSpecialFile = special
        temporaryPath = special ? target : AtomicOutput.temporaryName(dir: dir, name: name, pid: getpid())
        if !special && problem == nil { AtomicOutput.removeStalePartials(dir: dir, name: name) }
    }

    /// Throws `OutputError` if the output cannot be written; with `seekable` (HDF5), also for a special file.
    package func validate(seekable: Bool = false) throws {
        if let problem { throw OutputError(path: finalPath, problem) }
        if seekable && isSpecialFile {
            var st = stat()
            let type = stat(targetPath, &st) == 0 ? st.st_mode & S_IFMT : 0
            throw OutputError(
                path: finalPath,
                "is not a regular file (\(AtomicOutput.typeName(type))); this output must be a seekable file")
        }
    }

    /// A validated plan for an output that must be a seekable regular file (HDF5).
    package static func seekable(path: String) throws -> AtomicOutput {
        let out = AtomicOutput(path: path)
        try out.validate(seekable: true)
        return out
    }

    /// Moves the temporary file onto the target (replacing it); nothing for a special file.
    package func commit() throws {
        guard !isSpecialFile else { return }
        guard rename(temporaryPath, targetPath) == 0 else {
            throw OutputError(
                path: finalPath, "cannot rename \(temporaryPath) into place (\(AtomicOutput.systemError()))")
        }
    }

    /// Removes the temporary file, if any (never a special file).
    package func discard() {
        guard !isSpecialFile else { return }
        unlink(temporaryPath)
    }

    // MARK: Whole files

    /// Writes `bytes` atomically (or directly to a special file).
    package static func write(_ bytes: some Collection<UInt8>, to path: String) throws {
        try write(to: path) { out in
            try Array(bytes).withUnsafeBytes { try out.write($0) }
        }
    }

    /// Writes `text` (UTF-8) atomically.
    package static func write(_ text: String, to path: String) throws { try write(Array(text.utf8), to: path) }

    /// An open output file handed to `write(to:_:)`'s body.
    package final class Stream {
        let fd: Int32
        let path: String
        init(fd: Int32, path: String) { self.fd = fd; self.path = path }

        /// Writes all of `bytes` (retrying short writes and EINTR).
        package func write(_ bytes: UnsafeRawBufferPointer) throws {
            var done = 0
            while done < bytes.count {
                let r = systemWrite(fd, bytes.baseAddress! + done, bytes.count - done)
                if r < 0 {
                    if errno == EINTR { continue }
                    throw OutputError(path: path, "write failed (\(AtomicOutput.systemError()))")
                }
                done += r
            }
        }
    }

    /// Streams a file through `body`: temporary file, `fsync`, rename (or directly into a special file). On any
    /// failure the temporary file is removed and the error (naming `path`) is thrown.
    package static func write(to path: String, _ body: (Stream) throws -> Void) throws {
        let out = AtomicOutput(path: path)
        try out.validate()
        let flags = out.isSpecialFile ? O_WRONLY | O_CLOEXEC : O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC
        let fd = open(out.temporaryPath, flags, 0o644)
        guard fd >= 0 else {
            throw OutputError(
                path: path,
                (out.isSpecialFile ? "cannot open" : "cannot create \(out.temporaryPath)")
                    + " (\(systemError()))")
        }
        do {
            try body(Stream(fd: fd, path: path))
            if !out.isSpecialFile, fsync(fd) != 0, errno != EINVAL {
                throw OutputError(path: path, "sync failed (\(systemError()))")
            }
        } catch {
            close(fd)
            out.discard()
            throw error
        }
        guard close(fd) == 0 else {
            let reason = systemError()
            out.discard()
            throw OutputError(path: path, "close failed (\(reason))")
        }
        do { try out.commit() } catch { out.discard(); throw error }
    }

    // MARK: Helpers

    /// `.NAME.partial-PID` in `dir`.
    package static func temporaryName(dir: String, name: String, pid: Int32) -> String {
        (dir == "/" ? "" : dir) + "/." + name + ".partial-\(pid)"
    }

    /// Removes `.NAME.partial-PID` files in `dir` whose process is gone and which were not modified for `staleAge`.
    package static func removeStalePartials(dir: String, name: String, now: Double? = nil) {
        guard let d = opendir(dir) else { return }
        defer { closedir(d) }
        let prefix = "." + name + ".partial-"
        let me = getpid()
        var tv = timeval()
        gettimeofday(&tv, nil)
        let clock = now ?? Double(tv.tv_sec)
        while let entry = readdir(d) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard entryName.hasPrefix(prefix), let pid = Int32(entryName.dropFirst(prefix.count)), pid > 0, pid != me
            else { continue }
            guard kill(pid, 0) != 0, errno == ESRCH else { continue }  // alive (or not ours to signal): keep
            let full = (dir == "/" ? "" : dir) + "/" + entryName
            var st = stat()
            guard lstat(full, &st) == 0, st.st_mode & S_IFMT == S_IFREG, clock - Double(st.st_mtim.tv_sec) >= staleAge
            else { continue }
            unlink(full)
        }
    }

    /// `path` with every symbolic link of its last component followed (at most 40), relative targets taken
    /// from the link's folder. A dangling link gives its (missing) target.
    package static func followingSymlinks(_ path: String) -> String {
        var p = path
        for _ in 0..<40 {
            var st = stat()
            guard lstat(p, &st) == 0, st.st_mode & S_IFMT == S_IFLNK else { return p }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(p, &buffer, buffer.count - 1)
            guard n > 0 else { return p }
            let dest = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            p = dest.hasPrefix("/") ? dest : (split(p).dir == "/" ? "" : split(p).dir) + "/" + dest
        }
        return p
    }

    /// The folder (`.` when none) and the last component of `path`.
    package static func split(_ path: String) -> (dir: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    static func typeName(_ type: mode_t) -> String {
        switch type {
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFDIR: return "a directory"
        default: return "a special file"
        }
    }

    static func systemError() -> String { String(cString: strerror(errno)) }
}

@inline(__always) private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
        return Glibc.write(fd, p, n)
    #elseif canImport(Musl)
        return Musl.write(fd, p, n)
    #else
        return Darwin.write(fd, p, n)
    #endif
}
