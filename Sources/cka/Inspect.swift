import ArgumentParser
import CKAKit
import Foundation

extension CKACommand {
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what an activation store holds: model, N, and every layer.",
            discussion: "Checks the file as every other command would: format, version, N rows in every dataset.")

        @Argument(help: "An activation store (.h5).")
        var file: String

        @Flag(help: "Print all file attributes too.")
        var attributes = false

        func run() throws {
            try reportingErrors {
                let s = try ActivationStore(path: file)
                print(Inspect.report(s, attributes: attributes))
            }
        }

        static func report(_ s: ActivationStore, attributes: Bool) -> String {
            var out: [String] = []
            func kv(_ k: String, _ v: String) {
                out.append((k + ":").padding(toLength: 15, withPad: " ", startingAt: 0) + v)
            }
            let fmt = s.attributes["format"]?.stringValue ?? "activations (no format attribute)"
            kv("file", s.path)
            kv("format", "\(fmt), version \(s.formatVersion.map(String.init) ?? "unstated (read as 1)")")
            kv("model", s.modelName)
            for key in ["architecture", "checkpoint", "preprocessing", "created_by"] {
                if let v = s.attributes[key]?.description, !v.isEmpty { kv(key, v) }
            }
            var inputs = "\(s.count) inputs"
            if let l = s.labels { inputs += ", labelled (\(Set(l.filter { $0 >= 0 }).count) classes)" }
            kv("N", inputs)
            if s.hasDataset("inputs/pixels") { kv("pixels", "/inputs/pixels stored") }
            if attributes {
                for (k, v) in s.attributes.sorted(by: { $0.key < $1.key }) { out.append("  @\(k) = \(v)") }
            }
            let names = Set(s.layers.map(\.name)).union(s.grams.keys)
            kv("layers", "\(s.layers.count) with activations, \(s.grams.count) with Grams")
            let header = ["name", "kind", "block", "shape", "dtype", "grams"]
            var rows: [[String]] = []
            let ordered = s.layers.map(\.name) + names.subtracting(s.layers.map(\.name)).sorted(by: naturalOrder)
            for name in ordered {
                let l = s.layers.first { $0.name == name }
                let g = s.grams[name]
                rows.append([
                    name, l?.kind.rawValue ?? LayerKind.infer(from: name).rawValue,
                    l.map { $0.block >= 0 ? "\($0.block)" : "-" } ?? "-",
                    l.map { describeShape($0.shape) } ?? "-", l.map { "\($0.elementType)" } ?? "-",
                    g.map { "\($0.batchCount)×[\($0.batchSize)×\($0.batchSize)] \($0.tokens)" } ?? "-",
                ])
            }
            let widths = header.indices.map { c in ([header[c]] + rows.map { $0[c] }).map(\.count).max() ?? 0 }
            func line(_ r: [String]) -> String {
                r.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                    .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
            }
            out.append("")
            out.append(line(header))
            out.append(line(widths.map { String(repeating: "-", count: $0) }))
            out += rows.map(line)
            return out.joined(separator: "\n")
        }
    }
}
