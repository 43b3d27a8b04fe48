internal import CBLAS
internal import CGramKernel
import Dispatch

/// BLAS entry points for each scalar type (row-major throughout). Implementation detail of the
/// tensor core: use the `Tensor` operations instead.
public protocol _BLASScalar {
    static func _gemm(
        _ ta: Bool, _ tb: Bool, _ m: Int32, _ n: Int32, _ k: Int32, _ alpha: Self,
        _ a: UnsafePointer<Self>, _ lda: Int32, _ b: UnsafePointer<Self>, _ ldb: Int32,
        _ beta: Self, _ c: UnsafeMutablePointer<Self>, _ ldc: Int32)
    static func _syrk(
        _ n: Int32, _ k: Int32, _ a: UnsafePointer<Self>, _ lda: Int32, _ beta: Self,
        _ c: UnsafeMutablePointer<Self>, _ ldc: Int32)
    static func _gemv(
        _ t: Bool, _ m: Int32, _ n: Int32, _ alpha: Self, _ a: UnsafePointer<Self>, _ lda: Int32,
        _ x: UnsafePointer<Self>, _ beta: Self, _ y: UnsafeMutablePointer<Self>)
    static func _ger(
        _ m: Int32, _ n: Int32, _ alpha: Self, _ x: UnsafePointer<Self>, _ y: UnsafePointer<Self>,
        _ a: UnsafeMutablePointer<Self>, _ lda: Int32)
}

