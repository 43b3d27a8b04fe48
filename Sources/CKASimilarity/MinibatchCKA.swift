import CKATensor

/// The minibatch CKA accumulator of Nguyen, Raghu & Kornblith (2021): feed it minibatches of
/// matched examples for any number of layers of two models; it returns the layer×layer CKA matrix.
///
///     CKA(A_i, B_j) = Σ_k HSIC₁(K_ik, L_jk) / √(Σ_k HSIC₁(K_ik, K_ik) · Σ_k HSIC₁(L_jk, L_jk))
///
/// Each layer's Gram is built once per minibatch (BLAS, after centring the feature columns within
/// the batch, which removes float32 cancellation and leaves HSIC₁ unchanged); the Grams are
/// U-centred once, and all LA×LB cross terms of a batch are then one matrix product. Sums are
/// kept in Double. Memory: the Grams of one batch.
///
/// ```swift
/// var acc = MinibatchCKA(layerCountA: 12, layerCountB: 12)
/// for batch in batches { try acc.add(representationsA: a(batch), representationsB: b(batch)) }
/// let cka = try acc.matrix()     // [[Double]], 12 × 12
/// ```
///
/// **Mathematical properties.** CKA(X, X) = 1; symmetric; invariant to orthogonal transforms and
/// isotropic scaling of the features, and to adding a constant to any feature. The unbiased
/// estimator can be slightly negative for unrelated representations: it is never clamped.
///
/// ### References
/// Nguyen, Raghu & Kornblith, *Do wide and deep networks learn the same things?*, ICLR 2021,
/// [arXiv:2010.15327](https://arxiv.org/abs/2010.15327).
public struct MinibatchCKA: Sendable {
    public let layerCountA: Int
    public let layerCountB: Int
    /// Σ_k HSIC₁(K_ik, L_jk), row-major `[layerCountA, layerCountB]`.
    public private(set) var crossSums: [Double]
    /// Σ_k HSIC₁(K_ik, K_ik) per layer of A.
    public private(set) var selfSumsA: [Double]
    /// Σ_k HSIC₁(L_jk, L_jk) per layer of B.
    public private(set) var selfSumsB: [Double]
    /// Number of minibatches added.
    public private(set) var batchCount = 0
    /// Number of examples added (over all batches).
    public private(set) var exampleCount = 0

    public init(layerCountA: Int, layerCountB: Int) {
        self.layerCountA = layerCountA
        self.layerCountB = layerCountB
        crossSums = Array(repeating: 0, count: layerCountA * layerCountB)
        selfSumsA = Array(repeating: 0, count: layerCountA)
        selfSumsB = Array(repeating: 0, count: layerCountB)
    }

    /// Adds one minibatch given as representations (`[b, …]` Float, one per layer; any shape after
    /// the first axis is flattened). Builds each Gram once, with columns centred within the batch.
    public mutating func add(representationsA: [Tensor<Float>], representationsB: [Tensor<Float>]) throws {
        let ga = try representationsA.map { try $0.gram(centered: true) }
        let gb = try representationsB.map { try $0.gram(centered: true) }
        try add(gramsA: ga, gramsB: gb)
    }

    /// Adds one minibatch given as Gram matrices `[b, b]` (one per layer; the same b for all).
    public mutating func add(gramsA: [Tensor<Double>], gramsB: [Tensor<Double>]) throws {
        let ua = try MinibatchCKA.stackUCentered(gramsA, expectedLayers: layerCountA)
        let ub = try MinibatchCKA.stackUCentered(gramsB, expectedLayers: layerCountB)
        guard ua.b == ub.b else {
            throw TensorError.shapeMismatch(
                op: "MinibatchCKA.add", expected: "Grams of one batch size",
                got: "\(ua.b) and \(ub.b)")
        }
        try accumulate(ua.stacked, ub.stacked, b: ua.b)
    }

    /// Adds one minibatch of U-centred Grams already stacked as rows `[layers, b·b]`
    /// (see `stackUCentered`); lets callers U-centre each Gram once and reuse it across comparisons.
    public mutating func add(uCenteredA: Tensor<Double>, uCenteredB: Tensor<Double>, batchSize b: Int) throws {
        guard uCenteredA.shape == [layerCountA, b * b], uCenteredB.shape == [layerCountB, b * b] else {
            throw TensorError.shapeMismatch(
                op: "MinibatchCKA.add", expected: "[\(layerCountA), \(b * b)] and [\(layerCountB), \(b * b)]",
                got: "\(describeShape(uCenteredA.shape)) and \(describeShape(uCenteredB.shape))")
        }
        try accumulate(uCenteredA, uCenteredB, b: b)
    }

    private mutating func accumulate(_ ua: Tensor<Double>, _ ub: Tensor<Double>, b: Int) throws {
        try add(MinibatchCKA.terms(uCenteredA: ua, uCenteredB: ub, batchSize: b))
    }

    /// The HSIC₁ terms one minibatch adds to the sums: what a distributed or reordered computation
    /// exchanges. Adding the terms of the same batches in the same order gives bit-identical sums, however
    /// the batches were computed.
    public struct BatchTerms: Sendable, Equatable {
        /// HSIC₁(K_i, L_j), row-major `[layerCountA, layerCountB]`.
        public var cross: [Double]
        public var selfA: [Double]
        public var selfB: [Double]
        /// Examples in the batch.
        public var examples: Int

