import ArgumentParser
import CKAKit
import Foundation

extension CKACommand {
    struct LandscapeStats: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "landscape-stats",
            abstract: "Numbers of a loss surface: curvature at the centre, convex area, flatness.",
            discussion: """
                From the grid alone (see LandscapeStatistics in the library docs):
                  curvature    2·c₂ of the least-squares parabola through the centre along
                               each direction, over the points within --fit-radius (at
                               least the 5 nearest): the sharpness of the minimum
                  convexity    2×2 Hessian of the surface by central differences at every
                               interior point; locally convex where
                               λ_min ≥ −tolerance·|λ_max| (Li et al.'s convexity map)
                  convex area  the 4-connected locally convex region containing the centre,
                               in grid units²
                Stored with the surface by 'cka landscape': the largest Hessian eigenvalue (± the change when the \
                finite-difference step is halved) and, when asked for, the average flatness (mean loss increase under \
                random filter-normalised perturbations of a given radius). The statistics are written back into \
                the store as attributes stat_* (the file is rewritten atomically) unless --no-write.
                """)

        @Argument(help: "The landscape store (.h5).")
        var surface: String

        @Option(name: .customLong("fit-radius"), help: "Half-width of the quadratic fit along each direction.")
        var fitRadius = 0.2

        @Option(help: "Relative tolerance of the convexity test: λ_min ≥ −tolerance·|λ_max|.")
        var tolerance = 0.0

        @Flag(name: .customLong("no-write"), help: "Only print; do not store the statistics in the file.")
        var noWrite = false

        func validate() throws {
            if !(fitRadius > 0) { throw ValidationError("--fit-radius must be positive") }
            if !(tolerance >= 0) { throw ValidationError("--tolerance must be ≥ 0") }
        }

        func run() throws {
            try reportingErrors {
                var s = try LandscapeSurface(contentsOf: surface)
                let st = try LandscapeStatistics(surface: s, fitRadius: fitRadius, tolerance: tolerance)
                let axes = s.dimensions == 2 ? ["x", "y"] : ["x"]
                let unit = s.dimensions == 2 ? "grid units²" : "grid units"
                print(
                    "\(surface): \(s.attributes["loss"]?.stringValue ?? "?") loss, \(s.dimensions)-D, \(s.nx)"
                        + (s.dimensions == 2 ? "×\(s.ny)" : "") + " points, \(s.ids.count) examples")
                print(
                    String(
                        format: "  centre loss          %.6g at %@", st.centerLoss,
                        st.center.map { String(format: "%g", $0) }.joined(separator: ", ")))
                for (a, (c, n)) in zip(axes, zip(st.curvature, st.fitPoints)) {
                    print(String(format: "  curvature along %@     %.6g (quadratic fit over %d points)", a, c, n))
                }
                print(
                    String(
                        format: "  convex area          %.6g %@ (%d points%@)", st.convexArea, unit,
                        st.convexRegionPoints,
                        st.convexRegionTouchesEdge ? "; reaches the grid's edge, may extend beyond" : ""))
                print(String(format: "  convex fraction      %.4f of interior points", st.convexFraction))
                if case .doubles(let radii)? = s.attributes["flatness_radius"],
                    case .doubles(let inc)? = s.attributes["flatness_mean_increase"],
                    case .doubles(let se)? = s.attributes["flatness_standard_error"]
                {
                    let samples = s.attributes["flatness_samples"]?.intValue ?? 0
                    for (r, (m, e)) in zip(radii, zip(inc, se)) {
                        print(
                            String(
                                format: "  average flatness     +%.6g ± %.2g at radius %g (%d samples)", m, e, r,
                                samples))
                    }
                }
                if let lambda = s.attributes["hessian_max_eigenvalue"]?.doubleValue {
                    print(
                        String(
                            format: "  Hessian λ_max        %.6g ± %.2g (power iteration, %d iterations, step %.3g)",
                            lambda,
                            s.attributes["hessian_step_error"]?.doubleValue ?? .nan,
                            s.attributes["hessian_iterations"]?.intValue ?? 0,
                            s.attributes["hessian_step"]?.doubleValue ?? .nan))
                }
                if !noWrite {
                    for (k, v) in st.attributes { s.attributes[k] = v }
                    s.attributes["stat_fit_radius"] = .double(fitRadius)
                    s.attributes["stat_tolerance"] = .double(tolerance)
                    try s.write(to: surface)
                }
            }
        }
    }
}
