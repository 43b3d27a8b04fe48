import CKAIO
import CKATensor

extension LayerGrams {
    /// The float64 N×N Grams of a stored layer (`[N, D]` or `[N, T, D]`, tokens reduced by `tokens`),
    /// built from slices along the second axis so that memory stays bounded (≈ 64 MiB of activations at
    /// a time, plus the N×N results). Never forms a D×D matrix.
    /// - Throws: `CKAError.nonFinite` naming the file and layer for NaN/Inf activations.
    public init(store: ActivationStore, layer name: String, tokens: TokenReduction, kinds: GramKinds) throws {
        let layer = try store.layer(name)
        let n = store.count
        var buffer = Tensor<Float>(shape: [0])
        guard layer.shape.count >= 2 else {
            throw TensorError.shapeMismatch(
                op: "similarity of \(name)", expected: "[N, D] or [N, T, D]", got: describeShape(layer.shape))
        }
        if tokens != .flatten && layer.shape.count == 3 {
            let reduced = try store.reducedTokens(name, tokens, buffer: &buffer)
            guard reduced.isFinite else { throw CKAError.nonFinite(file: store.path, layer: name, batch: 0) }
            try self.init(features: reduced, kinds: kinds)
            return
        }
        let axis1 = layer.shape[1], perAxis1 = max(1, layer.shape.dropFirst(2).reduce(1, *))
        let step = max(1, (64 << 20) / max(1, n * perAxis1))
        let features = axis1 * perAxis1
        func slices(_ body: (Tensor<Double>) throws -> Void) throws {
            for start in stride(from: 0, to: axis1, by: step) {
                try store.read(name, rows: 0..<n, axis1: start..<min(axis1, start + step), into: &buffer)
                guard buffer.isFinite else { throw CKAError.nonFinite(file: store.path, layer: name, batch: 0) }
                try body(buffer.flattenedRows.converted(to: Double.self))
            }
        }
        func add(_ total: inout Tensor<Double>, _ g: Tensor<Double>) {
            total.withUnsafeMutableBufferPointer { t in
                g.withUnsafeBufferPointer { p in for i in 0..<p.count { t[i] += p[i] } }
            }
        }
        var centered = kinds.contains(.centered) ? Tensor<Double>(shape: [n, n]) : nil
        var raw = kinds.contains(.raw) ? Tensor<Double>(shape: [n, n]) : nil
        var rowSums = [Double](repeating: 0, count: n)
        try slices { x in
            if raw != nil { add(&raw!, try x.gramOfRows()) }
            if centered != nil { var c = x; try c.centerColumns(); add(&centered!, try c.gramOfRows()) }
            if kinds.contains(.rowCentered) {
                let w = x.rowSize
                x.withUnsafeBufferPointer { p in
                    for i in 0..<n { var s = 0.0; for j in 0..<w { s += p[i * w + j] }; rowSums[i] += s }
                }
            }
        }
        var rowCentered: Tensor<Double>?
        if kinds.contains(.rowCentered) {
            let means = rowSums.map { $0 / Double(features) }
            var total = Tensor<Double>(shape: [n, n])
            try slices { x in
                var y = x
                let w = y.rowSize
                y.withUnsafeMutableBufferPointer { p in for i in 0..<n { for j in 0..<w { p[i * w + j] -= means[i] } } }
                add(&total, try y.gramOfRows())
            }
            rowCentered = total
        }
        self.init(centered: centered, raw: raw, rowCentered: rowCentered, features: features)
    }
}
