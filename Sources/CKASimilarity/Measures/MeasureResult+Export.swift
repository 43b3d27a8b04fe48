import CKAIO
import CKATensor
import Foundation
import _CKASupport

extension MeasureResult {
    /// The header of the long CSV with measures and statistics (formats.md §2).
    public static let longCSVHeader =
        "model_a,layer_a,model_b,layer_b,measure,estimator,batch_size,value,ci_low,ci_high,p_value,p_adjusted,null_mean,null_sd"

    /// Long CSV rows without the header, one per cell; statistics not requested stay empty.
    public func longCSVRows() -> [String] {
        let r = result, s = statistics
        func cell(_ m: [[Double]]?, _ i: Int, _ j: Int) -> String { m.map { "\($0[i][j])" } ?? "" }
        var rows: [String] = []
        for (i, la) in r.layersA.enumerated() {
            for (j, lb) in r.layersB.enumerated() {
                rows.append(
                    [
                        csvField(r.modelA), csvField(la), csvField(r.modelB), csvField(lb), measure.rawValue,
                        estimatorLabel,
                        "\(r.batchSize)", "\(r.matrix[i][j])", cell(s.ciLow, i, j), cell(s.ciHigh, i, j),
                        cell(s.pValue, i, j), cell(s.pAdjusted, i, j), cell(s.nullMean, i, j), cell(s.nullSD, i, j),
                    ]
                    .joined(separator: ","))
            }
        }
        return rows
    }

    /// The path of this measure's file when several measures share one output name: `<stem>.<measure>.<ext>`.
    public static func path(_ path: String, measure: MeasureName, several: Bool) -> String {
        guard several else { return path }
        let url = URL(fileURLWithPath: path)
        let ext = url.pathExtension
        let stem = ext.isEmpty ? path : String(path.dropLast(ext.count + 1))
        return ext.isEmpty ? "\(stem).\(measure.rawValue)" : "\(stem).\(measure.rawValue).\(ext)"
    }

    /// Long CSV of several results with the header.
    public static func longCSV(_ results: [MeasureResult]) -> String {
        ([longCSVHeader] + results.flatMap { $0.longCSVRows() }).joined(separator: "\n") + "\n"
    }

    /// Writes one HDF5 file (formats.md §2, `format = "similarity-matrices"`, version 1) with a `[LA, LB]`
    /// float64 matrix per measure, `/<measure>`, and, when computed, `/<measure>_ci_low`, `_ci_high`,
    /// `_p_value`, `_p_adjusted`, `_null_mean`, `_null_sd`. Atomic.
    public static func writeHDF5(_ results: [MeasureResult], to path: String) throws {
        guard let first = results.first?.result else { return }
        try HDF5File.createAtomically(path) { f in
            let la = first.layersA.count, lb = first.layersB.count
            func put(_ name: String, _ m: [[Double]]?) throws {
                guard let m else { return }
                let ds = try f.createDataset(name, type: .float64, shape: [la, lb])
                try ds.write(Tensor<Double>(shape: [la, lb], scalars: m.flatMap { $0 }))
            }
            for r in results {
                let k = r.measure.rawValue, s = r.statistics
                try put(k, r.result.matrix)
                try put(k + "_ci_low", s.ciLow); try put(k + "_ci_high", s.ciHigh)
                try put(k + "_p_value", s.pValue); try put(k + "_p_adjusted", s.pAdjusted)
                try put(k + "_null_mean", s.nullMean); try put(k + "_null_sd", s.nullSD)
            }
            try f.writeStrings("layers_a", first.layersA)
            try f.writeStrings("layers_b", first.layersB)
            let so = results[0].statisticsOptions
            let attrs: [(String, HDF5AttributeValue)] = [
                ("format", .string("similarity-matrices")), ("format_version", .int(1)),
                ("measures", .string(results.map(\.measure.rawValue).joined(separator: ","))),
                ("estimator", .string(first.estimator.rawValue)), ("batch_size", .int(first.batchSize)),
                ("tokens", .string(first.tokens.rawValue)), ("n_examples", .int(first.examplesUsed)),
                ("file_a", .string(first.fileA)), ("file_b", .string(first.fileB)),
                ("model_a", .string(first.modelA)), ("model_b", .string(first.modelB)),
                ("bootstrap", .int(so.bootstrap)), ("confidence", .double(so.confidence)),
                ("permutations", .int(so.permutations)), ("seed", .int(Int(truncatingIfNeeded: so.seed))),
                ("correction", .string(so.correction.rawValue)), ("alpha", .double(so.alpha)),
                ("permutation_precision", .string(so.permutationPrecision.rawValue)),
                ("created_by", .string("cka \(toolkitVersion)")),
            ]
            for (k, v) in attrs { try f.setAttribute(k, v) }
        }
    }
}
