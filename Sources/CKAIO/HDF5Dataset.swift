internal import CHDF5
import CKATensor

/// A dataset in an open `HDF5File`. Reads and writes go along the first axis (rows = examples).
public final class HDF5Dataset {
    /// The file that holds the dataset.
    public let file: HDF5File
    /// The dataset's path inside the file.
    public let name: String
    let handle: HDF5Handle
    /// The current shape (updated by `append`).
    public private(set) var shape: [Int]
    /// The element type on disk.
    public let elementType: HDF5ElementType
    private let fileType: HDF5Handle

    init(file: HDF5File, name: String, handle: HDF5Handle) throws {
        self.file = file
        self.name = name
        self.handle = handle
        let t = H5Dget_type(handle.id)
        guard t >= 0 else { throw file.failure("read type of", name) }
        fileType = HDF5Handle(t) { H5Tclose($0) }
        elementType = CKAIO.elementType(of: t)
        shape = []
        shape = try currentShape()
        guard MemoryBudget.elementCount(shape) != nil else {
            throw HDF5Error.shapeMismatch(
                path: file.path, object: name, expected: "fewer than 2⁶³ elements",
                got: describeShape(shape))
        }
    }

    /// Refuses (before allocating) a read of `shape` elements of `elementSize` bytes that cannot fit in memory.
    private func checkAllocation(_ shape: [Int], elementSize: Int) throws {
        try MemoryBudget.check(shape, elementSize: elementSize, path: file.path, object: name)
    }

    private func currentShape() throws -> [Int] {
        let space = H5Dget_space(handle.id)
        guard space >= 0 else { throw file.failure("read shape of", name) }
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(space, &dims, nil)
        return dims.prefix(rank).map { Int($0) }
    }

    /// Number of rows (extent of the first axis; 1 for a scalar).
    public var rowCount: Int { shape.first ?? 1 }
    /// Shape of one row.
    public var rowShape: [Int] { Array(shape.dropFirst()) }

    /// Chunk shape, or nil for a contiguous dataset.
    public var chunkShape: [Int]? {
        let dcpl = H5Dget_create_plist(handle.id)
        defer { H5Pclose(dcpl) }
        guard H5Pget_layout(dcpl) == H5D_CHUNKED else { return nil }
        var dims = [hsize_t](repeating: 0, count: max(shape.count, 1))
        let r = H5Pget_chunk(dcpl, Int32(dims.count), &dims)
        return r > 0 ? dims.prefix(Int(r)).map { Int($0) } : nil
    }

    /// The file byte offset of every row when the rows lie in the file as plain little-endian float32 — a
    /// contiguous dataset, or allocated chunks that hold whole rows and no filter (what our writer and h5py's
    /// defaults produce) — so they can be used straight from a memory map; nil otherwise (compressed, another
    /// type, chunks split along other axes, unwritten chunks).
    public func float32RowOffsets() -> [Int]? {
        guard elementType == .float32, H5Tequal(fileType.id, cka_H5T_IEEE_F32LE()) > 0, !shape.isEmpty else {
            return nil
        }
        let dcpl = H5Dget_create_plist(handle.id)
        guard dcpl >= 0 else { return nil }
        defer { H5Pclose(dcpl) }
        guard H5Pget_nfilters(dcpl) == 0 else { return nil }
        let n = shape[0], rowBytes = rowShape.reduce(1, *) * 4
        switch H5Pget_layout(dcpl) {
        case H5D_CONTIGUOUS:
            let base = H5Dget_offset(handle.id)
            guard base != cka_HADDR_UNDEF() else { return nil }
            return (0..<n).map { Int(base) + $0 * rowBytes }
        case H5D_CHUNKED:
            guard let chunk = chunkShape, chunk.count == shape.count, Array(chunk.dropFirst()) == rowShape, chunk[0] > 0
            else { return nil }
            var offsets: [Int] = []
            offsets.reserveCapacity(n)
            var coords = [hsize_t](repeating: 0, count: shape.count)
            for start in stride(from: 0, to: n, by: chunk[0]) {
                coords[0] = hsize_t(start)
                var mask: UInt32 = 0, address: haddr_t = 0, size: hsize_t = 0
                guard H5Dget_chunk_info_by_coord(handle.id, coords, &mask, &address, &size) >= 0, mask == 0,
                    address != cka_HADDR_UNDEF(), Int(size) == chunk[0] * rowBytes
                else {
                    _ = hdf5ErrorStack()
                    return nil
                }
                for r in 0..<min(chunk[0], n - start) { offsets.append(Int(address) + r * rowBytes) }
            }
            return offsets
        default:
            return nil
        }
    }