@inline(__always) private func op(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

extension Float: _BLASScalar {
    public static func _gemm(
        _ ta: Bool, _ tb: Bool, _ m: Int32, _ n: Int32, _ k: Int32, _ alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int32, _ b: UnsafePointer<Float>, _ ldb: Int32,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int32
    ) {
        cblas_sgemm(CblasRowMajor, op(ta), op(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
    public static func _syrk(
        _ n: Int32, _ k: Int32, _ a: UnsafePointer<Float>, _ lda: Int32, _ beta: Float,
        _ c: UnsafeMutablePointer<Float>, _ ldc: Int32
    ) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, k, 1, a, lda, beta, c, ldc)
    }
    public static func _gemv(
        _ t: Bool, _ m: Int32, _ n: Int32, _ alpha: Float, _ a: UnsafePointer<Float>,
        _ lda: Int32, _ x: UnsafePointer<Float>, _ beta: Float, _ y: UnsafeMutablePointer<Float>
    ) {
        cblas_sgemv(CblasRowMajor, op(t), m, n, alpha, a, lda, x, 1, beta, y, 1)
    }
    public static func _ger(
        _ m: Int32, _ n: Int32, _ alpha: Float, _ x: UnsafePointer<Float>,
        _ y: UnsafePointer<Float>, _ a: UnsafeMutablePointer<Float>, _ lda: Int32
    ) {
        cblas_sger(CblasRowMajor, m, n, alpha, x, 1, y, 1, a, lda)
    }
}

extension Double: _BLASScalar {
    public static func _gemm(
        _ ta: Bool, _ tb: Bool, _ m: Int32, _ n: Int32, _ k: Int32, _ alpha: Double,
        _ a: UnsafePointer<Double>, _ lda: Int32, _ b: UnsafePointer<Double>, _ ldb: Int32,
        _ beta: Double, _ c: UnsafeMutablePointer<Double>, _ ldc: Int32
    ) {
        cblas_dgemm(CblasRowMajor, op(ta), op(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
    public static func _syrk(
        _ n: Int32, _ k: Int32, _ a: UnsafePointer<Double>, _ lda: Int32, _ beta: Double,
        _ c: UnsafeMutablePointer<Double>, _ ldc: Int32
    ) {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, k, 1, a, lda, beta, c, ldc)
    }
    public static func _gemv(
        _ t: Bool, _ m: Int32, _ n: Int32, _ alpha: Double, _ a: UnsafePointer<Double>,
        _ lda: Int32, _ x: UnsafePointer<Double>, _ beta: Double, _ y: UnsafeMutablePointer<Double>
    ) {
        cblas_dgemv(CblasRowMajor, op(t), m, n, alpha, a, lda, x, 1, beta, y, 1)
    }
    public static func _ger(
        _ m: Int32, _ n: Int32, _ alpha: Double, _ x: UnsafePointer<Double>,
        _ y: UnsafePointer<Double>, _ a: UnsafeMutablePointer<Double>, _ lda: Int32
    ) {
        cblas_dger(CblasRowMajor, m, n, alpha, x, 1, y, 1, a, lda)
    }
}

/// Converts a dimension to BLAS's 32-bit integer, or throws.
@inline(__always) func blasInt(_ v: Int, _ op: String) throws -> Int32 {
    guard let r = Int32(exactly: v) else { throw TensorError.dimensionTooLarge(op: op, value: v) }
    return r
}

/// The number of threads OpenBLAS uses now (set `OPENBLAS_NUM_THREADS` to change it at start-up).
public var blasThreadCount: Int { Int(openblas_get_num_threads()) }
/// Sets the number of threads OpenBLAS uses outside any `withBLASThreads` scope (the process's base count;
/// inside scopes, the smallest count asked for stays in force until the last scope ends).
public func setBLASThreadCount(_ n: Int) { BLASThreadScopes.shared.setBase(max(1, n)) }
/// The OpenBLAS kernel family chosen for this CPU (e.g. "Cooperlake", "Haswell").
public var blasCoreName: String { String(cString: openblas_get_corename()) }

extension Tensor {
    /// Matrix product `C = alpha·op(A)·op(B) + beta·C` of 2-D tensors, where `op` transposes when asked.
    ///
    /// `a` is `[m, k]` (or `[k, m]` with `transposeA`), `b` is `[k, n]` (or `[n, k]` with `transposeB`),
    /// and `c` must be `[m, n]`. Row-major: the leading dimension of each matrix is its column count.
    /// - Throws: `TensorError.shapeMismatch` when the shapes do not fit.
    @_specialize(exported:true,where Scalar == Float)
    @_specialize(exported:true,where Scalar == Double)
    public static func gemm(
        _ a: Tensor, transposeA: Bool = false, _ b: Tensor, transposeB: Bool = false,
        alpha: Scalar = 1, beta: Scalar = 0, into c: inout Tensor
    ) throws {
        let name = "gemm"
        guard a.rank == 2, b.rank == 2, c.rank == 2 else {
            throw TensorError.shapeMismatch(
                op: name, expected: "2-D operands",
                got: "\(describeShape(a.shape)), \(describeShape(b.shape)), \(describeShape(c.shape))")
        }
        let (m, k) = transposeA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let (k2, n) = transposeB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == k2, c.shape == [m, n] else {
            throw TensorError.shapeMismatch(
                op: name, expected: "op(A) [m, k] · op(B) [k, n] → C [m, n]",
                got: "op(A) [\(m), \(k)] · op(B) [\(k2), \(n)] → C \(describeShape(c.shape))")
        }
        if m == 0 || n == 0 { return }
        let (M, N, K) = (try blasInt(m, name), try blasInt(n, name), try blasInt(k, name))
        let lda = try blasInt(a.shape[1], name), ldb = try blasInt(b.shape[1], name)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    if k == 0 {
                        // As BLAS: beta = 0 overwrites (a NaN in C must not survive).
                        for i in 0..<pc.count { pc[i] = beta == 0 ? 0 : beta * pc[i] }
                        return
                    }
                    Scalar._gemm(
                        transposeA, transposeB, M, N, K, alpha, pa.baseAddress!, lda,
                        pb.baseAddress!, ldb, beta, pc.baseAddress!, N)
                }
            }
        }
    }

    /// The matrix product `op(self) · op(other)` as a new tensor.
    @_specialize(exported:true,where Scalar == Float)
    @_specialize(exported:true,where Scalar == Double)
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) throws -> Tensor {
        guard rank == 2, other.rank == 2 else {
            throw TensorError.shapeMismatch(
                op: "matmul", expected: "2-D operands",
                got: "\(describeShape(shape)), \(describeShape(other.shape))")
        }
        let m = transposeSelf ? shape[1] : shape[0]
        let n = transposeOther ? other.shape[0] : other.shape[1]
        var c = Tensor(shape: [m, n])
        try Tensor.gemm(self, transposeA: transposeSelf, other, transposeB: transposeOther, into: &c)
        return c
    }

    /// Batched matrix product: `a` is `[batch, m, k]`; `b` is `[batch, k, n]` or a shared `[k, n]`
    /// (transposes as in `gemm`). Returns `[batch, m, n]`. One BLAS call per batch entry.
    public static func batchedMatmul(
        _ a: Tensor, transposeA: Bool = false, _ b: Tensor,
        transposeB: Bool = false, alpha: Scalar = 1
    ) throws -> Tensor {
        guard a.rank == 3, b.rank == 3 || b.rank == 2, b.rank == 2 || b.shape[0] == a.shape[0] else {
            throw TensorError.shapeMismatch(
                op: "batchedMatmul", expected: "[B, m, k] and [B, k, n] or [k, n]",
                got: "\(describeShape(a.shape)), \(describeShape(b.shape))")
        }
        let batch = a.shape[0]
        let aMat = Array(a.shape[1...]), bMat = Array(b.shape.suffix(2))
        let m = transposeA ? aMat[1] : aMat[0]
        let n = transposeB ? bMat[0] : bMat[1]
        var out = Tensor(shape: [batch, m, n])
        var c = Tensor(shape: [m, n])
        for i in 0..<batch {
            let ai = try a.rows(i..<i + 1).reshaped(aMat)
            let bi = b.rank == 2 ? b : try b.rows(i..<i + 1).reshaped(bMat)
            try gemm(ai, transposeA: transposeA, bi, transposeB: transposeB, alpha: alpha, into: &c)
            try out.setRows(i..<i + 1, from: c.reshaped([1, m, n]))
        }
        return out
    }

    /// Copies `source` into rows `range` of `self` (same shape apart from the first axis).
    @_specialize(exported:true,where Scalar == Float)
    @_specialize(exported:true,where Scalar == Double)
    public mutating func setRows(_ range: Range<Int>, from source: Tensor) throws {
        guard source.rowCount == range.count, source.rowSize == rowSize, range.upperBound <= rowCount else {
            throw TensorError.shapeMismatch(
                op: "setRows", expected: "\(range.count) rows of \(rowSize)",
                got: describeShape(source.shape))
        }
        let start = range.lowerBound * rowSize
        source.withUnsafeBufferPointer { src in
            withUnsafeMutableBufferPointer { dst in
                guard let s = src.baseAddress, let d = dst.baseAddress else { return }
                (d + start).update(from: s, count: src.count)
            }
        }
    }

    /// Sums over the first axis: for `[n, d]` (or `[n, …]`, flattened) returns `[d]`.
    @_specialize(exported:true,where Scalar == Float)
    @_specialize(exported:true,where Scalar == Double)
    public func columnSums() throws -> Tensor {
        let x = flattenedRows
        var ones = Tensor(shape: [x.rowCount], repeating: 1)
        var out = Tensor(shape: [x.rowSize])
        try Tensor.gemvInto(x, transpose: true, &ones, &out)
        return out
    }

    /// Sums over the last axes: for `[n, d]` (or `[n, …]`, flattened) returns `[n]`.
    @_specialize(exported:true,where Scalar == Float)
    @_specialize(exported:true,where Scalar == Double)
    public func rowSums() throws -> Tensor {
        let x = flattenedRows
        var ones = Tensor(shape: [x.rowSize], repeating: 1)
        var out = Tensor(shape: [x.rowCount])
        try Tensor.gemvInto(x, transpose: false, &ones, &out)
        return out
    }

    /// Means over the first axis (`[d]`).
    @_specialize(exported:true,where Scalar == Float)
    @_specialize(exported:true,where Scalar == Double)
    public func columnMeans() throws -> Tensor {
        var s = try columnSums()
        let inv = 1 / Scalar(Swift.max(rowCount, 1))
        s.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] *= inv } }
        return s
    }

    private static func gemvInto(_ x: Tensor, transpose: Bool, _ v: inout Tensor, _ out: inout Tensor) throws {
        let m = try blasInt(x.rowCount, "gemv"), n = try blasInt(x.rowSize, "gemv")
        if m == 0 || n == 0 { return }
        x.withUnsafeBufferPointer { px in
            v.withUnsafeBufferPointer { pv in
                out.withUnsafeMutableBufferPointer { po in
                    Scalar._gemv(transpose, m, n, 1, px.baseAddress!, n, pv.baseAddress!, 0, po.baseAddress!)
                }
            }
        }
    }

    /// Subtracts each feature column's mean over the rows, in place (`x ← x − 1·meanᵀ`).
    ///
    /// This is the within-minibatch centring that makes float32 Grams exact for HSIC-based CKA:
    /// HSIC₁ and centred HSIC do not change when a column is shifted, while the Gram of
    /// un-centred activations with a large offset loses every significant digit to cancellation.
    /// Columns are processed in blocks that stay in cache: one pass over memory. The means are taken of
    /// the differences to the first row (small numbers even under a large offset), so float sums stay
    /// accurate and the loops vectorise.
    @_specialize(exported:true,where Scalar == Float)
    @_specialize(exported:true,where Scalar == Double)
    public mutating func centerColumns() throws {
        let n = rowCount, d = rowSize
        guard n > 0, d > 0 else { return }
        let base = UnsafeMutableSendablePointer(mutablePointer())
        let block = 2048
        // Large rows are split over the BLAS threads (a memory-bound pass on one core leaves the other idle).
        let parts = d >= 1 << 16 ? Swift.max(1, Swift.min(blasThreadCount, 8)) : 1
        let perPart = (d + parts - 1) / parts
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            var mean = [Scalar](repeating: 0, count: block)
            let inv = 1 / Scalar(n)
            let start = part * perPart, end = Swift.min(d, start + perPart)
            mean.withUnsafeMutableBufferPointer { mb in
                let m = mb.baseAddress!, base = base.pointer
                for c0 in stride(from: start, to: end, by: block) {
                    let w = Swift.min(block, end - c0)
                    let first = base + c0
                    for j in 0..<w { m[j] = 0 }
                    for r in 1..<Swift.max(n, 1) {
                        let row = base + r * d + c0; for j in 0..<w { m[j] += row[j] - first[j] }
                    }
                    for j in 0..<w { m[j] = first[j] + m[j] * inv }
                    for r in 0..<n { let row = base + r * d + c0; for j in 0..<w { row[j] -= m[j] } }
                }
            }
        }
    }

    /// The Gram matrix `X·Xᵀ` of the rows (examples) of `self`, each row being all its features
    /// flattened, accumulated by BLAS in `Scalar` and returned in `Double`.
    ///
    /// - Parameter centered: subtract each feature column's mean over the rows first (on a copy).
    /// - Returns: `[n, n]` with `n = rowCount`, symmetric.
    @_specialize(exported:true,where Scalar == Float)
    @_specialize(exported:true,where Scalar == Double)
    public func gram(centered: Bool = false) throws -> Tensor<Double> {
        if centered { return try centeredGram() }
        return try flattenedRows.gramOfRows()
    }

    /// The Gram of the column-centred rows, `(X − 1·meanᵀ)(X − 1·meanᵀ)ᵀ`, without modifying `self`.
    /// Returns `[n, n]` in Double. Float rows up to `CKA_GRAM_KERNEL_MAX_ROWS` go through the Gram kernel
    /// (`centeredGramOfRows()`), so every minibatch Gram has the same bits whichever path built it; otherwise
    /// a copy centred by `centerColumns()`, then `gramOfRows()` (callers that own their buffer can centre in
    /// place and skip the copy).
    @_specialize(exported:true,where Scalar == Float)
    @_specialize(exported:true,where Scalar == Double)
    public func centeredGram() throws -> Tensor<Double> {
        if let x = self as? Tensor<Float>, x.flattenedRows.rowCount <= Int(CKA_GRAM_KERNEL_MAX_ROWS) {
            return try x.centeredGramOfRows()
        }
        var c = flattenedRows
        try c.centerColumns()
        return try c.gramOfRows()
    }

    /// Rows at least this long are split into `gramSplitParts` column parts for the Gram of a few rows.
    @usableFromInline static var gramSplitWidth: Int { 1 << 14 }
    /// The fixed number of column parts of a long-row Gram: its sums, and so its bits, are the same for every
    /// thread count (the parts are spread over the threads there are).
    @usableFromInline static var gramSplitParts: Int { 2 }

    /// `X·Xᵀ` without centring; with `centerColumns()` first this is the centred Gram, in place.
    @_specialize(exported:true,where Scalar == Float)
    @_specialize(exported:true,where Scalar == Double)
    public func gramOfRows() throws -> Tensor<Double> {
        let x = flattenedRows
        let n = x.rowCount, d = x.rowSize
        let N = try blasInt(n, "gram"), D = try blasInt(d, "gram")
        var g = Tensor(shape: [n, n])
        if n > 0 && d > 0 {
            x.withUnsafeBufferPointer { px in
                g.withUnsafeMutableBufferPointer { pg in
                    if n <= 64 && d >= Tensor.gramSplitWidth {
                        // Few rows, long rows: OpenBLAS's SYRK does not parallelise here and its GEMM syncs its
                        // threads at every block of d. Split the columns instead into a fixed number of parts (so
                        // the sums, and the bits, do not depend on the thread count): one single-threaded SYRK
                        // per part, the parts spread over the BLAS threads, then the triangles added in order.
                        let parts = Tensor.gramSplitParts, chunk = (d + parts - 1) / parts
                        let workers = Swift.min(blasThreadCount, parts)
                        var partial = [Scalar](repeating: 0, count: parts * n * n)
                        withBLASThreads(1) {
                            partial.withUnsafeMutableBufferPointer { pp in
                                let out = UnsafeMutableSendablePointer(pp.baseAddress!)
                                let src = UnsafeMutableSendablePointer(UnsafeMutablePointer(mutating: px.baseAddress!))
                                DispatchQueue.concurrentPerform(iterations: workers) { w in
                                    for p in stride(from: w, to: parts, by: workers) {
                                        let c0 = p * chunk, cw = Swift.min(chunk, d - c0)
                                        guard cw > 0 else { continue }
                                        Scalar._syrk(N, Int32(cw), src.pointer + c0, D, 0, out.pointer + p * n * n, N)
                                    }
                                }
                            }
                        }
                        for i in 0..<n {
                            for j in i..<n {
                                var v: Scalar = 0
                                for p in 0..<parts { v += partial[p * n * n + i * n + j] }
                                pg[i * n + j] = v
                                pg[j * n + i] = v
                            }
                        }
                    } else {
                        Scalar._syrk(N, D, px.baseAddress!, D, 0, pg.baseAddress!, N)
                        for i in 0..<n { for j in 0..<i { pg[i * n + j] = pg[j * n + i] } }
                    }
                }
            }
        }
        return g.converted(to: Double.self)
    }
}

