import Foundation

/// Curves of y against x with markers, grid lines, nice 1-2-5 ticks and a legend: e.g. k-NN accuracy
/// against block index, or a 1-D slice of a loss landscape.
public struct LinePlot: Sendable {
    /// One named curve. Points with a non-finite coordinate are skipped and break the line.
    public struct Series: Sendable {
        /// Name shown in the legend (empty: not listed).
        public var name: String
        /// Horizontal coordinates.
        public var x: [Double]
        /// Vertical coordinates, one per `x`.
        public var y: [Double]

        /// A curve through the points `(x[i], y[i])`.
        public init(name: String, x: [Double], y: [Double]) {
            self.name = name
            self.x = x
            self.y = y
        }

        /// A curve through `(i, y[i])` for `i = 0, 1, …`.
        public init(name: String, y: [Double]) {
            self.init(name: name, x: y.indices.map(Double.init), y: y)
        }
    }

    /// The curves, drawn in order with distinct colours and marker shapes.
    public var series: [Series]
    /// Title above the plot (empty for none).
    public var title: String
    /// Label of the x axis.
    public var xLabel: String
    /// Label of the y axis.
    public var yLabel: String
    /// Visible x range; nil fits the data with a small margin.
    public var xRange: ClosedRange<Double>?
    /// Visible y range; nil fits the data with a small margin.
    public var yRange: ClosedRange<Double>?
    /// Draws a marker at each point of series with at most 60 points.
    public var showsMarkers: Bool
    /// Draws light grid lines at the ticks.
    public var showsGrid: Bool
    /// Draws a legend of the named series: inside the plot where it covers no data, otherwise to its right.
    public var showsLegend: Bool

    /// A plot of `series`.
    public init(
        series: [Series], title: String = "", xLabel: String = "", yLabel: String = "",
        xRange: ClosedRange<Double>? = nil, yRange: ClosedRange<Double>? = nil, showsMarkers: Bool = true,
        showsGrid: Bool = true, showsLegend: Bool = true
    ) {
        self.series = series
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.xRange = xRange
        self.yRange = yRange
        self.showsMarkers = showsMarkers
        self.showsGrid = showsGrid
        self.showsLegend = showsLegend
    }

    /// Series colours (Okabe–Ito, colour-blind safe), in order.
    static let palette: [RGBColor] = [0x0072B2, 0xD55E00, 0x009E73, 0xCC79A7, 0xE69F00, 0x56B4E9, 0x000000]
        .map { RGBColor(hex: $0) }