    // MARK: Reading

    /// Rows `rows` (default all) as a `Float` tensor, whatever the stored float type (16/32/64 bits).
    public func readFloat(rows: Range<Int>? = nil) throws -> Tensor<Float> {
        var t = Tensor<Float>(shape: [0])
        try readFloat(rows: rows, into: &t)
        return t
    }

    /// Reads rows into `out`, reusing its memory when it already has the right shape and is not shared.
    public func readFloat(rows: Range<Int>? = nil, into out: inout Tensor<Float>) throws {
        let r = try checkedRows(rows)
        try readFloat(selection: r, axis1: nil, into: &out)
    }

    /// Reads rows `rows` and, along the second axis, only `axis1` (e.g. a range of tokens of an
    /// `[N, T, D]` layer, or of features of `[N, D]`) into `out` (`[rows, axis1.count, …]`).
    public func readFloat(rows: Range<Int>, axis1: Range<Int>, into out: inout Tensor<Float>) throws {
        let r = try checkedRows(rows)
        guard shape.count >= 2, axis1.lowerBound >= 0, axis1.upperBound <= shape[1] else {
            throw HDF5Error.shapeMismatch(
                path: file.path, object: name, expected: "a second axis covering \(axis1)",
                got: describeShape(shape))
        }
        try readFloat(selection: r, axis1: axis1, into: &out)
    }

    /// Reads the rows listed in `indices` (any order, repeats allowed) into `out` (`[indices.count] + rowShape`).
    public func readFloat(rowIndices indices: [Int], into out: inout Tensor<Float>) throws {
        try checkAllocation([indices.count] + rowShape, elementSize: 4)
        out.prepare(shape: [indices.count] + rowShape)
        var row = Tensor<Float>(shape: [0])
        for (k, i) in indices.enumerated() {
            try readFloat(selection: try checkedRows(i..<i + 1), axis1: nil, into: &row)
            try out.setRows(k..<k + 1, from: row)
        }
    }