/// Tunes glibc's allocator for streaming minibatches: blocks up to 256 MiB are served from the heap and
/// reused instead of each getting a fresh `mmap` (whose page faults cost as much kernel time as reading
/// the activation files); up to 512 MiB of freed memory is kept for reuse. Call once at start-up.
public func configureAllocatorForStreaming() {
    cka_configure_malloc(256 << 20, 512 << 20)
}

/// A pointer handed to `concurrentPerform` workers that write disjoint parts of one buffer.
struct UnsafeMutableSendablePointer<T>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<T>
    init(_ p: UnsafeMutablePointer<T>) { pointer = p }
}

/// A read-only pointer handed to `concurrentPerform` workers.
struct UnsafeSendablePointer<T>: @unchecked Sendable {
    let pointer: UnsafePointer<T>
    init(_ p: UnsafePointer<T>) { pointer = p }
}

extension Tensor where Scalar == Double {
    /// Double-centres a symmetric `[n, n]` Gram in place: `H·K·H` with `H = I − 11ᵀ/n`, that is
    /// K̃ᵢⱼ = Kᵢⱼ + (r̄ − rᵢ − rⱼ) with r the row means and r̄ their mean. Each pair is rounded once (lower
    /// triangle) and mirrored, so the result is exactly symmetric.
    public mutating func doubleCenter() {
        precondition(rank == 2 && shape[0] == shape[1], "doubleCenter needs a square matrix")
        let n = shape[0]
        guard n > 0 else { return }
        withUnsafeMutableBufferPointer { p in
            let a = p.baseAddress!
            var r = [Double](repeating: 0, count: n)
            for i in 0..<n {
                var s = 0.0
                for j in 0..<n { s += a[i * n + j] }
                r[i] = s / Double(n)
            }
            let mean = r.reduce(0, +) / Double(n)
            for i in 0..<n {
                for j in 0...i {
                    let v = a[i * n + j] + (mean - r[i] - r[j])
                    a[i * n + j] = v
                    a[j * n + i] = v
                }
            }
        }
    }
}

