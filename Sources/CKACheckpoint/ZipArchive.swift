/// A read-only view of a zip archive's stored entries (what `torch.save` writes since torch 1.6).
///
/// Reads the end-of-central-directory record (and the ZIP64 locator and record when present), then every
/// central-directory entry and its local header. Validates that every structure and every entry's data lies
/// inside the file, that names are unique UTF-8, and that entries' data ranges do not overlap. Entries are
/// listed even when compressed; reading one that is compressed or encrypted throws `compressedEntry`.
package struct ZipArchive: Sendable {
    /// One entry of the central directory.
    public struct Entry: Sendable {
        /// The path inside the archive.
        public let name: String
        /// 0 = stored; anything else is refused when read.
        public let method: Int
        /// General-purpose flags (bit 0 = encrypted).
        public let flags: Int
        /// CRC-32 of the uncompressed data as recorded in the directory.
        public let crc32: UInt32
        public let compressedSize: Int
        public let uncompressedSize: Int
        /// Offset of the local header in the file.
        public let localHeaderOffset: Int
        /// Offset of the entry's data in the file (after the local header, name and extra field).
        public let dataOffset: Int

        /// True if the entry can be read without decompression or decryption.
        public var isStored: Bool { method == 0 && flags & 1 == 0 }
    }

    /// Bounds on directory size.
    public static let maxEntries = 1_000_000

    public let file: MappedFile
    /// Entries in directory order.
    public let entries: [Entry]
    private let index: [String: Int]

    /// Reads the directory of `file`.
    public init(file: MappedFile) throws {
        self.file = file
        let name = file.name
        let total = file.count
        func bad(_ offset: Int, _ expected: String, _ found: String) -> CheckpointError {
            .malformedZip(file: name, offset: offset, expected: expected, found: found)
        }
        let entries: [Entry] = try file.withUnsafeBytes { raw in
            // 1. End of central directory: the last "PK\5\6" record whose comment fits in the file.
            guard total >= 22 else {
                throw bad(0, "an end-of-central-directory record (22 bytes)", "a \(total)-byte file")
            }
            var eocd = -1
            var p = total - 22
            let lowest = max(0, total - 22 - 0xffff)
            while p >= lowest {
                if raw.le32(p) == 0x0605_4b50, p + 22 + Int(raw.le16(p + 20)) <= total { eocd = p; break }
                p -= 1
            }
            guard eocd >= 0 else {
                throw bad(
                    max(0, total - 22), "an end-of-central-directory signature (PK\\5\\6)", "none in the last 64 KiB")
            }
            let disk = Int(raw.le16(eocd + 4)), cdDisk = Int(raw.le16(eocd + 6))
            var count = Int(raw.le16(eocd + 10))
            var cdSize = Int(raw.le32(eocd + 12)), cdOffset = Int(raw.le32(eocd + 16))
            let needs64 = count == 0xffff || cdSize == 0xffff_ffff || cdOffset == 0xffff_ffff
            var cdEnd = eocd
            // 2. ZIP64 locator (20 bytes before the EOCD) and record.
            if eocd >= 20, raw.le32(eocd - 20) == 0x0706_4b50 {
                let loc = eocd - 20
                let rec64 = raw.le64(loc + 8)
                guard rec64 <= UInt64(loc), Int(rec64) + 56 <= loc else {
                    throw bad(
                        loc + 8, "a ZIP64 end-of-directory record before its locator (at most \(loc - 56))",
                        "offset \(rec64)")
                }
                let r = Int(rec64)
                guard raw.le32(r) == 0x0606_4b50 else {
                    throw bad(r, "a ZIP64 end-of-directory signature (PK\\6\\6)", "0x\(String(raw.le32(r), radix: 16))")
                }
                let c64 = raw.le64(r + 32), size64 = raw.le64(r + 40), off64 = raw.le64(r + 48)
                guard c64 <= UInt64(ZipArchive.maxEntries) else {
                    throw CheckpointError.limitExceeded(
                        file: name, offset: r + 32, what: "zip entry count (\(c64))", limit: ZipArchive.maxEntries)
                }
                guard size64 <= UInt64(total), off64 <= UInt64(total) else {
                    throw bad(
                        r + 40, "a central directory inside the file (\(total) bytes)",
                        "size \(size64) at offset \(off64)")
                }
                count = Int(c64); cdSize = Int(size64); cdOffset = Int(off64)
                cdEnd = r
            } else if needs64 {
                throw bad(eocd, "a ZIP64 locator (the directory fields are 0xFFFF…)", "none")
            } else {
                guard disk == 0, cdDisk == 0 else {
                    throw bad(eocd + 4, "a single-disk archive", "disk \(disk)/\(cdDisk)")
                }
            }
            guard cdOffset <= cdEnd, cdSize <= cdEnd - cdOffset else {
                throw bad(
                    eocd + 12, "a central directory before the end record (ending at or before \(cdEnd))",
                    "\(cdSize) bytes at offset \(cdOffset)")
            }
            guard count <= cdSize / 46 else {
                throw bad(eocd + 10, "at most \(cdSize / 46) entries in a \(cdSize)-byte directory", "\(count) entries")
            }
            // 3. Central directory entries.
            var out: [Entry] = []
            out.reserveCapacity(count)
            var reader = ByteReader(base: raw.baseAddress!, count: cdOffset + cdSize) { o, e, f in bad(o, e, f) }
            reader.position = cdOffset
            for k in 0..<count {
                let start = reader.position
                let sig = try reader.u32("central directory entry \(k)")
                guard sig == 0x0201_4b50 else {
                    throw bad(start, "central directory entry \(k) signature (PK\\1\\2)", "0x\(String(sig, radix: 16))")
                }
                try reader.skip(4, "version fields")
                let flags = Int(try reader.u16())
                let method = Int(try reader.u16())
                try reader.skip(4, "time and date")
                let crc = try reader.u32()
                var csize = UInt64(try reader.u32())
                var usize = UInt64(try reader.u32())
                let nameLen = Int(try reader.u16()), extraLen = Int(try reader.u16()),
                    commentLen = Int(try reader.u16())
                let diskStart = try reader.u16()
                try reader.skip(6, "attributes")
                var lho = UInt64(try reader.u32())
                let nameBytes = try reader.bytes(nameLen, "entry \(k) name")
                let extraStart = reader.position
                let extra = try reader.bytes(extraLen, "entry \(k) extra field")
                try reader.skip(commentLen, "entry \(k) comment")
                // ZIP64 extended information (0x0001) replaces the saturated fields, in this order.
                if usize == 0xffff_ffff || csize == 0xffff_ffff || lho == 0xffff_ffff || diskStart == 0xffff {
                    var x = ByteReader(
                        base: extra.baseAddress ?? raw.baseAddress!, count: extra.count,
                        reportOffset: extraStart
                    ) { o, e, f in bad(o, e, f) }
                    var found = false
                    while x.remaining >= 4 {
                        let id = try x.u16(), size = Int(try x.u16())
                        let blockEnd = x.position + size
                        guard size <= x.remaining else {
                            throw x.fail("an extra block of \(size) bytes", "\(x.remaining) left")
                        }
                        if id == 0x0001 {
                            found = true
                            var sub = ByteReader(
                                base: (extra.baseAddress ?? raw.baseAddress!) + x.position, count: size,
                                reportOffset: extraStart + x.position
                            ) { o, e, f in bad(o, e, f) }
                            if usize == 0xffff_ffff { usize = try sub.u64("ZIP64 uncompressed size") }
                            if csize == 0xffff_ffff { csize = try sub.u64("ZIP64 compressed size") }
                            if lho == 0xffff_ffff { lho = try sub.u64("ZIP64 local header offset") }
                        }
                        x.position = blockEnd
                    }
                    guard found else { throw bad(extraStart, "a ZIP64 extra field for entry \(k)", "none") }
                }
                guard let entryName = String(validating: nameBytes, as: UTF8.self), !entryName.isEmpty else {
                    throw bad(start + 46, "a non-empty UTF-8 entry name", "invalid bytes")
                }
                guard lho <= UInt64(total), csize <= UInt64(total), usize <= UInt64(total) || method != 0 else {
                    throw bad(start, "entry '\(entryName)' inside the file", "offset \(lho), size \(csize)/\(usize)")
                }
                // Local header: signature, then name and extra lengths at 26/28.
                let l = Int(lho)
                guard l <= total - 30, raw.le32(l) == 0x0403_4b50 else {
                    throw bad(
                        l, "a local header (PK\\3\\4) for '\(entryName)'",
                        l <= total - 30 ? "0x\(String(raw.le32(l), radix: 16))" : "end of file")
                }
                let dataOffset = l + 30 + Int(raw.le16(l + 26)) + Int(raw.le16(l + 28))
                guard dataOffset <= total, Int(csize) <= total - dataOffset else {
                    throw bad(l, "the data of '\(entryName)' inside the file", "\(csize) bytes at offset \(dataOffset)")
                }
                if method == 0 && flags & 1 == 0 && csize != usize {
                    throw bad(start + 20, "equal sizes for the stored entry '\(entryName)'", "\(csize) vs \(usize)")
                }
                out.append(
                    Entry(
                        name: entryName, method: method, flags: flags, crc32: crc,
                        compressedSize: Int(clamping: csize), uncompressedSize: Int(clamping: usize),
                        localHeaderOffset: l, dataOffset: dataOffset))
            }
            // 4. No two entries' data may overlap (nor overlap the directory).
            let sorted = out.sorted { $0.dataOffset < $1.dataOffset }
            var prevEnd = 0, prevName = ""
            for e in sorted where e.compressedSize > 0 {
                guard e.dataOffset >= prevEnd else {
                    throw bad(
                        e.dataOffset, "entry '\(e.name)' not to overlap '\(prevName)'",
                        "data starting at \(e.dataOffset) < \(prevEnd)")
                }
                prevEnd = e.dataOffset + e.compressedSize
                prevName = e.name
            }
            if prevEnd > cdOffset && cdSize > 0 {
                throw bad(cdOffset, "entry data before the central directory", "'\(prevName)' ending at \(prevEnd)")
            }
            return out
        }
        var index: [String: Int] = [:]
        for (i, e) in entries.enumerated() {
            guard index.updateValue(i, forKey: e.name) == nil else {
                throw bad(e.localHeaderOffset, "unique entry names", "duplicate '\(e.name)'")
            }
        }
        self.entries = entries
        self.index = index
    }

    /// The entry called `name`, if any.
    public func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    /// The file range of a stored entry's bytes; throws `compressedEntry` for compressed or encrypted ones.
    public func storedRange(of entry: Entry) throws -> Range<Int> {
        guard entry.isStored else {
            throw CheckpointError.compressedEntry(file: file.name, entry: entry.name, method: entry.method)
        }
        return entry.dataOffset..<(entry.dataOffset + entry.compressedSize)
    }

    /// A copy of a stored entry's bytes, optionally checked against its CRC-32.
    public func read(_ entry: Entry, verifyCRC: Bool = true) throws -> [UInt8] {
        let r = try storedRange(of: entry)
        let bytes = file.bytes(at: r.lowerBound, count: r.count)
        if verifyCRC {
            let c = CRC32.checksum(bytes)
            guard c == entry.crc32 else {
                throw CheckpointError.malformedZip(
                    file: file.name, offset: r.lowerBound,
                    expected: "CRC-32 0x\(String(entry.crc32, radix: 16)) for '\(entry.name)'",
                    found: "0x\(String(c, radix: 16))")
            }
        }
        return bytes
    }

    /// Checks a stored entry's CRC-32 without copying it.
    public func verifyCRC(of entry: Entry) throws {
        let r = try storedRange(of: entry)
        let c = file.withUnsafeBytes { CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[r])) }
        guard c == entry.crc32 else {
            throw CheckpointError.malformedZip(
                file: file.name, offset: r.lowerBound,
                expected: "CRC-32 0x\(String(entry.crc32, radix: 16)) for '\(entry.name)'",
                found: "0x\(String(c, radix: 16))")
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zip uses), slicing-by-8.
package enum CRC32 {
    static let table: [UInt32] = {
        var t = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            t[0][i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 { t[k][i] = (t[k - 1][i] >> 8) ^ t[0][Int(t[k - 1][i] & 0xff)] }
        }
        return t.flatMap { $0 }
    }()

    /// The CRC-32 of `bytes`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c: UInt32 = 0xffff_ffff
        let n = bytes.count
        guard n > 0, let base = bytes.baseAddress else { return 0 }
        table.withUnsafeBufferPointer { t in
            var i = 0
            while i + 8 <= n {
                let lo = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self)) ^ c
                let hi = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
                c =
                    t[7 * 256 + Int(lo & 0xff)] ^ t[6 * 256 + Int((lo >> 8) & 0xff)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xff)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xff)] ^ t[2 * 256 + Int((hi >> 8) & 0xff)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xff)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(base.load(fromByteOffset: i, as: UInt8.self))) & 0xff)] ^ (c >> 8)
                i += 1
            }
        }
        return c ^ 0xffff_ffff
    }

    /// The CRC-32 of a byte array.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}
