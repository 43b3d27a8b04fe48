#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif
import Foundation
import _CKASupport

/// Read-only bytes of a whole file, memory-mapped (or, for in-memory input, an owned copy).
///
/// Immutable after creation, so it is safe to share between threads. Tensors read from a checkpoint keep
/// their file alive through a reference to this object.
package final class MappedFile: @unchecked Sendable {
    /// The name used in error messages (the path as given).
    public let name: String
    /// The first byte (never nil, even for an empty file).
    let base: UnsafeRawPointer
    /// Number of bytes.
    public let count: Int
    private let mappedLength: Int  // > 0: munmap on deinit; 0: deallocate on deinit
    /// Device, inode, size and modification time when mapped (nil for in-memory bytes).
    private let identity: [Int]?

    /// Maps the file at `url` read-only.
    public init(url: URL) throws {
        let path = url.path
        name = path
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below as not a regular file.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw CheckpointError.unreadable(file: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw CheckpointError.unreadable(file: path, reason: String(cString: strerror(errno)))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw CheckpointError.unreadable(
                file: path, reason: "not a regular file (\(InputFile.nonRegularKind(path) ?? "a special file"))")
        }
        let size = Int(st.st_size)
        identity = MappedFile.identity(st)
        if size == 0 {
            let p = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64)
            base = UnsafeRawPointer(p); count = 0; mappedLength = 0
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw CheckpointError.unreadable(file: path, reason: "mmap failed: " + String(cString: strerror(errno)))
        }
        base = UnsafeRawPointer(p); count = size; mappedLength = size
    }

    /// An in-memory copy of `bytes` (for tests, fuzzing and data that is not in a file).
    public init<C: Collection>(bytes: C, name: String = "<memory>") where C.Element == UInt8 {
        self.name = name
        let n = bytes.count
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1), alignment: 64)
        _ = UnsafeMutableRawBufferPointer(start: p, count: n).initializeMemory(as: UInt8.self, from: bytes)
        base = UnsafeRawPointer(p); count = n; mappedLength = 0
        identity = nil
    }

    private static func identity(_ st: stat) -> [Int] {
        [Int(st.st_dev), Int(st.st_ino), Int(st.st_size), Int(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec)]
    }

    /// Whether the file was modified in place since it was mapped: the path still names the same file (device and
    /// inode) but its size or modification time changed. The map then shows the new bytes (or faults past a
    /// truncated end). A file replaced by a rename, or removed, leaves the mapped one intact and is not "modified".
    package func modifiedInPlace() -> Bool {
        guard let identity else { return false }
        var st = stat()
        guard stat(name, &st) == 0 else { return false }
        let now = MappedFile.identity(st)
        return now[0..<2] == identity[0..<2] && now != identity
    }

    deinit {
        if mappedLength > 0 {
            munmap(UnsafeMutableRawPointer(mutating: base), mappedLength)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }

    /// Calls `body` with the whole file as a raw buffer.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafeRawBufferPointer(start: base, count: count)) }
    }

    /// A copy of `count` bytes at `offset` (the caller has validated the range).
    func bytes(at offset: Int, count n: Int) -> [UInt8] {
        precondition(offset >= 0 && n >= 0 && offset <= count - n)
        return withExtendedLifetime(self) { Array(UnsafeRawBufferPointer(start: base + offset, count: n)) }
    }

    /// Drops the pages wholly inside `offset..<offset+n` from this process's mapping (they stay in the page cache
    /// and are faulted in again if read later), so a loaded checkpoint costs one copy of its parameters, not two.
    func releasePages(offset: Int, count n: Int) {
        guard mappedLength > 0, n > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset + page - 1) / page * page
        let end = (offset + n) / page * page
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    /// Maps the pages of `offset..<offset+n` in one call before they are read (MADV_POPULATE_READ, Linux 5.14+;
    /// a no-op elsewhere), which is much cheaper than taking one page fault per 4 KiB during the copy.
    func prefault(offset: Int, count n: Int) {
        guard mappedLength > 0, n >= 1 << 16 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        #if os(Linux)
            _ = madvise(
                UnsafeMutableRawPointer(mutating: base + start), offset + n - start, 22 /* MADV_POPULATE_READ */)
        #endif
    }
}

