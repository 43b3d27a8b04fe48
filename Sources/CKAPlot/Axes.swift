import Foundation

/// A linear axis: a data range, its nice ticks and their labels.
struct LinearAxis {
    var range: ClosedRange<Double>
    var ticks: NiceTicks

    /// Ticks for `range`, about one per `spacing` points along an axis of `length` points.
    init(range: ClosedRange<Double>, length: Double, spacing: Double) {
        self.range = range
        ticks = NiceTicks(
            lower: range.lowerBound, upper: range.upperBound,
            target: Swift.max(2, Swift.min(10, Int(length / spacing))))
    }

    /// Fraction of the way from the lower to the upper end.
    func fraction(_ v: Double) -> Double { (v - range.lowerBound) / (range.upperBound - range.lowerBound) }
}

/// A data range padded by `margin` of its span on both sides; a single value gets a span of its own.
func paddedRange(_ lo: Double, _ hi: Double, margin: Double) -> ClosedRange<Double> {
    if hi > lo {
        let pad = (hi - lo) * margin
        return (lo - pad)...(hi + pad)
    }
    let half = lo == 0 ? 0.5 : abs(lo) * 0.1
    return (lo - half)...(hi + half)
}

/// Frame, outward ticks, tick labels, optional grid lines and axis labels of an x–y plot area.
struct AxesDecoration {
    var x: LinearAxis
    var y: LinearAxis
    var xLabel: String
    var yLabel: String
    var tickFont = 9.0
    var axisFont = 11.0

    var xLabels: [String] { x.ticks.labels }
    var yLabels: [String] { y.ticks.labels }
    /// Axis labels with the power of ten of the tick labels, if any.
    var xTitle: String { x.ticks.axisLabel(xLabel) }
    var yTitle: String { y.ticks.axisLabel(yLabel) }

    func leftMargin(_ m: TextMeasurer) -> Double {
        var w = Style.tickLength + Style.tickGap + m.maxWidth(yLabels, size: tickFont)
        if !yTitle.isEmpty { w += Style.labelGap + Style.textHeight(axisFont) }
        return w
    }

    func bottomMargin() -> Double {
        var h = Style.tickLength + Style.tickGap + Style.textHeight(tickFont)
        if !xTitle.isEmpty { h += Style.labelGap + Style.textHeight(axisFont) }
        return h
    }

    /// Horizontal overhang of the first and last x tick labels past the plot edges.
    func horizontalOverhang(_ m: TextMeasurer, plotWidth: Double) -> (left: Double, right: Double) {
        guard let first = x.ticks.values.first, let last = x.ticks.values.last else { return (0, 0) }
        let l = m.width(xLabels.first!, size: tickFont) / 2 - x.fraction(first) * plotWidth
        let r = m.width(xLabels.last!, size: tickFont) / 2 - (1 - x.fraction(last)) * plotWidth
        return (Swift.max(0, l), Swift.max(0, r))
    }

    func drawGrid(on canvas: Canvas, x px: Double, y py: Double, width: Double, height: Double) {
        for v in x.ticks.values {
            let gx = canvas.snap(px + x.fraction(v) * width) + 0.25 / canvas.scale
            canvas.line(gx, py, gx, py + height, color: .gridLine, width: 0.6)
        }
        for v in y.ticks.values {
            let gy = canvas.snap(py + (1 - y.fraction(v)) * height) + 0.25 / canvas.scale
            canvas.line(px, gy, px + width, gy, color: .gridLine, width: 0.6)
        }
    }

    func drawFrame(on canvas: Canvas, x px: Double, y py: Double, width: Double, height: Double) {
        canvas.strokeRect(x: px, y: py, width: width, height: height, color: .ink, lineWidth: Style.frameWidth)
        let bottom = py + height
        for (v, text) in zip(x.ticks.values, xLabels) {
            let tx = px + x.fraction(v) * width
            canvas.line(tx, bottom, tx, bottom + Style.tickLength, color: .ink, width: Style.tickWidth)
            canvas.text(
                text, x: tx, y: bottom + Style.tickLength + Style.tickGap, size: tickFont, align: 0.5,
                vertical: .top)
        }
        var leftmost = px - Style.tickLength - Style.tickGap
        for (v, text) in zip(y.ticks.values, yLabels) {
            let ty = py + (1 - y.fraction(v)) * height
            canvas.line(px - Style.tickLength, ty, px, ty, color: .ink, width: Style.tickWidth)
            let right = px - Style.tickLength - Style.tickGap
            canvas.text(text, x: right, y: ty, size: tickFont, align: 1, vertical: .middle)
            leftmost = Swift.min(leftmost, right - canvas.textWidth(text, size: tickFont))
        }
        if !xTitle.isEmpty {
            let top = bottom + Style.tickLength + Style.tickGap + Style.textHeight(tickFont) + Style.labelGap
            canvas.text(xTitle, x: px + width / 2, y: top, size: axisFont, align: 0.5, vertical: .top)
        }
        if !yTitle.isEmpty {
            canvas.text(
                yTitle, x: leftmost - Style.labelGap - Style.textHeight(axisFont), y: py + height / 2,
                size: axisFont, align: 0.5, vertical: .top, angle: -Double.pi / 2)
        }
    }
}

/// Draws a title centred over `centre`, kept inside `bounds`, shrinking the font if it is too wide.
func drawTitle(
    _ title: String, on canvas: Canvas, centre: Double, baselineBottom: Double, size: Double,
    bounds: (Double, Double)
) {
    guard !title.isEmpty else { return }
    let tw = canvas.textWidth(title, size: size, bold: true)
    let available = bounds.1 - bounds.0
    let fontSize = tw > available ? size * available / tw : size
    let half = Swift.min(tw, available) / 2
    let cx = Swift.min(Swift.max(centre, bounds.0 + half), bounds.1 - half)
    canvas.text(title, x: cx, y: baselineBottom, size: fontSize, bold: true, align: 0.5, vertical: .bottom)
}
