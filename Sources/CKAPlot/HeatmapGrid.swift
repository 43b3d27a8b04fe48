import Foundation

/// Several heatmaps side by side with one shared colour bar and an overall title: the overview picture
/// of every model pair. Each panel keeps its own title, axis labels and tick labels; colours come from the
/// grid's `colorRange` and `colormap` (the panels' own are ignored).
public struct HeatmapGrid: Sendable {
    /// The panels, filled row by row.
    public var panels: [Heatmap]
    /// Panels per row; nil chooses about √n.
    public var columns: Int?
    /// Title above the grid (empty for none).
    public var title: String
    /// Values mapped to the two ends of the colour map, shared by all panels.
    public var colorRange: ClosedRange<Double>
    /// The colour map shared by all panels.
    public var colormap: Colormap
    /// Label of the shared colour bar.
    public var colorbarLabel: String
    /// Prints values in the cells of panels of at most 12 × 12 when they fit.
    public var annotateCells: Bool

    /// A grid of `panels` (filled row by row, `columns` per row).
    public init(
        panels: [Heatmap], columns: Int? = nil, title: String = "", colorRange: ClosedRange<Double> = 0...1,
        colormap: Colormap = .viridis, colorbarLabel: String = "CKA", annotateCells: Bool = true
    ) {
        self.panels = panels
        self.columns = columns
        self.title = title
        self.colorRange = colorRange
        self.colormap = colormap
        self.colorbarLabel = colorbarLabel
        self.annotateCells = annotateCells
    }

    /// Writes the grid as PNG or SVG, chosen by the extension of `path`.
    ///
    /// `width` and `height` are pixels for PNG (144 dpi) and points for SVG; nil chooses about 190 pt per
    /// panel. The file appears only when complete.
    public func write(to path: String, width: Int? = nil, height: Int? = nil) throws {
        let format = try OutputFormat.forPath(path)
        guard !panels.isEmpty else { throw PlotError.emptyData(path: path, what: "the grid has no panels") }
        if let columns, columns < 1 {
            throw PlotError.invalidParameter(path: path, what: "columns must be at least 1, got \(columns)")
        }
        try checkColorRange(colorRange, path: path)
        let items = try panels.enumerated().map { k, h in
            try HeatmapPanel(
                h, path: path, style: .panel, context: "panel \(k)" + (h.title.isEmpty ? "" : " (\(h.title))"))
        }
        let gridColumns = Swift.min(columns ?? Int(Double(items.count).squareRoot().rounded(.up)), items.count)
        let gridRows = (items.count + gridColumns - 1) / gridColumns
        let m = TextMeasurer()
        let bar = ColorBar(
            range: colorRange, colormap: colormap, label: colorbarLabel, tickFont: 9, labelFont: 11,
            showsMissing: items.contains { $0.hasMissing })
        let requestedWidth = try format.layoutLength(width, name: "width", path: path)
        let requestedHeight = try format.layoutLength(height, name: "height", path: path)

        let pad = Style.padding, gapRight = 16.0, gapBelow = 12.0
        let titleFont = 14.0
        let titleBand = title.isEmpty ? 0 : Style.textHeight(titleFont) + 12
        let left = items.map { $0.leftMargin(m) }.max()!
        let top = items.map { $0.topMargin(m) }.max()!
        func bottom(plotWidth: Double) -> Double {
            items.map {
                $0.bottomMargin(m, rotated: $0.rotatesColumnLabels(m, cellWidth: plotWidth / Double($0.columns)))
            }
            .max()!
        }
        let fixedWidth = 2 * pad + Double(gridColumns) * (left + gapRight) - gapRight + bar.width(m)
        func fixedHeight(plotWidth: Double) -> Double {
            2 * pad + titleBand + Double(gridRows) * (top + bottom(plotWidth: plotWidth) + gapBelow) - gapBelow
        }
        var plotWidth: Double, plotHeight: Double
        switch (requestedWidth, requestedHeight) {
        case (nil, nil):
            plotWidth = 190
            plotHeight = 190
        case let (w?, nil):
            plotWidth = (w - fixedWidth) / Double(gridColumns)
            plotHeight = plotWidth
        case let (nil, h?):
            plotHeight = 190
            for _ in 0..<3 { plotHeight = (h - fixedHeight(plotWidth: plotHeight)) / Double(gridRows) }
            plotWidth = plotHeight
        case let (w?, h?):
            plotWidth = (w - fixedWidth) / Double(gridColumns)
            plotHeight = (h - fixedHeight(plotWidth: plotWidth)) / Double(gridRows)
        }
        guard plotWidth >= 10, plotHeight >= 10 else {
            throw PlotError.invalidParameter(
                path: path,
                what: "size \(width.map(String.init) ?? "auto") × \(height.map(String.init) ?? "auto") "
                    + "leaves no room for the panels after the labels")
        }
        let slotWidth = left + plotWidth + gapRight
        let slotHeight = top + plotHeight + bottom(plotWidth: plotWidth) + gapBelow
        let contentWidth = fixedWidth + Double(gridColumns) * plotWidth
        let titleWidth = m.width(title, size: titleFont, bold: true)
        let size = PictureSize(
            width: Swift.max(contentWidth, titleWidth + 2 * pad),
            height: fixedHeight(plotWidth: plotWidth) + Double(gridRows) * plotHeight,
            format: format, requestedWidth: width, requestedHeight: height)
        let originX = pad + Swift.max(0, (size.width - contentWidth) / 2)
        let originY = pad + titleBand

        try renderPicture(to: path, format: format, size: size, title: title) { canvas in
            if !title.isEmpty {
                let available = size.width - 2 * pad
                let fontSize = titleWidth > available ? titleFont * available / titleWidth : titleFont
                canvas.text(title, x: size.width / 2, y: pad, size: fontSize, bold: true, align: 0.5, vertical: .top)
            }
            for (k, panel) in items.enumerated() {
                let slotX = originX + Double(k % gridColumns) * slotWidth
                let slotY = originY + Double(k / gridColumns) * slotHeight
                let x = slotX + left, y = slotY + top
                panel.draw(
                    on: canvas, x: x, y: y, width: plotWidth, height: plotHeight,
                    rotated: panel.rotatesColumnLabels(m, cellWidth: plotWidth / Double(panel.columns)),
                    colorRange: colorRange, colormap: colormap, annotate: annotateCells,
                    titleBounds: (slotX + 2, slotX + slotWidth - 4))
            }
            let barTop = originY + top
            let barHeight = Double(gridRows - 1) * slotHeight + plotHeight
            let lastRight = originX + Double(gridColumns - 1) * slotWidth + left + plotWidth
            bar.draw(on: canvas, plotRight: lastRight, top: barTop, height: barHeight)
        }
    }
}
