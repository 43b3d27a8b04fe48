import CKAIO
import Foundation

/// Numbers for what loss-landscape pictures are usually only eyeballed for: how sharp the minimum is
/// and how far the locally convex basin around it reaches.
///
/// All of them come from the stored grid alone (no model needed):
/// - **Curvature along each direction**: 2·c₂ of the least-squares quadratic c₀ + c₁t + c₂t² fitted to the
///   grid line through the centre, over the points with |t| ≤ `fitRadius` (at least the 5 nearest).
///   Exact for a quadratic surface.
/// - **Convexity map** (Li et al. 2018, Fig. 7): at every interior grid point the 2×2 Hessian of the surface
///   by central differences — f_xx = (f₊ − 2f + f₋)/h², f_xy = (f₊₊ − f₊₋ − f₋₊ + f₋₋)/(4·h_x·h_y) — and
///   its eigenvalues λ_min ≤ λ_max. A point is locally convex when λ_min ≥ −tolerance·|λ_max|
///   (tolerance 0 by default). For a line, f_xx ≥ −tolerance·|f_xx|, i.e. f_xx ≥ 0.
/// - **Convex area**: the 4-connected set of locally convex interior points that contains the centre,
///   each point standing for an h_x × h_y cell, in squared grid units (a length for a line). Zero if
///   the centre is not convex. `convexRegionTouchesEdge` says the basin may extend beyond the grid.
/// The centre is the grid point nearest to (0, 0).
public struct LandscapeStatistics: Sendable, Equatable {
    public var centerLoss: Double
    /// Grid coordinates of the centre point.
    public var center: [Double]
    /// Fitted curvature (second derivative) along x and, for planes, y.
    public var curvature: [Double]
    /// Points used by each quadratic fit.
    public var fitPoints: [Int]
    /// Locally convex interior points / interior points.
    public var convexFraction: Double
    /// Area (length for a line) of the convex region connected to the centre.
    public var convexArea: Double
    /// Grid points in that region.
    public var convexRegionPoints: Int
    /// True if that region reaches the outermost interior points (it may continue beyond the grid).
    public var convexRegionTouchesEdge: Bool

