@testable import CKAPlot
import Foundation
import Testing

/// Where the examples go: `$CKAPLOT_EXAMPLES_DIR` when set (to look at them), else a scratch directory
/// that is removed afterwards.
func exampleDirectory() throws -> (String, ScratchDirectory?) {
    if let dir = ProcessInfo.processInfo.environment["CKAPLOT_EXAMPLES_DIR"], !dir.isEmpty {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (dir, nil)
    }
    let scratch = try ScratchDirectory()
    return (scratch.path, scratch)
}

/// Realistic pictures of every kind. Run with `CKAPLOT_EXAMPLES_DIR=/tmp/plot-examples` to keep them.
@Suite("Examples")
struct ExampleTests {
    @Test("12 × 12 and 48 × 48 heatmaps with long labels")
    func examples() throws {
        let (dir, scratch) = try exampleDirectory()
        defer { scratch?.cleanUp() }
        let small = Heatmap(
            values: blockCKA(rows: 12, columns: 12),
            rowLabels: (0..<12).map { "blocks.\($0)" }, columnLabels: (0..<12).map { "blocks.\($0)" },
            title: "ViT-B/16 vs ViT-B/16 (seed 2)", xLabel: "ViT-B/16 seed 2 layer",
            yLabel: "ViT-B/16 layer")
        try small.write(to: dir + "/heatmap-12.png")
        try small.write(to: dir + "/heatmap-12.svg")
        let names = (0..<48).map { i in "blocks.\(i / 4).\(["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"][i % 4])" }
        var values = blockCKA(rows: 48, columns: 48)
        values[5][7] = .nan
        let large = Heatmap(
            values: values, rowLabels: names, columnLabels: names,
            title: "Linear CKA, ViT-S/16 vs DeiT-S (all sublayers)", xLabel: "DeiT-S", yLabel: "ViT-S/16")
        try large.write(to: dir + "/heatmap-48.png")
        try large.write(to: dir + "/heatmap-48.svg")
    }
}

extension ExampleTests {
    @Test("Writes an example grid")
    func gridExample() throws {
        let (dir, scratch) = try exampleDirectory()
        defer { scratch?.cleanUp() }
        let models = ["ViT-S/16", "ViT-B/16", "DeiT-S", "DINO ViT-S/16"]
        var panels: [Heatmap] = []
        for a in 0..<models.count {
            for b in a..<models.count where a != b || a == 0 {
                let n = a == 1 ? 24 : 12, mcols = b == 1 ? 24 : 12
                panels.append(
                    Heatmap(
                        values: blockCKA(rows: n, columns: mcols),
                        rowLabels: (0..<n).map { "blocks.\($0)" }, columnLabels: (0..<mcols).map { "blocks.\($0)" },
                        title: "\(models[a]) vs \(models[b])", xLabel: models[b], yLabel: models[a]))
            }
        }
        let grid = HeatmapGrid(panels: panels, title: "Linear CKA between all model pairs (ImageNet val, 10k images)")
        try grid.write(to: dir + "/grid.png")
        try grid.write(to: dir + "/grid.svg")
    }
}

extension ExampleTests {
    @Test("Writes example line plots")
    func lineExamples() throws {
        let (dir, scratch) = try exampleDirectory()
        defer { scratch?.cleanUp() }
        let models = ["ViT-S/16", "ViT-B/16", "DeiT-S", "DINO ViT-S/16"]
        let knn = LinePlot(
            series: models.enumerated().map { k, name in
                LinePlot.Series(
                    name: name,
                    y: (0..<12).map { b in
                        0.05 + (0.55 + 0.07 * Double(k)) / (1 + exp(-(Double(b) - 6 + Double(k)) / 1.6))
                    })
            }, title: "k-NN accuracy of the [CLS] token per block", xLabel: "block", yLabel: "top-1 accuracy (k = 20)")
        try knn.write(to: dir + "/knn.png")
        try knn.write(to: dir + "/knn.svg")
        let alphas = stride(from: -1.0, through: 1.0, by: 0.02).map { $0 }
        var loss = alphas.map { 0.4 + 3 * $0 * $0 + 0.3 * sin(8 * $0) * $0 }
        loss[80] = .nan
        let slice = LinePlot(
            series: [
                LinePlot.Series(name: "train", x: alphas, y: loss),
                LinePlot.Series(name: "val", x: alphas, y: loss.map { $0 * 1.1 + 0.15 }),
            ],
            title: "Loss along a random filter-normalised direction", xLabel: "α", yLabel: "cross-entropy")
        try slice.write(to: dir + "/slice.png")
    }
}

extension ExampleTests {
    @Test("Writes an example contour plot")
    func contourExample() throws {
        let (dir, scratch) = try exampleDirectory()
        defer { scratch?.cleanUp() }
        let xs = stride(from: -1.0, through: 1.0, by: 0.04).map { $0 }
        let ys = stride(from: -1.0, through: 1.0, by: 0.04).map { $0 }
        var z = ys.map { b in
            xs.map { a in 0.3 + 2.5 * a * a + 1.5 * b * b + 0.8 * a * b + 0.4 * sin(5 * a) * cos(4 * b) }
        }
        for j in 45..<51 { for i in 0..<8 { z[j][i] = .nan } }
        let plot = ContourPlot(
            x: xs, y: ys, z: z, title: "Loss landscape of ViT-S/16 around the trained weights",
            xLabel: "direction 1 (α)", yLabel: "direction 2 (β)", colorbarLabel: "cross-entropy loss")
        try plot.write(to: dir + "/contour.png")
        try plot.write(to: dir + "/contour.svg")
    }
}
