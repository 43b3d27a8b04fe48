import Foundation

/// A scalar field on a grid drawn as a smooth colour image with contour lines: e.g. a 2-D loss landscape.
public struct ContourPlot: Sendable {
    /// Grid coordinates along x, strictly increasing.
    public var x: [Double]
    /// Grid coordinates along y, strictly increasing (drawn upwards).
    public var y: [Double]
    /// Values, `y.count × x.count`: `z[j][i]` is the value at `(x[i], y[j])`. NaN marks points not computed.
    public var z: [[Double]]
    /// Title above the plot (empty for none).
    public var title: String
    /// Label of the x axis.
    public var xLabel: String
    /// Label of the y axis.
    public var yLabel: String
    /// Label of the colour bar.
    public var colorbarLabel: String
    /// Number of contour lines, evenly spaced strictly inside the colour range (0 for none).
    public var levelCount: Int
    /// Explicit contour levels; when set, `levelCount` is ignored.
    public var levels: [Double]?
    /// Values mapped to the ends of the colour map; nil uses the finite minimum and maximum of `z`.
    public var colorRange: ClosedRange<Double>?
    /// The colour map.
    public var colormap: Colormap
    /// Writes each level's value on its longest contour line (as matplotlib's `clabel`).
    public var labelsLevels: Bool = true
    /// A path drawn over the contours in red, a dot at each point and a larger one at the last (e.g. a training
    /// trajectory ending at the plane's centre); clipped to the plot area.
    public var overlay: [(x: Double, y: Double)] = []

    /// A contour plot of `z` over the grid `x × y`.
    public init(
        x: [Double], y: [Double], z: [[Double]], title: String = "", xLabel: String = "",
        yLabel: String = "", colorbarLabel: String = "loss", levelCount: Int = 10, levels: [Double]? = nil,
        colorRange: ClosedRange<Double>? = nil, colormap: Colormap = .viridis
    ) {
        self.x = x
        self.y = y
        self.z = z
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.colorbarLabel = colorbarLabel
        self.levelCount = levelCount
        self.levels = levels
        self.colorRange = colorRange
        self.colormap = colormap
    }

    /// The contour levels that will be drawn for the colour range `range`.
    func contourLevels(in range: ClosedRange<Double>) -> [Double] {
        if let levels { return levels.filter(\.isFinite).sorted() }
        let span = range.upperBound - range.lowerBound
        return (0..<Swift.max(levelCount, 0)).map { range.lowerBound + span * Double($0 + 1) / Double(levelCount + 1) }
    }

    /// Checks the grid and returns the colour range.
    func validate(path: String) throws -> ClosedRange<Double> {
        for (name, axis) in [("x", x), ("y", y)] {
            guard axis.count >= 2 else {
                throw PlotError.emptyData(path: path, what: "\(name) needs at least 2 grid values, has \(axis.count)")
            }
            for k in axis.indices where !axis[k].isFinite || (k > 0 && !(axis[k] > axis[k - 1])) {
                throw PlotError.invalidParameter(
                    path: path, what: "\(name) must be finite and strictly increasing (index \(k): \(axis[k]))")
            }
        }
        guard z.count == y.count else {
            throw PlotError.sizeMismatch(
                path: path, what: "number of z rows (one per y)", expected: y.count, got: z.count)
        }
        for (j, row) in z.enumerated() where row.count != x.count {
            throw PlotError.sizeMismatch(
                path: path, what: "length of z row \(j) (one per x)", expected: x.count,
                got: row.count)
        }
        guard levelCount >= 0 else {
            throw PlotError.invalidParameter(path: path, what: "levelCount must be ≥ 0, got \(levelCount)")
        }
        if let colorRange {
            try checkColorRange(colorRange, path: path)
            return colorRange
        }
        guard let extent = finiteExtent(z.joined()) else {
            throw PlotError.emptyData(path: path, what: "z has no finite value")
        }
        return paddedRange(extent.min, extent.max, margin: 0)
    }

