import ArgumentParser
import CKAKit

// Option values with their own types: parsed (and refused with the valid values listed) by the argument
// parser, so the commands never split or compare strings.

extension CKAEstimator: ExpressibleByArgument {}
extension TokenReduction: ExpressibleByArgument {}
extension GramSource: ExpressibleByArgument {}

/// `--store`: a comma-separated subset of activations, pooled, grams, pixels, logits.
struct StoreList: ExpressibleByArgument {
    static let names: [(String, StoreSelection)] = [
        ("activations", .activations), ("pooled", .pooled), ("grams", .grams),
        ("pixels", .pixels), ("logits", .logits),
    ]
    let selection: StoreSelection
    let text: String

    init?(argument: String) {
        var s: StoreSelection = []
        let parts = argument.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
            !$0.isEmpty
        }
        for part in parts {
            guard let known = StoreList.names.first(where: { $0.0 == part }) else { return nil }
            s.insert(known.1)
        }
        guard !s.isEmpty else { return nil }
        selection = s
        text = parts.joined(separator: ",")
    }

    var defaultValueDescription: String { text }
    static var allValueStrings: [String] { names.map(\.0) }
}

/// `--dtype`: the element type of stored activations.
enum StoredDType: String, ExpressibleByArgument, CaseIterable {
    case float32, float16

    var elementType: HDF5ElementType { self == .float16 ? .float16 : .float32 }
}

/// `--format`: the picture format of plots.
enum PictureFormat: String, ExpressibleByArgument, CaseIterable {
    case png, svg
}

/// `--preprocessing`: a named evaluation transform (dino, mocov3, mae, timm-augreg, dinov2, …).
struct PreprocessingPreset: ExpressibleByArgument {
    let name: String
    let preprocessing: Preprocessing

    init?(argument: String) {
        guard let p = Preprocessing.preset(named: argument) else { return nil }
        name = argument
        preprocessing = p
    }

    var defaultValueDescription: String { name }
    static var allValueStrings: [String] { Preprocessing.presets.map(\.name) }
}

extension LandscapeLoss: ExpressibleByArgument {}
extension ExamplePick: ExpressibleByArgument {}
extension IgnoredParameters: ExpressibleByArgument {}