        public init(cross: [Double], selfA: [Double], selfB: [Double], examples: Int) {
            self.cross = cross; self.selfA = selfA; self.selfB = selfB; self.examples = examples
        }
    }

    /// The terms of one minibatch from U-centred Grams stacked as rows `[layers, b·b]` (see `stackUCentered`).
    public static func terms(uCenteredA ua: Tensor<Double>, uCenteredB ub: Tensor<Double>, batchSize b: Int) throws
        -> BatchTerms
    {
        let norm = 1 / (Double(b) * Double(b - 3))
        let cross = try ua.matmul(ub, transposeOther: true)  // all LA×LB ⟨K̃, L̃⟩ in one GEMM
        let c = cross.withUnsafeBufferPointer { c in c.map { $0 * norm } }
        return BatchTerms(
            cross: c, selfA: rowSquaredNorms(ua).map { $0 * norm },
            selfB: rowSquaredNorms(ub).map { $0 * norm }, examples: b)
    }

    /// The terms of one minibatch from its Gram matrices `[b, b]` (one per layer; the same b for all).
    public static func terms(gramsA: [Tensor<Double>], gramsB: [Tensor<Double>]) throws -> BatchTerms {
        let ua = try stackUCentered(gramsA), ub = try stackUCentered(gramsB)
        guard ua.b == ub.b else {
            throw TensorError.shapeMismatch(
                op: "MinibatchCKA.add", expected: "Grams of one batch size",
                got: "\(ua.b) and \(ub.b)")
        }
        return try terms(uCenteredA: ua.stacked, uCenteredB: ub.stacked, batchSize: ua.b)
    }

    /// Adds the terms of one minibatch (from `terms(…)`, possibly computed elsewhere).
    public mutating func add(_ t: BatchTerms) throws {
        guard t.cross.count == crossSums.count, t.selfA.count == layerCountA, t.selfB.count == layerCountB else {
            throw TensorError.shapeMismatch(
                op: "MinibatchCKA.add", expected: "terms of \(layerCountA)×\(layerCountB) layers",
                got: "\(t.selfA.count)×\(t.selfB.count)")
        }
        for i in 0..<crossSums.count { crossSums[i] += t.cross[i] }
        for i in 0..<layerCountA { selfSumsA[i] += t.selfA[i] }
        for j in 0..<layerCountB { selfSumsB[j] += t.selfB[j] }
        batchCount += 1
        exampleCount += t.examples
    }

    /// U-centres each Gram and stacks them as rows of a `[layers, b·b]` matrix.
    public static func stackUCentered(_ grams: [Tensor<Double>], expectedLayers: Int? = nil) throws
        -> (stacked: Tensor<Double>, b: Int)
    {
        if let expectedLayers, grams.count != expectedLayers {
            throw TensorError.shapeMismatch(
                op: "MinibatchCKA.add", expected: "\(expectedLayers) Grams", got: "\(grams.count)")
        }
        let b = grams.first?.shape.first ?? 0
        var stacked = Tensor<Double>(shape: [grams.count, b * b])
        for (i, g) in grams.enumerated() {
            guard g.shape == [b, b] else {
                throw TensorError.shapeMismatch(
                    op: "MinibatchCKA.add", expected: "[\(b), \(b)]", got: describeShape(g.shape))
            }
            var u = g
            try HSIC.uCenter(&u)
            try stacked.setRows(i..<i + 1, from: u.reshaped([1, b * b]))
        }
        return (stacked, b)
    }

    static func rowSquaredNorms(_ m: Tensor<Double>) -> [Double] {
        let cols = m.rowSize
        return m.withUnsafeBufferPointer { p in
            (0..<m.rowCount).map { i in
                var s = 0.0
                let r = p.baseAddress! + i * cols
                for j in 0..<cols { s += r[j] * r[j] }
                return s
            }
        }
    }

    /// The mean HSIC₁ values: cross `[LA][LB]`, and the self terms of A and B.
    public var meanHSIC: (cross: [[Double]], selfA: [Double], selfB: [Double]) {
        let k = Double(max(batchCount, 1))
        let cross = (0..<layerCountA).map { i in (0..<layerCountB).map { crossSums[i * layerCountB + $0] / k } }
        return (cross, selfSumsA.map { $0 / k }, selfSumsB.map { $0 / k })
    }

    /// The CKA matrix `[layerCountA][layerCountB]`.
    /// - Throws: `CKAError.zeroVariance` (with the layer's index as its name; callers map it to a
    ///   name) if a layer's self-HSIC is not positive, `CKAError.invalidOption` if nothing was added.
    public func matrix(
        layerNamesA: [String]? = nil, layerNamesB: [String]? = nil, fileA: String = "A",
        fileB: String = "B"
    ) throws -> [[Double]] {
        guard batchCount > 0 else { throw CKAError.invalidOption("no minibatch was added") }
        for (i, s) in selfSumsA.enumerated() where !(s > 0) {
            throw CKAError.zeroVariance(file: fileA, layer: layerNamesA?[i] ?? "#\(i)")
        }
        for (j, s) in selfSumsB.enumerated() where !(s > 0) {
            throw CKAError.zeroVariance(file: fileB, layer: layerNamesB?[j] ?? "#\(j)")
        }
        return (0..<layerCountA).map { i in
            (0..<layerCountB).map { j in crossSums[i * layerCountB + j] / (selfSumsA[i] * selfSumsB[j]).squareRoot() }
        }
    }
}
