import Foundation

/// Axis ticks at "nice" values: multiples of 1, 2 or 5 times a power of ten.
struct NiceTicks {
    var values: [Double]
    var step: Double

    /// About `target` ticks covering `lower...upper` (only values inside the range are kept).
    init(lower: Double, upper: Double, target: Int) {
        let span = upper - lower
        guard span > 0, span.isFinite else {
            values = lower.isFinite ? [lower] : []
            step = 1
            return
        }
        // Of the 1-2-5 steps around span/target, take the one whose tick count is nearest to the target.
        let raw = NiceTicks.niceStep(span / Double(Swift.max(target, 1)))
        let candidates = [raw / 2.5, raw / 2, raw, raw * 2, raw * 2.5].map { NiceTicks.niceStep($0 * (1 - 1e-9)) }
        func count(_ s: Double) -> Double {
            (upper / s + 1e-9).rounded(.down) - (lower / s - 1e-9).rounded(.up) + 1
        }
        step = candidates.min { a, b in
            let da = abs(count(a) - Double(target)), db = abs(count(b) - Double(target))
            return da != db ? da < db : a < b
        }!
        let first = (lower / step - 1e-9).rounded(.up)
        let last = (upper / step + 1e-9).rounded(.down)
        var values: [Double] = []
        if last >= first, last - first < 1000 {
            for k in 0...Int(last - first) {
                let v = (first + Double(k)) * step
                values.append(abs(v) < step * 1e-9 ? 0 : v)
            }
        }
        self.values = values
    }

    /// The smallest of 1, 2, 5 × 10ⁿ that is at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        let magnitude = Foundation.pow(10, (log10(raw)).rounded(.down))
        let normalised = raw / magnitude
        let factor: Double = normalised <= 1 + 1e-9 ? 1 : normalised <= 2 + 1e-9 ? 2 : normalised <= 5 + 1e-9 ? 5 : 10
        return factor * magnitude
    }

    /// The power of ten factored out of the labels when they would be very large or very small (else 0).
    var exponent: Int {
        let largest = values.map(abs).max() ?? 0
        guard largest > 0, largest >= 1e5 || largest < 1e-3 else { return 0 }
        return Int(log10(largest).rounded(.down))
    }

    /// Labels with as many decimals as the step needs and a typographic minus sign, divided by
    /// 10^`exponent`.
    var labels: [String] {
        let factor = Foundation.pow(10, Double(-exponent))
        return values.map { formatTick($0 * factor, step: step * factor) }
    }

    /// "×10⁶" when the labels are divided by a power of ten, else nil.
    var multiplier: String? {
        let e = exponent
        guard e != 0 else { return nil }
        let digits: [Character: Character] = [
            "0": "⁰", "1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵", "6": "⁶",
            "7": "⁷", "8": "⁸", "9": "⁹", "-": "⁻",
        ]
        return "×10" + String(String(e).map { digits[$0] ?? $0 })
    }

    /// `label` with the multiplier appended in parentheses (or the multiplier alone).
    func axisLabel(_ label: String) -> String {
        guard let multiplier else { return label }
        return label.isEmpty ? multiplier : "\(label) (\(multiplier))"
    }
}

/// A tick value printed with the decimals `step` needs ("0.2", "15", "1e-05").
func formatTick(_ value: Double, step: Double) -> String {
    let magnitude = Swift.max(abs(value), step)
    let text: String
    if magnitude >= 1e6 || step < 1e-4 {
        // Enough significant digits to tell neighbouring ticks apart.
        let digits = Swift.min(17, Swift.max(1, Int((log10(magnitude / step)).rounded(.up)) + 1))
        text = String(format: "%.\(digits)g", value)
    } else {
        let decimals = Swift.max(0, Int((-log10(step) - 1e-9).rounded(.up)))
        text = String(format: "%.\(decimals)f", value)
    }
    return typographicMinus(text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text)
}

/// A cell value for annotation: two decimals for small values, fewer digits for large ones.
func formatValue(_ value: Double) -> String {
    guard value.isFinite else { return "" }
    let text = abs(value) < 100 ? String(format: "%.2f", value) : String(format: "%.3g", value)
    return typographicMinus(Double(text) == 0 && text.hasPrefix("-") ? String(text.dropFirst()) : text)
}

/// Replaces a leading hyphen-minus with U+2212 MINUS SIGN.
func typographicMinus(_ s: String) -> String {
    s.hasPrefix("-") ? "\u{2212}" + s.dropFirst() : s
}

/// Indices of labels to show along an axis of `count` equal slots of `slot` points: at most `maxLabels`,
/// evenly spaced, at least `minSpacing` points apart.
func thinnedIndices(count: Int, slot: Double, minSpacing: Double, maxLabels: Int = 25) -> [Int] {
    guard count > 0 else { return [] }
    var step = Swift.max(1, Int((Double(count) / Double(maxLabels)).rounded(.up)))
    if slot > 0 { step = Swift.max(step, Int((minSpacing / slot - 1e-9).rounded(.up))) }
    return Array(stride(from: 0, to: count, by: step))
}

/// Finite minimum and maximum of `values`, or nil when none is finite.
func finiteExtent(_ values: some Sequence<Double>) -> (min: Double, max: Double)? {
    var lo = Double.infinity, hi = -Double.infinity
    for v in values where v.isFinite {
        lo = Swift.min(lo, v)
        hi = Swift.max(hi, v)
    }
    return lo <= hi ? (lo, hi) : nil
}