extension Tensor where Scalar == Float {
    /// The Gram of the column-centred rows, `(X − 1·meanᵀ)(X − 1·meanᵀ)ᵀ`, in one pass over `self` and
    /// without a centred copy (see `centeredGram(rows:width:blockColumns:)`). Returns `[n, n]` in Double;
    /// equal to `centeredGram()` up to float rounding.
    public func centeredGramOfRows(blockColumns: Int = 4096) throws -> Tensor<Double> {
        let x = flattenedRows
        let n = x.rowCount, d = x.rowSize
        return try x.withUnsafeBufferPointer { p in
            try Tensor.centeredGram(rows: (0..<n).map { p.baseAddress! + $0 * d }, width: d, blockColumns: blockColumns)
        }
    }

    /// The Gram of the column-centred rows given as pointers (rows of a memory-mapped file, say — they need not
    /// be evenly spaced), each `width` long. Returns `[n, n]` in Double; the bits do not depend on the thread count.
    ///
    /// Up to `CKA_GRAM_KERNEL_MAX_ROWS` rows (every Gram batch of `cka extract`): the Gram of the rows shifted
    /// by the first row (`cka_shifted_gram`: one pass over the rows, 16-lane float32 sums flushed to float64),
    /// then centred exactly in float64 as H·G·H — a common shift cancels there. The columns are split into a
    /// fixed number of parts (by the width alone) spread over the BLAS threads and added in order.
    /// More rows: each block of `blockColumns` columns is centred into a small buffer that stays in the core's
    /// cache and added to the Gram by SYRK, long rows split in the same way.
    public static func centeredGram(rows: [UnsafePointer<Float>], width d: Int, blockColumns: Int = 4096) throws
        -> Tensor<Double>
    {
        if !rows.isEmpty && rows.count <= Int(CKA_GRAM_KERNEL_MAX_ROWS) {
            return shiftedCenteredGram(rows: rows, width: d)
        }
        return try syrkCenteredGram(rows: rows, width: d, blockColumns: blockColumns)
    }