    private func readFloat(selection r: Range<Int>, axis1: Range<Int>?, into out: inout Tensor<Float>) throws {
        var target = [r.count] + rowShape
        if let axis1 { target[1] = axis1.count }
        try checkAllocation(target, elementSize: elementType == .float16 ? 6 : 4)
        out.prepare(shape: target)
        switch elementType {
        case .float16:
            var bits = [UInt16](repeating: 0, count: out.count)
            try bits.withUnsafeMutableBytes {
                try read(rows: r, axis1: axis1, memType: fileType.id, into: $0.baseAddress!)
            }
            bits.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { Float16Storage.decode(b, into: $0) }
            }
        case .float32, .float64:
            try out.withUnsafeMutableBufferPointer { p in
                guard let base = p.baseAddress else { return }
                try read(rows: r, axis1: axis1, memType: cka_H5T_NATIVE_FLOAT(), into: base)
            }
        default:
            throw HDF5Error.wrongType(
                path: file.path, object: name, expected: "float16, float32 or float64",
                got: "\(elementType)")
        }
    }

    /// Rows `rows` (default all) as a `Double` tensor (float32/float64 and integer data convert).
    public func readDouble(rows: Range<Int>? = nil) throws -> Tensor<Double> {
        if elementType == .float16 { return try readFloat(rows: rows).converted(to: Double.self) }
        guard elementType.isFloat || isInteger else {
            throw HDF5Error.wrongType(path: file.path, object: name, expected: "a numeric type", got: "\(elementType)")
        }
        let r = try checkedRows(rows)
        try checkAllocation([r.count] + rowShape, elementSize: 8)
        var out = Tensor<Double>(shape: [r.count] + rowShape)
        try out.withUnsafeMutableBufferPointer { p in
            guard let base = p.baseAddress else { return }
            try read(rows: r, memType: cka_H5T_NATIVE_DOUBLE(), into: base)
        }
        return out
    }

    /// All elements as `Int64` (integer datasets; HDF5 converts narrower integer types).
    public func readInt64() throws -> [Int64] {
        guard isInteger || elementType == .bool else {
            throw HDF5Error.wrongType(path: file.path, object: name, expected: "an integer type", got: "\(elementType)")
        }
        try checkAllocation(shape, elementSize: 8)
        var out = [Int64](repeating: 0, count: shape.reduce(1, *))
        if out.isEmpty { return out }
        try out.withUnsafeMutableBytes {
            try read(rows: 0..<rowCount, memType: cka_H5T_NATIVE_INT64(), into: $0.baseAddress!)
        }
        return out
    }

    /// All elements as `UInt8` (uint8 / bool datasets).
    public func readUInt8() throws -> [UInt8] {
        guard isInteger || elementType == .bool else {
            throw HDF5Error.wrongType(path: file.path, object: name, expected: "an integer type", got: "\(elementType)")
        }
        try checkAllocation(shape, elementSize: 1)
        var out = [UInt8](repeating: 0, count: shape.reduce(1, *))
        if out.isEmpty { return out }
        try out.withUnsafeMutableBytes {
            try read(rows: 0..<rowCount, memType: cka_H5T_NATIVE_UINT8(), into: $0.baseAddress!)
        }
        return out
    }

    /// All elements of a 1-D string dataset.
    public func readStrings() throws -> [String] {
        quietHDF5OnThisThread()
        guard elementType == .string else {
            throw HDF5Error.wrongType(path: file.path, object: name, expected: "strings", got: "\(elementType)")
        }
        // A pointer per string while reading, then a Swift String (16 bytes and up) each.
        try checkAllocation(shape, elementSize: 32)
        let n = shape.reduce(1, *)
        if n == 0 { return [] }
        return try file.readStringValues(count: n, fileType: fileType.id, what: name) { mt, buf in
            H5Dread(handle.id, mt, cka_H5S_ALL(), cka_H5S_ALL(), cka_H5P_DEFAULT(), buf)
        }
    }

    private var isInteger: Bool {
        switch elementType {
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64: return true
        default: return false
        }
    }

    private func checkedRows(_ rows: Range<Int>?) throws -> Range<Int> {
        let r = rows ?? 0..<rowCount
        guard r.lowerBound >= 0, r.upperBound <= rowCount else {
            throw HDF5Error.shapeMismatch(
                path: file.path, object: name, expected: "rows \(r.lowerBound)..<\(r.upperBound)",
                got: describeShape(shape))
        }
        return r
    }

    /// The file dataspace with rows `r` selected, and a matching memory dataspace.
    private func selection(rows r: Range<Int>, axis1: Range<Int>? = nil) throws -> (file: hid_t, mem: hid_t) {
        let fspace = H5Dget_space(handle.id)
        guard fspace >= 0 else { throw file.failure("read shape of", name) }
        if shape.isEmpty { return (fspace, H5Screate(H5S_SCALAR)) }
        var start = [hsize_t](repeating: 0, count: shape.count)
        var count = shape.map { hsize_t($0) }
        start[0] = hsize_t(r.lowerBound)
        count[0] = hsize_t(r.count)
        if let axis1 {
            start[1] = hsize_t(axis1.lowerBound)
            count[1] = hsize_t(axis1.count)
        }
        guard H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nil, count, nil) >= 0 else {
            H5Sclose(fspace)
            throw file.failure("select rows of", name)
        }
        let mspace = H5Screate_simple(Int32(count.count), count, nil)
        return (fspace, mspace)
    }

    private func read(
        rows r: Range<Int>, axis1: Range<Int>? = nil, memType: hid_t,
        into buffer: UnsafeMutableRawPointer
    ) throws {
        quietHDF5OnThisThread()
        if r.isEmpty || shape.contains(0) || axis1?.isEmpty == true { return }
        let (fspace, mspace) = try selection(rows: r, axis1: axis1)
        defer { H5Sclose(fspace); H5Sclose(mspace) }
        guard H5Dread(handle.id, memType, mspace, fspace, cka_H5P_DEFAULT(), buffer) >= 0 else {
            throw file.failure("read", name)
        }
    }

    // MARK: Writing

    /// Appends `batch` (shape `[b] + rowShape`) along the first axis of an extendable dataset.
    public func append(_ batch: Tensor<Float>) throws {
        let start = rowCount
        try extend(by: batch.rowCount, rowShapeOf: batch.shape)
        try write(batch, atRow: start)
    }

    /// Appends `batch` (shape `[b] + rowShape`) along the first axis of an extendable dataset.
    public func append(_ batch: Tensor<Double>) throws {
        let start = rowCount
        try extend(by: batch.rowCount, rowShapeOf: batch.shape)
        try write(batch, atRow: start)
    }

    private func extend(by n: Int, rowShapeOf batchShape: [Int]) throws {
        guard Array(batchShape.dropFirst()) == rowShape, !shape.isEmpty else {
            throw HDF5Error.shapeMismatch(
                path: file.path, object: name, expected: "[b] + \(describeShape(rowShape))",
                got: describeShape(batchShape))
        }
        var dims = shape.map { hsize_t($0) }
        dims[0] += hsize_t(n)
        guard H5Dset_extent(handle.id, dims) >= 0 else { throw file.failure("extend", name) }
        shape[0] += n
    }

    /// Writes `values` into rows `row ..< row + values.rowCount` (converted to the stored type).
    public func write(_ values: Tensor<Float>, atRow row: Int = 0) throws {
        try checkWrite(values.shape, row)
        if values.count == 0 { return }
        if elementType == .float16 {
            var bits = [UInt16](repeating: 0, count: values.count)
            values.withUnsafeBufferPointer { v in
                bits.withUnsafeMutableBufferPointer { Float16Storage.encode(v, into: $0) }
            }
            try bits.withUnsafeBytes {
                try write(rows: row..<row + values.rowCount, memType: fileType.id, UnsafeRawPointer($0.baseAddress!))
            }
        } else {
            try values.withUnsafeBufferPointer {
                try write(
                    rows: row..<row + values.rowCount, memType: cka_H5T_NATIVE_FLOAT(),
                    UnsafeRawPointer($0.baseAddress!))
            }
        }
    }

    /// Writes `values` into rows `row ..< row + values.rowCount` (converted to the stored type).
    public func write(_ values: Tensor<Double>, atRow row: Int = 0) throws {
        if elementType == .float16 { return try write(values.converted(to: Float.self), atRow: row) }
        try checkWrite(values.shape, row)
        if values.count == 0 { return }
        try values.withUnsafeBufferPointer {
            try write(
                rows: row..<row + values.rowCount, memType: cka_H5T_NATIVE_DOUBLE(), UnsafeRawPointer($0.baseAddress!))
        }
    }

    /// Writes all elements of an integer dataset.
    public func write(_ values: [Int64]) throws {
        try checkWrite(shape, 0, count: values.count)
        if values.isEmpty { return }
        try values.withUnsafeBytes { try write(rows: 0..<rowCount, memType: cka_H5T_NATIVE_INT64(), $0.baseAddress!) }
    }

    /// Writes all elements of a uint8 dataset.
    public func write(_ values: [UInt8]) throws {
        try checkWrite(shape, 0, count: values.count)
        if values.isEmpty { return }
        try values.withUnsafeBytes { try write(rows: 0..<rowCount, memType: cka_H5T_NATIVE_UINT8(), $0.baseAddress!) }
    }

    private func checkWrite(_ valueShape: [Int], _ row: Int, count: Int? = nil) throws {
        if let count {
            guard count == shape.reduce(1, *) else {
                throw HDF5Error.shapeMismatch(
                    path: file.path, object: name, expected: describeShape(shape), got: "\(count) values")
            }
            return
        }
        let rows = valueShape.first ?? 1
        guard Array(valueShape.dropFirst()) == rowShape, row >= 0, row + rows <= rowCount else {
            throw HDF5Error.shapeMismatch(
                path: file.path, object: name,
                expected: "rows within \(describeShape(shape))",
                got: "\(describeShape(valueShape)) at row \(row)")
        }
    }

    private func write(rows r: Range<Int>, memType: hid_t, _ buffer: UnsafeRawPointer) throws {
        quietHDF5OnThisThread()
        let (fspace, mspace) = try selection(rows: r)
        defer { H5Sclose(fspace); H5Sclose(mspace) }
        guard H5Dwrite(handle.id, memType, mspace, fspace, cka_H5P_DEFAULT(), buffer) >= 0 else {
            throw file.failure("write", name)
        }
    }
}
