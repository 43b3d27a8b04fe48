import CKATensor
import Foundation

/// Named parameter tensors in a fixed order: the point θ of a loss landscape, or a direction d in
/// parameter space (then holding only the perturbed tensors).
///
/// Shapes are the checkpoint's own (PyTorch) shapes — `cls_token` is `[1, 1, D]` — because filter
/// normalisation treats the first axis as the filter axis.
public struct ParameterSet: Sendable {
    /// Parameter names in order (the order directions are drawn in).
    public private(set) var names: [String]
    /// The tensors by name.
    public private(set) var tensors: [String: Tensor<Float>]

    /// A parameter set of `names` (in that order) taken from `tensors`.
    /// - Throws: `LandscapeError.missingParameter` if a name has no tensor.
    public init(names: [String], tensors: [String: Tensor<Float>], file: String = "parameters") throws {
        for n in names where tensors[n] == nil { throw LandscapeError.missingParameter(name: n, file: file) }
        self.names = names
        self.tensors = tensors.filter { Set(names).contains($0.key) }
    }

    /// The empty set.
    public init() { names = []; tensors = [:] }

    /// The tensor of `name`.
    public subscript(name: String) -> Tensor<Float>? { tensors[name] }

    /// Number of scalars over all tensors.
    public var scalarCount: Int { names.reduce(0) { $0 + (tensors[$1]?.count ?? 0) } }

    /// Adds (or replaces) a tensor, appending its name if new.
    public mutating func set(_ name: String, _ tensor: Tensor<Float>) {
        if tensors[name] == nil { names.append(name) }
        tensors[name] = tensor
    }

    /// The subset of `names` (in this set's order).
    public func restricted(to keep: Set<String>) -> ParameterSet {
        var out = ParameterSet()
        for n in names where keep.contains(n) { out.set(n, tensors[n]!) }
        return out
    }

    /// θ + Σₖ cₖ·dₖ: every tensor of a direction dₖ is scaled and added to the tensor of the same name;
    /// tensors no direction touches are shared, not copied. Sums are formed in float32, as PyTorch's
    /// `p.data = w + step` is.
    /// - Throws: `LandscapeError.mismatch` if a direction tensor has another shape than the parameter.
    public func moved(along terms: [(coefficient: Double, direction: ParameterSet)]) throws -> ParameterSet {
        var out = self
        var touched = Set<String>()
        for (_, d) in terms { touched.formUnion(d.names) }
        for name in names where touched.contains(name) {
            let base = tensors[name]!
            var t = Tensor<Float>(shape: base.shape)
            let dst = t.mutablePointer(), n = base.count
            dst.update(from: base.pointer, count: n)
            for (c, d) in terms {
                guard let dt = d.tensors[name] else { continue }
                guard dt.shape == base.shape else {
                    throw LandscapeError.mismatch(
                        file: "direction", what: name, expected: describe(base.shape), got: describe(dt.shape))
                }
                let a = Float(c), src = dt.pointer
                if a == 0 { continue }
                for i in 0..<n { dst[i] += a * src[i] }
            }
            out.tensors[name] = t
        }
        return out
    }
}

func describe(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }

/// Euclidean norm of `count` floats, accumulated in Double.
func norm(_ p: UnsafePointer<Float>, count: Int) -> Double {
    var s = 0.0
    for i in 0..<count { let v = Double(p[i]); s += v * v }
    return s.squareRoot()
}
