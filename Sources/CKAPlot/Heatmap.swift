import Foundation

/// A matrix drawn as coloured cells, e.g. the CKA similarity of every layer pair of two networks.
///
/// Row 0 is at the top; `rowLabels` name the rows (y axis) and `columnLabels` the columns (x axis).
public struct Heatmap: Sendable {
    /// The values, `rows × columns`; NaN cells are drawn grey.
    public var values: [[Double]]
    /// Names of the rows, top to bottom; empty means the row indices.
    public var rowLabels: [String]
    /// Names of the columns, left to right; empty means the column indices.
    public var columnLabels: [String]
    /// Title above the matrix (empty for none).
    public var title: String
    /// Label of the x axis (columns).
    public var xLabel: String
    /// Label of the y axis (rows).
    public var yLabel: String
    /// Values mapped to the two ends of the colour map; values outside are clamped for colour only.
    public var colorRange: ClosedRange<Double>
    /// The colour map.
    public var colormap: Colormap
    /// Label of the colour bar.
    public var colorbarLabel: String
    /// Prints each value in its cell when the matrix is at most 12 × 12 and the cells are large enough.
    public var annotateCells: Bool
    /// Cells to mark with a cross (e.g. not significant), `[rows][columns]`; nil marks none.
    public var marked: [[Bool]]? = nil

    /// A heatmap of `values` (`rows × columns`).
    public init(
        values: [[Double]], rowLabels: [String] = [], columnLabels: [String] = [], title: String = "",
        xLabel: String = "", yLabel: String = "", colorRange: ClosedRange<Double> = 0...1,
        colormap: Colormap = .viridis, colorbarLabel: String = "CKA", annotateCells: Bool = true
    ) {
        self.values = values
        self.rowLabels = rowLabels
        self.columnLabels = columnLabels
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.colorRange = colorRange
        self.colormap = colormap
        self.colorbarLabel = colorbarLabel
        self.annotateCells = annotateCells
    }

    /// Number of rows.
    public var rowCount: Int { values.count }
    /// Number of columns (of the first row).
    public var columnCount: Int { values.first?.count ?? 0 }

