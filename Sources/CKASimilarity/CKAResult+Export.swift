import CKAIO
import CKATensor
import Foundation
import _CKASupport

extension CKAResult {
    /// Wide CSV (formats.md §2): header `layer,<B layers…>`, one row per layer of A, full precision.
    public func wideCSV() -> String {
        var lines = [(["layer"] + layersB).map(csvField).joined(separator: ",")]
        for (i, name) in layersA.enumerated() {
            lines.append(([csvField(name)] + matrix[i].map { "\($0)" }).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Long CSV rows (formats.md §2) without the header: one per cell.
    public func longCSVRows() -> [String] {
        var rows: [String] = []
        for (i, la) in layersA.enumerated() {
            for (j, lb) in layersB.enumerated() {
                rows.append(
                    [
                        csvField(modelA), csvField(la), csvField(modelB), csvField(lb), estimator.rawValue,
                        "\(batchSize)", "\(matrix[i][j])",
                    ].joined(separator: ","))
            }
        }
        return rows
    }

    /// The header of the long CSV.
    public static let longCSVHeader = "model_a,layer_a,model_b,layer_b,estimator,batch_size,cka"

    /// Long CSV with header (formats.md §2).
    public func longCSV() -> String { ([CKAResult.longCSVHeader] + longCSVRows()).joined(separator: "\n") + "\n" }

    /// Writes the wide CSV atomically.
    public func writeWideCSV(to path: String) throws { try AtomicOutput.write(wideCSV(), to: path) }
    /// Writes the long CSV atomically.
    public func writeLongCSV(to path: String) throws { try AtomicOutput.write(longCSV(), to: path) }

    /// Writes the HDF5 result (formats.md §2, `format = "cka-matrix"`, version 1) atomically.
    public func writeHDF5(to path: String) throws {
        try HDF5File.createAtomically(path) { f in
            let flat = matrix.flatMap { $0 }
            let ds = try f.createDataset("cka", type: .float64, shape: [layersA.count, layersB.count])
            try ds.write(Tensor<Double>(shape: [layersA.count, layersB.count], scalars: flat))
            try f.writeStrings("layers_a", layersA)
            try f.writeStrings("layers_b", layersB)
            let attrs: [(String, HDF5AttributeValue)] = [
                ("format", .string("cka-matrix")), ("format_version", .int(1)),
                ("estimator", .string(estimator.rawValue)),
                ("batch_size", .int(batchSize)), ("tokens", .string(tokens.rawValue)),
                ("n_examples", .int(examplesUsed)),
                ("passes", .int(passes)), ("file_a", .string(fileA)), ("file_b", .string(fileB)),
                ("model_a", .string(modelA)), ("model_b", .string(modelB)),
                ("used_stored_grams", .bool(usedStoredGrams)),
                ("created_by", .string("cka \(toolkitVersion)")),
            ]
            for (k, v) in attrs { try f.setAttribute(k, v) }
        }
    }

    /// The diagonal (for square comparisons of a model with itself, or the first min(LA, LB) cells).
    public var diagonal: [Double] { (0..<min(layersA.count, layersB.count)).map { matrix[$0][$0] } }
}

/// A CSV field (`CSVText.field`: quoted when needed, never a spreadsheet formula).
func csvField(_ s: String) -> String { CSVText.field(s) }
