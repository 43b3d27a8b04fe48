import CKAIO
import CKATensor
import Foundation
import _CKASupport

/// Grid coordinates along one axis: `count` points from `lower` to `upper` inclusive
/// (`np.linspace(lower, upper, count)`), written `lower:upper:count` on the command line.
public struct GridAxis: Sendable, Equatable, CustomStringConvertible {
    public var lower: Double
    public var upper: Double
    public var count: Int

    public init(lower: Double, upper: Double, count: Int) throws {
        guard lower.isFinite, upper.isFinite, lower < upper || count == 1, count >= 1 else {
            throw LandscapeError.invalidGrid("\(lower):\(upper):\(count)")
        }
        self.lower = lower; self.upper = upper; self.count = count
    }

    /// Parses `MIN:MAX:NUM`, e.g. `-1:1:51`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let lo = Double(parts[0]), let hi = Double(parts[1]), let n = Int(parts[2]) else {
            throw LandscapeError.invalidGrid(text)
        }
        guard n >= 2, lo < hi else { throw LandscapeError.invalidGrid(text) }
        try self.init(lower: lo, upper: hi, count: n)
    }

    /// The coordinates, as `np.linspace` computes them (`lower + i·step`, the last one exactly `upper`).
    public var coordinates: [Double] {
        guard count > 1 else { return [lower] }
        let step = (upper - lower) / Double(count - 1)
        return (0..<count).map { $0 == count - 1 ? upper : lower + Double($0) * step }
    }

    public var description: String { "\(lower):\(upper):\(count)" }
}

/// The checkpoints of a training trajectory and their coordinates (α, β) in its PCA plane, in order; the last is
/// the plane's centre.
public struct LandscapeTrajectory: Sendable, Equatable {
    public var checkpoints: [String]
    /// One (α, β) per checkpoint.
    public var coordinates: [[Double]]

    public init(checkpoints: [String], coordinates: [[Double]]) {
        self.checkpoints = checkpoints
        self.coordinates = coordinates
    }
}

/// A loss surface in the landscape store of formats.md §3 (`format = "landscape"`, version 1).
///
/// ```
/// /xcoordinates [nx] float64      /ycoordinates [ny] float64 (a 1-D run has ny = 1, y = 0)
/// /loss [ny, nx] float64 (NaN = not computed yet)      /done [ny, nx] uint8
/// /accuracy [ny, nx] float64 (classification losses)    /parts/<name> [ny, nx] (e.g. RC-MAE's two terms)
/// /inputs/ids [N] strings          /masks [N, patches] uint8 (MAE/RC-MAE: 1 = masked)
/// /curvature/{lambda_min,lambda_max,ratio} [ny, nx] float64 (`--curvature-map`; NaN = not computed yet)
/// /trajectory/checkpoints [M] strings, /trajectory/coordinates [M, 2] float64 (a `--pca-of` plane)
/// attrs: format, format_version, dimensions, loss, normalization, ignore, excluded, seed, checkpoint, …
/// ```
/// Point (ix, iy) is the loss at θ₀ + x[ix]·dx + y[iy]·dy; grid points are evaluated in the order of the
/// flat index iy·nx + ix (that of loss-landscape's surface files). The file is small and rewritten whole,
/// atomically, after every point: a killed run leaves the last complete version, and resumes from it.
public struct LandscapeSurface: Sendable {
    public var x: [Double]
    public var y: [Double]
    /// 1 for a line (y = [0]), 2 for a plane.
    public var dimensions: Int
    /// Row-major [ny, nx]; NaN where not computed.
    public var loss: [Double]
    /// Row-major [ny, nx]; 1 where computed.
    public var done: [UInt8]
    /// Row-major [ny, nx] top-1 accuracy in percent (classification losses only).
    public var accuracy: [Double]?
    /// Named loss parts, each row-major [ny, nx].
    public var parts: [String: [Double]]
    /// Ids of the examples the loss averages over, in order.
    public var ids: [String]
    /// Masks of the examples (MAE/RC-MAE), row-major [N, patchCount], 1 = masked.
    public var masks: [UInt8]?
    public var patchCount: Int
    /// Settings and results (`loss`, `normalization`, `seed`, statistics, …).
    public var attributes: [String: HDF5AttributeValue]
    /// The checkpoints of a trajectory plane (`--pca-of`) and their coordinates in it.
    public var trajectory: LandscapeTrajectory?
    /// Row-major [ny, nx] extreme Hessian eigenvalues (`--curvature-map`); NaN where not computed.
    public var lambdaMin: [Double]?
    public var lambdaMax: [Double]?