    /// Column parts of a kernel Gram: one per 16 384 columns, at most 8 (a function of the width only).
    @usableFromInline static func kernelGramParts(width d: Int) -> Int { Swift.max(1, Swift.min(8, d / (1 << 14))) }

    /// The best vector level of the Gram kernel on this CPU: 2 AVX-512F, 1 AVX2 + FMA, 0 portable C.
    package static var gramKernelBestLevel: Int32 { cka_shifted_gram_best_level() }

    /// `centeredGram(rows:width:)` through `cka_shifted_gram` at `level` (−1: the best the CPU has).
    package static func shiftedCenteredGram(rows: [UnsafePointer<Float>], width d: Int, level: Int32 = -1)
        -> Tensor<Double>
    {
        let n = rows.count
        var g = Tensor<Double>(shape: [n, n])
        guard n > 0, d > 0 else { return g }
        let parts = kernelGramParts(width: d), workers = Swift.min(blasThreadCount, parts)
        let chunk = (d + parts - 1) / parts
        let scratchFloats = (cka_shifted_gram_scratch_floats(n) + 15) / 16 * 16
        let scratch = UnsafeMutablePointer<Float>(
            OpaquePointer(UnsafeMutableRawPointer.allocate(byteCount: workers * scratchFloats * 4, alignment: 64)))
        defer { UnsafeMutableRawPointer(scratch).deallocate() }
        var partial = [Double](repeating: 0, count: parts * n * n)
        let rowList: [UnsafePointer<Float>?] = rows
        rowList.withUnsafeBufferPointer { pr in
            partial.withUnsafeMutableBufferPointer { pp in
                let out = UnsafeMutableSendablePointer(pp.baseAddress!), buf = UnsafeMutableSendablePointer(scratch)
                let rowsPointer = UnsafeSendablePointer(pr.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    for p in stride(from: w, to: parts, by: workers) {
                        let begin = p * chunk, end = Swift.min(d, begin + chunk)
                        guard begin < end else { continue }
                        cka_shifted_gram(
                            rowsPointer.pointer, n, begin, end, out.pointer + p * n * n,
                            buf.pointer + w * scratchFloats, level)
                    }
                }
            }
        }
        // The parts in order (lower triangle, mirrored), then H·G·H.
        g.withUnsafeMutableBufferPointer { pg in
            for i in 0..<n {
                for j in 0...i {
                    var v = 0.0
                    for p in 0..<parts { v += partial[p * n * n + i * n + j] }
                    pg[i * n + j] = v
                    pg[j * n + i] = v
                }
            }
        }
        g.doubleCenter()
        return g
    }

