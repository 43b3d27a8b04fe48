import Foundation

/// The rows of a float32 layer read straight from a read-only memory map of its file (no copy, no
/// `read(2)`): pointers into the page cache. Made by `ActivationStore.mappedRows(_:)` only when the rows lie
/// in the file as plain little-endian float32 (`HDF5Dataset.float32RowOffsets()`).
///
/// The mapping lives as long as this object; row pointers must not outlive it. If another process
/// truncates the file while it is mapped, touching a row can fault (as with any mapped file) — store files
/// are written under a temporary name and renamed, which never truncates a file in use.
public final class MappedRows: @unchecked Sendable {
    /// Rows N.
    public let rowCount: Int
    /// Floats per row.
    public let rowLength: Int
    private let base: UnsafeMutableRawPointer
    private let length: Int
    private let offsets: [Int]

    init?(path: String, offsets: [Int], rowLength: Int) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return nil }
        let size = Int(st.st_size), rowBytes = rowLength * 4
        guard offsets.allSatisfy({ $0 >= 0 && $0 % 4 == 0 && $0 + rowBytes <= size }) else { return nil }
        guard let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else { return nil }
        madvise(p, size, MADV_SEQUENTIAL)
        base = p
        length = size
        self.offsets = offsets
        rowCount = offsets.count
        self.rowLength = rowLength
    }

    /// The `rowLength` floats of row `i` (0 ≤ i < rowCount).
    public func row(_ i: Int) -> UnsafePointer<Float> {
        UnsafePointer((base + offsets[i]).assumingMemoryBound(to: Float.self))
    }

    /// Drops the pages of `rows` from this process's mapping once they are used (they stay in the page
    /// cache), so the resident memory of a streaming pass stays bounded by what is in flight. Rows next to
    /// each other in the file are released as one range; only pages wholly inside a range are dropped, so
    /// rows still to come are never touched.
    public func release(rows: [Int]) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE))), rowBytes = rowLength * 4
        var ranges: [(start: Int, end: Int)] = []
        for o in rows.map({ offsets[$0] }).sorted() {
            if let last = ranges.last, last.end == o {
                ranges[ranges.count - 1].end = o + rowBytes
            } else {
                ranges.append((o, o + rowBytes))
            }
        }
        for r in ranges {
            let start = (r.start + page - 1) / page * page, end = r.end / page * page
            if end > start { madvise(base + start, end - start, MADV_DONTNEED) }
        }
    }

    deinit { munmap(base, length) }
}

extension ActivationStore {
    /// Layer `name`'s rows from a memory map of the file, or nil when they are not stored as plain
    /// float32 (then read them with `read(_:rows:into:)`).
    public func mappedRows(_ name: String) throws -> MappedRows? {
        let l = try layer(name)
        guard let offsets = try activationDataset(name).float32RowOffsets(), offsets.count == count else { return nil }
        return MappedRows(path: path, offsets: offsets, rowLength: l.shape.dropFirst().reduce(1, *))
    }
}
