import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

/// The parameter formula of `notebooks-export/reference/vit/official_weights.py`, bit for bit: element `i` of the
/// parameter called `name` (timm name, row-major flat index) is
/// `Float(offset + 2^log2Scale · ((mix(mix(fnv1a64(name) ^ mix(seed)) &+ (i+1)·φ) >> 40) · 2⁻²³ − 1))`,
/// with `mix` the SplitMix64 finaliser and φ = 0x9E3779B97F4A7C15. No weight file is needed.
enum OfficialWeights {
    static let golden: UInt64 = 0x9E37_79B9_7F4A_7C15

    static func fnv1a64(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    @inline(__always) static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// (offset, log₂ scale) of a parameter, by kind (same table as `kind_of` in the Python script).
    static func kind(of name: String) -> (offset: Double, log2Scale: Int) {
        if name == "cls_token" { return (0, -3) }
        if name == "pos_embed" { return (0, -4) }
        if name.hasPrefix("patch_embed.proj.") { return (0, -5) }
        let parts = name.split(separator: ".")
        let leaf = parts.count >= 2 ? String(parts[parts.count - 2]) : name
        let isWeight = name.hasSuffix(".weight")
        switch leaf {
        case "norm1", "norm2", "norm", "fc_norm": return isWeight ? (1, -3) : (0, -4)
        case "qkv", "fc1": return (0, -4)
        case "proj": return (0, -5)
        case "fc2": return (0, isWeight ? -6 : -5)
        default: preconditionFailure("no formula for parameter \(name)")
        }
    }

    static func base(_ name: String, seed: UInt64) -> UInt64 { mix(fnv1a64(name) ^ mix(seed)) }

    static func value(_ name: String, index: Int, seed: UInt64) -> Float {
        let (offset, log2Scale) = kind(of: name)
        let z = mix(base(name, seed: seed) &+ UInt64(index + 1) &* golden)
        let u = Double(z >> 40) * 0x1p-23 - 1
        return Float(offset + Double(sign: .plus, exponent: log2Scale, significand: 1) * u)
    }

    static func tensor(_ name: String, shape: [Int], seed: UInt64) -> Tensor<Float> {
        var t = Tensor<Float>(shape: shape)
        let (offset, log2Scale) = kind(of: name)
        let scale = Double(sign: .plus, exponent: log2Scale, significand: 1)
        var z = base(name, seed: seed)
        t.withUnsafeMutableBufferPointer { p in
            for i in 0..<p.count {
                z &+= golden  // base + (i+1)·φ
                let u = Double(mix(z) >> 40) * 0x1p-23 - 1
                p[i] = Float(offset + scale * u)
            }
        }
        return t
    }

    /// ViT-B/16 parameters under timm names (12 blocks, width 768, MLP 3072, 197 tokens).
    static func vitB16(seed: UInt64, finalNorm: Bool, fcNorm: Bool, skip: Set<String> = []) -> [String: Tensor<Float>] {
        let d = 768, hid = 3072
        var shapes: [(String, [Int])] = [
            ("cls_token", [1, 1, d]), ("pos_embed", [1, 197, d]),
            ("patch_embed.proj.weight", [d, 3, 16, 16]), ("patch_embed.proj.bias", [d]),
        ]
        for b in 0..<12 {
            let p = "blocks.\(b)."
            shapes += [
                (p + "norm1.weight", [d]), (p + "norm1.bias", [d]), (p + "attn.qkv.weight", [3 * d, d]),
                (p + "attn.qkv.bias", [3 * d]), (p + "attn.proj.weight", [d, d]), (p + "attn.proj.bias", [d]),
                (p + "norm2.weight", [d]), (p + "norm2.bias", [d]), (p + "mlp.fc1.weight", [hid, d]),
                (p + "mlp.fc1.bias", [hid]), (p + "mlp.fc2.weight", [d, hid]), (p + "mlp.fc2.bias", [d]),
            ]
        }
        if finalNorm { shapes += [("norm.weight", [d]), ("norm.bias", [d])] }
        if fcNorm { shapes += [("fc_norm.weight", [d]), ("fc_norm.bias", [d])] }
        var out: [String: Tensor<Float>] = [:]
        for (name, shape) in shapes where !skip.contains(name) { out[name] = tensor(name, shape: shape, seed: seed) }
        return out
    }

    /// MoCo-v3's fixed position table as `vits.py build_2d_sincos_position_embedding` computes it in float32:
    /// ω_k = 1/10000^(k/192), token 1 + row·14 + col = [sin(row·ω), cos(row·ω), sin(col·ω), cos(col·ω)], CLS row 0.
    static func mocoV3SinCos(grid: Int = 14, width: Int = 768) -> Tensor<Float> {
        let q = width / 4
        let omega = (0..<q).map { k -> Float in 1 / Foundation.pow(Float(10000), Float(k) / Float(q)) }
        var t = Tensor<Float>(shape: [1, grid * grid + 1, width])
        t.withUnsafeMutableBufferPointer { p in
            for m in 0..<grid * grid {
                let row = Float(m / grid), col = Float(m % grid), o = (m + 1) * width
                for k in 0..<q {
                    let a = row * omega[k], b = col * omega[k]
                    p[o + k] = Foundation.sin(a); p[o + q + k] = Foundation.cos(a)
                    p[o + 2 * q + k] = Foundation.sin(b); p[o + 3 * q + k] = Foundation.cos(b)
                }
            }
        }
        return t
    }
}

/// The fixtures written by `notebooks-export/reference/vit/make_official_fixtures.py` (beside this file).
let officialFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
    "OfficialFixtures")

