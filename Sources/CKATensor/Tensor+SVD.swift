internal import CBLAS

extension Tensor where Scalar == Double {
    /// Thin singular value decomposition `A = U·diag(s)·Vᵀ` of an `[m, n]` matrix (LAPACK `dgesdd`).
    ///
    /// - Returns: `u` `[m, k]`, `s` `[k]` in descending order and `vt` `[k, n]`, with `k = min(m, n)`.
    /// - Throws: `TensorError.shapeMismatch` unless rank 2, `TensorError.nonFinite` for NaN/Inf,
    ///   `TensorError.lapackFailed` if LAPACK does not converge.
    public func singularValueDecomposition() throws -> (u: Tensor<Double>, s: [Double], vt: Tensor<Double>) {
        try svd(vectors: true)
    }

    /// The singular values of an `[m, n]` matrix, in descending order (LAPACK `dgesdd` without vectors).
    public func singularValues() throws -> [Double] { try svd(vectors: false).s }

    private func svd(vectors: Bool) throws -> (u: Tensor<Double>, s: [Double], vt: Tensor<Double>) {
        guard rank == 2 else {
            throw TensorError.shapeMismatch(op: "svd", expected: "[m, n]", got: describeShape(shape))
        }
        guard isFinite else { throw TensorError.nonFinite(op: "svd") }
        let m = shape[0], n = shape[1], k = Swift.min(m, n)
        var a = self
        var s = [Double](repeating: 0, count: k)
        var u = Tensor<Double>(shape: vectors ? [m, k] : [1])
        var vt = Tensor<Double>(shape: vectors ? [k, n] : [1])
        if k == 0 { return (Tensor(shape: [m, 0]), [], Tensor(shape: [0, n])) }
        let M = try blasInt(m, "svd"), N = try blasInt(n, "svd"), K = try blasInt(k, "svd")
        let info = a.withUnsafeMutableBufferPointer { pa in
            u.withUnsafeMutableBufferPointer { pu in
                vt.withUnsafeMutableBufferPointer { pv in
                    s.withUnsafeMutableBufferPointer { ps in
                        LAPACKE_dgesdd(
                            LAPACK_ROW_MAJOR, CChar(UInt8(ascii: vectors ? "S" : "N")), M, N, pa.baseAddress!, N,
                            ps.baseAddress!, pu.baseAddress!, vectors ? K : 1, pv.baseAddress!, N)
                    }
                }
            }
        }
        guard info == 0 else { throw TensorError.lapackFailed(routine: "LAPACKE_dgesdd", info: Int(info)) }
        return (u, s, vt)
    }
}

extension Tensor where Scalar == Double {
    /// The orthonormal factor Q `[m, n]` of the thin QR decomposition of an `[m, n]` matrix with m ≥ n
    /// (LAPACK `dgeqrf` + `dorgqr`, Householder reflections, as `numpy.linalg.qr`).
    public func householderQ() throws -> Tensor<Double> {
        guard rank == 2, shape[0] >= shape[1] else {
            throw TensorError.shapeMismatch(op: "qr", expected: "[m, n] with m ≥ n", got: describeShape(shape))
        }
        guard isFinite else { throw TensorError.nonFinite(op: "qr") }
        let m = shape[0], n = shape[1]
        if n == 0 { return self }
        var a = self
        var tau = [Double](repeating: 0, count: n)
        let M = try blasInt(m, "qr"), N = try blasInt(n, "qr")
        let info = a.withUnsafeMutableBufferPointer { pa in
            tau.withUnsafeMutableBufferPointer { pt in
                let i1 = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, M, N, pa.baseAddress!, N, pt.baseAddress!)
                return i1 != 0 ? i1 : LAPACKE_dorgqr(LAPACK_ROW_MAJOR, M, N, N, pa.baseAddress!, N, pt.baseAddress!)
            }
        }
        guard info == 0 else { throw TensorError.lapackFailed(routine: "LAPACKE_dgeqrf/dorgqr", info: Int(info)) }
        return a
    }
}

extension Tensor where Scalar == Double {
    /// A factor F `[n, r]` with F·Fᵀ = A for a symmetric positive semi-definite `[n, n]` matrix, by Cholesky
    /// with complete pivoting (LAPACK `dpstrf`, default tolerance n·ε·max Aᵢᵢ); r is the numerical rank.
    /// Costs about n²·r flops, so a low-rank Gram (D < N features) is factored far faster than by `symmetricEigen`.
    public func pivotedCholeskyFactor() throws -> Tensor<Double> {
        guard rank == 2, shape[0] == shape[1] else {
            throw TensorError.shapeMismatch(op: "pivotedCholesky", expected: "[n, n]", got: describeShape(shape))
        }
        guard isFinite else { throw TensorError.nonFinite(op: "pivotedCholesky") }
        let n = shape[0]
        if n == 0 { return Tensor(shape: [0, 0]) }
        var a = self
        var piv = [Int32](repeating: 0, count: n)
        var r: Int32 = 0
        let N = try blasInt(n, "pivotedCholesky")
        let info = a.withUnsafeMutableBufferPointer { pa in
            piv.withUnsafeMutableBufferPointer { pp in
                LAPACKE_dpstrf(
                    LAPACK_ROW_MAJOR, CChar(UInt8(ascii: "L")), N, pa.baseAddress!, N, pp.baseAddress!, &r, -1)
            }
        }
        guard info >= 0 else { throw TensorError.lapackFailed(routine: "LAPACKE_dpstrf", info: Int(info)) }
        let k = Int(r)
        var f = Tensor<Double>(shape: [n, k])
        a.withUnsafeBufferPointer { pa in
            f.withUnsafeMutableBufferPointer { pf in
                for i in 0..<n {
                    let dst = (Int(piv[i]) - 1) * k
                    for j in 0..<Swift.min(i + 1, k) { pf[dst + j] = pa[i * n + j] }
                }
            }
        }
        return f
    }
}