    /// Writes the heatmap as PNG or SVG, chosen by the extension of `path`.
    ///
    /// `width` and `height` are pixels for PNG (drawn at 144 dpi) and points for SVG; nil chooses a size
    /// from the number of cells and the label lengths (square cells when only one is given).
    /// The file appears only when complete.
    public func write(to path: String, width: Int? = nil, height: Int? = nil) throws {
        let format = try OutputFormat.forPath(path)
        try checkColorRange(colorRange, path: path)
        let panel = try HeatmapPanel(self, path: path, style: .single)
        let m = TextMeasurer()
        let bar = ColorBar(
            range: colorRange, colormap: colormap, label: colorbarLabel, tickFont: 9, labelFont: 11,
            showsMissing: panel.hasMissing)
        let requestedWidth = try format.layoutLength(width, name: "width", path: path)
        let requestedHeight = try format.layoutLength(height, name: "height", path: path)
        let pad = Style.padding
        let fixedWidth = 2 * pad + panel.leftMargin(m) + bar.width(m)
        func fixedHeight(rotated: Bool) -> Double {
            2 * pad + panel.topMargin(m) + panel.bottomMargin(m, rotated: rotated)
        }

        let natural = panel.naturalCell
        var cellWidth: Double, cellHeight: Double
        switch (requestedWidth, requestedHeight) {
        case (nil, nil):
            // Square cells, but a flat or narrow matrix still gets room for its colour bar and labels.
            cellWidth = Swift.max(natural, 110 / Double(panel.columns))
            cellHeight = Swift.max(natural, 110 / Double(panel.rows))
        case let (w?, nil):
            cellWidth = (w - fixedWidth) / Double(panel.columns)
            cellHeight = cellWidth
        case let (nil, h?):
            cellHeight = (h - fixedHeight(rotated: true)) / Double(panel.rows)
            if !panel.rotatesColumnLabels(m, cellWidth: cellHeight) {
                cellHeight = (h - fixedHeight(rotated: false)) / Double(panel.rows)
            }
            cellWidth = cellHeight
        case let (w?, h?):
            cellWidth = (w - fixedWidth) / Double(panel.columns)
            cellHeight =
                (h - fixedHeight(rotated: panel.rotatesColumnLabels(m, cellWidth: cellWidth)))
                / Double(panel.rows)
        }
        guard cellWidth >= 0.5, cellHeight >= 0.5 else {
            throw PlotError.invalidParameter(
                path: path,
                what: "size \(width.map(String.init) ?? "auto") × \(height.map(String.init) ?? "auto") "
                    + "leaves no room for the cells after the labels")
        }
        let rotated = panel.rotatesColumnLabels(m, cellWidth: cellWidth)
        let plotWidth = cellWidth * Double(panel.columns), plotHeight = cellHeight * Double(panel.rows)
        let titleWidth = m.width(title, size: panel.style.titleFont, bold: true)
        let contentWidth = fixedWidth + plotWidth
        let size = PictureSize(
            width: Swift.max(contentWidth, titleWidth + 2 * pad),
            height: fixedHeight(rotated: rotated) + plotHeight, format: format,
            requestedWidth: width, requestedHeight: height)
        let plotX = pad + panel.leftMargin(m) + Swift.max(0, (size.width - contentWidth) / 2)
        let plotY = pad + panel.topMargin(m)

        try renderPicture(to: path, format: format, size: size, title: title) { canvas in
            panel.draw(
                on: canvas, x: plotX, y: plotY, width: plotWidth, height: plotHeight, rotated: rotated,
                colorRange: colorRange, colormap: colormap, annotate: annotateCells,
                titleBounds: (pad, size.width - pad))
            bar.draw(on: canvas, plotRight: plotX + plotWidth, top: plotY, height: plotHeight)
        }
    }
}

/// Font sizes of a heatmap: a single picture or a panel of a grid.
struct HeatmapStyle {
    var tickFont: Double
    var axisFont: Double
    var titleFont: Double
    var titleBold: Bool

    static let single = HeatmapStyle(tickFont: 9, axisFont: 11, titleFont: 13, titleBold: true)
    static let panel = HeatmapStyle(tickFont: 7, axisFont: 8.5, titleFont: 9.5, titleBold: true)
}

/// A validated heatmap with its resolved labels, and the layout of one matrix with its axes and title.
struct HeatmapPanel {
    let values: [[Double]]
    let rowLabels: [String]
    let columnLabels: [String]
    let title: String
    let xLabel: String
    let yLabel: String
    let style: HeatmapStyle
    let hasMissing: Bool
    let marked: [[Bool]]?

    var rows: Int { values.count }
    var columns: Int { values.first?.count ?? 0 }

    /// Checks shapes and labels; `context` prefixes messages (e.g. "panel 2").
    init(_ h: Heatmap, path: String, style: HeatmapStyle, context: String = "") throws {
        let prefix = context.isEmpty ? "" : context + ": "
        guard !h.values.isEmpty, !h.values[0].isEmpty else {
            throw PlotError.emptyData(path: path, what: prefix + "the heatmap has no rows or no columns")
        }
        let columns = h.values[0].count
        for (i, row) in h.values.enumerated() where row.count != columns {
            throw PlotError.sizeMismatch(
                path: path, what: prefix + "length of row \(i)", expected: columns,
                got: row.count)
        }
        guard h.rowLabels.isEmpty || h.rowLabels.count == h.values.count else {
            throw PlotError.sizeMismatch(
                path: path, what: prefix + "number of row labels", expected: h.values.count,
                got: h.rowLabels.count)
        }
        guard h.columnLabels.isEmpty || h.columnLabels.count == columns else {
            throw PlotError.sizeMismatch(
                path: path, what: prefix + "number of column labels", expected: columns,
                got: h.columnLabels.count)
        }
        values = h.values
        rowLabels = h.rowLabels.isEmpty ? h.values.indices.map(String.init) : h.rowLabels
        columnLabels = h.columnLabels.isEmpty ? (0..<columns).map(String.init) : h.columnLabels
        title = h.title
        xLabel = h.xLabel
        yLabel = h.yLabel
        self.style = style
        hasMissing = h.values.contains { $0.contains { $0.isNaN } }
        marked = h.marked
    }

