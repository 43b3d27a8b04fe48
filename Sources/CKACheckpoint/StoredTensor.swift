import CKATensor

/// A tensor as it sits in a checkpoint file: dtype, shape, strides and a byte range of the mapped file.
///
/// Nothing is copied until one of the conversion methods is called. The layout was validated when the value
/// was made (every element lies inside its storage, which lies inside the file), so the conversions cannot read
/// out of bounds.
public struct StoredTensor: Sendable, CustomStringConvertible {
    /// Element type in the file.
    public let dtype: DType
    /// Extent of each axis, outermost first.
    public let shape: [Int]
    /// Step between neighbours along each axis, in elements (row-major contiguous unless the file says otherwise).
    public let strides: [Int]
    /// Offset of the first element from the start of the storage, in elements.
    public let storageOffset: Int
    /// Identifies the storage (e.g. `archive/data/3` or the safetensors tensor name); equal for shared storages.
    public let storageID: String
    /// Name used in error messages.
    public let name: String

    let file: MappedFile
    /// Byte offset of the storage in the file, and its length in bytes.
    let storageByteOffset: Int
    let storageByteCount: Int

    /// Number of elements.
    public var elementCount: Int { shape.reduce(1, *) }
    /// Bytes of the elements (`elementCount · dtype.byteSize`).
    public var byteCount: Int { elementCount * dtype.byteSize }
    /// True if the elements are laid out row-major without gaps.
    public var isContiguous: Bool { strides == StoredTensor.contiguousStrides(shape) || elementCount <= 1 }