    /// Writes the plot as PNG or SVG, chosen by the extension of `path`.
    ///
    /// `width` and `height` are pixels for PNG (144 dpi) and points for SVG; nil gives a plot area of about
    /// 380 pt, shaped by the x and y spans. The file appears only when complete.
    public func write(to path: String, width: Int? = nil, height: Int? = nil) throws {
        let format = try OutputFormat.forPath(path)
        let range = try validate(path: path)
        let levels = contourLevels(in: range)
        let requestedWidth = try format.layoutLength(width, name: "width", path: path)
        let requestedHeight = try format.layoutLength(height, name: "height", path: path)
        let xData = x.first!...x.last!, yData = y.first!...y.last!

        let m = TextMeasurer()
        let pad = Style.padding, titleFont = 13.0
        let titleBand = title.isEmpty ? 0 : Style.textHeight(titleFont) + Style.titleGap
        let bar = ColorBar(
            range: range, colormap: colormap, label: colorbarLabel, tickFont: 9, labelFont: 11,
            levels: levels, showsMissing: z.contains { $0.contains { $0.isNaN } })
        let aspect = Swift.min(
            1.4,
            Swift.max(
                0.6,
                (yData.upperBound - yData.lowerBound)
                    / (xData.upperBound - xData.lowerBound)))
        var plotWidth = 380.0, plotHeight = 380.0 * aspect
        var axes = AxesDecoration(
            x: LinearAxis(range: xData, length: plotWidth, spacing: 70),
            y: LinearAxis(range: yData, length: plotHeight, spacing: 55),
            xLabel: xLabel, yLabel: yLabel)
        var left = 0.0, right = 0.0
        for _ in 0..<3 {
            axes = AxesDecoration(
                x: LinearAxis(range: xData, length: plotWidth, spacing: 70),
                y: LinearAxis(range: yData, length: plotHeight, spacing: 55),
                xLabel: xLabel, yLabel: yLabel)
            var spacing = 70.0
            while spacing < plotWidth, axes.x.ticks.values.count > 2 {
                let room = axes.x.ticks.step / (xData.upperBound - xData.lowerBound) * plotWidth
                if m.maxWidth(axes.xLabels, size: axes.tickFont) + 10 <= room { break }
                spacing *= 1.5
                axes.x = LinearAxis(range: xData, length: plotWidth, spacing: spacing)
            }
            let overhang = axes.horizontalOverhang(m, plotWidth: plotWidth)
            left = Swift.max(axes.leftMargin(m), overhang.left)
            right = Swift.max(bar.width(m), overhang.right)
            let fixedWidth = 2 * pad + left + right
            let fixedHeight = 2 * pad + titleBand + axes.bottomMargin() + 4
            switch (requestedWidth, requestedHeight) {
            case (nil, nil): break
            case let (w?, nil):
                plotWidth = w - fixedWidth
                plotHeight = plotWidth * aspect
            case let (nil, h?):
                plotHeight = h - fixedHeight
                plotWidth = plotHeight / aspect
            case let (w?, h?):
                plotWidth = w - fixedWidth
                plotHeight = h - fixedHeight
            }
        }
        guard plotWidth >= 20, plotHeight >= 20 else {
            throw PlotError.invalidParameter(
                path: path,
                what: "size \(width.map(String.init) ?? "auto") × \(height.map(String.init) ?? "auto") "
                    + "leaves no room for the plot after the labels")
        }
        let totalWidth = 2 * pad + left + right + plotWidth
        let titleWidth = m.width(title, size: titleFont, bold: true)
        let size = PictureSize(
            width: Swift.max(totalWidth, titleWidth + 2 * pad),
            height: 2 * pad + titleBand + 4 + plotHeight + axes.bottomMargin(), format: format,
            requestedWidth: width, requestedHeight: height)
        let px = pad + left + Swift.max(0, (size.width - totalWidth) / 2), py = pad + titleBand + 4
        let (pw, ph) = (plotWidth, plotHeight)
        let decoration = axes

        try renderPicture(to: path, format: format, size: size, title: title) { canvas in
            drawTitle(
                title, on: canvas, centre: px + pw / 2, baselineBottom: py - 4 - Style.titleGap, size: titleFont,
                bounds: (pad, size.width - pad))
            let columns = Swift.min(1600, Swift.max(1, Int((pw * 2).rounded())))
            let rows = Swift.min(1600, Swift.max(1, Int((ph * 2).rounded())))
            let sampler = GridSampler(x: x, y: y, z: z)
            let columnCells = (0..<columns).map { c in
                sampler.locate(
                    sampler.x,
                    xData.lowerBound + (Double(c) + 0.5) / Double(columns)
                        * (xData.upperBound - xData.lowerBound))
            }
            let rowCells = (0..<rows).map { r in
                sampler.locate(
                    sampler.y,
                    yData.upperBound - (Double(r) + 0.5) / Double(rows)
                        * (yData.upperBound - yData.lowerBound))
            }
            canvas.raster(columns: columns, rows: rows, x: px, y: py, width: pw, height: ph, smooth: false) { c, r in
                argbPixel(colormap.color(of: sampler.value(columnCells[c], rowCells[r]), in: range))
            }
            canvas.clipped(x: px, y: py, width: pw, height: ph) {
                for level in levels {
                    for line in marchingSquares(x: x, y: y, z: z, level: level) {
                        let points = line.points.map { p in
                            (x: px + decoration.x.fraction(p.x) * pw, y: py + (1 - decoration.y.fraction(p.y)) * ph)
                        }
                        canvas.polyline(
                            line.isClosed ? Array(points.dropLast()) : points, color: .ink, width: 0.7,
                            alpha: 0.65, closed: line.isClosed)
                    }
                }
                if !overlay.isEmpty {
                    let points = overlay.map { p in
                        (x: px + decoration.x.fraction(p.x) * pw, y: py + (1 - decoration.y.fraction(p.y)) * ph)
                    }
                    let red = RGBColor(red: 0.84, green: 0.15, blue: 0.16)
                    canvas.polyline(points, color: red, width: 1.4)
                    for (k, p) in points.enumerated() {
                        canvas.marker(.circle, x: p.x, y: p.y, radius: k == points.count - 1 ? 4 : 2.5, color: red)
                    }
                }
                if labelsLevels {
                    drawLevelLabels(
                        levels, on: canvas,
                        map: { p in
                            (x: px + decoration.x.fraction(p.x) * pw, y: py + (1 - decoration.y.fraction(p.y)) * ph)
                        })
                }
            }
            decoration.drawFrame(on: canvas, x: px, y: py, width: pw, height: ph)
            bar.draw(on: canvas, plotRight: px + pw, top: py, height: ph)
        }
    }
}

