import CKAIO
import CKALandscape
import CKATensor
import Foundation
import Testing
import _CKATestSupport

/// A small parameter set with the ranks a ViT has: 3-D tokens, 2-D weights, 1-D biases and norms.
func toyParameters(seed: UInt64 = 1) throws -> ParameterSet {
    try ParameterSet(
        names: ["cls_token", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.norm1.weight"],
        tensors: [
            "cls_token": randomTensor([1, 1, 8], seed: seed),
            "blocks.0.attn.qkv.weight": randomTensor([24, 8], seed: seed + 1, scale: 3),
            "blocks.0.attn.qkv.bias": randomTensor([24], seed: seed + 2),
            "blocks.0.norm1.weight": randomTensor([8], seed: seed + 3, offset: 1),
        ])
}

func filterNorms(_ t: Tensor<Float>) -> [Double] {
    let rows = t.shape[0], size = t.count / rows, s = t.scalars
    return (0..<rows).map { r in
        (0..<size).reduce(0.0) { $0 + Double(s[r * size + $1]) * Double(s[r * size + $1]) }.squareRoot()
    }
}

@Suite("Filter-normalised directions (Li et al. 2018)")
struct DirectionTests {
    @Test("each filter of the direction has the norm of the weight's filter; 1-D tensors are zero (biasbn)")
    func filterNormalisation() throws {
        let w = try toyParameters()
        let d = FilterNormalizedDirections.random(like: w, seed: 7)
        #expect(d.names == w.names)
        for name in ["cls_token", "blocks.0.attn.qkv.weight"] {
            expectClose(filterNorms(d[name]!), filterNorms(w[name]!), rtol: 1e-6)
        }
        #expect(filterNorms(try d["cls_token"]!.reshaped([1, 8])).count == 1)  // [1, 1, D] is one filter
        #expect(d["blocks.0.attn.qkv.bias"]!.scalars.allSatisfy { $0 == 0 })
        #expect(d["blocks.0.norm1.weight"]!.scalars.allSatisfy { $0 == 0 })
    }

    @Test("without biasbn, 1-D tensors are a copy of the weights (as net_plotter.py)")
    func oneDimensionalCopy() throws {
        let w = try toyParameters()
        let d = FilterNormalizedDirections.random(like: w, seed: 7, ignoreBiasAndNorm: false)
        #expect(d["blocks.0.attn.qkv.bias"]! == w["blocks.0.attn.qkv.bias"]!)
        #expect(d["blocks.0.norm1.weight"]! == w["blocks.0.norm1.weight"]!)
    }

    @Test("layer normalisation gives each tensor the weight tensor's norm; none leaves N(0,1) draws")
    func otherNormalisations() throws {
        let w = try toyParameters()
        let layer = FilterNormalizedDirections.random(like: w, seed: 3, normalization: .layer)
        let raw = FilterNormalizedDirections.random(like: w, seed: 3, normalization: .none)
        let qkv = "blocks.0.attn.qkv.weight"
        expectClose(
            filterNorms(try layer[qkv]!.reshaped([1, 192]))[0], filterNorms(try w[qkv]!.reshaped([1, 192]))[0],
            rtol: 1e-6)
        // The raw draw is the same stream the normalised ones rescale, and looks standard normal.
        let r = raw[qkv]!.scalars.map(Double.init), l = layer[qkv]!.scalars.map(Double.init)
        let ratio = l[0] / r[0]
        expectClose(l, r.map { $0 * ratio }, rtol: 1e-5)
        let mean = r.reduce(0, +) / Double(r.count),
            variance = r.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(r.count)
        #expect(abs(mean) < 0.25 && abs(variance - 1) < 0.3)
    }

    @Test("the same seed gives the same direction, another seed another one")
    func seeded() throws {
        let w = try toyParameters()
        let a = FilterNormalizedDirections.random(like: w, seed: 42),
            b = FilterNormalizedDirections.random(like: w, seed: 42)
        let c = FilterNormalizedDirections.random(like: w, seed: 43)
        for n in w.names { #expect(a[n]! == b[n]!) }
        #expect(a["blocks.0.attn.qkv.weight"]! != c["blocks.0.attn.qkv.weight"]!)
    }

    @Test("θ + a·dx + b·dy touches only the directions' tensors, elementwise in float32")
    func moved() throws {
        let w = try toyParameters()
        let dx = FilterNormalizedDirections.random(like: w.restricted(to: ["blocks.0.attn.qkv.weight"]), seed: 1)
        let dy = FilterNormalizedDirections.random(
            like: w.restricted(to: ["blocks.0.attn.qkv.weight", "cls_token"]), seed: 2)
        let m = try w.moved(along: [(0.5, dx), (-0.25, dy)])
        let q = "blocks.0.attn.qkv.weight"
        let expected = zip(zip(w[q]!.scalars, dx[q]!.scalars), dy[q]!.scalars).map {
            $0.0 + Float(0.5) * $0.1 + Float(-0.25) * $1
        }
        #expect(m[q]!.scalars == expected)
        #expect(m["blocks.0.attn.qkv.bias"]! == w["blocks.0.attn.qkv.bias"]!)
        let bad = try ParameterSet(names: [q], tensors: [q: Tensor<Float>(shape: [8, 24])])
        #expect(throws: LandscapeError.self) { try w.moved(along: [(1, bad)]) }
    }

    @Test("a direction file round-trips; a file for another model is refused naming the parameter")
    func directionFile() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let w = try toyParameters()
        let dx = FilterNormalizedDirections.random(like: w, seed: 1),
            dy = FilterNormalizedDirections.random(like: w, seed: 2)
        let path = dir.appendingPathComponent("dirs.h5").path
        try DirectionFile.write([dx, dy], attributes: ["seed": .int(1)], to: path)
        let (back, attrs) = try DirectionFile.read(path, like: w)
        #expect(back.count == 2 && attrs["seed"] == .int(1))
        for n in w.names { #expect(back[0][n]! == dx[n]! && back[1][n]! == dy[n]!) }
        let other = try ParameterSet(
            names: w.names, tensors: w.tensors.merging(["cls_token": Tensor<Float>(shape: [1, 1, 9])]) { $1 })
        #expect(
            throws: LandscapeError.mismatch(
                file: path, what: "xdirection/cls_token", expected: "[1, 1, 9]", got: "[1, 1, 8]")
        ) {
            try DirectionFile.read(path, like: other)
        }
    }
}
