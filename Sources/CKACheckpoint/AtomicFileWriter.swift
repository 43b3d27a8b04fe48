#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Writes a file through a temporary file in the same folder, then `fsync` and `rename` over the destination,
/// so readers never see a partial file. The temporary file is removed on failure.
enum AtomicFileWriter {
    final class Output {
        let fd: Int32
        let path: String
        init(fd: Int32, path: String) { self.fd = fd; self.path = path }

        func write(_ bytes: UnsafeRawBufferPointer) throws {
            var done = 0
            while done < bytes.count {
                let r = Glibc_write(fd, bytes.baseAddress! + done, bytes.count - done)
                if r < 0 {
                    if errno == EINTR { continue }
                    throw CheckpointError.writeFailed(file: path, reason: String(cString: strerror(errno)))
                }
                done += r
            }
        }
    }

    static func write(to url: URL, _ body: (Output) throws -> Void) throws {
        let dest = url.path
        let dir = url.deletingLastPathComponent().path
        let tmp = (dir.isEmpty ? "." : dir) + "/." + url.lastPathComponent + ".tmp-" + UUID().uuidString
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CheckpointError.writeFailed(file: dest, reason: String(cString: strerror(errno))) }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        do {
            try body(Output(fd: fd, path: dest))
            guard fsync(fd) == 0 else { throw CheckpointError.writeFailed(file: dest, reason: String(cString: strerror(errno))) }
        } catch {
            close(fd)
            throw error
        }
        guard close(fd) == 0 else { throw CheckpointError.writeFailed(file: dest, reason: String(cString: strerror(errno))) }
        guard rename(tmp, dest) == 0 else {
            throw CheckpointError.writeFailed(file: dest, reason: "rename failed: " + String(cString: strerror(errno)))
        }
        ok = true
    }
}

@inline(__always) private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #elseif canImport(Musl)
    return Musl.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}
