import CKAIO
import CKATensor
import _CKASupport

// The full-set estimators (debiased, linear, RBF): one centred N×N Gram per layer, kept for all pairs.
extension CKAComparison {
    static func runFullSet(
        _ a: ActivationStore, _ b: ActivationStore, _ la: [String], _ lb: [String],
        _ o: CKAOptions, _ result: inout CKAResult,
        _ progress: ((CKAProgress) -> Void)?
    ) throws {
        let n = a.count
        guard n >= 4 else { throw CKAError.batchSize(requested: n, examples: n) }
        let distinct = a === b ? Array(Set(la).union(lb)).count : la.count + lb.count
        let bytes = distinct * n * n * 8
        guard bytes <= o.fullSetMemoryLimit else {
            throw CKAError.tooManyExamples(
                estimator: o.estimator, examples: n,
                limit: Int((Double(o.fullSetMemoryLimit) / Double(8 * max(distinct, 1))).squareRoot()))
        }
        var source = GramBuilder(stores: [a, b], tokens: o.tokens)
        var done = 0
        let total = distinct
        var centeredCache: [LayerRef: Tensor<Double>] = [:]
        func centered(_ store: ActivationStore, _ name: String) throws -> Tensor<Double> {
            let key = LayerRef(store, name)
            if let c = centeredCache[key] { return c }
            var g = try source.fullGram(store, name)
            guard g.isFinite else { throw CKAError.nonFinite(file: store.path, layer: name, batch: 0) }
            switch o.estimator {
            case .linear: g = try HSIC.centered(g)
            case .debiased: try HSIC.uCenter(&g)
            case .rbf:
                let r = try FullSetCKA.rbfGram(fromLinear: g, threshold: o.rbfThreshold)
                g = o.rbfDebiased ? try HSIC.uCentered(r) : try HSIC.centered(r)
            case .minibatch: break
            }
            let selfTerm = try HSIC.frobeniusInner(g, g)
            guard selfTerm > 0 else { throw CKAError.zeroVariance(file: store.path, layer: name) }
            centeredCache[key] = g
            done += 1
            progress?(CKAProgress(done: done, total: total, unit: "layers"))
            return g
        }
        let ca = try la.map { try centered(a, $0) }
        let cb = try lb.map { try centered(b, $0) }
        let na = try ca.map { try HSIC.frobeniusInner($0, $0).squareRoot() }
        let nb = try cb.map { try HSIC.frobeniusInner($0, $0).squareRoot() }
        result.matrix = try ca.indices.map { i in
            try cb.indices.map { j in try HSIC.frobeniusInner(ca[i], cb[j]) / (na[i] * nb[j]) }
        }
        result.batchSize = n
        result.examplesUsed = n
        result.batches = 1
    }
}

/// Builds Grams from activation stores with reusable buffers (one per thread of work).
struct GramBuilder {
    let stores: [ActivationStore]
    let tokens: TokenReduction
    var buffer = Tensor<Float>(shape: [0])

    init(stores: [ActivationStore], tokens: TokenReduction) {
        self.stores = stores
        self.tokens = tokens
    }

    /// The centred Gram `[N, N]` of a whole layer, built from slices along the second axis so that
    /// memory stays bounded (about 256 MiB of activations at a time).
    mutating func fullGram(_ store: ActivationStore, _ name: String) throws -> Tensor<Double> {
        let layer = try store.layer(name)
        let n = store.count
        if tokens != .flatten && layer.shape.count == 3 {
            // Reduce in row batches, then one Gram of the reduced [N, D] matrix.
            var reduced = try store.reducedTokens(name, tokens, buffer: &buffer)
            try reduced.centerColumns()
            return try reduced.gramOfRows()
        }
        guard layer.shape.count >= 2 else {
            throw TensorError.shapeMismatch(
                op: "CKA of \(name)", expected: "[N, D] or [N, T, D]", got: describeShape(layer.shape))
        }
        let perAxis1 = max(1, layer.shape.dropFirst(2).reduce(1, *))
        let step = max(1, (64 << 20) / max(1, n * perAxis1))
        var total = Tensor<Double>(shape: [n, n])
        for start in stride(from: 0, to: layer.shape[1], by: step) {
            try store.read(name, rows: 0..<n, axis1: start..<min(layer.shape[1], start + step), into: &buffer)
            try buffer.centerColumns()
            let g = try buffer.gramOfRows()
            total.withUnsafeMutableBufferPointer { t in
                g.withUnsafeBufferPointer { p in for i in 0..<p.count { t[i] += p[i] } }
            }
        }
        return total
    }
}

extension ActivationStore {
    /// Token layer `name` `[N, T, D]` reduced by `tokens` to `[N, D]`, read in row batches of about 64 MiB
    /// (`buffer` holds one batch).
    package func reducedTokens(_ name: String, _ tokens: TokenReduction, buffer: inout Tensor<Float>) throws -> Tensor<
        Float
    > {
        let shape = try layer(name).shape, n = count
        var reduced = Tensor<Float>(shape: [n, shape[2]])
        let step = max(1, (64 << 20) / max(1, shape.dropFirst().reduce(1, *)))
        for start in stride(from: 0, to: n, by: step) {
            let r = start..<min(n, start + step)
            try read(name, rows: r, into: &buffer)
            try reduced.setRows(r, from: tokens.apply(buffer, prefixTokens: self.prefixTokens))
        }
        return reduced
    }
}
