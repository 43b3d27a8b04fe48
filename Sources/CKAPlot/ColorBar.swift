import Foundation

/// Shared sizes of the pictures, in points.
enum Style {
    /// Outer margin of every picture.
    static let padding = 10.0
    static let tickLength = 3.5
    static let tickGap = 2.5
    static let tickWidth = 0.7
    static let frameWidth = 0.8
    /// Gap between an axis label and the tick labels it names.
    static let labelGap = 5.0
    /// Gap between a title and what it names.
    static let titleGap = 7.0
    /// Height of one line of text at `size`, capitals plus descenders.
    static func textHeight(_ size: Double) -> Double { size * (FontMetrics.capHeight + FontMetrics.descent) }
}

/// A vertical colour bar: the colour map, nice ticks on its right, and a label reading upwards.
struct ColorBar {
    var range: ClosedRange<Double>
    var colormap: Colormap
    var label: String
    var tickFont: Double
    var labelFont: Double
    /// Values marked by thin lines across the bar (contour levels).
    var levels: [Double] = []
    /// Adds a grey "NaN" swatch below the bar.
    var showsMissing = false
    var barWidth = 12.0
    /// Space between the plot and the bar.
    var gap = 14.0

    /// Nice ticks, fewer on a short bar.
    func ticks(height: Double) -> NiceTicks {
        NiceTicks(
            lower: range.lowerBound, upper: range.upperBound, target: Swift.max(2, Swift.min(5, Int(height / 30))))
    }

    /// Width from the plot's right edge to the end of the label, whatever the bar's height.
    func width(_ m: TextMeasurer) -> Double {
        let tickSets: [NiceTicks] = [60.0, 90, 120, 150].map { self.ticks(height: $0) }
        var labelWidth = 0.0
        for set in tickSets { labelWidth = Swift.max(labelWidth, m.maxWidth(set.labels, size: tickFont)) }
        var w: Double = gap + barWidth + Style.tickLength + Style.tickGap + labelWidth
        if showsMissing { w = Swift.max(w, gap + barWidth + 4 + m.width("NaN", size: tickFont)) }
        if !tickSets[0].axisLabel(label).isEmpty { w += Style.labelGap + Style.textHeight(labelFont) }
        return w
    }

    /// Draws the bar beside a plot whose right edge is `plotRight`, spanning `top...top + height`.
    func draw(on canvas: Canvas, plotRight: Double, top: Double, height: Double) {
        let x = plotRight + gap
        let swatch = showsMissing ? barWidth * 0.9 : 0
        let barHeight = showsMissing ? height - swatch - 8 : height
        guard barHeight > 0 else { return }
        canvas.verticalColormap(x: x, y: top, width: barWidth, height: barHeight, colormap: colormap)
        let span = range.upperBound - range.lowerBound
        func yOf(_ v: Double) -> Double { top + barHeight * (1 - (v - range.lowerBound) / span) }
        for level in levels where range.contains(level) {
            canvas.line(x, yOf(level), x + barWidth, yOf(level), color: .ink, width: 0.6, alpha: 0.7)
        }
        canvas.strokeRect(x: x, y: top, width: barWidth, height: barHeight, color: .ink, lineWidth: 0.6)
        let ticks = self.ticks(height: barHeight)
        var labelRight = x + barWidth
        for (value, text) in zip(ticks.values, ticks.labels) {
            let y = yOf(value)
            canvas.line(x + barWidth, y, x + barWidth + Style.tickLength, y, color: .ink, width: Style.tickWidth)
            let tx = x + barWidth + Style.tickLength + Style.tickGap
            canvas.text(text, x: tx, y: y, size: tickFont, vertical: .middle)
            labelRight = Swift.max(labelRight, tx + canvas.textWidth(text, size: tickFont))
        }
        if showsMissing {
            let sy = top + height - swatch
            canvas.fillRect(x: x, y: sy, width: barWidth, height: swatch, color: .missing)
            canvas.strokeRect(x: x, y: sy, width: barWidth, height: swatch, color: .ink, lineWidth: 0.6)
            canvas.text("NaN", x: x + barWidth + 4, y: sy + swatch / 2, size: tickFont, vertical: .middle)
        }
        let title = ticks.axisLabel(label)
        if !title.isEmpty {
            canvas.text(
                title, x: labelRight + Style.labelGap, y: top + barHeight / 2, size: labelFont, align: 0.5,
                vertical: .top, angle: -Double.pi / 2)
        }
    }
}

/// Validates a colour range given by the user.
func checkColorRange(_ range: ClosedRange<Double>, path: String) throws {
    guard range.lowerBound.isFinite, range.upperBound.isFinite, range.lowerBound < range.upperBound else {
        throw PlotError.invalidParameter(
            path: path, what: "colour range \(range) must be finite with lower bound < upper bound")
    }
}