    /// Square cell size for a picture of natural size: large for small matrices, at least 3 pt.
    var naturalCell: Double {
        let n = Double(Swift.max(rows, columns))
        return Swift.max(Swift.min(36, Swift.max(440 / n, Swift.min(8, 720 / n))), 170 / n)
    }

    /// Column labels lie horizontally only when all of them fit in their cells.
    func rotatesColumnLabels(_ m: TextMeasurer, cellWidth: Double) -> Bool {
        !(columns <= 25 && m.maxWidth(columnLabels, size: style.tickFont) + 3 <= cellWidth)
    }

    func leftMargin(_ m: TextMeasurer) -> Double {
        var w = Style.tickLength + Style.tickGap + m.maxWidth(rowLabels, size: style.tickFont)
        if !yLabel.isEmpty { w += Style.labelGap + Style.textHeight(style.axisFont) }
        return w
    }

    func bottomMargin(_ m: TextMeasurer, rotated: Bool) -> Double {
        var h =
            Style.tickLength + Style.tickGap
            + (rotated ? m.maxWidth(columnLabels, size: style.tickFont) : Style.textHeight(style.tickFont))
        if !xLabel.isEmpty { h += Style.labelGap + Style.textHeight(style.axisFont) }
        return h
    }

    func topMargin(_ m: TextMeasurer) -> Double {
        title.isEmpty ? 0 : Style.textHeight(style.titleFont) + Style.titleGap
    }

