internal import CHDF5
import CKATensor
import Foundation
import _CKASupport

/// An HDF5 identifier closed exactly once by its own close function: by `close()`, or when the owner goes away.
///
/// HDF5 1.10 leaves a file id registered but half-destroyed when `H5Fclose` fails (e.g. on a full disk while
/// flushing): touching it again — a second close, or the library's own clean-up at exit — crashes. So the id
/// is never used after its close, whatever the result, and the library's exit clean-up is off (`hdf5Setup`).
final class HDF5Handle {
    let id: hid_t
    private let closer: (hid_t) -> herr_t
    private(set) var isClosed = false
    init(_ id: hid_t, closer: @escaping (hid_t) -> herr_t) { self.id = id; self.closer = closer }
    /// Closes the id (once); false if HDF5 reported a failure.
    func close() -> Bool {
        guard !isClosed else { return true }
        isClosed = true
        return closer(id) >= 0
    }
    deinit { _ = close() }
}

/// The element type of a dataset or attribute as stored on disk.
public enum HDF5ElementType: Hashable, Sendable, CustomStringConvertible {
    case float16, float32, float64, int8, int16, int32, int64, uint8, uint16, uint32, uint64, bool, string
    case other(String)

    public var description: String {
        switch self {
        case .float16: return "float16"
        case .float32: return "float32"
        case .float64: return "float64"
        case .int8: return "int8"
        case .int16: return "int16"
        case .int32: return "int32"
        case .int64: return "int64"
        case .uint8: return "uint8"
        case .uint16: return "uint16"
        case .uint32: return "uint32"
        case .uint64: return "uint64"
        case .bool: return "bool"
        case .string: return "string"
        case .other(let s): return s
        }
    }
    /// True for the floating-point types a `Tensor<Float>` can be read from.
    public var isFloat: Bool { self == .float16 || self == .float32 || self == .float64 }
}

/// A value of an HDF5 attribute.
public enum HDF5AttributeValue: Equatable, Sendable, CustomStringConvertible {
    case string(String), int(Int), double(Double), bool(Bool)
    case ints([Int]), doubles([Double]), strings([String])

    public var description: String {
        switch self {
        case .string(let s): return s
        case .int(let v): return String(v)
        case .double(let v): return String(v)
        case .bool(let v): return v ? "true" : "false"
        case .ints(let v): return "\(v)"
        case .doubles(let v): return "\(v)"
        case .strings(let v): return "\(v)"
        }
    }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    /// The value with one-element lists as scalars (HDF5 hands a one-element list back as a scalar), for
    /// comparing a written value with the one read back.
    public var normalized: HDF5AttributeValue {
        switch self {
        case .strings(let v) where v.count == 1: return .string(v[0])
        case .ints(let v) where v.count == 1: return .int(v[0])
        case .doubles(let v) where v.count == 1: return .double(v[0])
        default: return self
        }
    }
    public var intValue: Int? {
        switch self {
        case .int(let v): return v
        case .bool(let b): return b ? 1 : 0
        case .double(let d): return d.rounded() == d ? Int(exactly: d) : nil
        default: return nil
        }
    }
    public var doubleValue: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .double(let d): return d
        default: return nil
        }
    }
    public var boolValue: Bool? {
        switch self {
        case .bool(let b): return b
        case .int(let v): return v != 0
        default: return nil
        }
    }
}

/// An open HDF5 file. Closed when the last reference goes away (or by `close()`).
///
/// Paths inside the file are absolute or relative to the root (`"activations/blocks.0"`).
/// Everything that can fail throws `HDF5Error` with the file, the object and HDF5's own messages.
public final class HDF5File {
    public enum Mode: Sendable { case readOnly, readWrite, create }

    /// The file's path as errors name it: its path on disk, or the destination of a temporary output.
    public let path: String
    let handle: HDF5Handle
    var fileID: hid_t { handle.id }

    /// Opens (or, with `.create`, creates and truncates) the file at `path`.
    public convenience init(path: String, mode: Mode = .readOnly) throws {
        try self.init(path: path, mode: mode, reportingAs: path)
    }