/// Bounds-checked little-endian reads over a byte range; every failure is a typed error.
struct ByteReader {
    let base: UnsafeRawPointer
    let count: Int
    /// Added to positions in error messages (the range's offset inside its file).
    let reportOffset: Int
    let errorFactory: (_ offset: Int, _ expected: String, _ found: String) -> CheckpointError
    var position = 0

    init(
        base: UnsafeRawPointer, count: Int, reportOffset: Int = 0,
        error: @escaping (_ offset: Int, _ expected: String, _ found: String) -> CheckpointError
    ) {
        self.base = base
        self.count = count
        self.reportOffset = reportOffset
        self.errorFactory = error
    }

    var remaining: Int { count - position }
    var isAtEnd: Bool { position >= count }

    func fail(_ expected: String, _ found: String, at offset: Int? = nil) -> CheckpointError {
        errorFactory(reportOffset + (offset ?? position), expected, found)
    }

    mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
        guard n >= 0, n <= remaining else {
            throw fail("\(what()) (\(n) bytes)", "\(max(remaining, 0)) bytes left (truncated)")
        }
    }

    mutating func u8(_ what: @autoclosure () -> String = "a byte") throws -> UInt8 {
        try need(1, what())
        defer { position += 1 }
        return base.load(fromByteOffset: position, as: UInt8.self)
    }

    mutating func u16(_ what: @autoclosure () -> String = "a 2-byte integer") throws -> UInt16 {
        try need(2, what())
        defer { position += 2 }
        return UInt16(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt16.self))
    }

    mutating func u32(_ what: @autoclosure () -> String = "a 4-byte integer") throws -> UInt32 {
        try need(4, what())
        defer { position += 4 }
        return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt32.self))
    }

    mutating func u64(_ what: @autoclosure () -> String = "an 8-byte integer") throws -> UInt64 {
        try need(8, what())
        defer { position += 8 }
        return UInt64(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt64.self))
    }

    /// A view of the next `n` bytes (valid while the underlying memory lives).
    mutating func bytes(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        try need(n, what())
        defer { position += n }
        return UnsafeRawBufferPointer(start: base + position, count: n)
    }

    mutating func skip(_ n: Int, _ what: @autoclosure () -> String) throws {
        try need(n, what())
        position += n
    }
}

/// Unaligned little-endian load helpers on raw buffers (callers check bounds first).
extension UnsafeRawBufferPointer {
    @inline(__always) func le16(_ o: Int) -> UInt16 {
        UInt16(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt16.self))
    }
    @inline(__always) func le32(_ o: Int) -> UInt32 {
        UInt32(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt32.self))
    }
    @inline(__always) func le64(_ o: Int) -> UInt64 {
        UInt64(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt64.self))
    }
}

/// `a * b` or nil on overflow / negative input.
@inline(__always) func checkedMul(_ a: Int, _ b: Int) -> Int? {
    guard a >= 0, b >= 0 else { return nil }
    let (r, o) = a.multipliedReportingOverflow(by: b)
    return o ? nil : r
}

/// `a + b` or nil on overflow / negative input.
@inline(__always) func checkedAdd(_ a: Int, _ b: Int) -> Int? {
    guard a >= 0, b >= 0 else { return nil }
    let (r, o) = a.addingReportingOverflow(b)
    return o ? nil : r
}

/// Product of `shape`, or nil if any extent is negative or the product overflows.
func checkedProduct(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        guard let m = checkedMul(n, d) else { return nil }
        n = m
    }
    return n
}