    /// `centeredGram(rows:width:blockColumns:)` through SYRK on blocks centred in cache (any row count).
    static func syrkCenteredGram(rows: [UnsafePointer<Float>], width d: Int, blockColumns: Int) throws
        -> Tensor<Double>
    {
        let n = rows.count
        let N = try blasInt(n, "gram")
        var g = Tensor<Double>(shape: [n, n])
        guard n > 0, d > 0 else { return g }
        // A fixed split of the columns (the bits do not depend on the thread count), spread over the BLAS threads.
        let parts = d >= Tensor.gramSplitWidth ? Tensor.gramSplitParts : 1, workers = Swift.min(blasThreadCount, parts)
        let chunk = (d + parts - 1) / parts, block = Swift.max(1, Swift.min(blockColumns, chunk))
        var partial = [Float](repeating: 0, count: parts * n * n)
        var scratch = [Float](repeating: 0, count: parts * (n * block + block))
        let token = parts > 1 ? BLASThreadScopes.shared.enter(1) : nil
        defer { if let token { BLASThreadScopes.shared.exit(token) } }
        let inv = 1 / Float(n)
        let rowPointers = rows.map { UnsafeMutableSendablePointer(UnsafeMutablePointer(mutating: $0)) }
        partial.withUnsafeMutableBufferPointer { pp in
            scratch.withUnsafeMutableBufferPointer { ps in
                let out = UnsafeMutableSendablePointer(pp.baseAddress!),
                    buf = UnsafeMutableSendablePointer(ps.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    for p in stride(from: w, to: parts, by: workers) {
                        let c = buf.pointer + p * (n * block + block), m = c + n * block
                        let start = p * chunk, end = Swift.min(d, start + chunk)
                        var beta: Float = 0
                        for c0 in stride(from: start, to: end, by: block) {
                            let w = Swift.min(block, end - c0)
                            let first = rowPointers[0].pointer + c0
                            for j in 0..<w { m[j] = 0 }
                            for r in 1..<n {
                                let row = rowPointers[r].pointer + c0; for j in 0..<w { m[j] += row[j] - first[j] }
                            }
                            for j in 0..<w { m[j] = first[j] + m[j] * inv }
                            for r in 0..<n {
                                let row = rowPointers[r].pointer + c0, o = c + r * w;
                                for j in 0..<w { o[j] = row[j] - m[j] }
                            }
                            Float._syrk(N, Int32(w), c, Int32(w), beta, out.pointer + p * n * n, N)
                            beta = 1
                        }
                    }
                }
            }
        }
        g.withUnsafeMutableBufferPointer { pg in
            for i in 0..<n {
                for j in i..<n {
                    var v = 0.0
                    for p in 0..<parts { v += Double(partial[p * n * n + i * n + j]) }
                    pg[i * n + j] = v
                    pg[j * n + i] = v
                }
            }
        }
        return g
    }
}
