import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation

/// A linear probe saved by `cka probe --save` (`/probe/weight` [C, D], `/probe/bias`, `/probe/mean`, `/probe/scale`,
/// attribute `probe_layer`) as a `ClassifierHead` on the model's raw features, for cross-entropy landscapes.
///
/// The probe reads standardised features x̂ = (x − mean)/scale, so its head on raw features is
/// W' = W/scale (column-wise), b' = b − W'·mean — the same logits, computed in Double and stored as float32.
/// Probes of `norm:cls` become the class-token readout, probes of `fc_norm` the global-pool readout.
public enum ProbeHead {
    /// - Throws: `LandscapeError` naming the file if it is not a saved probe, or a probe of a layer that no
    ///   released-head readout computes.
    public static func load(_ path: String, architecture: ViTArchitecture) throws -> ClassifierHead {
        let f = try HDF5File(path: path)
        for name in ["probe/weight", "probe/bias", "probe/mean", "probe/scale"] where !f.exists(name) {
            throw LandscapeError.mismatch(
                file: path, what: "/\(name)", expected: "a saved linear probe (ProbeEvaluation with `save`)",
                got: "missing")
        }
        let layer = try f.attribute("probe_layer")?.stringValue ?? "?"
        let readout: ClassifierHead.Readout
        switch layer {
        case "norm:cls": readout = .classToken
        case "fc_norm": readout = .globalPool
        default:
            throw LandscapeError.invalidArgument(
                "\(path): a probe of '\(layer)'; a landscape head must read norm:cls or fc_norm (train the probe on `layers` norm:cls)"
            )
        }
        let w = try f.dataset("probe/weight").readDouble(), b = try f.dataset("probe/bias").readDouble().scalars
        let mean = try f.dataset("probe/mean").readDouble().scalars,
            scale = try f.dataset("probe/scale").readDouble().scalars
        guard w.rank == 2, w.shape[1] == mean.count, scale.count == mean.count, b.count == w.shape[0] else {
            throw LandscapeError.mismatch(
                file: path, what: "/probe/weight", expected: "[C, D] matching /probe/bias, /probe/mean, /probe/scale",
                got: describe(w.shape))
        }
        let c = w.shape[0], d = w.shape[1], ws = w.scalars
        var weight = Tensor<Float>(shape: [c, d]), bias = Tensor<Float>(shape: [c])
        let wp = weight.mutablePointer(), bp = bias.mutablePointer()
        for i in 0..<c {
            var shift = 0.0
            for j in 0..<d {
                let v = ws[i * d + j] / scale[j]
                wp[i * d + j] = Float(v)
                shift += v * mean[j]
            }
            bp[i] = Float(b[i] - shift)
        }
        return try ClassifierHead(
            readout: readout, weight: weight, bias: bias, architecture: architecture, file: path,
            weightName: "probe/weight", biasName: "probe/bias")
    }
}
