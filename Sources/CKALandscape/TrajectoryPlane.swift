import CKATensor
import Foundation

/// The plane of a training trajectory (Li et al. 2018 §7), with the semantics of `tomgoldstein/loss-landscape`'s
/// `setup_PCA_directions` and `project_trajectory`: the rows dᵢ = θᵢ − θ_final over the perturbed tensors, one per
/// checkpoint of the list, are centred (the mean row subtracted, as sklearn's `PCA` does) and the plane's
/// directions are the first two principal directions of the centred rows, unit vectors; each checkpoint's
/// coordinates are dᵢ·pc₁ and dᵢ·pc₂ (not centred: the final checkpoint is at (0, 0), the grid's centre).
///
/// **What is flattened.** The perturbed tensors of the run, in the order of the objective's centre. With
/// `ignoreBiasAndNorm` (`--ignore biasbn`, the default) the tensors of rank ≤ 1 — biases, LayerNorm γ/β,
/// LayerScale — are left out (zero in the directions), as loss-landscape's `ignore_biasbn` does to the
/// differences and as our random directions do; otherwise they are included.
///
/// **Memory.** The PCA is done in the N×N Gram form: G = D·Dᵀ (D the N×P matrix of differences), centred as
/// (I − 11ᵀ/N)·G·(I − 11ᵀ/N) = U·Λ·Uᵀ; pc_k = D_cᵀ·u_k/√λ_k, with D_cᵀu = Dᵀ(u − ū). The checkpoints are read
/// one at a time and their flattened float32 values written to a scratch file (N·P·4 bytes, deleted at the end);
/// G and the directions are then accumulated over slices of the parameters read back from it, the differences
/// formed in float64 (exact for float32 weights). Memory: θ_final, one checkpoint, the two directions and N
/// slices — never P×P, never N copies of θ.
///
/// **Sign.** Each direction's sign makes the largest-magnitude entry of u_k positive (sklearn's `svd_flip`
/// with `u_based_decision`, as in loss-landscape's time).
public struct TrajectoryPlane: Sendable {
    /// The two unit directions over the perturbed tensors (float32; rank ≤ 1 tensors zero when ignored).
    public var directions: [ParameterSet]
    /// λ_k / Σλ of the centred Gram matrix (sklearn's `explained_variance_ratio_`), k = 1, 2.
    public var explainedVarianceRatio: [Double]
    /// λ_k / (N − 1) (sklearn's `explained_variance_`).
    public var explainedVariance: [Double]
    /// √λ_k (sklearn's `singular_values_`).
    public var singularValues: [Double]
    /// (dᵢ·pc₁, dᵢ·pc₂) of every checkpoint of the list, in order.
    public var coordinates: [[Double]]

