import ArgumentParser
import CKAKit
import Foundation

extension CKACommand {
    struct LandscapePlot: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "landscape-plot",
            abstract: "Draw a loss surface: contour map with labelled levels and a heatmap (2-D), or a curve (1-D).",
            discussion: """
                Reads a landscape store written by 'cka landscape'. A plane gives two pictures, OUT-contour.png (filled \
                contours, each level labelled on its line, colour bar with the levels) and OUT-heatmap.png (the grid \
                values, y upwards); a line gives OUT-curve.png (the loss and any stored parts, e.g. RC-MAE's \
                reconstruction and consistency). A --curvature-map store also gives OUT-curvature.png (|λ_min/λ_max| \
                per point); a --pca-of plane has its trajectory drawn over the contours. Points not computed yet are grey, so a running surface can be looked at. \
                Levels follow loss-landscape's plot_2D: --vmin, --vmax, --vlevel (default: 12 levels over the data range).
                  cka landscape-plot surface.h5 --format svg
                  cka landscape-plot surface.h5 --vmin 0.5 --vmax 3 --vlevel 0.25 --log
                """)

        @Argument(help: "The landscape store (.h5).")
        var surface: String

        @Option(help: "Output path prefix (default: the store's path without .h5).")
        var out: String?

        @Option(help: "Picture format: png or svg.")
        var format = PictureFormat.png

        @Option(help: "Lowest contour level / colour (default: the minimum loss).")
        var vmin: Double?

        @Option(help: "Highest contour level / colour (default: the maximum loss).")
        var vmax: Double?

        @Option(help: "Spacing of the contour levels (default: 12 levels over the range).")
        var vlevel: Double?

        @Flag(help: "Plot log10(loss) (for surfaces whose loss spans orders of magnitude).")
        var log = false

        func validate() throws {
            if let vlevel, !(vlevel > 0) { throw ValidationError("--vlevel must be positive") }
            if let vmin, let vmax, !(vmin < vmax) { throw ValidationError("--vmin must be below --vmax") }
        }

        func run() throws {
            try reportingErrors {
                let prefix = out ?? (surface.hasSuffix(".h5") ? String(surface.dropLast(3)) : surface)
                if try HDF5File(path: surface).attribute("format")?.stringValue == "hessian" {
                    print(try plotHessian(prefix: prefix).joined(separator: "\n"))
                    return
                }
                let s = try LandscapeSurface(contentsOf: surface)
                let transform: (Double) -> Double = log ? { $0 > 0 ? Foundation.log10($0) : .nan } : { $0 }
                let lossName = s.attributes["loss"]?.stringValue ?? "loss"
                let label = log ? "log10 \(lossName) loss" : "\(lossName) loss"
                let title = [
                    s.attributes["model"]?.stringValue
                        ?? s.attributes["checkpoint"]?.stringValue.map { URL(fileURLWithPath: $0).lastPathComponent },
                    "\(lossName) loss, \(s.attributes["normalization"]?.stringValue ?? "filter")-normalised directions",
                ]
                .compactMap { $0 }.joined(separator: " — ")
                var written: [String] = []
                if s.dimensions == 1 {
                    var series = [LinePlot.Series(name: lossName, x: s.x, y: s.loss.map(transform))]
                    for (name, v) in s.parts.sorted(by: { $0.key < $1.key }) {
                        series.append(LinePlot.Series(name: name, x: s.x, y: v.map(transform)))
                    }
                    let isPath = s.attributes["axis"]?.stringValue == "t"
                    var curveTitle = title
                    if isPath {
                        // The ends A (t = 0) and B (t = 1) as vertical lines over the curve's range.
                        let ys = series.flatMap(\.y).filter(\.isFinite)
                        if let lo = ys.min(), let hi = ys.max() {
                            for (t, key) in [(0.0, "path_from"), (1.0, "path_to")] {
                                let name = (t == 0 ? "A: " : "B: ") + (s.attributes[key]?.stringValue ?? "")
                                series.append(LinePlot.Series(name: name, x: [t, t], y: [lo, hi]))
                            }
                        }
                        curveTitle = [
                            s.attributes["model"]?.stringValue, "\(lossName) loss on the path from A to B",
                        ].compactMap { $0 }.joined(separator: " — ")
                    }
                    let path = "\(prefix)-curve.\(format.rawValue)"
                    try LinePlot(
                        series: series, title: curveTitle,
                        xLabel: isPath ? "t (θ = (1 − t)·θ_A + t·θ_B)" : "α (direction x)",
                        yLabel: label,
                        showsMarkers: s.nx <= 31 && !isPath, showsLegend: series.count > 1
                    ).write(to: path)
                    written.append(path)
                    if let ratio = s.curvatureRatio {
                        let curvature = "\(prefix)-curvature.\(format.rawValue)"
                        try LinePlot(
                            series: [LinePlot.Series(name: "|λ_min/λ_max|", x: s.x, y: ratio)],
                            title: "|λ_min/λ_max| of the Hessian (\(lossName) loss)", xLabel: "α (direction x)",
                            yLabel: "|λ_min/λ_max|", showsMarkers: s.nx <= 31, showsLegend: false
                        ).write(to: curvature)
                        written.append(curvature)
                    }
                } else {
                    let z = (0..<s.ny).map { iy in (0..<s.nx).map { ix in transform(s.loss[iy * s.nx + ix]) } }
                    let finite = z.joined().filter(\.isFinite)
                    guard let lo = finite.min(), let hi = finite.max() else {
                        throw LandscapeError.invalidArgument("\(surface): no point computed yet")
                    }
                    let low = vmin.map(transform) ?? lo, high = vmax.map(transform) ?? max(hi, lo + 1e-12)
                    guard low < high else { throw ValidationError("--vmin/--vmax leave an empty range") }
                    let levels: [Double]? = vlevel.map { step in
                        Array(stride(from: vmin ?? low, through: vmax ?? high, by: step)).map(transform)
                    }
                    let contour = "\(prefix)-contour.\(format.rawValue)"
                    // A trajectory plane: its principal directions with their explained variance, the path drawn.
                    var axisLabels = ("α (direction x)", "β (direction y)"), planeTitle = title
                    if case .doubles(let ratio)? = s.attributes["pca_explained_variance_ratio"], ratio.count == 2 {
                        axisLabels = (
                            String(format: "1st PC (%.1f %% of the variance)", 100 * ratio[0]),
                            String(format: "2nd PC (%.1f %% of the variance)", 100 * ratio[1])
                        )
                        planeTitle = [
                            s.attributes["model"]?.stringValue,
                            "\(lossName) loss on the PCA plane of \(s.trajectory?.checkpoints.count ?? 0) checkpoints",
                        ].compactMap { $0 }.joined(separator: " — ")
                    }
                    var plot = ContourPlot(
                        x: s.x, y: s.y, z: z, title: planeTitle, xLabel: axisLabels.0, yLabel: axisLabels.1,
                        colorbarLabel: label, levelCount: 12, levels: levels, colorRange: low...high)
                    plot.overlay = s.trajectory?.coordinates.map { (x: $0[0], y: $0[1]) } ?? []
                    try plot.write(to: contour)
                    let heat = "\(prefix)-heatmap.\(format.rawValue)"
                    let fmt: (Double) -> String = { String(format: "%g", $0) }
                    try Heatmap(
                        values: z.reversed().map { $0.map { $0.isNaN ? .nan : min(max($0, low), high) } },
                        rowLabels: s.y.reversed().map(fmt), columnLabels: s.x.map(fmt), title: planeTitle,
                        xLabel: axisLabels.0, yLabel: axisLabels.1, colorRange: low...high,
                        colorbarLabel: label
                    ).write(to: heat)
                    written += [contour, heat]
                    if let ratio = s.curvatureRatio, let top = ratio.filter(\.isFinite).max() {
                        // The second panel: Li et al.'s convexity map |λ_min/λ_max| on the same plane.
                        let path = "\(prefix)-curvature.\(format.rawValue)"
                        var map = ContourPlot(
                            x: s.x, y: s.y, z: (0..<s.ny).map { iy in Array(ratio[(iy * s.nx)..<((iy + 1) * s.nx)]) },
                            title: (s.attributes["model"]?.stringValue.map { $0 + " — " } ?? "")
                                + "|λ_min/λ_max| of the Hessian (\(lossName) loss)",
                            xLabel: axisLabels.0, yLabel: axisLabels.1, colorbarLabel: "|λ_min/λ_max|", levelCount: 8,
                            colorRange: 0...max(top, 1e-12))
                        map.overlay = plot.overlay
                        try map.write(to: path)
                        written.append(path)
                    }
                }
                let done = s.completedCount, total = s.done.count
                print(
                    written.joined(separator: "\n")
                        + (done < total ? "\n(\(done) of \(total) points computed so far)" : ""))
            }
        }

        /// A `cka hessian` output: OUT-density (log10 of the SLQ density, as PyHessian draws it) and OUT-blocks
        /// (top-1 eigenvalue and trace per scope, scopes numbered in the order of the x label).
        func plotHessian(prefix: String) throws -> [String] {
            let f = try HDF5File(path: surface)
            let model = try f.attribute("model")?.stringValue ?? "model"
            let lossName = try f.attribute("loss")?.stringValue ?? "loss"
            var written: [String] = []
            if f.exists("density/grid") {
                let grid = try f.dataset("density/grid").readDouble().scalars
                let density = try f.dataset("density/values").readDouble().scalars
                let path = "\(prefix)-density.\(format.rawValue)"
                try LinePlot(
                    series: [
                        LinePlot.Series(name: "", x: grid, y: density.map { Foundation.log10(max($0, 1e-12)) })
                    ],
                    title: "\(model) — Hessian spectral density (\(lossName) loss, SLQ)", xLabel: "eigenvalue",
                    yLabel: "log10 density", showsMarkers: false, showsLegend: false
                ).write(to: path)
                written.append(path)
            }
            let scopes = try f.readStrings("scopes")
            let eig = try f.dataset("eigenvalues").readDouble(), trace = try f.dataset("trace").readDouble()
            if scopes.count > 1 {
                // The blocks (scope 0 is the whole model), averaged over the repeats.
                let r = eig.shape[1]
                let top = (1..<scopes.count).map { i in (0..<r).map { eig[i, $0, 0] }.reduce(0, +) / Double(r) }
                let tr = (1..<scopes.count).map { i in (0..<r).map { trace[i, $0] }.reduce(0, +) / Double(r) }
                let x = (0..<top.count).map(Double.init)
                let names = scopes.dropFirst().enumerated().map { "\($0.offset) \($0.element)" }
                let path = "\(prefix)-blocks.\(format.rawValue)"
                try LinePlot(
                    series: [
                        LinePlot.Series(name: "top-1 eigenvalue", x: x, y: top),
                        LinePlot.Series(name: "trace", x: x, y: tr),
                    ],
                    title: "\(model) — Hessian per block (\(lossName) loss)",
                    xLabel: "block: " + names.joined(separator: ", "), yLabel: "value"
                ).write(to: path)
                written.append(path)
            }
            guard !written.isEmpty else {
                throw LandscapeError.invalidArgument("\(surface): no density and no blocks to draw")
            }
            return written
        }
    }
}