    /// Draws cells, frame, ticks, labels and title around the cell area at (x, y, width, height).
    /// The title is centred over the cells but kept inside `titleBounds`.
    func draw(
        on canvas: Canvas, x: Double, y: Double, width: Double, height: Double, rotated: Bool,
        colorRange: ClosedRange<Double>, colormap: Colormap, annotate: Bool,
        titleBounds: (Double, Double)
    ) {
        let cw = width / Double(columns), ch = height / Double(rows)
        // Cells: edges snapped to device pixels; in SVG each cell overlaps the next a little so that
        // viewers show no hairline seams.
        let overlap = canvas.format == .svg ? Swift.min(0.3, cw / 4, ch / 4) : 0
        canvas.clipped(x: x, y: y, width: width, height: height) {
            for (i, row) in values.enumerated() {
                let y0 = canvas.snap(y + Double(i) * ch), y1 = canvas.snap(y + Double(i + 1) * ch)
                for (j, v) in row.enumerated() {
                    let x0 = canvas.snap(x + Double(j) * cw), x1 = canvas.snap(x + Double(j + 1) * cw)
                    canvas.fillRect(
                        x: x0, y: y0, width: x1 - x0 + overlap, height: y1 - y0 + overlap,
                        color: colormap.color(of: v, in: colorRange))
                }
            }
        }
        // Marked cells: a thin diagonal cross.
        if let marked {
            for (i, row) in marked.enumerated() where i < rows {
                for (j, m) in row.enumerated() where m && j < columns {
                    let x0 = x + Double(j) * cw, y0 = y + Double(i) * ch, inset = Swift.min(cw, ch) * 0.18
                    let v = values[i][j]
                    let color: RGBColor =
                        v.isFinite && colormap.color(of: v, in: colorRange).luminance > 0.3 ? .ink : .white
                    let w = Swift.max(0.5, Swift.min(cw, ch) * 0.02)
                    canvas.line(x0 + inset, y0 + inset, x0 + cw - inset, y0 + ch - inset, color: color, width: w)
                    canvas.line(x0 + cw - inset, y0 + inset, x0 + inset, y0 + ch - inset, color: color, width: w)
                }
            }
        }
        // Values in the cells.
        if annotate, rows <= 12, columns <= 12 {
            let size = Swift.min(style.tickFont + 0.5, ch * 0.42, cw * 0.82 / canvas.textWidth("0.00", size: 1))
            if size >= 4.5 {
                for (i, row) in values.enumerated() {
                    for (j, v) in row.enumerated() where v.isFinite {
                        let text = formatValue(v)
                        let fits = canvas.textWidth(text, size: size) <= cw * 0.92
                        guard fits else { continue }
                        let background = colormap.color(of: v, in: colorRange)
                        canvas.text(
                            text, x: x + (Double(j) + 0.5) * cw, y: y + (Double(i) + 0.5) * ch, size: size,
                            align: 0.5, vertical: .middle,
                            color: background.luminance > 0.3 ? .ink : .white)
                    }
                }
            }
        }
        canvas.strokeRect(x: x, y: y, width: width, height: height, color: .ink, lineWidth: Style.frameWidth)

        // Row ticks and labels.
        let lineHeight = style.tickFont * 1.15
        let labelX = x - Style.tickLength - Style.tickGap
        var leftmost = labelX
        for i in thinnedIndices(count: rows, slot: ch, minSpacing: lineHeight) {
            let cy = y + (Double(i) + 0.5) * ch
            canvas.line(x - Style.tickLength, cy, x, cy, color: .ink, width: Style.tickWidth)
            canvas.text(rowLabels[i], x: labelX, y: cy, size: style.tickFont, align: 1, vertical: .middle)
            leftmost = Swift.min(leftmost, labelX - canvas.textWidth(rowLabels[i], size: style.tickFont))
        }
        // Column ticks and labels.
        let bottom = y + height
        let labelY = bottom + Style.tickLength + Style.tickGap
        let columnSpacing =
            rotated
            ? lineHeight
            : columnLabels.map { canvas.textWidth($0, size: style.tickFont) }.max()! + 3
        var lowest = labelY + (rotated ? 0 : Style.textHeight(style.tickFont))
        for j in thinnedIndices(count: columns, slot: cw, minSpacing: columnSpacing) {
            let cx = x + (Double(j) + 0.5) * cw
            canvas.line(cx, bottom, cx, bottom + Style.tickLength, color: .ink, width: Style.tickWidth)
            if rotated {
                canvas.text(
                    columnLabels[j], x: cx, y: labelY, size: style.tickFont, align: 1, vertical: .middle,
                    angle: -Double.pi / 2)
                lowest = Swift.max(lowest, labelY + canvas.textWidth(columnLabels[j], size: style.tickFont))
            } else {
                canvas.text(columnLabels[j], x: cx, y: labelY, size: style.tickFont, align: 0.5, vertical: .top)
            }
        }
        // Axis labels and title.
        if !xLabel.isEmpty {
            canvas.text(
                xLabel, x: x + width / 2, y: lowest + Style.labelGap, size: style.axisFont, align: 0.5,
                vertical: .top)
        }
        if !yLabel.isEmpty {
            canvas.text(
                yLabel, x: leftmost - Style.labelGap - Style.textHeight(style.axisFont), y: y + height / 2,
                size: style.axisFont, align: 0.5, vertical: .top, angle: -Double.pi / 2)
        }
        if !title.isEmpty {
            let tw = canvas.textWidth(title, size: style.titleFont, bold: style.titleBold)
            let available = titleBounds.1 - titleBounds.0
            let size = tw > available ? style.titleFont * available / tw : style.titleFont
            let half = Swift.min(tw, available) / 2
            let cx = Swift.min(Swift.max(x + width / 2, titleBounds.0 + half), titleBounds.1 - half)
            canvas.text(
                title, x: cx, y: y - Style.titleGap, size: size, bold: style.titleBold, align: 0.5,
                vertical: .bottom)
        }
    }
}