    /// The plane of `count` checkpoints around `final` (θ_final over the perturbed tensors).
    /// - Parameters:
    ///   - load: the tensors of checkpoint i (by the objective's names; every tensor of `final` with its size).
    ///   - names: the checkpoints' names for errors.
    ///   - scratch: the scratch file (created, then removed).
    /// - Throws: `LandscapeError` for fewer than three checkpoints, a missing or misshapen tensor, or
    ///   differences that span fewer than two dimensions.
    public init(
        final: ParameterSet, count: Int, names: [String], ignoreBiasAndNorm: Bool, scratch: String,
        sliceLength: Int = 1 << 18, load: (Int) throws -> [String: Tensor<Float>]
    ) throws {
        guard count >= 3 else {
            throw LandscapeError.invalidArgument(
                "--pca-of needs at least 3 checkpoints (the differences are centred: N of them span N − 1 dimensions), got \(count)"
            )
        }
        let used = final.names.filter { !ignoreBiasAndNorm || final[$0]!.rank > 1 }
        guard !used.isEmpty else {
            throw LandscapeError.invalidArgument("--pca-of: no perturbed tensor of rank ≥ 2 to take differences of")
        }
        var center: [Float] = []
        for n in used { center.append(contentsOf: final[n]!.scalars) }
        let P = center.count, N = count

        // Pass 1: every checkpoint, flattened, to the scratch file.
        guard FileManager.default.createFile(atPath: scratch, contents: nil),
            let handle = FileHandle(forUpdatingAtPath: scratch)
        else { throw LandscapeError.invalidArgument("cannot create the scratch file \(scratch)") }
        defer {
            try? handle.close()
            unlink(scratch)
        }
        for i in 0..<N {
            let tensors = try load(i)
            var row: [Float] = []
            row.reserveCapacity(P)
            for n in used {
                guard let t = tensors[n], t.count == final[n]!.count else {
                    throw LandscapeError.mismatch(
                        file: names[i], what: n,
                        expected: "a tensor of \(describe(final[n]!.shape)) as in the final checkpoint",
                        got: tensors[n].map { describe($0.shape) } ?? "missing")
                }
                row.append(contentsOf: t.scalars)
            }
            try row.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
        }

        /// The differences D[:, lo..<hi] (row-major [N, hi − lo], float64).
        func slice(_ lo: Int, _ hi: Int) throws -> Tensor<Double> {
            let c = hi - lo
            var d = Tensor<Double>(shape: [N, c])
            let pd = d.mutablePointer()
            var buffer = [Float](repeating: 0, count: c)
            for i in 0..<N {
                try handle.seek(toOffset: UInt64((i * P + lo) * 4))
                guard let bytes = try handle.read(upToCount: c * 4), bytes.count == c * 4 else {
                    throw LandscapeError.invalidArgument("the scratch file \(scratch) is short")
                }
                buffer.withUnsafeMutableBytes { _ = bytes.copyBytes(to: $0) }
                for j in 0..<c { pd[i * c + j] = Double(buffer[j]) - Double(center[lo + j]) }
            }
            return d
        }
        let step = max(1, sliceLength)

        // Pass 2: the Gram matrix G = D·Dᵀ.
        var gram = Tensor<Double>(shape: [N, N])
        for lo in stride(from: 0, to: P, by: step) {
            let d = try slice(lo, min(P, lo + step))
            try Tensor.gemm(d, d, transposeB: true, beta: 1, into: &gram)
        }
        // Centred: Gc = (I − J/N)·G·(I − J/N).
        var rowMean = [Double](repeating: 0, count: N)
        for i in 0..<N { for j in 0..<N { rowMean[i] += gram[i, j] / Double(N) } }
        let total = rowMean.reduce(0, +) / Double(N)
        var centred = Tensor<Double>(shape: [N, N])
        for i in 0..<N { for j in 0..<N { centred[i, j] = gram[i, j] - rowMean[i] - rowMean[j] + total } }
        let (values, vectors) = try centred.symmetricEigen()
        let lambdas = (0..<N).map { max(0, values[N - 1 - $0]) }
        let sum = lambdas.reduce(0, +)
        guard lambdas[0] > 0, lambdas[1] > 1e-12 * lambdas[0] else {
            throw LandscapeError.invalidArgument(
                "--pca-of: the differences between the checkpoints span fewer than two dimensions")
        }
        // Coefficients c_k = (u_k − ū_k)/√λ_k, so that pc_k = Dᵀ·c_k.
        var coefficients = Tensor<Double>(shape: [N, 2])
        for k in 0..<2 {
            var u = (0..<N).map { vectors[$0, N - 1 - k] }
            let big = u.indices.max { abs(u[$0]) < abs(u[$1]) }!
            if u[big] < 0 { u = u.map { -$0 } }
            let mean = u.reduce(0, +) / Double(N)
            for i in 0..<N { coefficients[i, k] = (u[i] - mean) / lambdas[k].squareRoot() }
        }

        // Pass 3: the directions pc_k = Dᵀ·c_k, slice by slice.
        var flat = [[Float]](repeating: [Float](repeating: 0, count: P), count: 2)
        for lo in stride(from: 0, to: P, by: step) {
            let hi = min(P, lo + step)
            let part = try slice(lo, hi).matmul(coefficients, transposeSelf: true)  // [c, 2]
            for j in 0..<(hi - lo) {
                flat[0][lo + j] = Float(part[j, 0])
                flat[1][lo + j] = Float(part[j, 1])
            }
        }
        var dirs: [ParameterSet] = []
        for k in 0..<2 {
            var d = ParameterSet(), o = 0
            for n in final.names {
                var t = Tensor<Float>(shape: final[n]!.shape)
                if used.contains(n) {
                    let p = t.mutablePointer()
                    for i in 0..<t.count { p[i] = flat[k][o + i] }
                    o += t.count
                }
                d.set(n, t)
            }
            dirs.append(d)
        }
        directions = dirs
        explainedVarianceRatio = [lambdas[0] / sum, lambdas[1] / sum]
        explainedVariance = [lambdas[0] / Double(N - 1), lambdas[1] / Double(N - 1)]
        singularValues = [lambdas[0].squareRoot(), lambdas[1].squareRoot()]
        // dᵢ·pc_k = (G·c_k)ᵢ, exactly in float64.
        let projected = try gram.matmul(coefficients)
        coordinates = (0..<N).map { [projected[$0, 0], projected[$0, 1]] }
    }
}