extension ContourPlot {
    /// Labels each level at the middle (by length on the page) of its longest line, on a white patch,
    /// skipping lines shorter than three label widths and labels that would overlap an earlier one.
    func drawLevelLabels(_ levels: [Double], on canvas: Canvas, map: ((x: Double, y: Double)) -> (x: Double, y: Double))
    {
        let size = 8.0
        let spacing =
            levels.count > 1
            ? (levels.last! - levels.first!) / Double(levels.count - 1) : Swift.max(abs(levels.first ?? 1), 1e-12)
        var placed: [(x: Double, y: Double, w: Double)] = []
        for level in levels {
            let lines = marchingSquares(x: x, y: y, z: z, level: level).map { $0.points.map(map) }
            func length(_ pts: [(x: Double, y: Double)]) -> Double {
                zip(pts, pts.dropFirst()).reduce(0) { $0 + hypot($1.1.x - $1.0.x, $1.1.y - $1.0.y) }
            }
            guard let longest = lines.max(by: { length($0) < length($1) }) else { continue }
            let text = formatTick(level, step: spacing / 10)
            let w = canvas.textWidth(text, size: size), total = length(longest)
            guard total >= 3 * w else { continue }
            var walked = 0.0, at = longest[0]
            for (a, b) in zip(longest, longest.dropFirst()) {
                let seg = hypot(b.x - a.x, b.y - a.y)
                if walked + seg >= total / 2 {
                    let t = seg > 0 ? (total / 2 - walked) / seg : 0
                    at = (x: a.x + t * (b.x - a.x), y: a.y + t * (b.y - a.y))
                    break
                }
                walked += seg
            }
            if placed.contains(where: { abs($0.x - at.x) < ($0.w + w) / 2 + 2 && abs($0.y - at.y) < size + 2 }) {
                continue
            }
            placed.append((at.x, at.y, w))
            canvas.fillRect(
                x: at.x - w / 2 - 1.5, y: at.y - size * 0.6, width: w + 3, height: size * 1.2, color: .white, alpha: 0.8
            )
            canvas.text(text, x: at.x, y: at.y, size: size, align: 0.5, vertical: .middle)
        }
    }
}

/// Bilinear interpolation on a rectilinear grid; near missing corners it falls back to the nearest value.
struct GridSampler {
    let x: [Double]
    let y: [Double]
    let z: [[Double]]

    /// The cell index `i` with `axis[i] ≤ v ≤ axis[i+1]` (clamped) and the fraction `t` across it.
    func locate(_ axis: [Double], _ v: Double) -> (index: Int, t: Double) {
        var lo = 0, hi = axis.count - 1
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if axis[mid] <= v { lo = mid } else { hi = mid }
        }
        let t = (v - axis[lo]) / (axis[lo + 1] - axis[lo])
        return (lo, Swift.min(Swift.max(t, 0), 1))
    }

    func value(_ cx: (index: Int, t: Double), _ cy: (index: Int, t: Double)) -> Double {
        let (i, tx) = cx, (j, ty) = cy
        let a = z[j][i], b = z[j][i + 1], c = z[j + 1][i + 1], d = z[j + 1][i]
        if a.isFinite && b.isFinite && c.isFinite && d.isFinite {
            return (a * (1 - tx) + b * tx) * (1 - ty) + (d * (1 - tx) + c * tx) * ty
        }
        return z[ty < 0.5 ? j : j + 1][tx < 0.5 ? i : i + 1]
    }
}
