/// The element types the tensor core computes with: `Float` (activations, weights) and `Double`
/// (Gram matrices, HSIC sums, references).
public protocol TensorScalar: BinaryFloatingPoint, Sendable, _BLASScalar {}
extension Float: TensorScalar {}
extension Double: TensorScalar {}

/// Reference-counted memory behind one or more tensors: 64-byte-aligned memory of its own, or memory borrowed
/// from an owner (e.g. float32 weights read in place from a memory-mapped checkpoint).
@usableFromInline
final class TensorStorage<Scalar: TensorScalar>: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutablePointer<Scalar>
    @usableFromInline let capacity: Int
    /// What keeps borrowed memory alive; nil when the storage owns (and frees) `base`. Borrowed memory may be
    /// read-only: it is never written (`Tensor.makeUnique` copies it first) and never reused by `prepare`.
    @usableFromInline let owner: AnyObject?

    @usableFromInline init(capacity: Int) {
        self.capacity = capacity
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: max(capacity, 1) * MemoryLayout<Scalar>.stride, alignment: 64)
        base = raw.bindMemory(to: Scalar.self, capacity: max(capacity, 1))
        owner = nil
    }

    /// `capacity` elements at `base`, which `owner` keeps valid and unchanged for its lifetime.
    init(borrowing base: UnsafePointer<Scalar>, capacity: Int, owner: AnyObject) {
        self.base = UnsafeMutablePointer(mutating: base)
        self.capacity = capacity
        self.owner = owner
    }

    deinit { if owner == nil { UnsafeMutableRawPointer(base).deallocate() } }
}

/// A dense, row-major tensor with value semantics.
///
/// Copies share memory until one of them is mutated (copy-on-write). Row slices along the first
/// axis (`rows(_:)`) and reshapes are views: they copy nothing.
///
/// ```swift
/// var x = Tensor<Float>(shape: [32, 197, 768])       // zeros
/// let batch = x.rows(0..<8)                           // a view, no copy
/// let k = try batch.gram(centered: true)              // [8, 8] Double Gram matrix
/// ```
public struct Tensor<Scalar: TensorScalar>: @unchecked Sendable {
    /// The extent of each axis, outermost first.
    public private(set) var shape: [Int]
    @usableFromInline var storage: TensorStorage<Scalar>
    @usableFromInline var offset: Int

    /// A tensor of zeros.
    @inlinable public init(shape: [Int]) { self.init(shape: shape, repeating: 0) }