    /// Opens the file at `path` (e.g. an `AtomicOutput`'s temporary file); errors name `reportingAs`
    /// (its destination), the path the user knows.
    package init(path: String, mode: Mode, reportingAs shownPath: String) throws {
        quietHDF5OnThisThread()
        self.path = shownPath
        let id: hid_t
        switch mode {
        case .create:
            id = H5Fcreate(path, cka_H5F_ACC_TRUNC(), cka_H5P_DEFAULT(), cka_H5P_DEFAULT())
            guard id >= 0 else { throw HDF5Error.createFailed(path: shownPath, stack: hdf5ErrorStack()) }
        case .readOnly, .readWrite:
            guard FileManager.default.fileExists(atPath: path) else { throw HDF5Error.fileNotFound(path: shownPath) }
            try InputFile.checkRegular(path)  // a FIFO would block HDF5's open() forever
            if H5Fis_hdf5(path) <= 0 { _ = hdf5ErrorStack(); throw HDF5Error.notHDF5(path: shownPath) }
            id = H5Fopen(path, mode == .readOnly ? cka_H5F_ACC_RDONLY() : cka_H5F_ACC_RDWR(), cka_H5P_DEFAULT())
            guard id >= 0 else { throw HDF5Error.openFailed(path: shownPath, stack: hdf5ErrorStack()) }
        }
        handle = HDF5Handle(id) { H5Fclose($0) }
    }

    /// Flushes and closes the file now, reporting a failure (e.g. a full disk) instead of losing it in
    /// `deinit`. Datasets still open keep the file open until they go away. Closing twice is a no-op.
    public func close() throws {
        guard !handle.isClosed else { return }
        var failure: HDF5Error?
        if H5Fflush(fileID, H5F_SCOPE_LOCAL) < 0 {
            failure = .operationFailed(operation: "flush", path: path, object: "/", stack: hdf5ErrorStack())
        }
        if !handle.close(), failure == nil {
            failure = .operationFailed(operation: "close", path: path, object: "/", stack: hdf5ErrorStack())
        }
        if let failure { throw failure }
    }

    /// Writes buffered data to disk.
    public func flush() throws {
        guard H5Fflush(fileID, H5F_SCOPE_LOCAL) >= 0 else {
            throw HDF5Error.operationFailed(operation: "flush", path: path, object: "/", stack: hdf5ErrorStack())
        }
    }

    // MARK: Objects

    /// True if a link `name` exists (every intermediate group is checked in turn).
    public func exists(_ name: String) -> Bool {
        var prefix = ""
        for part in name.split(separator: "/") {
            prefix += (prefix.isEmpty ? "" : "/") + part
            if H5Lexists(fileID, prefix, cka_H5P_DEFAULT()) <= 0 { _ = hdf5ErrorStack(); return false }
        }
        return true
    }

    /// True if `name` exists and is a group.
    public func isGroup(_ name: String) -> Bool { objectKind(name) == H5I_GROUP }
    /// True if `name` exists and is a dataset.
    public func isDataset(_ name: String) -> Bool { objectKind(name) == H5I_DATASET }

    private func objectKind(_ name: String) -> H5I_type_t? {
        guard name == "/" || exists(name) else { return nil }
        let id = H5Oopen(fileID, name, cka_H5P_DEFAULT())
        guard id >= 0 else { _ = hdf5ErrorStack(); return nil }
        defer { H5Oclose(id) }
        return H5Iget_type(id)
    }