    /// Writes the plot as PNG or SVG, chosen by the extension of `path`.
    ///
    /// `width` and `height` are pixels for PNG (144 dpi) and points for SVG; nil gives a 440 × 290 pt plot
    /// area plus labels. The file appears only when complete.
    public func write(to path: String, width: Int? = nil, height: Int? = nil) throws {
        let format = try OutputFormat.forPath(path)
        guard !series.isEmpty else { throw PlotError.emptyData(path: path, what: "the plot has no series") }
        for (k, s) in series.enumerated() where s.x.count != s.y.count {
            throw PlotError.sizeMismatch(
                path: path, what: "series \(k) (\(s.name)): number of y values",
                expected: s.x.count, got: s.y.count)
        }
        for (name, range) in [("x range", xRange), ("y range", yRange)] {
            if let range,
                !(range.lowerBound.isFinite && range.upperBound.isFinite && range.lowerBound < range.upperBound)
            {
                throw PlotError.invalidParameter(path: path, what: "\(name) \(range) must be finite with lower < upper")
            }
        }
        let points = series.flatMap { s in zip(s.x, s.y).filter { $0.0.isFinite && $0.1.isFinite } }
        guard let xs = finiteExtent(points.map(\.0)), let ys = finiteExtent(points.map(\.1)) else {
            throw PlotError.emptyData(path: path, what: "no series has a point with finite x and y")
        }
        let xData = xRange ?? paddedRange(xs.min, xs.max, margin: 0.04)
        let yData = yRange ?? paddedRange(ys.min, ys.max, margin: 0.06)
        let requestedWidth = try format.layoutLength(width, name: "width", path: path)
        let requestedHeight = try format.layoutLength(height, name: "height", path: path)

        let m = TextMeasurer()
        let pad = Style.padding, titleFont = 13.0, legendFont = 9.0
        let titleBand = title.isEmpty ? 0 : Style.textHeight(titleFont) + Style.titleGap
        let legend = Legend(
            entries: showsLegend
                ? series.enumerated().filter { !$0.element.name.isEmpty }
                    .map { ($0.element.name, $0.offset, hasMarkers($0.element)) } : [],
            font: legendFont, measurer: m)

        func axes(plotWidth: Double, plotHeight: Double) -> AxesDecoration {
            var spacing = 70.0
            var decoration = AxesDecoration(
                x: LinearAxis(range: xData, length: plotWidth, spacing: spacing),
                y: LinearAxis(range: yData, length: plotHeight, spacing: 45),
                xLabel: xLabel, yLabel: yLabel)
            // Widen the x tick spacing until the labels do not touch.
            while spacing < plotWidth, decoration.x.ticks.values.count > 2 {
                let room = decoration.x.ticks.step / (xData.upperBound - xData.lowerBound) * plotWidth
                if m.maxWidth(decoration.xLabels, size: decoration.tickFont) + 10 <= room { break }
                spacing *= 1.5
                decoration.x = LinearAxis(range: xData, length: plotWidth, spacing: spacing)
            }
            return decoration
        }
        struct Layout {
            var axes: AxesDecoration
            var plotX, plotY, plotWidth, plotHeight, totalWidth, totalHeight: Double
        }
        func layout(legendOutside: Bool) -> Layout {
            var plotWidth = 440.0, plotHeight = 290.0
            var result = Layout(
                axes: axes(plotWidth: plotWidth, plotHeight: plotHeight), plotX: 0, plotY: 0,
                plotWidth: 0, plotHeight: 0, totalWidth: 0, totalHeight: 0)
            for _ in 0..<3 {
                let decoration = axes(plotWidth: plotWidth, plotHeight: plotHeight)
                let overhang = decoration.horizontalOverhang(m, plotWidth: plotWidth)
                let left = Swift.max(decoration.leftMargin(m), overhang.left)
                let right = legendOutside ? Swift.max(overhang.right, 12 + legend.width) : Swift.max(overhang.right, 4)
                let fixedWidth = 2 * pad + left + right
                let fixedHeight = 2 * pad + titleBand + decoration.bottomMargin() + 4
                if let w = requestedWidth { plotWidth = w - fixedWidth }
                if let h = requestedHeight { plotHeight = h - fixedHeight }
                result = Layout(
                    axes: decoration, plotX: pad + left, plotY: pad + titleBand + 4, plotWidth: plotWidth,
                    plotHeight: plotHeight, totalWidth: fixedWidth + plotWidth,
                    totalHeight: fixedHeight + plotHeight)
            }
            return result
        }

        var legendOutside = false
        var frame = layout(legendOutside: false)
        var legendOrigin: (x: Double, y: Double)?
        if !legend.entries.isEmpty {
            if let corner = legend.bestCorner(
                plotWidth: frame.plotWidth, plotHeight: frame.plotHeight,
                points: legendSamples(xData: xData, yData: yData))
            {
                legendOrigin = corner
            } else {
                legendOutside = true
                frame = layout(legendOutside: true)
            }
        }
        guard frame.plotWidth >= 20, frame.plotHeight >= 20 else {
            throw PlotError.invalidParameter(
                path: path,
                what: "size \(width.map(String.init) ?? "auto") × \(height.map(String.init) ?? "auto") "
                    + "leaves no room for the plot after the labels")
        }
        let titleWidth = m.width(title, size: titleFont, bold: true)
        let size = PictureSize(
            width: Swift.max(frame.totalWidth, titleWidth + 2 * pad), height: frame.totalHeight,
            format: format, requestedWidth: width, requestedHeight: height)
        let shift = Swift.max(0, (size.width - frame.totalWidth) / 2)
        let px = frame.plotX + shift, py = frame.plotY, pw = frame.plotWidth, ph = frame.plotHeight
        let decoration = frame.axes

        try renderPicture(to: path, format: format, size: size, title: title) { canvas in
            drawTitle(
                title, on: canvas, centre: px + pw / 2, baselineBottom: py - 4 - Style.titleGap, size: titleFont,
                bounds: (pad, size.width - pad))
            if showsGrid { decoration.drawGrid(on: canvas, x: px, y: py, width: pw, height: ph) }
            func point(_ x: Double, _ y: Double) -> (x: Double, y: Double) {
                (px + decoration.x.fraction(x) * pw, py + (1 - decoration.y.fraction(y)) * ph)
            }
            canvas.clipped(x: px, y: py, width: pw, height: ph) {
                for (k, s) in series.enumerated() {
                    let style = LinePlot.style(k)
                    var run: [(x: Double, y: Double)] = []
                    func flush() {
                        if run.count > 1 { canvas.polyline(run, color: style.color, width: 1.6, dash: style.dash) }
                        run.removeAll()
                    }
                    for (x, y) in zip(s.x, s.y) {
                        if x.isFinite && y.isFinite { run.append(point(x, y)) } else { flush() }
                    }
                    flush()
                }
            }
            canvas.clipped(x: px - 6, y: py - 6, width: pw + 12, height: ph + 12) {
                for (k, s) in series.enumerated() where hasMarkers(s) {
                    let style = LinePlot.style(k)
                    for (x, y) in zip(s.x, s.y)
                    where x.isFinite && y.isFinite && decoration.x.range.contains(x)
                        && decoration.y.range.contains(y)
                    {
                        let p = point(x, y)
                        canvas.marker(style.marker, x: p.x, y: p.y, radius: 3.2, color: style.color)
                    }
                }
            }
            decoration.drawFrame(on: canvas, x: px, y: py, width: pw, height: ph)
            if let legendOrigin {
                legend.draw(on: canvas, x: px + legendOrigin.x, y: py + legendOrigin.y)
            } else if legendOutside {
                legend.draw(on: canvas, x: px + pw + 12, y: py)
            }
        }
    }

