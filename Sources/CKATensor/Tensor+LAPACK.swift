internal import CBLAS

extension Tensor where Scalar == Double {
    /// Eigendecomposition of a symmetric matrix (LAPACK `dsyevd`; only the upper triangle is read).
    ///
    /// - Returns: eigenvalues in ascending order `[n]`, and eigenvectors as the **columns** of
    ///   `vectors` `[n, n]`, so that `A·V = V·diag(values)`.
    /// - Throws: `TensorError.shapeMismatch` for a non-square input, `TensorError.nonFinite` for
    ///   NaN/Inf, `TensorError.lapackFailed` if LAPACK does not converge.
    public func symmetricEigen() throws -> (values: Tensor<Double>, vectors: Tensor<Double>) {
        guard rank == 2, shape[0] == shape[1] else {
            throw TensorError.shapeMismatch(op: "symmetricEigen", expected: "[n, n]", got: describeShape(shape))
        }
        guard isFinite else { throw TensorError.nonFinite(op: "symmetricEigen") }
        let n = shape[0]
        var vectors = self
        var values = Tensor<Double>(shape: [n])
        if n == 0 { return (values, vectors) }
        let N = try blasInt(n, "symmetricEigen")
        let info = vectors.withUnsafeMutableBufferPointer { pa in
            values.withUnsafeMutableBufferPointer { pw in
                LAPACKE_dsyevd(
                    LAPACK_ROW_MAJOR, CChar(UInt8(ascii: "V")), CChar(UInt8(ascii: "U")),
                    N, pa.baseAddress!, N, pw.baseAddress!)
            }
        }
        guard info == 0 else { throw TensorError.lapackFailed(routine: "LAPACKE_dsyevd", info: Int(info)) }
        return (values, vectors)
    }
}

extension Tensor where Scalar == Float {
    /// Eigendecomposition of a symmetric `Float` matrix (LAPACK `ssyevd`); see the `Double` version.
    public func symmetricEigen() throws -> (values: Tensor<Float>, vectors: Tensor<Float>) {
        guard rank == 2, shape[0] == shape[1] else {
            throw TensorError.shapeMismatch(op: "symmetricEigen", expected: "[n, n]", got: describeShape(shape))
        }
        guard isFinite else { throw TensorError.nonFinite(op: "symmetricEigen") }
        let n = shape[0]
        var vectors = self
        var values = Tensor<Float>(shape: [n])
        if n == 0 { return (values, vectors) }
        let N = try blasInt(n, "symmetricEigen")
        let info = vectors.withUnsafeMutableBufferPointer { pa in
            values.withUnsafeMutableBufferPointer { pw in
                LAPACKE_ssyevd(
                    LAPACK_ROW_MAJOR, CChar(UInt8(ascii: "V")), CChar(UInt8(ascii: "U")),
                    N, pa.baseAddress!, N, pw.baseAddress!)
            }
        }
        guard info == 0 else { throw TensorError.lapackFailed(routine: "LAPACKE_ssyevd", info: Int(info)) }
        return (values, vectors)
    }
}