    /// Names of the links in group `group` (in HDF5's name order).
    public func children(of group: String) throws -> [String] {
        guard group == "/" || isGroup(group) else { throw HDF5Error.objectNotFound(path: path, object: group) }
        let gid = H5Gopen2(fileID, group, cka_H5P_DEFAULT())
        guard gid >= 0 else { throw failure("open group", group) }
        defer { H5Gclose(gid) }
        var info = H5G_info_t()
        guard H5Gget_info(gid, &info) >= 0 else { throw failure("list group", group) }
        var names: [String] = []
        for i in 0..<info.nlinks {
            let len = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, cka_H5P_DEFAULT())
            guard len >= 0 else { throw failure("list group", group) }
            var buf = [CChar](repeating: 0, count: Int(len) + 1)
            guard H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, buf.count, cka_H5P_DEFAULT()) >= 0
            else {
                throw failure("list group", group)
            }
            names.append(String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    /// Creates group `name` and any missing parents (no-op if it exists).
    public func createGroup(_ name: String) throws {
        if exists(name) { return }
        let lcpl = H5Pcreate(cka_H5P_LINK_CREATE())
        defer { H5Pclose(lcpl) }
        H5Pset_create_intermediate_group(lcpl, 1)
        let gcpl = H5Pcreate(cka_H5P_GROUP_CREATE())
        defer { H5Pclose(gcpl) }
        H5Pset_obj_track_times(gcpl, false)  // no timestamps: the same content gives the same bytes
        let gid = H5Gcreate2(fileID, name, lcpl, gcpl, cka_H5P_DEFAULT())
        guard gid >= 0 else { throw failure("create group", name) }
        H5Gclose(gid)
    }

    /// Deletes the link `name` (its space is reclaimed only when the file is rewritten).
    public func remove(_ name: String) throws {
        guard H5Ldelete(fileID, name, cka_H5P_DEFAULT()) >= 0 else { throw failure("delete", name) }
    }

    /// Opens the dataset `name`.
    public func dataset(_ name: String) throws -> HDF5Dataset {
        quietHDF5OnThisThread()
        guard isDataset(name) else { throw HDF5Error.objectNotFound(path: path, object: name) }
        let dapl = H5Pcreate(cka_H5P_DATASET_ACCESS())
        defer { H5Pclose(dapl) }
        // A 64 MiB chunk cache: activation chunks are several MiB, larger than HDF5's 1 MiB default.
        H5Pset_chunk_cache(dapl, 12421, 64 << 20, 0.75)
        let id = H5Dopen2(fileID, name, dapl)
        guard id >= 0 else { throw failure("open dataset", name) }
        return try HDF5Dataset(file: self, name: name, handle: HDF5Handle(id) { H5Dclose($0) })
    }

    /// Creates the HDF5 file `path` atomically: `body` fills it under a temporary name, which replaces `path` only
    /// when `body` and the close succeed; on an error nothing is left under either name.
    package static func createAtomically(_ path: String, _ body: (HDF5File) throws -> Void) throws {
        let out = try AtomicOutput.seekable(path: path)
        do {
            do {
                let f = try HDF5File(path: out.temporaryPath, mode: .create, reportingAs: path)
                try body(f)
                try f.close()
            }
            try out.commit()
        } catch {
            out.discard()
            throw error
        }
    }

    /// Creates a dataset of `type` with `shape`.
    ///
    /// - Parameters:
    ///   - extendable: the first axis may grow later (`append`); the dataset is then chunked.
    ///   - chunkRows: rows of the first axis per chunk (default: about 4 MiB per chunk).
    public func createDataset(
        _ name: String, type: HDF5ElementType, shape: [Int], extendable: Bool = false,
        chunkRows: Int? = nil
    ) throws -> HDF5Dataset {
        guard let ftype = makeFileType(type) else {
            throw HDF5Error.wrongType(path: path, object: name, expected: "a numeric type", got: "\(type)")
        }
        defer { H5Tclose(ftype) }
        let elementSize = Int(H5Tget_size(ftype))
        // A negative extent, or one whose byte count overflows 64 bits, is no dataset HDF5 could hold.
        // (The row is checked on its own: a zero first extent leaves the whole count at 0.)
        let row = MemoryBudget.elementCount(Array(shape.dropFirst()))
        guard let count = MemoryBudget.elementCount(shape), let row,
            !count.multipliedReportingOverflow(by: elementSize).overflow,
            !row.multipliedReportingOverflow(by: elementSize).overflow
        else {
            throw HDF5Error.shapeMismatch(
                path: path, object: name, expected: "non-negative extents below 2^63 bytes",
                got: describeShape(shape))
        }
        let dims = shape.map { hsize_t($0) }
        var maxDims = dims
        if extendable && !maxDims.isEmpty { maxDims[0] = cka_H5S_UNLIMITED() }
        let space = H5Screate_simple(Int32(dims.count), dims, maxDims)
        guard space >= 0 else { throw failure("create dataspace for", name) }
        defer { H5Sclose(space) }
        let dcpl = H5Pcreate(cka_H5P_DATASET_CREATE())
        defer { H5Pclose(dcpl) }
        H5Pset_obj_track_times(dcpl, false)  // no timestamps: the same content gives the same bytes
        if (extendable || chunkRows != nil), !shape.isEmpty {
            let rowBytes = max(1, row * elementSize)
            let rows = max(1, chunkRows ?? max(1, min(1024, (4 << 20) / rowBytes)))
            var chunk = dims
            chunk[0] = hsize_t(rows)
            H5Pset_chunk(dcpl, Int32(chunk.count), chunk)
        }
        let lcpl = H5Pcreate(cka_H5P_LINK_CREATE())
        defer { H5Pclose(lcpl) }
        H5Pset_create_intermediate_group(lcpl, 1)
        let id = H5Dcreate2(fileID, name, ftype, space, lcpl, dcpl, cka_H5P_DEFAULT())
        guard id >= 0 else { throw failure("create dataset", name) }
        return try HDF5Dataset(file: self, name: name, handle: HDF5Handle(id) { H5Dclose($0) })
    }

    /// Writes `strings` as a 1-D dataset of variable-length UTF-8 strings (what `h5py.string_dtype()` gives).
    public func writeStrings(_ name: String, _ strings: [String]) throws {
        let t = cka_make_vlen_utf8_type()
        defer { H5Tclose(t) }
        var dims = [hsize_t(strings.count)]
        let space = H5Screate_simple(1, &dims, nil)
        defer { H5Sclose(space) }
        let lcpl = H5Pcreate(cka_H5P_LINK_CREATE())
        defer { H5Pclose(lcpl) }
        H5Pset_create_intermediate_group(lcpl, 1)
        let dcpl = H5Pcreate(cka_H5P_DATASET_CREATE())
        defer { H5Pclose(dcpl) }
        H5Pset_obj_track_times(dcpl, false)
        let id = H5Dcreate2(fileID, name, t, space, lcpl, dcpl, cka_H5P_DEFAULT())
        guard id >= 0 else { throw failure("create dataset", name) }
        defer { H5Dclose(id) }
        let status = withCStringArray(strings) { ptrs in
            H5Dwrite(id, t, cka_H5S_ALL(), cka_H5S_ALL(), cka_H5P_DEFAULT(), ptrs)
        }
        guard status >= 0 else { throw failure("write", name) }
    }

    /// Reads a 1-D dataset of strings (variable- or fixed-length, UTF-8 or ASCII).
    public func readStrings(_ name: String) throws -> [String] { try dataset(name).readStrings() }

    // MARK: Attributes

    /// The attribute `attribute` of object `object` ("/" for the file), or nil if absent.
    public func attribute(_ attribute: String, of object: String = "/") throws -> HDF5AttributeValue? {
        guard object == "/" || exists(object) else { throw HDF5Error.objectNotFound(path: path, object: object) }
        let ex = H5Aexists_by_name(fileID, object, attribute, cka_H5P_DEFAULT())
        guard ex >= 0 else { throw failure("read attribute \(attribute) of", object) }
        if ex == 0 { return nil }
        let aid = H5Aopen_by_name(fileID, object, attribute, cka_H5P_DEFAULT(), cka_H5P_DEFAULT())
        guard aid >= 0 else { throw failure("open attribute \(attribute) of", object) }
        defer { H5Aclose(aid) }
        let ftype = H5Aget_type(aid), space = H5Aget_space(aid)
        defer { H5Tclose(ftype); H5Sclose(space) }
        let n = max(1, Int(H5Sget_simple_extent_npoints(space)))
        let scalar = H5Sget_simple_extent_ndims(space) == 0
        let what = "attribute \(attribute) of \(object)"
        try MemoryBudget.check([n], elementSize: max(32, Int(H5Tget_size(ftype))), path: path, object: what)
        switch elementType(of: ftype) {
        case .string:
            let strings = try readStringValues(count: n, fileType: ftype, what: what) { mt, buf in H5Aread(aid, mt, buf)
            }
            return scalar || strings.count == 1 ? .string(strings.first ?? "") : .strings(strings)
        case .bool:
            var v = [Int64](repeating: 0, count: n)
            guard H5Aread(aid, cka_H5T_NATIVE_INT64(), &v) >= 0 else {
                // An enum can't convert to an integer in HDF5 1.10: read its base bytes instead.
                var bytes = [UInt8](repeating: 0, count: n * Int(H5Tget_size(ftype)))
                _ = hdf5ErrorStack()
                guard H5Aread(aid, ftype, &bytes) >= 0 else { throw failure("read", what) }
                return .bool(bytes.contains { $0 != 0 })
            }
            return .bool(v[0] != 0)
        case .float16, .float32, .float64:
            var v = [Double](repeating: 0, count: n)
            guard H5Aread(aid, cka_H5T_NATIVE_DOUBLE(), &v) >= 0 else { throw failure("read", what) }
            return scalar ? .double(v[0]) : .doubles(v)
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64:
            var v = [Int64](repeating: 0, count: n)
            guard H5Aread(aid, cka_H5T_NATIVE_INT64(), &v) >= 0 else { throw failure("read", what) }
            return scalar ? .int(Int(v[0])) : .ints(v.map { Int($0) })
        case .other(let s):
            throw HDF5Error.wrongType(path: path, object: what, expected: "string, number or bool", got: s)
        }
    }

    /// Every attribute of `object`, by name.
    public func attributes(of object: String = "/") throws -> [String: HDF5AttributeValue] {
        guard object == "/" || exists(object) else { throw HDF5Error.objectNotFound(path: path, object: object) }
        let oid = H5Oopen(fileID, object, cka_H5P_DEFAULT())
        guard oid >= 0 else { throw failure("open", object) }
        defer { H5Oclose(oid) }
        let count = H5Aget_num_attrs(oid)
        var names: [String] = []
        for i in 0..<max(0, Int(count)) {
            let len = H5Aget_name_by_idx(oid, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), nil, 0, cka_H5P_DEFAULT())
            guard len >= 0 else { throw failure("list attributes of", object) }
            var buf = [CChar](repeating: 0, count: Int(len) + 1)
            _ = H5Aget_name_by_idx(oid, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(i), &buf, buf.count, cka_H5P_DEFAULT())
            names.append(String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        var out: [String: HDF5AttributeValue] = [:]
        for name in names {
            // Attributes of unsupported types are left out of the dictionary.
            if let v = try? attribute(name, of: object) { out[name] = v }
        }
        return out
    }

    /// Sets (creates or replaces) attribute `attribute` of `object`.
    public func setAttribute(_ attribute: String, _ value: HDF5AttributeValue, of object: String = "/") throws {
        guard object == "/" || exists(object) else { throw HDF5Error.objectNotFound(path: path, object: object) }
        if H5Aexists_by_name(fileID, object, attribute, cka_H5P_DEFAULT()) > 0 {
            H5Adelete_by_name(fileID, object, attribute, cka_H5P_DEFAULT())
        }
        let what = "attribute \(attribute) of \(object)"
        func create(_ type: hid_t, _ count: Int?, _ write: (hid_t) -> herr_t) throws {
            var dims = [hsize_t(count ?? 1)]
            let space = count == nil ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nil)
            defer { H5Sclose(space) }
            let aid = H5Acreate_by_name(
                fileID, object, attribute, type, space, cka_H5P_DEFAULT(), cka_H5P_DEFAULT(),
                cka_H5P_DEFAULT())
            guard aid >= 0 else { throw failure("create", what) }
            defer { H5Aclose(aid) }
            guard write(aid) >= 0 else { throw failure("write", what) }
        }
        switch value {
        case .string(let s):
            let t = cka_make_vlen_utf8_type()
            defer { H5Tclose(t) }
            try create(t, nil) { aid in withCStringArray([s]) { H5Awrite(aid, t, $0) } }
        case .strings(let s):
            let t = cka_make_vlen_utf8_type()
            defer { H5Tclose(t) }
            try create(t, s.count) { aid in withCStringArray(s) { H5Awrite(aid, t, $0) } }
        case .int(let v):
            var x = Int64(v)
            try create(cka_H5T_STD_I64LE(), nil) { H5Awrite($0, cka_H5T_NATIVE_INT64(), &x) }
        case .ints(let v):
            var x = v.map { Int64($0) }
            try create(cka_H5T_STD_I64LE(), v.count) { H5Awrite($0, cka_H5T_NATIVE_INT64(), &x) }
        case .double(let v):
            var x = v
            try create(cka_H5T_IEEE_F64LE(), nil) { H5Awrite($0, cka_H5T_NATIVE_DOUBLE(), &x) }
        case .doubles(let v):
            var x = v
            try create(cka_H5T_IEEE_F64LE(), v.count) { H5Awrite($0, cka_H5T_NATIVE_DOUBLE(), &x) }
        case .bool(let b):
            // h5py's boolean: an enum over int8 with FALSE = 0, TRUE = 1 (h5py reads it as numpy.bool_).
            let t = H5Tenum_create(cka_H5T_NATIVE_INT8())
            defer { H5Tclose(t) }
            var f: Int8 = 0, tr: Int8 = 1
            H5Tenum_insert(t, "FALSE", &f)
            H5Tenum_insert(t, "TRUE", &tr)
            var x: Int8 = b ? 1 : 0
            try create(t, nil) { H5Awrite($0, t, &x) }
        }
    }

    // MARK: Helpers

    func failure(_ operation: String, _ object: String) -> HDF5Error {
        .operationFailed(operation: operation, path: path, object: object, stack: hdf5ErrorStack())
    }

    func makeFileType(_ type: HDF5ElementType) -> hid_t? {
        switch type {
        case .float16: return cka_make_float16_type()
        case .float32: return H5Tcopy(cka_H5T_IEEE_F32LE())
        case .float64: return H5Tcopy(cka_H5T_IEEE_F64LE())
        case .int64: return H5Tcopy(cka_H5T_STD_I64LE())
        case .uint8: return H5Tcopy(cka_H5T_STD_U8LE())
        default: return nil
        }
    }

    /// Reads `count` strings of file type `fileType` through `read(memType, buffer)`.
    func readStringValues(
        count n: Int, fileType: hid_t, what: String,
        read: (hid_t, UnsafeMutableRawPointer) -> herr_t
    ) throws -> [String] {
        if cka_is_variable_string(fileType) != 0 {
            let mt = cka_make_vlen_utf8_type()
            defer { H5Tclose(mt) }
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
            let ok = ptrs.withUnsafeMutableBytes { read(mt, $0.baseAddress!) }
            guard ok >= 0 else { throw failure("read", what) }
            let strings = ptrs.map { $0.map { String(cString: $0) } ?? "" }
            // Free what HDF5 allocated for each string.
            var dims = [hsize_t(n)]
            let space = H5Screate_simple(1, &dims, nil)
            _ = ptrs.withUnsafeMutableBytes { H5Dvlen_reclaim(mt, space, cka_H5P_DEFAULT(), $0.baseAddress!) }
            H5Sclose(space)
            return strings
        }
        let size = Int(H5Tget_size(fileType))
        try MemoryBudget.check([n, size], elementSize: 2, path: path, object: what)
        let mt = H5Tcopy(fileType)
        defer { H5Tclose(mt) }
        var bytes = [UInt8](repeating: 0, count: max(1, n * size))
        guard bytes.withUnsafeMutableBytes({ read(mt, $0.baseAddress!) }) >= 0 else { throw failure("read", what) }
        return (0..<n).map { i in
            let field = bytes[(i * size)..<((i + 1) * size)]
            let trimmed = field.prefix { $0 != 0 }
            return String(decoding: trimmed, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        }
    }
}

/// The element type of an HDF5 type id.
func elementType(of t: hid_t) -> HDF5ElementType {
    let size = Int(H5Tget_size(t))
    switch H5Tget_class(t) {
    case H5T_FLOAT:
        switch size {
        case 2: return .float16;
        case 4: return .float32;
        case 8: return .float64
        default: return .other("float\(size * 8)")
        }
    case H5T_INTEGER:
        let signed = H5Tget_sign(t) == H5T_SGN_2
        switch (size, signed) {
        case (1, true): return .int8
        case (2, true): return .int16
        case (4, true): return .int32
        case (8, true): return .int64
        case (1, false): return .uint8
        case (2, false): return .uint16
        case (4, false): return .uint32
        case (8, false): return .uint64
        default: return .other("int\(size * 8)")
        }
    case H5T_STRING: return .string
    case H5T_ENUM:
        return H5Tget_nmembers(t) == 2 ? .bool : .other("enum")
    default: return .other("HDF5 class \(H5Tget_class(t).rawValue)")
    }
}

/// Calls `body` with a C array of NUL-terminated copies of `strings`.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafeMutableRawPointer) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    var array = copies
    return array.withUnsafeMutableBytes { body($0.baseAddress!) }
}
