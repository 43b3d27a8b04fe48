import CKAIO
import CKATensor
import Foundation

/// Evaluates a loss surface point by point and keeps its store on disk current, so a run can be
/// interrupted at any time and resumed.
///
/// ```swift
/// let dx = FilterNormalizedDirections.random(like: objective.center.restricted(to: perturbed), seed: 1)
/// var surface = LandscapeSurface(x: try GridAxis(parsing: "-1:1:51").coordinates, y: nil, ids: ids)
/// let run = SurfaceEvaluation(objective: objective, directions: [dx])
/// surface = try run.evaluate(surface, savingTo: "surface.h5")
/// ```
public struct SurfaceEvaluation {
    public let objective: any LandscapeObjective
    /// One direction (a line) or two (a plane); each holds only the perturbed parameters.
    public let directions: [ParameterSet]
    /// Also the Hessian's extreme eigenvalues at every point (`--curvature-map`).
    public var curvature: CurvatureMap?

    /// Progress after each point: points done in total, points in the grid, the point's value, its seconds.
    public typealias Progress = (_ done: Int, _ total: Int, _ value: LandscapeValue, _ seconds: Double) -> Void

    public init(objective: any LandscapeObjective, directions: [ParameterSet]) {
        self.objective = objective
        self.directions = directions
    }

    /// The parameters at grid coordinates `(a, b)`: θ₀ + a·dx (+ b·dy).
    public func parameters(a: Double, b: Double = 0) throws -> ParameterSet {
        var terms: [(coefficient: Double, direction: ParameterSet)] = [(a, directions[0])]
        if directions.count > 1 { terms.append((b, directions[1])) }
        return try objective.center.moved(along: terms)
    }

    /// The loss at grid coordinates `(a, b)` (and the Hessian's extreme eigenvalues with `curvature`).
    public func value(a: Double, b: Double = 0) throws -> LandscapeValue {
        let p = try parameters(a: a, b: b)
        var v = try objective.evaluate(at: p)
        if let curvature { (v.lambdaMin, v.lambdaMax) = try curvature.extremes(at: p) }
        return v
    }

    /// Evaluates every point of `surface` that is not done yet, in flat-index order (iy·nx + ix), writing
    /// the store to `path` (atomically) after each one.
    /// - Parameter maxPoints: stop after this many new points (the rest stays to be resumed).
    /// - Returns: the surface with the new points.
    public func evaluate(
        _ surface: LandscapeSurface, savingTo path: String?, maxPoints: Int? = nil,
        progress: Progress? = nil
    ) throws -> LandscapeSurface {
        guard directions.count == surface.dimensions else {
            throw LandscapeError.invalidArgument(
                "a \(surface.dimensions)-D surface needs \(surface.dimensions) direction(s), got \(directions.count)")
        }
        var s = surface
        var newPoints = 0
        var completed = s.completedCount
        for iy in 0..<s.ny {
            for ix in 0..<s.nx where s.done[iy * s.nx + ix] == 0 {
                if let maxPoints, newPoints >= maxPoints { return s }
                let start = DispatchTime.now().uptimeNanoseconds
                let v = try value(a: s.x[ix], b: s.y[iy])
                s.record(v, ix: ix, iy: iy)
                if let path { try s.write(to: path) }
                newPoints += 1
                completed += 1
                progress?(completed, s.loss.count, v, Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
            }
        }
        return s
    }
}

extension LandscapeSurface {
    /// Attributes that must agree for a stored surface to be resumed with new settings.
    public static let identityAttributes = [
        "loss", "normalization", "ignore", "seed", "checkpoint", "teacher",
        "n_examples", "pick", "perturbed", "excluded", "norm_pix_loss", "gamma", "mask_ratio",
        "mask_seed", "head", "path_from", "path_to", "pca_of", "curvature_steps", "curvature_seed",
        "curvature_step_relative",
    ]

    /// Why `other` (a stored surface) cannot be resumed as `self`, or nil if it can.
    public func resumeConflict(with other: LandscapeSurface) -> String? {
        if other.x != x { return "x coordinates differ" }
        if other.y != y || other.dimensions != dimensions { return "y coordinates differ" }
        if other.ids != ids { return "the examples (/inputs/ids) differ" }
        if other.masks != masks { return "the masks differ" }
        for key in Self.identityAttributes where attributes[key]?.normalized != other.attributes[key]?.normalized {
            return
                "'\(key)' is \(other.attributes[key].map { "\($0)" } ?? "missing") there, \(attributes[key].map { "\($0)" } ?? "missing") now"
        }
        return nil
    }

    /// Resumes from the surface stored at `path`, if there is one: takes its points, or throws when it was
    /// computed with other settings. Returns the number of points already done (nil: nothing stored).
    public mutating func resume(from path: String) throws -> Int? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let stored = try LandscapeSurface(contentsOf: path)
        if let conflict = resumeConflict(with: stored) {
            throw LandscapeError.invalidArgument(
                "\(path) exists with other settings (\(conflict)); remove it or choose another --out")
        }
        adoptPoints(of: stored)
        return stored.completedCount
    }

    /// Takes the computed points of `other` (a compatible stored surface).
    public mutating func adoptPoints(of other: LandscapeSurface) {
        loss = other.loss
        done = other.done
        accuracy = other.accuracy
        parts = other.parts
        lambdaMin = other.lambdaMin
        lambdaMax = other.lambdaMax
        for (k, v) in other.attributes where attributes[k] == nil { attributes[k] = v }
    }
}