    /// Whether the points of `s` get markers.
    func hasMarkers(_ s: Series) -> Bool { showsMarkers && s.x.count <= 60 }

    /// Colour, marker and dash of series `k`.
    static func style(_ k: Int) -> (color: RGBColor, marker: MarkerShape, dash: [Double]) {
        let shapes = MarkerShape.allCases
        return (palette[k % palette.count], shapes[k % shapes.count], k >= palette.count ? [5, 2.5] : [])
    }

    /// Points along every curve in plot fractions (0…1, y up), dense enough to find free corners.
    func legendSamples(xData: ClosedRange<Double>, yData: ClosedRange<Double>) -> [(Double, Double)] {
        var samples: [(Double, Double)] = []
        let sx = xData.upperBound - xData.lowerBound, sy = yData.upperBound - yData.lowerBound
        for s in series {
            var previous: (Double, Double)?
            for (x, y) in zip(s.x, s.y) {
                guard x.isFinite, y.isFinite else { previous = nil; continue }
                let p = ((x - xData.lowerBound) / sx, (y - yData.lowerBound) / sy)
                if let q = previous {
                    for t in stride(from: 0.1, to: 1, by: 0.1) {
                        samples.append((q.0 + (p.0 - q.0) * t, q.1 + (p.1 - q.1) * t))
                    }
                }
                samples.append(p)
                previous = p
            }
        }
        return samples
    }
}

/// The legend box of a line plot.
struct Legend {
    var entries: [(name: String, series: Int, marker: Bool)]
    var font: Double
    var width: Double
    var height: Double
    static let sample = 24.0, padding = 6.0, rowHeight = 14.0, inset = 8.0

    init(entries: [(name: String, series: Int, marker: Bool)], font: Double, measurer: TextMeasurer) {
        self.entries = entries
        self.font = font
        width = 2 * Legend.padding + Legend.sample + 6 + measurer.maxWidth(entries.map(\.name), size: font)
        height = 2 * Legend.padding + Double(entries.count) * Legend.rowHeight - 3
    }

    /// Offset of the legend's top-left corner inside the plot for the first corner (upper right, upper left,
    /// lower right, lower left) that covers no sample point, or nil when all are covered or it does not fit.
    func bestCorner(plotWidth: Double, plotHeight: Double, points: [(Double, Double)]) -> (x: Double, y: Double)? {
        guard width + 2 * Legend.inset < plotWidth * 0.6, height + 2 * Legend.inset < plotHeight * 0.6 else {
            return nil
        }
        let corners = [
            (plotWidth - width - Legend.inset, Legend.inset), (Legend.inset, Legend.inset),
            (plotWidth - width - Legend.inset, plotHeight - height - Legend.inset),
            (Legend.inset, plotHeight - height - Legend.inset),
        ]
        let margin = 4.0
        for (cx, cy) in corners {
            let covered = points.contains { p in
                let x = p.0 * plotWidth, y = (1 - p.1) * plotHeight
                return x >= cx - margin && x <= cx + width + margin && y >= cy - margin && y <= cy + height + margin
            }
            if !covered { return (cx, cy) }
        }
        return nil
    }

    func draw(on canvas: Canvas, x: Double, y: Double) {
        canvas.fillRect(x: x, y: y, width: width, height: height, color: .white, alpha: 0.9)
        canvas.strokeRect(
            x: x, y: y, width: width, height: height, color: RGBColor(red: 0.7, green: 0.7, blue: 0.7),
            lineWidth: 0.6)
        for (row, entry) in entries.enumerated() {
            let style = LinePlot.style(entry.series)
            let cy = y + Legend.padding + (Double(row) + 0.5) * Legend.rowHeight - 1.5
            let x0 = x + Legend.padding
            canvas.polyline([(x0, cy), (x0 + Legend.sample, cy)], color: style.color, width: 1.6, dash: style.dash)
            if entry.marker {
                canvas.marker(style.marker, x: x0 + Legend.sample / 2, y: cy, radius: 3.2, color: style.color)
            }
            canvas.text(entry.name, x: x0 + Legend.sample + 6, y: cy, size: font, vertical: .middle)
        }
    }
}
