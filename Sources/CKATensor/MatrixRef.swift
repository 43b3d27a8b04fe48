internal import CBLAS

/// A read-only view of a row-major matrix inside a larger buffer: `rows × cols`, consecutive rows
/// `leadingDimension` elements apart. Lets kernels address sub-matrices (e.g. one attention head's
/// columns of a fused qkv output) without copying. Valid only while the memory it points to is.
package struct MatrixRef<Scalar: TensorScalar> {
    public let base: UnsafePointer<Scalar>
    public let rows: Int
    public let cols: Int
    public let leadingDimension: Int

    public init(_ base: UnsafePointer<Scalar>, rows: Int, cols: Int, leadingDimension: Int? = nil) {
        precondition(rows >= 0 && cols >= 0 && (leadingDimension ?? cols) >= cols)
        self.base = base
        self.rows = rows
        self.cols = cols
        self.leadingDimension = leadingDimension ?? cols
    }
}

/// A mutable view of a row-major matrix inside a larger buffer (see `MatrixRef`).
package struct MutableMatrixRef<Scalar: TensorScalar> {
    public let base: UnsafeMutablePointer<Scalar>
    public let rows: Int
    public let cols: Int
    public let leadingDimension: Int

    public init(_ base: UnsafeMutablePointer<Scalar>, rows: Int, cols: Int, leadingDimension: Int? = nil) {
        precondition(rows >= 0 && cols >= 0 && (leadingDimension ?? cols) >= cols)
        self.base = base
        self.rows = rows
        self.cols = cols
        self.leadingDimension = leadingDimension ?? cols
    }

    /// The same matrix, read-only.
    public var readOnly: MatrixRef<Scalar> {
        MatrixRef(UnsafePointer(base), rows: rows, cols: cols, leadingDimension: leadingDimension)
    }
}

/// `C = alpha·op(A)·op(B) + beta·C` on matrix views (BLAS GEMM, row-major).
/// - Throws: `TensorError.shapeMismatch` when the views do not fit together.
package func gemm<S: TensorScalar>(
    _ a: MatrixRef<S>, transposeA: Bool = false, _ b: MatrixRef<S>, transposeB: Bool = false,
    alpha: S = 1, beta: S = 0, into c: MutableMatrixRef<S>
) throws {
    let (m, k) = transposeA ? (a.cols, a.rows) : (a.rows, a.cols)
    let (k2, n) = transposeB ? (b.cols, b.rows) : (b.rows, b.cols)
    guard k == k2, c.rows == m, c.cols == n else {
        throw TensorError.shapeMismatch(
            op: "gemm", expected: "op(A) [m, k] · op(B) [k, n] → C [m, n]",
            got: "op(A) [\(m), \(k)] · op(B) [\(k2), \(n)] → C [\(c.rows), \(c.cols)]")
    }
    if m == 0 || n == 0 { return }
    if k == 0 {
        for i in 0..<m {
            for j in 0..<n { let k = i * c.leadingDimension + j; c.base[k] = beta == 0 ? 0 : beta * c.base[k] }
        }
        return
    }
    S._gemm(
        transposeA, transposeB, try blasInt(m, "gemm"), try blasInt(n, "gemm"), try blasInt(k, "gemm"), alpha,
        a.base, try blasInt(a.leadingDimension, "gemm"), b.base, try blasInt(b.leadingDimension, "gemm"), beta,
        c.base, try blasInt(c.leadingDimension, "gemm"))
}