    /// |λ_min/λ_max| per point (Li et al.'s convexity map), when the extremes are stored.
    public var curvatureRatio: [Double]? {
        guard let lambdaMin, let lambdaMax else { return nil }
        return zip(lambdaMin, lambdaMax).map { abs($0 / $1) }
    }

    public var nx: Int { x.count }
    public var ny: Int { y.count }

    /// An empty surface over a grid (every point not computed).
    public init(x: [Double], y: [Double]?, ids: [String], attributes: [String: HDF5AttributeValue] = [:]) {
        self.x = x
        self.y = y ?? [0]
        dimensions = y == nil ? 1 : 2
        let n = x.count * (y?.count ?? 1)
        loss = [Double](repeating: .nan, count: n)
        done = [UInt8](repeating: 0, count: n)
        accuracy = nil
        parts = [:]
        self.ids = ids
        masks = nil
        patchCount = 0
        self.attributes = attributes
        trajectory = nil
        lambdaMin = nil
        lambdaMax = nil
    }

    /// Number of computed points.
    public var completedCount: Int { done.reduce(0) { $0 + Int($1) } }

    /// The loss at (ix, iy), or nil if not computed.
    public func value(ix: Int, iy: Int) -> Double? {
        let k = iy * nx + ix
        return done[k] != 0 ? loss[k] : nil
    }

    /// Records the value of point (ix, iy).
    public mutating func record(_ v: LandscapeValue, ix: Int, iy: Int) {
        let k = iy * nx + ix
        loss[k] = v.loss
        done[k] = 1
        if let a = v.accuracy {
            if accuracy == nil { accuracy = [Double](repeating: .nan, count: loss.count) }
            accuracy![k] = a
        }
        for (name, value) in v.parts {
            if parts[name] == nil { parts[name] = [Double](repeating: .nan, count: loss.count) }
            parts[name]![k] = value
        }
        if let lo = v.lambdaMin, let hi = v.lambdaMax {
            if lambdaMin == nil || lambdaMax == nil {
                lambdaMin = [Double](repeating: .nan, count: loss.count)
                lambdaMax = lambdaMin
            }
            lambdaMin![k] = lo
            lambdaMax![k] = hi
        }
    }

    // MARK: - Files