    /// Row-major strides of `shape`.
    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            s[i] = acc
            acc = acc &* max(shape[i], 1)
        }
        return s
    }

    /// Most elements a tensor may have when it reads storage elements more than once (stride 0, overlaps).
    static let maxOverlappingElements = 1 << 24

    /// Validates a layout against its storage; throws `invalidTensor` / `limitExceeded` if it does not fit.
    init(
        name: String, dtype: DType, shape: [Int], strides: [Int]? = nil, storageOffset: Int = 0,
        file: MappedFile, storageByteOffset: Int, storageByteCount: Int, storageID: String
    ) throws {
        let strides = strides ?? StoredTensor.contiguousStrides(shape)
        let fileName = file.name
        func bad(_ expected: String, _ found: String) -> CheckpointError {
            .invalidTensor(file: fileName, name: name, expected: expected, found: found)
        }
        guard shape.count <= 64 else { throw bad("at most 64 dimensions", "\(shape.count)") }
        guard strides.count == shape.count else {
            throw bad("one stride per dimension (\(shape.count))", "\(strides.count) strides")
        }
        guard shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }), storageOffset >= 0 else {
            throw bad(
                "non-negative sizes, strides and offset", "size \(shape), stride \(strides), offset \(storageOffset)")
        }
        guard storageByteOffset >= 0, storageByteCount >= 0, storageByteOffset <= file.count,
            storageByteCount <= file.count - storageByteOffset
        else {
            throw bad(
                "a storage inside the file (\(file.count) bytes)",
                "bytes \(storageByteOffset)..<\(storageByteOffset &+ storageByteCount)")
        }
        guard let numel = checkedProduct(shape) else {
            throw bad("an element count that fits in 64 bits", "size \(shape)")
        }
        let storageElements = storageByteCount / dtype.byteSize
        if numel > 0 {
            var last = storageOffset
            for (n, s) in zip(shape, strides) {
                guard let step = checkedMul(n - 1, s), let l = checkedAdd(last, step) else {
                    throw bad("strides that fit in 64 bits", "size \(shape), stride \(strides)")
                }
                last = l
            }
            guard last < storageElements else {
                throw bad(
                    "elements inside the storage (\(storageElements) \(dtype.rawValue) elements)",
                    "size \(shape), stride \(strides), offset \(storageOffset) reaching element \(last)")
            }
            if numel > storageElements && numel > StoredTensor.maxOverlappingElements {
                throw CheckpointError.limitExceeded(
                    file: fileName, offset: storageByteOffset,
                    what: "elements of '\(name)' (\(numel)) overlapping a storage of \(storageElements)",
                    limit: StoredTensor.maxOverlappingElements)
            }
        }
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.strides = strides
        self.storageOffset = storageOffset
        self.file = file
        self.storageByteOffset = storageByteOffset
        self.storageByteCount = storageByteCount
        self.storageID = storageID
    }

    /// The same tensor under another name (for key mapping).
    public func renamed(_ newName: String) -> StoredTensor { StoredTensor(copying: self, name: newName) }

    private init(copying t: StoredTensor, name: String) {
        dtype = t.dtype; shape = t.shape; strides = t.strides; storageOffset = t.storageOffset
        storageID = t.storageID; file = t.file; storageByteOffset = t.storageByteOffset
        storageByteCount = t.storageByteCount; self.name = name
    }

    public var description: String { "\(name): \(dtype.rawValue)\(describeShape(shape))" }

    // MARK: - Conversions

    /// Whether `floatTensor()` reads the elements in place: contiguous little-endian float32 at a float-aligned
    /// address (torch's 64-byte aligned records and safetensors' padded headers make them so).
    var isBorrowable: Bool {
        #if _endian(little)
            guard dtype == .float32 && isContiguous && elementCount > 0 else { return false }
            let start = storageByteOffset + storageOffset * dtype.byteSize
            return file.withUnsafeBytes { raw in
                Int(bitPattern: raw.baseAddress! + start) % MemoryLayout<Float>.alignment == 0
            }
        #else
            return false
        #endif
    }

    /// The elements as a `Tensor<Float>`: float32 in place when `isBorrowable` (no copy: the tensor keeps the
    /// mapped file alive and copies on its first mutation), otherwise converted (float16, bfloat16, float64,
    /// float8, integers and booleans) or gathered into row-major order (non-contiguous layouts).
    public func floatTensor() throws -> Tensor<Float> {
        let start = storageByteOffset + storageOffset * dtype.byteSize
        if isBorrowable {
            let file = file, n = elementCount
            return try file.withUnsafeBytes { raw in
                let p = (raw.baseAddress! + start).assumingMemoryBound(to: Float.self)
                return try Tensor<Float>(shape: shape, borrowing: UnsafeBufferPointer(start: p, count: n), owner: file)
            }
        }
        file.prefault(
            offset: start, count: isContiguous ? byteCount : storageByteCount - storageOffset * dtype.byteSize)
        var out = Tensor<Float>(shape: shape)
        guard elementCount > 0 else { return out }
        out.withUnsafeMutableBufferPointer { dst in
            file.withUnsafeBytes { raw in
                let storage = raw.baseAddress! + storageByteOffset
                forEachRun { srcElement, dstIndex, n, step in
                    StoredTensor.convert(
                        dtype, from: storage + srcElement * dtype.byteSize, count: n,
                        elementStride: step, into: dst.baseAddress! + dstIndex)
                }
            }
        }
        return out
    }

    /// Releases the mapped pages of this tensor's storage (see `MappedFile.releasePages`) once they were converted
    /// into a tensor of their own; values are unaffected. A no-op for a borrowable tensor, read in place.
    func releaseMappedPages() {
        guard !isBorrowable else { return }
        file.releasePages(offset: storageByteOffset, count: storageByteCount)
    }

    /// The elements as 64-bit integers (integer and boolean dtypes only).
    public func int64Values() throws -> [Int64] {
        guard !dtype.isFloatingPoint else {
            throw CheckpointError.unsupportedDType(
                file: file.name, name: name, dtype: dtype.rawValue,
                expected: "an integer or boolean dtype")
        }
        var out = [Int64](repeating: 0, count: elementCount)
        guard elementCount > 0 else { return out }
        let size = dtype.byteSize, dt = dtype
        out.withUnsafeMutableBufferPointer { dst in
            file.withUnsafeBytes { raw in
                let storage = raw.baseAddress! + storageByteOffset
                forEachRun { srcElement, dstIndex, n, step in
                    var p = storage + srcElement * size
                    for i in 0..<n {
                        let v: Int64
                        switch dt {
                        case .int64: v = Int64(littleEndian: p.loadUnaligned(as: Int64.self))
                        case .uint64: v = Int64(bitPattern: UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
                        case .int32: v = Int64(Int32(littleEndian: p.loadUnaligned(as: Int32.self)))
                        case .uint32: v = Int64(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
                        case .int16: v = Int64(Int16(littleEndian: p.loadUnaligned(as: Int16.self)))
                        case .uint16: v = Int64(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
                        case .int8: v = Int64(p.load(as: Int8.self))
                        case .uint8: v = Int64(p.load(as: UInt8.self))
                        case .bool: v = p.load(as: UInt8.self) != 0 ? 1 : 0
                        default: v = 0
                        }
                        dst[dstIndex + i] = v
                        p += step * size
                    }
                }
            }
        }
        return out
    }

    /// The elements' bytes in row-major order, in the file's dtype (little-endian), e.g. for writing safetensors.
    public func contiguousBytes() -> [UInt8] {
        let size = dtype.byteSize
        var out = [UInt8](repeating: 0, count: elementCount * size)
        guard elementCount > 0 else { return out }
        out.withUnsafeMutableBytes { dst in
            file.withUnsafeBytes { raw in
                let storage = raw.baseAddress! + storageByteOffset
                forEachRun { srcElement, dstIndex, n, step in
                    if step == 1 {
                        (dst.baseAddress! + dstIndex * size).copyMemory(
                            from: storage + srcElement * size,
                            byteCount: n * size)
                    } else {
                        for i in 0..<n {
                            (dst.baseAddress! + (dstIndex + i) * size).copyMemory(
                                from: storage + (srcElement + i * step) * size, byteCount: size)
                        }
                    }
                }
            }
        }
        return out
    }

    /// Calls `body(sourceElement, destinationIndex, count, sourceStep)` for runs along the last axis (or one
    /// run for a contiguous tensor), in row-major destination order.
    private func forEachRun(_ body: (Int, Int, Int, Int) -> Void) {
        let n = elementCount
        if isContiguous {
            body(storageOffset, 0, n, 1)
            return
        }
        let rank = shape.count
        let inner = shape[rank - 1], innerStride = strides[rank - 1]
        var index = [Int](repeating: 0, count: rank - 1)
        var src = storageOffset, dst = 0
        while dst < n {
            body(src, dst, inner, innerStride)
            dst += inner
            // Odometer over the outer axes.
            var axis = rank - 2
            while axis >= 0 {
                index[axis] += 1
                src += strides[axis]
                if index[axis] < shape[axis] { break }
                src -= strides[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
            if axis < 0 { break }
        }
    }

    /// Converts `count` elements of `dtype` starting at `src`, `elementStride` elements apart, to `Float`.
    static func convert(
        _ dtype: DType, from src: UnsafeRawPointer, count: Int, elementStride: Int,
        into dst: UnsafeMutablePointer<Float>
    ) {
        let size = dtype.byteSize
        if dtype == .float32 && elementStride == 1 {
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
            #if _endian(big)
                for i in 0..<count { dst[i] = Float(bitPattern: UInt32(littleEndian: dst[i].bitPattern)) }
            #endif
            return
        }
        let step = elementStride * size
        var p = src
        switch dtype {
        case .float32:
            for i in 0..<count {
                dst[i] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))); p += step
            }
        case .float16:
            for i in 0..<count {
                dst[i] = Float(halfBits: UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))); p += step
            }
        case .bfloat16:
            for i in 0..<count {
                dst[i] = Float(bitPattern: UInt32(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))) << 16);
                p += step
            }
        case .float64:
            for i in 0..<count {
                dst[i] = Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))); p += step
            }
        case .float8E5M2:
            for i in 0..<count { dst[i] = Float(halfBits: UInt16(p.load(as: UInt8.self)) << 8); p += step }
        case .float8E4M3:
            for i in 0..<count { dst[i] = float8E4M3FN(p.load(as: UInt8.self)); p += step }
        case .int64:
            for i in 0..<count { dst[i] = Float(Int64(littleEndian: p.loadUnaligned(as: Int64.self))); p += step }
        case .uint64:
            for i in 0..<count { dst[i] = Float(UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))); p += step }
        case .int32:
            for i in 0..<count { dst[i] = Float(Int32(littleEndian: p.loadUnaligned(as: Int32.self))); p += step }
        case .uint32:
            for i in 0..<count { dst[i] = Float(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))); p += step }
        case .int16:
            for i in 0..<count { dst[i] = Float(Int16(littleEndian: p.loadUnaligned(as: Int16.self))); p += step }
        case .uint16:
            for i in 0..<count { dst[i] = Float(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))); p += step }
        case .int8:
            for i in 0..<count { dst[i] = Float(p.load(as: Int8.self)); p += step }
        case .uint8:
            for i in 0..<count { dst[i] = Float(p.load(as: UInt8.self)); p += step }
        case .bool:
            for i in 0..<count { dst[i] = p.load(as: UInt8.self) != 0 ? 1 : 0; p += step }
        }
    }

    /// float8 e4m3fn (bias 7, no infinities, S.1111.111 is NaN).
    static func float8E4M3FN(_ b: UInt8) -> Float {
        let sign: Float = (b & 0x80) != 0 ? -1 : 1
        let exp = Int((b >> 3) & 0xf), mant = Float(b & 0x7)
        if exp == 0xf && (b & 0x7) == 0x7 { return .nan }
        if exp == 0 { return sign * mant * 0x1p-9 }
        return sign * (1 + mant / 8) * Float(sign: .plus, exponent: exp - 7, significand: 1)
    }
}
