import Foundation

/// An sRGB colour with components in `0...1`.
public struct RGBColor: Sendable, Equatable {
    /// Red component in `0...1`.
    public var red: Double
    /// Green component in `0...1`.
    public var green: Double
    /// Blue component in `0...1`.
    public var blue: Double

    /// A colour from components in `0...1`.
    public init(red: Double, green: Double, blue: Double) {
        self.red = red
        self.green = green
        self.blue = blue
    }

    /// A colour from a 24-bit `0xRRGGBB` literal.
    public init(hex: UInt32) {
        self.init(
            red: Double((hex >> 16) & 0xFF) / 255, green: Double((hex >> 8) & 0xFF) / 255,
            blue: Double(hex & 0xFF) / 255)
    }

    /// Relative luminance (WCAG / Rec. 709 weights on linearised sRGB), `0` black … `1` white.
    public var luminance: Double {
        func linear(_ c: Double) -> Double {
            c <= 0.04045 ? c / 12.92 : Foundation.pow((c + 0.055) / 1.055, 2.4)
        }
        return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)
    }

    static let white = RGBColor(red: 1, green: 1, blue: 1)
    static let black = RGBColor(red: 0, green: 0, blue: 0)
    /// Text and frame colour: a very dark grey reads softer than pure black.
    static let ink = RGBColor(red: 0.13, green: 0.13, blue: 0.13)
    /// Cells and regions without a value (NaN).
    static let missing = RGBColor(red: 0.80, green: 0.80, blue: 0.80)
    static let gridLine = RGBColor(red: 0.88, green: 0.88, blue: 0.88)
}

/// A perceptually ordered colour map: `color(at: 0)` is the darkest colour, `color(at: 1)` the lightest.
public struct Colormap: Sendable, Equatable {
    /// Name of the map (for messages).
    public let name: String
    /// Evenly spaced anchor colours, interpolated linearly in sRGB.
    let anchors: [RGBColor]

    /// A viridis-like map (dark blue-violet → teal → yellow), monotone in lightness and colour-blind safe.
    ///
    /// The sixteen anchors were tabulated for this package at evenly spaced lightness steps of about 5 L*.
    public static let viridis = Colormap(
        name: "viridis",
        anchors: [
            0x440154, 0x481A6C, 0x472F7D, 0x414487, 0x39568C, 0x31688E, 0x2A788E, 0x23888E,
            0x1F988B, 0x22A884, 0x35B779, 0x54C568, 0x7AD151, 0xA5DB36, 0xD2E21B, 0xFDE725,
        ].map { RGBColor(hex: $0) })

    /// The colour at `t`; `t` is clamped to `0...1`, and NaN gives the light grey used for missing values.
    public func color(at t: Double) -> RGBColor {
        guard !t.isNaN else { return .missing }
        let u = Swift.min(Swift.max(t, 0), 1) * Double(anchors.count - 1)
        let i = Swift.min(Int(u), anchors.count - 2)
        let f = u - Double(i)
        let a = anchors[i], b = anchors[i + 1]
        return RGBColor(
            red: a.red + (b.red - a.red) * f, green: a.green + (b.green - a.green) * f,
            blue: a.blue + (b.blue - a.blue) * f)
    }

    /// The colour of `value` on the scale `range` (clamped; NaN gives the missing-value grey).
    func color(of value: Double, in range: ClosedRange<Double>) -> RGBColor {
        color(at: (value - range.lowerBound) / (range.upperBound - range.lowerBound))
    }
}