    /// Reads a landscape store.
    /// - Throws: `LandscapeError` / `HDF5Error` naming the file if it is not a landscape store of version 1.
    public init(contentsOf path: String) throws {
        let f = try HDF5File(path: path)
        let attrs = try f.attributes()
        guard attrs["format"]?.stringValue == "landscape" else {
            throw LandscapeError.mismatch(
                file: path, what: "attribute 'format'", expected: "\"landscape\"",
                got: attrs["format"].map { "\"\($0)\"" } ?? "missing")
        }
        guard attrs["format_version"]?.intValue == 1 else {
            throw LandscapeError.mismatch(
                file: path, what: "format_version", expected: "1",
                got: attrs["format_version"].map { "\($0)" } ?? "missing")
        }
        attributes = attrs
        let xs = try f.dataset("xcoordinates").readDouble().scalars
        let ys = f.exists("ycoordinates") ? try f.dataset("ycoordinates").readDouble().scalars : [0]
        x = xs
        y = ys
        dimensions = attrs["dimensions"]?.intValue ?? (f.exists("ycoordinates") ? 2 : 1)
        let n = xs.count * ys.count
        func grid(_ name: String) throws -> [Double] {
            let v = try f.dataset(name).readDouble().scalars
            guard v.count == n else {
                throw LandscapeError.mismatch(
                    file: path, what: name, expected: "\(ys.count)×\(xs.count) values", got: "\(v.count)")
            }
            return v
        }
        loss = try grid("loss")
        let flags = try f.dataset("done").readUInt8()
        guard flags.count == n else {
            throw LandscapeError.mismatch(
                file: path, what: "done", expected: "\(ys.count)×\(xs.count) values", got: "\(flags.count)")
        }
        done = flags
        accuracy = f.exists("accuracy") ? try grid("accuracy") : nil
        var named: [String: [Double]] = [:]
        if f.exists("parts") { for name in try f.children(of: "parts") { named[name] = try grid("parts/" + name) } }
        parts = named
        ids = f.exists("inputs/ids") ? try f.readStrings("inputs/ids") : []
        if f.exists("masks") {
            let d = try f.dataset("masks")
            masks = try d.readUInt8()
            patchCount = d.shape.count == 2 ? d.shape[1] : 0
        } else {
            masks = nil
            patchCount = 0
        }
        if f.exists("curvature/lambda_min") {
            lambdaMin = try grid("curvature/lambda_min")
            lambdaMax = try grid("curvature/lambda_max")
        } else {
            lambdaMin = nil
            lambdaMax = nil
        }
        if f.exists("trajectory/coordinates") {
            let c = try f.dataset("trajectory/coordinates").readDouble()
            let names = try f.readStrings("trajectory/checkpoints")
            guard c.shape == [names.count, 2] else {
                throw LandscapeError.mismatch(
                    file: path, what: "trajectory/coordinates", expected: "[\(names.count), 2]",
                    got: describe(c.shape))
            }
            trajectory = LandscapeTrajectory(
                checkpoints: names, coordinates: (0..<names.count).map { [c[$0, 0], c[$0, 1]] })
        } else {
            trajectory = nil
        }
    }

    /// Writes the store to `path` atomically (temporary file, then rename).
    public func write(to path: String) throws {
        let out = try AtomicOutput.seekable(path: path)
        do {
            try writeContents(to: out.temporaryPath, reportingAs: path)
            try out.commit()
        } catch {
            out.discard()
            throw error
        }
    }

    private func writeContents(to path: String, reportingAs shownPath: String) throws {
        let f = try HDF5File(path: path, mode: .create, reportingAs: shownPath)
        var attrs = attributes
        attrs["format"] = .string("landscape")
        attrs["format_version"] = .int(1)
        attrs["dimensions"] = .int(dimensions)
        for (k, v) in attrs.sorted(by: { $0.key < $1.key }) { try f.setAttribute(k, v) }
        try f.createDataset("xcoordinates", type: .float64, shape: [nx]).write(
            try Tensor<Double>(shape: [nx], scalars: x))
        try f.createDataset("ycoordinates", type: .float64, shape: [ny]).write(
            try Tensor<Double>(shape: [ny], scalars: y))
        func grid(_ name: String, _ v: [Double]) throws {
            try f.createDataset(name, type: .float64, shape: [ny, nx]).write(
                try Tensor<Double>(shape: [ny, nx], scalars: v))
        }
        try grid("loss", loss)
        try f.createDataset("done", type: .uint8, shape: [ny, nx]).write(done)
        if let accuracy { try grid("accuracy", accuracy) }
        if !parts.isEmpty { try f.createGroup("parts") }
        for (name, v) in parts.sorted(by: { $0.key < $1.key }) { try grid("parts/" + name, v) }
        if !ids.isEmpty { try f.createGroup("inputs"); try f.writeStrings("inputs/ids", ids) }
        if let masks, patchCount > 0 {
            try f.createDataset("masks", type: .uint8, shape: [masks.count / patchCount, patchCount]).write(masks)
        }
        if let lambdaMin, let lambdaMax, let ratio = curvatureRatio {
            try f.createGroup("curvature")
            try grid("curvature/lambda_min", lambdaMin)
            try grid("curvature/lambda_max", lambdaMax)
            try grid("curvature/ratio", ratio)
        }
        if let trajectory {
            let m = trajectory.checkpoints.count
            try f.createGroup("trajectory")
            try f.writeStrings("trajectory/checkpoints", trajectory.checkpoints)
            try f.createDataset("trajectory/coordinates", type: .float64, shape: [m, 2]).write(
                try Tensor<Double>(shape: [m, 2], scalars: trajectory.coordinates.flatMap { $0 }))
        }
        try f.close()
    }
}