/// The two stored 224² crops as network input: `(Float(u8)/255 − mean)/std` in float32, as torchvision computes it.
func officialPixels() throws -> Tensor<Float> {
    let file = try HDF5File(path: officialFixtures.appendingPathComponent("images.h5").path)
    let ds = try file.dataset("inputs/rgb_u8")
    #expect(ds.shape == [2, 3, 224, 224])
    let u8 = try ds.readUInt8()
    let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
    let plane = 224 * 224
    return try Tensor(
        shape: ds.shape,
        scalars: u8.enumerated().map { i, v in
            let c = (i / plane) % 3
            return (Float(v) / Float(255) - mean[c]) / std[c]
        })
}

@Suite("ViT-B/16 forward pass against the official DINO, MoCo-v3 and MAE code (formula weights)")
struct OfficialCodeTests {
    @Test(
        "The weight formula matches the Python generator bit for bit (stored probes)",
        arguments: ["dino", "mocov3", "mae"])
    func weightProbes(model: String) throws {
        let path = officialFixtures.appendingPathComponent("\(model)_vitb16.h5").path
        let file = try HDF5File(path: path)
        let seed = UInt64(try #require(try file.attribute("seed")?.intValue))
        let json = try #require(try file.attribute("weight_probes")?.stringValue)
        let probes = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[Any]])
        #expect(probes.count == 12)
        for probe in probes {
            let name = try #require(probe[0] as? String), index = try #require(probe[1] as? Int)
            let bits = try #require((probe[2] as? NSNumber)?.uint32Value)
            let got = OfficialWeights.value(name, index: index, seed: seed)
            #expect(got.bitPattern == bits, "\(name)[\(index)]: \(got) vs \(Float(bitPattern: bits))")
        }
        // The vectorised generator agrees with the single-element form.
        let t = OfficialWeights.tensor("blocks.0.norm1.weight", shape: [768], seed: seed)
        #expect(t[767] == OfficialWeights.value("blocks.0.norm1.weight", index: 767, seed: seed))
    }

    /// Relative tolerance on max|ours − official| / max|official| per stored layer. The references are float32
    /// (no float16 rounding to allow for); what remains is summation order in BLAS vs PyTorch (measured ≈1e-6).
    static let tolerance = 1e-4

    @Test(
        "Every stored layer of the official forward pass within 1e-4 relative (max |diff| / max |ref|)",
        arguments: ["dino", "mocov3", "mae"])
    func forwardAgainstOfficial(model name: String) throws {
        let start = Date()
        let path = officialFixtures.appendingPathComponent("\(name)_vitb16.h5").path
        let file = try HDF5File(path: path)
        let store = try ActivationStore(path: path)
        let seed = UInt64(try #require(try file.attribute("seed")?.intValue))
        guard let finalNorm = try file.attribute("final_norm")?.boolValue,
            let fcNorm = try file.attribute("fc_norm")?.boolValue
        else { Issue.record("\(path): no final_norm / fc_norm attributes"); return }
        let sinCos = try file.attribute("pos_embed")?.stringValue == "mocov3-sincos"
        #expect(store.count == 2 && store.layers.count >= 6)

        var params = OfficialWeights.vitB16(
            seed: seed, finalNorm: finalNorm, fcNorm: fcNorm,
            skip: sinCos ? ["pos_embed"] : [])
        if sinCos { params["pos_embed"] = OfficialWeights.mocoV3SinCos() }
        var arch = ViTArchitecture.standard(width: 768, depth: 12, heads: 12, patchSize: 16, grid: 14)
        arch.hasFinalNorm = finalNorm
        arch.hasFCNorm = fcNorm
        let vit = try VisionTransformer(parameters: params, architecture: arch, file: "\(name) formula weights")
        params = [:]
        let built = Date()

        let pixels = try officialPixels()
        var tokens: [String: [Int]] = [:]
        for layer in store.layers {
            if case .ints(let t)? = try file.attribute("tokens", of: "activations/\(layer.name)") {
                tokens[layer.name] = t
            }
        }
        var results: [String: (diff: Double, ref: Double)] = [:]
        try vit.forward(pixels, hooks: Set(store.layers.map(\.name))) { layer, value in
            var ours = value
            if let t = tokens[layer] {  // [B, 197, C] → the stored tokens [B, K, C]
                let c = value.shape[2]
                ours = try Tensor(
                    shape: [value.shape[0], t.count, c],
                    scalars: (0..<value.shape[0]).flatMap { b in
                        t.flatMap { k in (0..<c).map { value[b, k, $0] } }
                    })
            }
            let ref = try store.read(layer)
            #expect(ours.shape == ref.shape, "\(layer)")
            var maxDiff = 0.0, maxRef = 0.0
            for (o, r) in zip(ours.scalars, ref.scalars) {
                maxDiff = max(maxDiff, abs(Double(o) - Double(r))); maxRef = max(maxRef, abs(Double(r)))
            }
            results[layer] = (maxDiff, maxRef)
        }
        #expect(Set(results.keys) == Set(store.layers.map(\.name)), "every stored layer is a hook point")
        var lines: [String] = []
        for layer in store.layers.map(\.name) {
            guard let r = results[layer] else { continue }
            let rel = r.diff / max(r.ref, 1e-30)
            #expect(rel <= Self.tolerance, "\(name) \(layer): max|diff| \(r.diff), max|ref| \(r.ref), relative \(rel)")
            lines.append(
                "  \(layer): max|diff| \(String(format: "%.3g", r.diff)) / max|ref| \(String(format: "%.4g", r.ref))"
                    + " = \(String(format: "%.3g", rel))")
        }
        let done = Date()
        print(
            "official \(name) ViT-B/16 (seed \(seed)): weights+model \(String(format: "%.2f", built.timeIntervalSince(start))) s,"
                + " forward+compare \(String(format: "%.2f", done.timeIntervalSince(built))) s\n"
                + lines.joined(separator: "\n"))
    }

    @Test("MoCo-v3 sin-cos table: CLS row zero, first half encodes the patch row, second half the column")
    func mocoSinCosLayout() {
        let t = OfficialWeights.mocoV3SinCos()
        #expect((0..<768).allSatisfy { t[0, 0, $0] == 0 })
        // Token 1 + 1·14 + 0 = 15 is row 1, column 0: sin(1·ω₀) = sin 1 in slot 0, sin(0) = 0 in slot 384.
        #expect(abs(t[0, 15, 0] - Foundation.sin(Float(1))) < 1e-7 && t[0, 15, 384] == 0 && t[0, 15, 576] == 1)
        #expect(t[0, 2, 0] == 0 && abs(t[0, 2, 384] - Foundation.sin(Float(1))) < 1e-7)
    }
}
