import CKACheckpoint
import CKAIO
import CKATensor
import Foundation
import _CKASupport

/// The directions of a landscape run on disk, so a run can be resumed or repeated with other examples or
/// losses: groups `xdirection` (and `ydirection`) holding one float32 dataset per perturbed parameter,
/// named after it, with the parameter order in the group attribute `names` (as loss-landscape's direction
/// files, with names instead of positions). Root attributes record how they were made.
public enum DirectionFile {
    static let groups = ["xdirection", "ydirection"]

    /// Writes one or two directions atomically.
    public static func write(_ directions: [ParameterSet], attributes: [String: HDF5AttributeValue], to path: String)
        throws
    {
        try HDF5File.createAtomically(path) { f in
            try f.setAttribute("format", .string("landscape-directions"))
            try f.setAttribute("format_version", .int(1))
            for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { try f.setAttribute(k, v) }
            for (group, d) in zip(groups, directions) {
                try f.createGroup(group)
                try f.setAttribute("names", .strings(d.names), of: group)
                for name in d.names {
                    let t = d[name]!
                    try f.createDataset(group + "/" + name, type: .float32, shape: t.shape).write(t)
                }
            }
        }
    }

    /// Reads the directions of `path`, checking that each tensor has the shape of the parameter of the same
    /// name in `parameters`.
    /// - Throws: `LandscapeError.mismatch` naming the file and the parameter.
    public static func read(_ path: String, like parameters: ParameterSet) throws -> (
        directions: [ParameterSet], attributes: [String: HDF5AttributeValue]
    ) {
        let f = try HDF5File(path: path)
        let attrs = try f.attributes()
        guard attrs["format"]?.stringValue == "landscape-directions" else {
            throw LandscapeError.mismatch(
                file: path, what: "attribute 'format'", expected: "\"landscape-directions\"",
                got: attrs["format"].map { "\"\($0)\"" } ?? "missing")
        }
        var out: [ParameterSet] = []
        for group in groups where f.exists(group) {
            guard case .strings(let names)? = try f.attribute("names", of: group) else {
                throw LandscapeError.mismatch(
                    file: path, what: "\(group) attribute 'names'", expected: "a list of parameter names",
                    got: "missing")
            }
            var d = ParameterSet()
            for name in names {
                guard let w = parameters[name] else {
                    throw LandscapeError.mismatch(
                        file: path, what: "\(group)/\(name)", expected: "a parameter of the model",
                        got: "an unknown name")
                }
                let ds = try f.dataset(group + "/" + name)
                guard ds.shape == w.shape else {
                    throw LandscapeError.mismatch(
                        file: path, what: "\(group)/\(name)", expected: describe(w.shape), got: describe(ds.shape))
                }
                d.set(name, try ds.readFloat().reshaped(w.shape))
            }
            out.append(d)
        }
        return (out, attrs)
    }
}

/// Removes a direction file written by a run that then failed before its surface existed, so a failed run
/// leaves no orphan `OUT.directions.h5`. Once the surface file exists the directions are kept: a resumed run
/// needs them.
public final class DirectionFileGuard {
    /// The surface the directions belong to.
    public let surfacePath: String
    /// The direction file this run wrote (nil: none, or one that existed before).
    public var written: String?

    public init(surfacePath: String) { self.surfacePath = surfacePath }

    deinit {
        if let written, !FileManager.default.fileExists(atPath: surfacePath) { unlink(written) }
    }
}

/// Attention heads a checkpoint's saved training arguments (`args`, an `argparse.Namespace`) state: the fields
/// `num_heads`/`heads` and `decoder_num_heads`/`decoder_heads`, else the official MAE model names
/// (`mae_vit_{base,large,huge}_patch…`: decoder of 16 heads); for a Hugging Face ViTMAE directory, its
/// `config.json` (`decoder_num_attention_heads`). Nil where the arguments say nothing.
public func savedHeadCounts(_ checkpoint: Checkpoint) -> (encoder: Int?, decoder: Int?) {
    guard let args = checkpoint.extras.first(where: { $0.key == "args" })?.value else {
        return (nil, checkpoint.hubDecoderHeads)
    }
    var fields: [String: PickleValue] = [:]
    switch args {
    case let .object(o): for (k, v) in o.attributes { fields[k] = v }
    case .dict: for (k, v) in args.stringKeyedEntries ?? [] { fields[k] = v }
    default: return (nil, nil)
    }
    func int(_ keys: String...) -> Int? {
        keys.lazy.compactMap { fields[$0]?.intValue }.first.flatMap { $0 > 0 ? $0 : nil }
    }
    var decoder = int("decoder_num_heads", "decoder_heads")
    if decoder == nil, case let .string(model)? = fields["model"],
        ["mae_vit_base_patch", "mae_vit_large_patch", "mae_vit_huge_patch"].contains(where: { model.hasPrefix($0) })
    {
        decoder = 16
    }
    return (int("num_heads", "heads"), decoder)
}