    /// A tensor whose every element is `value` (inlinable, so callers fill it with a specialised loop).
    @inlinable public init(shape: [Int], repeating value: Scalar) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in \(shape)")
        let n = shape.reduce(1, *)
        let storage = TensorStorage<Scalar>(capacity: n)
        storage.base.initialize(repeating: value, count: n)
        self.init(shape: shape, storage: storage)
    }

    /// A tensor over freshly filled `storage` of `shape`'s element count.
    @usableFromInline init(shape: [Int], storage: TensorStorage<Scalar>) {
        self.shape = shape
        self.storage = storage
        offset = 0
    }

    /// A tensor holding `scalars` in row-major order.
    /// - Throws: `TensorError.shapeMismatch` if `scalars.count` is not the product of `shape`.
    public init<C: Collection>(shape: [Int], scalars: C) throws where C.Element == Scalar {
        let n = shape.reduce(1, *)
        guard shape.allSatisfy({ $0 >= 0 }), scalars.count == n else {
            throw TensorError.shapeMismatch(
                op: "Tensor(shape:scalars:)", expected: "\(n) scalars for \(describeShape(shape))",
                got: "\(scalars.count) scalars")
        }
        self.shape = shape
        storage = TensorStorage(capacity: n)
        _ = UnsafeMutableBufferPointer(start: storage.base, count: n).initialize(from: scalars)
        offset = 0
    }

    /// A tensor over `scalars` in row-major order without copying them: `owner` keeps the memory valid and
    /// unchanged while any tensor shares it. The memory is never written (a mutation copies it first), so it may be
    /// read-only, such as a float32 parameter in a memory-mapped checkpoint.
    /// - Throws: `TensorError.shapeMismatch` if `scalars.count` is not the product of `shape`.
    public init(shape: [Int], borrowing scalars: UnsafeBufferPointer<Scalar>, owner: AnyObject) throws {
        let n = shape.reduce(1, *)
        guard shape.allSatisfy({ $0 >= 0 }), scalars.count == n, let base = scalars.baseAddress else {
            throw TensorError.shapeMismatch(
                op: "Tensor(shape:borrowing:owner:)", expected: "\(n) scalars for \(describeShape(shape))",
                got: "\(scalars.count) scalars")
        }
        self.init(shape: shape, storage: TensorStorage(borrowing: base, capacity: n, owner: owner))
    }

    /// Whether the elements live in borrowed memory (`init(shape:borrowing:owner:)`) rather than memory of their own.
    public var isBorrowed: Bool { storage.owner != nil }

    /// A tensor whose element at flat (row-major) index `i` is `body(i)`.
    public init(shape: [Int], generating body: (Int) throws -> Scalar) rethrows {
        self.init(shape: shape)
        let p = storage.base
        for i in 0..<count { p[i] = try body(i) }
    }

    /// Number of axes.
    @inlinable public var rank: Int { shape.count }
    /// Number of elements.
    @inlinable public var count: Int { shape.reduce(1, *) }
    /// Extent of the first axis (the number of rows / examples).
    @inlinable public var rowCount: Int { shape.first ?? 1 }
    /// Elements per row: the product of all axes after the first.
    @inlinable public var rowSize: Int { shape.dropFirst().reduce(1, *) }
    /// The elements in row-major order (a copy).
    public var scalars: [Scalar] { withUnsafeBufferPointer { Array($0) } }

    /// Calls `body` with the elements in row-major order.
    @inlinable public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Scalar>) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) {
            try body(UnsafeBufferPointer(start: storage.base + offset, count: count))
        }
    }

    /// Calls `body` with mutable access to the elements, copying them first if they are shared or borrowed.
    @inlinable public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Scalar>) throws -> R
    ) rethrows -> R {
        makeUnique()
        return try withExtendedLifetime(storage) {
            try body(UnsafeMutableBufferPointer(start: storage.base + offset, count: count))
        }
    }

    @inlinable mutating func makeUnique() {
        if storage.owner != nil || !isKnownUniquelyReferenced(&storage) {
            let n = count
            let fresh = TensorStorage<Scalar>(capacity: n)
            fresh.base.initialize(from: storage.base + offset, count: n)
            storage = fresh
            offset = 0
        }
    }

    /// The address of the first element for kernels that work on raw buffers, after making the
    /// storage unique. Valid until `self` is copied, reshaped into another buffer, or goes away.
    @inlinable public mutating func mutablePointer() -> UnsafeMutablePointer<Scalar> {
        makeUnique()
        return storage.base + offset
    }

    /// The address of the first element for reading (valid while `self` holds its storage).
    @inlinable public var pointer: UnsafePointer<Scalar> { UnsafePointer(storage.base + offset) }

    /// The element at a multi-index (bounds are checked; meant for tests and small tensors).
    public subscript(_ index: Int...) -> Scalar {
        get { storage.base[offset + flatIndex(index)] }
        set {
            let i = flatIndex(index)
            makeUnique()
            storage.base[offset + i] = newValue
        }
    }

    func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == shape.count, "index \(index) for shape \(shape)")
        var flat = 0
        for (i, n) in zip(index, shape) {
            precondition(i >= 0 && i < n, "index \(index) out of bounds for shape \(shape)")
            flat = flat * n + i
        }
        return flat
    }

    /// Gives `self` the shape `newShape`, reusing its memory when it is not shared and large enough
    /// (for buffers that are refilled in a loop). The contents are unspecified afterwards.
    public mutating func prepare(shape newShape: [Int]) {
        if shape == newShape { return }
        let n = newShape.reduce(1, *)
        if storage.owner == nil && isKnownUniquelyReferenced(&storage) && storage.capacity >= n {
            shape = newShape
            offset = 0
        } else {
            self = Tensor(shape: newShape)
        }
    }

    /// Rows `range` of the first axis, as a view (no copy).
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(range.lowerBound >= 0 && range.upperBound <= rowCount, "rows \(range) of \(shape)")
        var v = self
        v.offset = offset + range.lowerBound * rowSize
        v.shape[0] = range.count
        return v
    }

    /// The same elements under another shape (no copy).
    /// - Throws: `TensorError.shapeMismatch` if the element counts differ.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        guard newShape.allSatisfy({ $0 >= 0 }), newShape.reduce(1, *) == count else {
            throw TensorError.shapeMismatch(
                op: "reshaped", expected: "\(count) elements",
                got: "\(describeShape(newShape))")
        }
        var v = self
        v.shape = newShape
        return v
    }

    /// A 2-D view `[rowCount, rowSize]`: each example's features as one row.
    public var flattenedRows: Tensor {
        var v = self
        v.shape = [rowCount, rowSize]
        return v
    }

    /// Element-wise conversion to another scalar type.
    @_specialize(exported:true,where Scalar == Float, T == Double)
    @_specialize(exported:true,where Scalar == Double, T == Float)
    @_specialize(exported:true,where Scalar == Float, T == Float)
    public func converted<T: TensorScalar>(to _: T.Type = T.self) -> Tensor<T> {
        var out = Tensor<T>(shape: shape)
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<src.count { dst[i] = T(src[i]) }
            }
        }
        return out
    }

    /// True if no element is NaN or ±Inf.
    /// (Inlinable, so a caller in another module gets a specialised, vectorised loop, not generic witness calls.)
    @inlinable public var isFinite: Bool { Tensor.allFinite(self) }

    @inlinable static func allFinite(_ t: Tensor) -> Bool {
        t.withUnsafeBufferPointer { p in
            // x·0 is 0 for every finite x and NaN for NaN or ±Inf: one vectorisable pass.
            var acc: Scalar = 0
            for x in p { acc += x * 0 }
            return acc == 0
        }
    }
}

extension Tensor: Equatable {
    public static func == (a: Tensor, b: Tensor) -> Bool { a.shape == b.shape && a.scalars == b.scalars }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = withUnsafeBufferPointer { Array($0.prefix(8)) }
        return "Tensor<\(Scalar.self)>\(describeShape(shape))\(head)\(count > 8 ? "…" : "")"
    }
}