    /// The statistics of a complete surface.
    /// - Throws: `LandscapeError.invalidArgument` if points are missing, the grid is too small, or (0, 0)
    ///   lies outside it.
    public init(surface s: LandscapeSurface, fitRadius: Double = 0.2, tolerance: Double = 0) throws {
        let missing = s.done.filter { $0 == 0 }.count
        guard missing == 0 else {
            throw LandscapeError.invalidArgument(
                "the surface is incomplete: \(missing) of \(s.done.count) points not computed yet (rerun `cka landscape` to resume)"
            )
        }
        guard s.nx >= 3, s.dimensions == 1 || s.ny >= 3 else {
            throw LandscapeError.invalidArgument("a grid needs at least 3 points per axis for curvature and convexity")
        }
        func nearestZero(_ c: [Double]) throws -> Int {
            guard let lo = c.first, let hi = c.last, lo <= 0, hi >= 0 else {
                throw LandscapeError.invalidArgument(
                    "the grid \(c.first ?? 0)…\(c.last ?? 0) does not contain the centre 0")
            }
            return c.indices.min { abs(c[$0]) < abs(c[$1]) }!
        }
        let nx = s.nx, ny = s.ny
        let cx = try nearestZero(s.x), cy = s.dimensions == 2 ? try nearestZero(s.y) : 0
        let f = { (ix: Int, iy: Int) in s.loss[iy * nx + ix] }
        centerLoss = f(cx, cy)
        center = s.dimensions == 2 ? [s.x[cx], s.y[cy]] : [s.x[cx]]

        // Quadratic fits along the grid lines through the centre.
        let lineX = (0..<nx).map { (s.x[$0], f($0, cy)) }
        var fits = [Self.quadraticCurvature(lineX, center: s.x[cx], radius: fitRadius)]
        if s.dimensions == 2 {
            fits.append(
                Self.quadraticCurvature((0..<ny).map { (s.y[$0], f(cx, $0)) }, center: s.y[cy], radius: fitRadius))
        }
        curvature = fits.map(\.curvature)
        fitPoints = fits.map(\.points)

        // Convexity map over interior points.
        let hx = (s.x[nx - 1] - s.x[0]) / Double(nx - 1)
        var convex = [Bool](repeating: false, count: nx * ny)
        var interior = 0, convexCount = 0
        if s.dimensions == 1 {
            for ix in 1..<(nx - 1) {
                let fxx = (f(ix + 1, 0) - 2 * f(ix, 0) + f(ix - 1, 0)) / (hx * hx)
                interior += 1
                if fxx >= -tolerance * abs(fxx) { convex[ix] = true; convexCount += 1 }
            }
        } else {
            let hy = (s.y[ny - 1] - s.y[0]) / Double(ny - 1)
            for iy in 1..<(ny - 1) {
                for ix in 1..<(nx - 1) {
                    let c = f(ix, iy)
                    let fxx = (f(ix + 1, iy) - 2 * c + f(ix - 1, iy)) / (hx * hx)
                    let fyy = (f(ix, iy + 1) - 2 * c + f(ix, iy - 1)) / (hy * hy)
                    let fxy =
                        (f(ix + 1, iy + 1) - f(ix + 1, iy - 1) - f(ix - 1, iy + 1) + f(ix - 1, iy - 1)) / (4 * hx * hy)
                    let mean = (fxx + fyy) / 2,
                        radius = (((fxx - fyy) / 2) * ((fxx - fyy) / 2) + fxy * fxy).squareRoot()
                    let lmin = mean - radius, lmax = mean + radius
                    interior += 1
                    if lmin >= -tolerance * abs(lmax) { convex[iy * nx + ix] = true; convexCount += 1 }
                }
            }
        }
        convexFraction = Double(convexCount) / Double(max(interior, 1))

        // The 4-connected convex region around the centre.
        var region = 0, touches = false
        if convex[cy * nx + cx] {
            var seen = [Bool](repeating: false, count: nx * ny)
            var stack = [(cx, cy)]
            seen[cy * nx + cx] = true
            while let (ix, iy) = stack.popLast() {
                region += 1
                if ix == 1 || ix == nx - 2 || (s.dimensions == 2 && (iy == 1 || iy == ny - 2)) { touches = true }
                var next = [(ix - 1, iy), (ix + 1, iy)]
                if s.dimensions == 2 { next += [(ix, iy - 1), (ix, iy + 1)] }
                for (jx, jy) in next where jx >= 0 && jx < nx && jy >= 0 && jy < ny {
                    let k = jy * nx + jx
                    if convex[k] && !seen[k] { seen[k] = true; stack.append((jx, jy)) }
                }
            }
        }
        convexRegionPoints = region
        convexRegionTouchesEdge = touches
        let cell = s.dimensions == 2 ? hx * (s.y[ny - 1] - s.y[0]) / Double(ny - 1) : hx
        convexArea = Double(region) * cell
    }

    /// 2·c₂ of the least-squares parabola through the points with |t − center| ≤ radius (at least the 5,
    /// or all, nearest), in centred coordinates.
    static func quadraticCurvature(_ points: [(Double, Double)], center: Double, radius: Double) -> (
        curvature: Double, points: Int
    ) {
        let byDistance = points.sorted { abs($0.0 - center) < abs($1.0 - center) }
        var used = byDistance.filter { abs($0.0 - center) <= radius * (1 + 1e-12) }
        if used.count < 5 { used = Array(byDistance.prefix(5)) }
        // Normal equations of [1, t, t²] in Double; 3×3 solved by Cramer's rule (well conditioned for centred t).
        var s = [Double](repeating: 0, count: 5), r = [Double](repeating: 0, count: 3)
        for (x, y) in used {
            let t = x - center
            var p = 1.0
            for k in 0..<5 {
                s[k] += p
                if k < 3 { r[k] += p * y }
                p *= t
            }
        }
        let m = [[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]]
        func det(_ a: [[Double]]) -> Double {
            a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
        }
        var m2 = m
        for i in 0..<3 { m2[i][2] = r[i] }
        let c2 = det(m2) / det(m)
        return (2 * c2, used.count)
    }

    /// The statistics as store attributes (`stat_…`).
    public var attributes: [String: HDF5AttributeValue] {
        [
            "stat_center_loss": .double(centerLoss),
            "stat_curvature": .doubles(curvature),
            "stat_curvature_fit_points": .ints(fitPoints),
            "stat_convex_fraction": .double(convexFraction),
            "stat_convex_area": .double(convexArea),
            "stat_convex_region_points": .int(convexRegionPoints),
            "stat_convex_region_touches_edge": .bool(convexRegionTouchesEdge),
        ]
    }
}
